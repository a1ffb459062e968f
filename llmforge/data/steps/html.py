"""HTML pages → main text with trafilatura (Barbaresi 2021, ACL demo), every dropped page named.

datatrove's `Trafilatura` step calls `extract(..., deduplicate=True)` unless told otherwise: trafilatura then
keeps a process-wide cache of text segments and drops a segment seen more than twice, so a page whose
paragraphs appeared in earlier pages (a re-crawl, a mirror, a print version) loses its article or vanishes, and
whether it does depends on the pages before it in the same task. Here `deduplicate` is off by default (the
dataset's dedup steps remove repeats, by rule and with a report), the extraction options are the recipe's,
and each page that yields no text is counted by reason and handed, with its HTML, to the step's
`exclusion_writer` (every id goes to the report; a capped sample of the pages goes into the dataset).
"""

from __future__ import annotations

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.extractors.base import BaseExtractor, ExtractorSandbox
from datatrove.utils.typeshelper import StatHints


class HtmlToText(BaseExtractor):
    name = "⛏ html to text"
    _requires_dependencies = ["trafilatura"]

    def __init__(
        self,
        favour_precision: bool = True,
        favour_recall: bool = False,
        deduplicate: bool = False,
        include_comments: bool = False,
        include_tables: bool = True,
        include_links: bool = False,
        target_language: str | None = None,
        timeout: float = 1.0,
    ):
        super().__init__(timeout)
        self.options = {
            "favor_precision": favour_precision,
            "favor_recall": favour_recall,
            "deduplicate": deduplicate,
            "include_comments": include_comments,
            "include_tables": include_tables,
            "include_links": include_links,
            "target_language": target_language,
        }
        self.exclusion_writer = None

    def extract(self, text: str) -> str:
        from trafilatura import extract

        return extract(text, **self.options) or ""

    def _text_or_reason(self, extractor: ExtractorSandbox, html: str) -> tuple[str, str | None]:
        try:
            text = extractor.process_document(html, self.extract)
        except TimeoutError:
            return "", "timeout"
        except EOFError:  # the extraction process died (out of memory, a crash in lxml)
            return "", "extractor_died"
        except Exception:  # noqa: BLE001 - trafilatura raises many kinds on broken markup
            return "", "extraction_error"
        return (text, None) if text and text.strip() else ("", "no_text_extracted")

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with ExtractorSandbox(timeout=self.timeout, warmup_text="") as extractor:
            for doc in data:
                self.stat_update(StatHints.total)
                with self.track_time():
                    text, reason = self._text_or_reason(extractor, doc.text)
                if reason is None:
                    doc.text = text
                    self.stat_update(StatHints.forwarded)
                    self.update_doc_stats(doc)
                    yield doc
                    continue
                self.stat_update(StatHints.dropped, f"dropped_{reason}")
                if self.exclusion_writer is not None:
                    page = Document(
                        text=doc.text, id=doc.id, metadata={**doc.metadata, "filter_reason": reason}
                    )
                    self.exclusion_writer.write(page, rank)
