"""Readers for each `[[data.sources]]` type, as datatrove reader steps.

Every document gets `metadata["source"]` (the source's name; a record's own `source` field is kept as
`metadata["original_source"]`). Records that cannot be read (bad JSON, no text field) fail the build with the
source named, or are skipped and counted (`bad_records`) when `on_bad_record = "skip"`. Files are listed here,
up front, so a missing path or an empty source is an input error before any work starts; `.gz`, `.zst` and
`.bz2` files are decompressed by every file source.

A source's `limit` is global: every task reads the source from its start and keeps every `world_size`-th of
its first `limit` documents, so the dataset does not depend on the number of tasks (datatrove's own `limit`
counts per task).
"""

from __future__ import annotations

import functools
import sysconfig
from itertools import islice
from pathlib import Path

from datatrove.pipeline.readers.base import BaseDiskReader, BaseReader
from xxhash import xxh64_intdigest

from llmforge.console import UserError
from llmforge.data.config import SourceConfig

COMPRESSED_SUFFIXES = (".gz", ".zst", ".bz2")

# Parts of the standard library that are data, vendored packages or generated files, not code people write.
STDLIB_EXCLUDED_DIRS = frozenset(
    {
        "site-packages",
        "dist-packages",
        "test",
        "tests",
        "idle_test",
        "__pycache__",
        "lib2to3",
        "ensurepip",
        "turtledemo",
    }
)


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


@functools.lru_cache(maxsize=8)  # listing and hashing the whole library takes ~1 s; a build asks twice
def stdlib_files(max_files: int | None = None, max_bytes: int | None = None) -> tuple[str, ...]:
    """The interpreter's standard library `.py` files (relative paths), without tests, vendored packages and
    site-packages; capped at `max_files` files or `max_bytes` bytes. Files are taken in a fixed hashed order,
    so a cap keeps a spread of the library rather than the modules that sort first."""
    root = stdlib_root()
    files, total = [], 0
    for p in sorted(root.rglob("*.py"), key=lambda p: xxh64_intdigest(str(p.relative_to(root)))):
        rel = p.relative_to(root)
        if any(part in STDLIB_EXCLUDED_DIRS or part.startswith("config-") for part in rel.parts[:-1]):
            continue
        size = p.stat().st_size
        if max_bytes is not None and total + size > max_bytes:
            continue
        files.append(str(rel))
        total += size
        if max_files is not None and len(files) >= max_files:
            break
    return tuple(files)


class BadRecord(UserError):
    """A record a source cannot turn into a document (with `on_bad_record = "fail"`)."""


def _decompression_errors() -> tuple[type[BaseException], ...]:
    """What a truncated or corrupt .gz / .bz2 / .zst raises while it is read."""
    import zlib

    import zstandard

    return (OSError, EOFError, zlib.error, zstandard.ZstdError)


class _SourceReader:
    """Mixin for our readers: the source's name wins over a record's `source` field, the bad-record
    policy, and a global `limit` (see the module docstring)."""

    source_name: str
    on_bad_record: str
    total_limit: int | None = None
    _counts_bad_records: bool = True

    def get_document_from_dict(self, data: dict, source_file: str, id_in_file):
        doc = super().get_document_from_dict(data, source_file, id_in_file)  # type: ignore[misc]
        if doc is not None and doc.metadata.get("source") != self.source_name:
            doc.metadata["original_source"] = doc.metadata["source"]
            doc.metadata["source"] = self.source_name
        return doc

    def bad_record(self, where: str, why: str) -> None:
        if self.on_bad_record == "fail":
            raise BadRecord(
                f'source {self.source_name}: {where}: {why} (set data.on_bad_record = "skip" to skip)'
            )
        if self._counts_bad_records:
            self.stat_update("bad_records")  # type: ignore[attr-defined]

    def limited(self, docs, rank: int, world_size: int):
        """This task's share of the source's first `total_limit` documents (every task reads them all, so
        only rank 0 counts the bad records it meets on the way)."""
        self._counts_bad_records = rank == 0
        for i, doc in enumerate(islice(docs, self.total_limit)):
            if i % world_size == rank:
                yield doc


