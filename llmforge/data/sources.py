"""Readers for each `[[data.sources]]` type, as datatrove reader steps.

Every document gets `metadata["source"]` (the source's name). Records that cannot be read (bad JSON, no
text field) fail the build with the source named, or are skipped and counted (`bad_records`) when
`on_bad_record = "skip"`. Files are listed here, up front, so a missing path or an empty source is an input
error before any work starts.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from datatrove.pipeline.readers.base import BaseDiskReader, BaseReader
from xxhash import xxh64_intdigest

from llmforge.console import UserError
from llmforge.data.config import SourceConfig

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


def stdlib_files(max_files: int | None = None, max_bytes: int | None = None) -> list[str]:
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
    return files


class BadRecord(UserError):
    """A record a source cannot turn into a document (with `on_bad_record = "fail"`)."""


class _RecordPolicy:
    """Mixin for our readers: what to do with a record that has no usable text."""

    source_name: str
    on_bad_record: str

    def bad_record(self, where: str, why: str) -> None:
        if self.on_bad_record == "fail":
            raise BadRecord(
                f'source {self.source_name}: {where}: {why} (set data.on_bad_record = "skip" to skip)'
            )
        self.stat_update("bad_records")  # type: ignore[attr-defined]


class JsonlSource(_RecordPolicy, BaseDiskReader):
    """`.jsonl` / `.jsonl.gz` / `.jsonl.zst` files: one JSON object per line with a text field."""

    name = "📖 jsonl source"

    def __init__(self, source: SourceConfig, files: list[str], folder: str, on_bad_record: str):
        super().__init__(
            folder,
            text_key=source.text_key,
            limit=source.limit or -1,
            default_metadata={"source": source.name},
        )
        self.source_name, self.on_bad_record, self.files = source.name, on_bad_record, files

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
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise UserError(
                f"source {self.source_name}: {filepath}: unreadable or corrupt file ({e})"
            ) from None

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        for doc in self.read_files_shard(self.files[rank::world_size]):
            self.update_doc_stats(doc)
            yield doc


class ParquetSource(JsonlSource):
    name = "📖 parquet source"

    def read_file(self, filepath: str):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            with self.data_folder.open(filepath, "rb") as f:
                pf = pq.ParquetFile(f)
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
        except (OSError, pa.ArrowInvalid) as e:
            raise UserError(
                f"source {self.source_name}: {filepath}: unreadable or corrupt parquet ({e})"
            ) from None


class TextFilesSource(JsonlSource):
    """A folder of plain-text files (also the `python-stdlib` source): one file, one document."""

    name = "📖 text-files source"

    def read_file(self, filepath: str):
        try:
            with self.data_folder.open(filepath, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise UserError(f"source {self.source_name}: {filepath}: unreadable ({e})") from None
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


class WarcSource(JsonlSource):
    """WARC / WARC.gz files: HTML responses (pair with the `html_to_text` step)."""

    name = "📖 warc source"

    def read_file(self, filepath: str):
        from datatrove.pipeline.readers.warc import process_record
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed

        try:
            with self.data_folder.open(filepath, "rb") as f:
                for i, record in enumerate(ArchiveIterator(f)):
                    extracted = process_record(record)
                    if extracted:
                        doc = self.get_document_from_dict(extracted, filepath, i)
                        if doc:
                            yield doc
        except (OSError, EOFError, ArchiveLoadFailed) as e:
            raise UserError(
                f"source {self.source_name}: {filepath}: unreadable or corrupt WARC ({e})"
            ) from None


class HfSource(_RecordPolicy, BaseReader):
    """A Hugging Face `datasets` dataset by name or local path (`datasets.load_dataset`), sharded by rank."""

    name = "📖 hf source"

    def __init__(self, source: SourceConfig, on_bad_record: str):
        super().__init__(
            limit=source.limit or -1, text_key=source.text_key, default_metadata={"source": source.name}
        )
        self.source, self.source_name, self.on_bad_record = source, source.name, on_bad_record

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        ds = load_hf(self.source)
        # contiguous shards, rows named by their index in the whole dataset: ids do not depend on the task count
        start, end = rank * len(ds) // world_size, (rank + 1) * len(ds) // world_size
        for i, record in enumerate(ds.select(range(start, end))):
            if self.limit != -1 and i >= self.limit:
                break
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


_DEFAULT_GLOBS = {
    "jsonl": ("*.jsonl", "*.jsonl.gz", "*.jsonl.zst", "*.json"),
    "parquet": ("*.parquet",),
    "text": ("*.txt", "*.md"),
    "warc": ("*.warc", "*.warc.gz", "*.arc.gz"),
}


def list_files(source: SourceConfig) -> tuple[str, list[str]]:
    """(folder, files relative to it) for a file-based source; UserError when missing or empty."""
    if source.type == "python-stdlib":
        files = stdlib_files(source.max_files, source.max_bytes)
        if not files:
            raise UserError(f"source {source.name}: no standard-library files under {stdlib_root()}")
        return str(stdlib_root()), files
    path = Path(source.path).expanduser()
    if not path.exists():
        raise UserError(f"source {source.name}: path {source.path} does not exist")
    if path.is_file():
        files, folder = [path.name], path.parent
    else:
        globs = (source.glob,) if source.glob else _DEFAULT_GLOBS[source.type]
        folder = path
        files = sorted({str(p.relative_to(path)) for g in globs for p in path.rglob(g) if p.is_file()})
        if source.max_files is not None:
            files = files[: source.max_files]
    if not files:
        raise UserError(
            f"source {source.name}: no {source.type} files under {source.path} "
            f"(looked for {', '.join(source.glob and [source.glob] or _DEFAULT_GLOBS[source.type])})"
        )
    if all((folder / f).stat().st_size == 0 for f in files):
        raise UserError(f"source {source.name}: every file under {source.path} is empty")
    return str(folder.resolve()), files


def build_reader(source: SourceConfig, on_bad_record: str):
    """The datatrove reader step for one source."""
    if source.type == "hf":
        return HfSource(source, on_bad_record)
    folder, files = list_files(source)
    cls = {
        "jsonl": JsonlSource,
        "parquet": ParquetSource,
        "text": TextFilesSource,
        "warc": WarcSource,
        "python-stdlib": TextFilesSource,
    }[source.type]
    return cls(source, files, folder, on_bad_record)
