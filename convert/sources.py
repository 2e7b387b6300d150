"""Where training text comes from: resolve data sources (check them, fingerprint them for the token cache) and read
their documents. Used by `hybridserve.convert.data.prepare_tokens`; see its DataSpec for the source syntax.

Local files: .txt (one document per file, read later in bounded pieces), .jsonl (one per line), .json (a list of
records or strings), .parquet (one per row, read in record batches); folders are searched recursively, hidden files
skipped. "builtin[:a,b]": the built-in corpus (convert/corpus.py). "hf:name[:config][@split]": `datasets.load_dataset`
with streaming=True, so nothing is downloaded or held whole; a local dataset folder or file works as the name (offline).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from . import corpus as _corpus

if TYPE_CHECKING:
    from .data import DataSpec

SUPPORTED_SUFFIXES = (".txt", ".jsonl", ".json", ".parquet")
_EXTRA_HINT = "pip install 'hybridserve[data]'"


class DataError(Exception):
    """The training data could not be read, tokenised or served; the message says what to do."""


@dataclass
class Source:
    given: str
    kind: str  # "builtin" | "file" | "hf"
    files: list[Path] = field(default_factory=list)
    hf: tuple[str, str | None, str] | None = None  # (name, config, split)
    fingerprint: dict = field(default_factory=dict)


def _file_stat(p: Path) -> list:
    st = p.stat()
    return [str(p), st.st_size, st.st_mtime_ns]


def _visible_files(folder: Path) -> Iterator[Path]:
    """Files below `folder`, skipping hidden files and folders (.git, .cache, editor backups)."""
    return (f for f in folder.rglob("*") if f.is_file() and not any(x.startswith(".") for x in f.relative_to(folder).parts))


def _require(module: str, why: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        raise DataError(f"{why} needs the optional package `{module.split('.')[0]}`, which is not installed: "
                        f"pip install {module.split('.')[0]} (or {_EXTRA_HINT})") from e


def resolve_sources(spec: DataSpec) -> list[Source]:
    """Check every source before anything is written; fingerprints make the cache key."""
    out = []
    for s in spec.sources:
        if s == "builtin" or s.startswith("builtin:"):
            names = None if s == "builtin" else [n.strip() for n in s[len("builtin:"):].split(",") if n.strip()]
            try:
                folder = _corpus.fetch_builtin_corpus(sources=names)
                names = _corpus.resolve_source_names(names)
                manifest = _corpus.builtin_manifest()
            except _corpus.CorpusError as e:
                raise DataError(f"built-in corpus: {e}") from e
            files = [folder / manifest["sources"][n]["file"] for n in names]
            fp = {"builtin": {n: manifest["sources"][n]["sha256"] for n in names}}
            out.append(Source(s, "builtin", files, fingerprint=fp))
        elif s.startswith("hf:"):
            rest, split = s[3:], "train"
            if "@" in rest:
                rest, split = rest.rsplit("@", 1)
            name, _, config = rest.partition(":")
            if not name or not split:
                raise DataError(f"bad Hugging Face source {s!r}; write hf:org/name[:config][@split]")
            _require("datasets", f"the source {s}")
            fp, local = {"hf": [name, config, split]}, Path(name).expanduser()
            if local.is_file():
                raise DataError(f"{s}: datasets opens a dataset name or folder, not a file; pass {name} without hf:")
            if local.is_dir():  # a local dataset folder: finite, and its files' stats key the cache like a file's
                fp["files"] = [_file_stat(f) for f in sorted(_visible_files(local.resolve()))]
            elif spec.max_tokens is None:
                raise DataError(f"{s} is streamed and may be huge: set max_tokens")
            out.append(Source(s, "hf", hf=(name, config or None, split), fingerprint=fp))
        else:
            p = Path(s).expanduser().resolve()
            if not p.exists():
                raise DataError(f"data source {s!r} does not exist ({p})")
            if p.is_dir():
                files = sorted(f for f in _visible_files(p) if f.suffix.lower() in SUPPORTED_SUFFIXES)
                if not files:
                    raise DataError(f"folder {p} has no {'/'.join(SUPPORTED_SUFFIXES)} files")
            elif p.suffix.lower() in SUPPORTED_SUFFIXES:
                files = [p]
            else:
                raise DataError(f"unsupported file type {p.suffix or '(none)'!r} for {p}; "
                                f"use {', '.join(SUPPORTED_SUFFIXES)} or a folder of them")
            if any(f.suffix.lower() == ".parquet" for f in files):
                _require("pyarrow.parquet", f"reading .parquet ({p})")
            out.append(Source(s, "file", files, fingerprint={"files": [_file_stat(f) for f in files]}))
    return out


def _iter_records_text(records, field_name: str, where: str) -> Iterator[str]:
    for i, rec in enumerate(records):
        if isinstance(rec, str) or rec is None:
            text = rec
        elif isinstance(rec, dict):
            if field_name not in rec:
                raise DataError(f"{where}: record {i} has no field {field_name!r} (fields: "
                                f"{', '.join(map(str, rec))}); set DataSpec.text_field")
            text = rec[field_name]
        else:
            raise DataError(f"{where}: record {i} is a {type(rec).__name__}, expected an object or a string")
        if text is not None and not isinstance(text, str):
            raise DataError(f"{where}: record {i} field {field_name!r} is a {type(text).__name__}, not text")
        yield text or ""


def _jsonl_records(path: Path) -> Iterator:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as e:
                    raise DataError(f"{path}:{n}: not valid JSON ({e})") from e


def iter_documents(src: Source, text_field: str) -> Iterator[str | Path]:
    """Documents of one source: a str, or the Path of a .txt file (read in pieces later)."""
    if src.kind == "hf":
        datasets = _require("datasets", f"the source {src.given}")
        name, config, split = src.hf
        try:
            ds = datasets.load_dataset(name, config, split=split, streaming=True)
        except Exception as e:  # offline, unknown dataset, bad config: datasets raises many types
            raise DataError(f"cannot open {src.given} with datasets.load_dataset: {type(e).__name__}: {e}") from e
        try:  # a streamed dataset opens lazily: missing or corrupt data files only show up while reading
            yield from _iter_records_text(ds, text_field, src.given)
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"cannot read {src.given} with datasets: {type(e).__name__}: {e}") from e
        return
    field_name = "text" if src.kind == "builtin" else text_field
    for path in src.files:
        suffix = path.suffix.lower()
        if suffix == ".txt":
            yield path
        elif suffix == ".jsonl":
            yield from _iter_records_text(_jsonl_records(path), field_name, str(path))
        elif suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as e:
                raise DataError(f"{path}: not valid JSON ({e})") from e
            data = [data] if isinstance(data, dict) else data
            if not isinstance(data, list):
                raise DataError(f"{path}: expected a list of records (or one record), got {type(data).__name__}")
            yield from _iter_records_text(data, field_name, str(path))
        elif suffix == ".parquet":
            pq = _require("pyarrow.parquet", f"reading {path}")
            try:
                pf = pq.ParquetFile(path)
            except Exception as e:  # pyarrow.ArrowInvalid and friends: truncated or not parquet at all
                raise DataError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})") from e
            if field_name not in pf.schema_arrow.names:
                raise DataError(f"{path}: no column {field_name!r} (columns: {', '.join(pf.schema_arrow.names)}); "
                                f"set DataSpec.text_field")
            column_type = str(pf.schema_arrow.field(field_name).type)
            if column_type not in ("string", "large_string", "string_view"):
                raise DataError(f"{path}: column {field_name!r} holds {column_type}, not text; set DataSpec.text_field")
            for batch in pf.iter_batches(columns=[field_name], batch_size=256):
                yield from _iter_records_text(batch.column(0).to_pylist(), field_name, str(path))