class JsonlSource(_SourceReader, BaseDiskReader):
    """`.jsonl` files (also compressed): one JSON object per line with a text field."""

    name = "📖 jsonl source"

    def __init__(self, source: SourceConfig, files: list[str], folder: str, on_bad_record: str):
        super().__init__(
            folder,
            text_key=getattr(source, "text_key", "text"),
            default_metadata={"source": source.name},
        )
        self.source_name, self.on_bad_record, self.files = source.name, on_bad_record, files
        self.total_limit = source.limit

    def unreadable(self, filepath: str, error: BaseException, what: str = "file") -> UserError:
        return UserError(f"source {self.source_name}: {filepath}: unreadable or corrupt {what} ({error})")

    def read_file(self, filepath: str):
        import orjson

        try:
            with self.data_folder.open(filepath, "r", compression="infer") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        record = orjson.loads(line)
                    except orjson.JSONDecodeError as e:
                        self.bad_record(f"{filepath}:{lineno}", f"not valid JSON ({e})")
                        continue
                    if not isinstance(record, dict) or not isinstance(record.get(self.text_key), str):
                        self.bad_record(
                            f"{filepath}:{lineno}", f"record without a string {self.text_key!r} field"
                        )
                        continue
                    doc = self.get_document_from_dict(record, filepath, lineno - 1)
                    if doc:
                        yield doc
        except (*_decompression_errors(), UnicodeDecodeError) as e:
            raise self.unreadable(filepath, e) from None

    def read_bytes(self, filepath: str) -> bytes:
        """The whole file, decompressed (a zstd stream read whole, since a truncated frame reads short
        without an error)."""
        import zstandard

        try:
            if filepath.endswith(".zst"):
                with self.data_folder.open(filepath, "rb") as f:
                    stream = zstandard.ZstdDecompressor().decompressobj()
                    data = stream.decompress(f.read())
                if not stream.eof:
                    raise EOFError("zstd frame ends early: truncated file")
                return data
            with self.data_folder.open(filepath, "rb", compression="infer") as f:
                return f.read()
        except _decompression_errors() as e:
            raise self.unreadable(filepath, e) from None

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        if self.total_limit is None:
            docs = self.read_files_shard(self.files[rank::world_size])
        else:
            docs = self.limited(self.read_files_shard(self.files), rank, world_size)
        for doc in docs:
            self.update_doc_stats(doc)
            yield doc


class ParquetSource(JsonlSource):
    name = "📖 parquet source"

    def read_file(self, filepath: str):
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            with self.data_folder.open(filepath, "rb") as raw:
                compressed = filepath.endswith(COMPRESSED_SUFFIXES)  # parquet needs a seekable file
                yield from self._rows(
                    pq.ParquetFile(io.BytesIO(self.read_bytes(filepath)) if compressed else raw), filepath
                )
        except (OSError, pa.ArrowInvalid) as e:
            raise self.unreadable(filepath, e, "parquet") from None

    def _rows(self, pf, filepath: str):
        if self.text_key not in pf.schema_arrow.names:
            raise UserError(
                f"source {self.source_name}: {filepath}: no column {self.text_key!r} "
                f"(columns: {', '.join(pf.schema_arrow.names)})"
            )
        row = 0
        for batch in pf.iter_batches(batch_size=1000):
            for record in batch.to_pylist():
                if isinstance(record.get(self.text_key), str):
                    doc = self.get_document_from_dict(record, filepath, row)
                    if doc:
                        yield doc
                else:
                    self.bad_record(f"{filepath} row {row}", f"no string {self.text_key!r} value")
                row += 1


class TextFilesSource(JsonlSource):
    """A folder of plain-text files (also the `python-stdlib` source): one file, one document."""

    name = "📖 text-files source"

    def read_file(self, filepath: str):
        raw = self.read_bytes(filepath)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.bad_record(filepath, "not UTF-8 text")
            return
        if not text.strip():
            return
        doc = self.get_document_from_dict({"text": text, "id": filepath, "path": filepath}, filepath, 0)
        if doc:
            yield doc


class HtmlFilesSource(JsonlSource):
    """A folder of HTML pages, one page per file: documents hold the HTML until an `html_to_text` step."""

    name = "📖 html source"

    def read_file(self, filepath: str):
        html = self.read_bytes(filepath).decode("utf-8", errors="replace")
        if not html.strip():
            return
        doc = self.get_document_from_dict({"text": html, "id": filepath, "path": filepath}, filepath, 0)
        if doc:
            yield doc


class WarcSource(JsonlSource):
    """WARC files (`.warc.gz` is gzip per record, read by warcio): HTML responses (pair with the
    `html_to_text` step)."""

    name = "📖 warc source"

    def read_file(self, filepath: str):
        from datatrove.pipeline.readers.warc import process_record
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed

        compression = "infer" if filepath.endswith((".zst", ".bz2")) else None
        try:
            with self.data_folder.open(filepath, "rb", compression=compression) as f:
                for i, record in enumerate(ArchiveIterator(f)):
                    extracted = process_record(record)
                    if extracted:
                        doc = self.get_document_from_dict(extracted, filepath, i)
                        if doc:
                            yield doc
        except (*_decompression_errors(), ArchiveLoadFailed) as e:
            raise self.unreadable(filepath, e, "WARC") from None


class HfSource(_SourceReader, BaseReader):
    """A Hugging Face `datasets` dataset by name or local path (`datasets.load_dataset`), sharded by rank."""

    name = "📖 hf source"

    def __init__(self, source: SourceConfig, on_bad_record: str):
        super().__init__(text_key=source.text_key, default_metadata={"source": source.name})
        self.source, self.source_name, self.on_bad_record = source, source.name, on_bad_record

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        ds = load_hf(self.source)
        # contiguous shards of the first `limit` rows, named by their index in the whole dataset: ids and
        # the rows read do not depend on the task count
        rows = len(ds) if self.source.limit is None else min(len(ds), self.source.limit)
        start, end = rank * rows // world_size, (rank + 1) * rows // world_size
        for i, record in enumerate(ds.select(range(start, end))):
            row = start + i
            if not isinstance(record.get(self.text_key), str):
                self.bad_record(f"row {row}", f"no string {self.text_key!r} value")
                continue
            doc = self.get_document_from_dict(dict(record), self.source.path or "", str(row))
            if doc:
                self.update_doc_stats(doc)
                yield doc


def load_hf(source: SourceConfig):
    import datasets

    path = Path(source.path)
    try:
        if path.is_dir() and (path / "dataset_info.json").is_file():
            ds = datasets.load_from_disk(str(path))
            return ds[source.split] if isinstance(ds, datasets.DatasetDict) else ds
        return datasets.load_dataset(source.path, split=source.split)
    except (FileNotFoundError, ValueError, KeyError, datasets.exceptions.DatasetNotFoundError) as e:
        raise UserError(
            f"source {source.name}: cannot load {source.path!r} split {source.split!r} ({e})"
        ) from None


def _with_compressed(*patterns: str) -> tuple[str, ...]:
    return patterns + tuple(p + suffix for suffix in COMPRESSED_SUFFIXES for p in patterns)


_DEFAULT_GLOBS = {
    "jsonl": _with_compressed("*.jsonl", "*.json"),
    "parquet": _with_compressed("*.parquet"),
    "text": _with_compressed("*.txt", "*.md"),
    "warc": _with_compressed("*.warc", "*.arc"),
    "html": _with_compressed("*.html", "*.htm"),
}


def _capped(files: list[str], folder: Path, max_files: int | None, max_bytes: int | None) -> list[str]:
    """The files in order, stopping before `max_files` files or `max_bytes` bytes (on disk) are exceeded."""
    kept, total = [], 0
    for f in files:
        if max_files is not None and len(kept) >= max_files:
            break
        total += (folder / f).stat().st_size
        if max_bytes is not None and kept and total > max_bytes:
            break
        kept.append(f)
    return kept


def list_files(source: SourceConfig) -> tuple[str, list[str]]:
    """(folder, files relative to it) for a file-based source; UserError when missing or empty."""
    if source.type == "python-stdlib":
        files = list(stdlib_files(source.max_files, source.max_bytes))
        if not files:
            raise UserError(f"source {source.name}: no standard-library files under {stdlib_root()}")
        return str(stdlib_root()), files
    path = Path(source.path).expanduser()
    if not path.exists():
        raise UserError(f"source {source.name}: path {source.path} does not exist")
    globs = (source.glob,) if source.glob else _DEFAULT_GLOBS[source.type]
    if path.is_file():
        files, folder = [path.name], path.parent
    else:
        folder = path
        files = sorted({str(p.relative_to(path)) for g in globs for p in path.rglob(g) if p.is_file()})
    files = _capped(files, folder, source.max_files, source.max_bytes)
    if not files:
        raise UserError(
            f"source {source.name}: no {source.type} files under {source.path} (looked for {', '.join(globs)})"
        )
    if all((folder / f).stat().st_size == 0 for f in files):
        raise UserError(f"source {source.name}: every file under {source.path} is empty")
    return str(folder.resolve()), files


def input_bytes(sources: list[SourceConfig]) -> int | None:
    """Bytes on disk of every source's files; None when a source's size is unknown (`hf`)."""
    total = 0
    for source in sources:
        if source.type == "hf":
            return None
        folder, files = list_files(source)
        total += sum((Path(folder) / f).stat().st_size for f in files)
    return total


def build_reader(source: SourceConfig, on_bad_record: str):
    """The datatrove reader step for one source."""
    if source.type == "hf":
        return HfSource(source, on_bad_record)
    folder, files = list_files(source)
    cls = {
        "jsonl": JsonlSource,
        "parquet": ParquetSource,
        "text": TextFilesSource,
        "html": HtmlFilesSource,
        "warc": WarcSource,
        "python-stdlib": TextFilesSource,
    }[source.type]
    return cls(source, files, folder, on_bad_record)
