"""Training data for distillation: tokenise documents with the teacher's tokenizer, pack them into uint32 token files,
hold out a deterministic share of documents for evaluation, and serve shuffled fixed-length blocks.

    spec = DataSpec(sources=["builtin"])                    # or files/folders (.txt .jsonl .json .parquet), "hf:..."
    store = prepare_tokens(spec, tokenizer, "runs/tokens")  # cached by (spec, tokenizer); atomic; streaming
    sampler = BlockSampler(store, seq_len=512, batch_size=8, seed=0, rank=rank, world_size=world)
    x, evals = sampler.next_batch(), eval_batches(store, 512, 8)  # [8, 512]; resumable; fixed eval batches

Every document is followed by the tokenizer's EOS token (the official code concatenates documents with no separator,
method.md §9 defect 12). Blocks are cut from the packed stream without overlap; each split's remainder is dropped. A
document is held out for eval when its text's sha256 read as a fraction falls below `eval_fraction` (see doc_fraction;
at least one document is held out). Nothing holds the corpus in memory: text is read in bounded pieces cut where no
byte-level BPE pre-token crosses (split_pieces), `hf:` sources are streamed, and tokens go to disk per batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from . import corpus as _corpus
from .sources import SUPPORTED_SUFFIXES, DataError  # noqa: F401  (part of this module's interface)
from .sources import Source as _Source
from .sources import iter_documents as _iter_source
from .sources import resolve_sources as _resolve

FORMAT_VERSION = 1
_PIECE_CHARS = 1 << 20  # longest text handed to the tokenizer at once (and read from a text file at once)
_BATCH_CHARS = 4 << 20  # characters per batched tokenizer call
_COPY_BYTES = 16 << 20


@dataclass
class DataSpec:
    """What to tokenise. `sources`: "builtin" (every built-in corpus source) or "builtin:sotu,brown"; a file or folder
    (.txt = one document per file, .jsonl = one per line, .json = a list of records/strings, .parquet = one per row;
    folders are searched recursively, other files in them ignored); "hf:org/name[:config][@split]" (streamed with
    `datasets`; needs max_tokens unless the name is a local dataset folder or file)."""

    sources: list[str]
    text_field: str = "text"
    eval_fraction: float = 0.01  # share of DOCUMENTS held out (deterministic by text hash), at least 1 document
    max_tokens: int | None = None  # stop after this many tokens (train + eval)

    def __post_init__(self):
        if isinstance(self.sources, (str, os.PathLike)):
            self.sources = [self.sources]
        self.sources = [os.fspath(s) for s in self.sources]
        if not self.sources:
            raise DataError("DataSpec.sources is empty: name at least one source (e.g. 'builtin' or a folder)")
        if not 0.0 < self.eval_fraction < 1.0:
            raise DataError(f"eval_fraction must be in (0, 1), got {self.eval_fraction}")
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise DataError(f"max_tokens must be positive, got {self.max_tokens}")


def read_text_pieces(path: str | Path, limit: int | None = None) -> Iterator[str]:
    """The text of a file as pieces of at most `limit` characters (cut as in `split_pieces`), reading at most
    `limit` characters at a time."""
    limit = limit or _PIECE_CHARS
    with open(path, encoding="utf-8", errors="replace") as f:
        yield from split_pieces(iter(lambda: f.read(limit), ""), limit)


def split_pieces(fragments, limit: int) -> Iterator[str]:
    """Re-cut a stream of text fragments into pieces of at most `limit` characters. A cut goes before a space that
    follows a non-space (no byte-level BPE pre-token crosses it), else before a newline that follows a non-space,
    else at `limit` exactly. Holds at most about 2 x limit characters."""
    buf = ""
    for frag in fragments:
        buf += frag
        while len(buf) > limit:
            cut = _cut_point(buf, limit)
            yield buf[:cut]
            buf = buf[cut:]
    if buf:
        yield buf


def _cut_point(buf: str, limit: int) -> int:
    for sep in (" ", "\n"):
        end = limit + 1
        while True:
            p = buf.rfind(sep, 1, end)
            if p <= 0:
                break
            if not buf[p - 1].isspace():
                return p
            end = p
    return limit


def _doc_key_and_pieces(doc: str | Path) -> tuple[bytes, bool, Callable[[], Iterator[str]]]:
    """(sha256 of the text, has any non-space character, a function yielding the pieces)."""
    if isinstance(doc, Path):
        h, nonblank = hashlib.sha256(), False
        for piece in read_text_pieces(doc):
            h.update(piece.encode("utf-8", "surrogatepass"))
            nonblank = nonblank or not piece.isspace()
        return h.digest(), nonblank, lambda: read_text_pieces(doc)
    key = hashlib.sha256(doc.encode("utf-8", "surrogatepass")).digest()
    return key, bool(doc.strip()), lambda: split_pieces([doc], _PIECE_CHARS)


def doc_fraction(text: str) -> float:
    """Where a document falls in [0, 1): it is held out for eval when this is below eval_fraction."""
    return _fraction(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())


def _fraction(key: bytes) -> float:
    return int.from_bytes(key[:8], "big") / 2.0 ** 64


# --- tokenizer fingerprint and the cache key ----------------------------------------------------------------------


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def tokenizer_fingerprint(tokenizer) -> dict:
    """What identifies a tokenizer's output: vocab hash, the full backend (normaliser, pre-tokeniser, merges) hash
    when it has one, class, size and eos. name_or_path is recorded but not part of the identity."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no eos token; documents must be "
                        f"separated by EOS (set tokenizer.eos_token)")
    backend, backend_sha = getattr(tokenizer, "backend_tokenizer", None), None
    if backend is not None:  # minus the call-time settings (truncation, padding) kept in the same JSON
        d = json.loads(backend.to_str())
        backend_sha = _sha({k: v for k, v in d.items() if k not in ("truncation", "padding")})
    return {"name_or_path": str(getattr(tokenizer, "name_or_path", "")), "class": type(tokenizer).__name__,
            "vocab_size": len(tokenizer), "vocab_sha256": _sha(sorted(tokenizer.get_vocab().items())),
            "backend_sha256": backend_sha, "eos_token_id": int(eos)}


def _cache_key(spec: DataSpec, sources: list[_Source], tok_fp: dict) -> str:
    ident = {k: v for k, v in tok_fp.items() if k != "name_or_path"}
    return _sha({"format": FORMAT_VERSION, "sources": [s.fingerprint for s in sources], "text_field": spec.text_field,
                 "eval_fraction": spec.eval_fraction, "max_tokens": spec.max_tokens, "tokenizer": ident,
                 "piece_chars": _PIECE_CHARS})[:24]


# --- the token store ------------------------------------------------------------------------------------------------


def _memmap(path: Path) -> np.ndarray:
    return np.memmap(path, dtype=np.uint32, mode="r") if path.stat().st_size else np.zeros(0, dtype=np.uint32)


class TokenStore:
    """A prepared dataset: `train` / `eval` are read-only uint32 memmaps of packed tokens (documents each followed
    by EOS); `meta` is meta.json (sources, tokenizer, counts, eos id, format version)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.meta = json.loads((self.path / "meta.json").read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{self.path} is not a token store (meta.json: {e})") from e
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{self.path}: token store format {self.meta.get('format_version')}, this code reads "
                            f"{FORMAT_VERSION}; prepare the data again")
        for split in ("train", "eval"):
            f = self.path / f"{split}.bin"
            want = 4 * self.meta[split]["tokens"]
            if not f.is_file() or f.stat().st_size != want:
                raise DataError(f"{f} is missing or has the wrong size (expected {want} bytes); prepare the data again")
        self.train = _memmap(self.path / "train.bin")
        self.eval = _memmap(self.path / "eval.bin")

    def _split(self, split: str) -> np.ndarray:
        if split not in ("train", "eval"):
            raise DataError(f"split must be 'train' or 'eval', got {split!r}")
        return self.train if split == "train" else self.eval

    def num_blocks(self, seq_len: int, split: str = "train") -> int:
        """Non-overlapping blocks of seq_len tokens; the remainder is dropped."""
        if seq_len <= 0:
            raise DataError(f"seq_len must be positive, got {seq_len}")
        return len(self._split(split)) // seq_len

    def block(self, index: int, seq_len: int, split: str = "train") -> np.ndarray:
        n = self.num_blocks(seq_len, split)
        if not 0 <= index < n:
            raise DataError(f"block {index} out of range: the {split} split has {n} blocks of {seq_len} tokens")
        return np.array(self._split(split)[index * seq_len:(index + 1) * seq_len])

    def __repr__(self) -> str:
        return (f"TokenStore({str(self.path)!r}, train={len(self.train):,} tokens, eval={len(self.eval):,} tokens, "
                f"documents={self.meta['train']['documents']}+{self.meta['eval']['documents']})")


class BlockSampler:
    """Deterministic shuffled order of train blocks; resumable; shardable across data-parallel ranks.

    Epoch e visits the blocks in the order np.random.default_rng([seed, e]).permutation(num_blocks). The global batch
    is world_size * batch_size consecutive entries of that order; rank r gets rows r*batch_size:(r+1)*batch_size.
    When fewer than a global batch remain, the next epoch starts (the leftover blocks are skipped this epoch), so no
    block repeats within an epoch. `position` counts blocks of the permutation already handed out (all ranks).
    """

    def __init__(self, store: TokenStore, seq_len: int, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1):
        if batch_size <= 0 or world_size <= 0 or not 0 <= rank < world_size:
            raise DataError(f"bad sampler shape: batch_size={batch_size}, rank={rank}, world_size={world_size}")
        self.store, self.seq_len, self.batch_size = store, int(seq_len), int(batch_size)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.num_blocks = store.num_blocks(self.seq_len, "train")
        if self.num_blocks < self.world_size * self.batch_size:
            raise DataError(f"the train split has {len(store.train):,} tokens = {self.num_blocks} blocks of "
                            f"{self.seq_len}, fewer than one global batch ({self.world_size} x {self.batch_size}); "
                            f"use more data, a shorter seq_len or a smaller batch")
        self.epoch, self.position = 0, 0
        self._perm_epoch, self._perm = None, None

    @property
    def tokens_per_batch(self) -> int:
        """Tokens in one next_batch() of this rank (the global batch has world_size times as many)."""
        return self.batch_size * self.seq_len

    def _permutation(self) -> np.ndarray:
        if self._perm_epoch != self.epoch:
            self._perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_blocks)
            self._perm_epoch = self.epoch
        return self._perm

    def next_batch(self) -> torch.Tensor:
        g = self.world_size * self.batch_size
        if self.position + g > self.num_blocks:
            self.epoch, self.position = self.epoch + 1, 0
        start = self.position + self.rank * self.batch_size
        rows = self._permutation()[start:start + self.batch_size]
        self.position += g
        L, data = self.seq_len, self.store.train
        return torch.from_numpy(np.stack([data[i * L:(i + 1) * L] for i in rows]).astype(np.int64))

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "seq_len": self.seq_len,
                "batch_size": self.batch_size, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where `state` left off (its seed is adopted). seq_len, batch_size and world_size must
        match, since position counts global batches of that shape."""
        for k in ("seq_len", "batch_size", "world_size"):
            if int(state.get(k, -1)) != getattr(self, k):
                raise DataError(f"sampler state has {k}={state.get(k)}, this sampler {getattr(self, k)}; "
                                f"resume with the same seq_len, batch size and world size")
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])
        self._perm_epoch = None


def eval_batches(store: TokenStore, seq_len: int, batch_size: int, max_blocks: int | None = None) -> list[torch.Tensor]:
    """The eval split as fixed batches, in order: blocks 0, 1, ... (at most max_blocks), batch_size per batch (the
    last batch may be smaller). Identical on every call."""
    n = store.num_blocks(seq_len, "eval")
    if n == 0:
        raise DataError(f"the eval split has {len(store.eval):,} tokens, not one full block of {seq_len}; raise "
                        f"eval_fraction or use a shorter seq_len")
    n = n if max_blocks is None else min(n, int(max_blocks))
    blocks = np.asarray(store.eval[:n * seq_len]).astype(np.int64).reshape(n, seq_len)
    return [torch.from_numpy(blocks[i:i + batch_size].copy()) for i in range(0, n, batch_size)]


# --- prepare_tokens -------------------------------------------------------------------------------------------------


class _Writer:
    def __init__(self, path: Path):
        self.path, self.f, self.tokens, self.docs, self.start = path, open(path, "wb"), 0, 0, 0

    def write(self, arr: np.ndarray) -> None:
        self.f.write(arr.tobytes())
        self.tokens += len(arr)


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False,
                     verbose=False)["input_ids"]


def _progress(enabled: bool, total: int | None):
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    cols = [TextColumn("[bold]tokenising[/] {task.description}"), TextColumn("{task.fields[docs]:,} docs"),
            TextColumn("{task.completed:,.0f} tokens"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn()]
    if total is not None:
        cols.insert(1, BarColumn())
    return Progress(*cols, console=Console(stderr=True), disable=not enabled, transient=False)


def _pieces_of(sources: list[_Source], text_field: str, stats: dict, on_source) -> Iterator[tuple]:
    """(text piece, first piece of its document?, last piece?, the document's fraction) for each non-blank document."""
    for src in sources:
        on_source(src.given)
        for doc in _iter_source(src, text_field):
            key, nonblank, pieces = _doc_key_and_pieces(doc)
            if not nonblank:
                stats["skipped_empty"] += 1
                continue
            frac = _fraction(key)
            it = pieces()
            cur, first = next(it), True
            for nxt in it:
                yield cur, first, False, frac
                cur, first = nxt, False
            yield cur, first, True, frac


def _tokenise(spec, sources, tokenizer, eos, tmp: Path, progress: bool) -> dict:
    train, evals = _Writer(tmp / "train.bin"), _Writer(tmp / "eval.bin")
    eos_arr = np.array([eos], dtype=np.uint32)
    best = None  # (fraction, start, end) of the complete train document with the smallest fraction
    stats = {"skipped_empty": 0, "truncated": False}
    budget = spec.max_tokens
    t0 = time.perf_counter()

    def flush(batch, bar, task) -> bool:
        """Tokenise and append a batch of pieces; False once max_tokens is reached."""
        nonlocal best
        for (_, first, last, frac), toks in zip(batch, _encode(tokenizer, [b[0] for b in batch]), strict=True):
            w = evals if frac < spec.eval_fraction else train
            if first:
                w.start = w.tokens
            arr = np.concatenate([np.asarray(toks, dtype=np.uint32), eos_arr]) if last else np.asarray(toks, np.uint32)
            total = train.tokens + evals.tokens
            if budget is not None and total + len(arr) > budget:
                stats["truncated"] = True
                if total < budget:  # a cut document: its first tokens, no EOS
                    w.write(arr[:budget - total])
                    w.docs += 1
                return False
            w.write(arr)
            if last:
                w.docs += 1
                if w is train and (best is None or frac < best[0]):
                    best = (frac, w.start, w.tokens)
        done = train.tokens + evals.tokens
        bar.update(task, completed=done, docs=train.docs + evals.docs,
                   rate=f"{done / max(time.perf_counter() - t0, 1e-9):,.0f} tok/s")
        return True

    try:
        with _progress(progress, budget) as bar:
            task = bar.add_task("", total=budget, docs=0, rate="")
            batch, chars = [], 0
            for item in _pieces_of(sources, spec.text_field, stats, lambda s: bar.update(task, description=s)):
                batch.append(item)
                chars += len(item[0])
                if chars >= _BATCH_CHARS:
                    if not flush(batch, bar, task):
                        break
                    batch, chars = [], 0
            else:
                if batch:
                    flush(batch, bar, task)
    finally:
        for w in (train, evals):
            w.f.close()

    if train.docs + evals.docs == 0:
        raise DataError(f"no documents in {', '.join(s.given for s in sources)} (empty corpus; "
                        f"{stats['skipped_empty']} blank documents skipped)")
    if evals.docs == 0:
        if best is None or train.docs < 2:
            raise DataError(f"only {train.docs} document(s): need at least 2 to hold one out for evaluation")
        _move_to_eval(train, evals, best[1], best[2])
    if train.tokens == 0:
        raise DataError(f"every document fell into the eval split (eval_fraction={spec.eval_fraction}); "
                        f"lower eval_fraction or add documents")
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    return {"train": {"documents": train.docs, "tokens": train.tokens},
            "eval": {"documents": evals.docs, "tokens": evals.tokens}, **stats}


def _move_to_eval(train: _Writer, evals: _Writer, start: int, end: int) -> None:
    """Move train tokens [start, end) (one whole document) to the end of eval.bin, in bounded chunks."""
    with open(train.path, "r+b") as f, open(evals.path, "ab") as e:
        for pos in range(4 * start, 4 * end, _COPY_BYTES):  # append the document to eval.bin
            f.seek(pos)
            e.write(f.read(min(_COPY_BYTES, 4 * end - pos)))
        rd, wr, size = 4 * end, 4 * start, 4 * train.tokens
        while rd < size:  # shift the rest of train.bin left over it
            f.seek(rd)
            buf = f.read(min(size - rd, _COPY_BYTES))
            f.seek(wr)
            f.write(buf)
            rd, wr = rd + len(buf), wr + len(buf)
        f.truncate(wr)
    train.tokens, train.docs = train.tokens - (end - start), train.docs - 1
    evals.tokens, evals.docs = evals.tokens + (end - start), evals.docs + 1


def prepare_tokens(spec: DataSpec, tokenizer, cache_dir: str | Path, *, progress: bool = True) -> TokenStore:
    """Tokenise `spec` with `tokenizer` into `<cache_dir>/<key>/{train.bin, eval.bin, meta.json}` and open it.

    The key hashes the spec (with each local file's size and mtime, and the built-in corpus' content hashes) and
    the tokenizer's fingerprint; an existing complete store with that key is reused without tokenising. A new store
    is built in a temporary folder and renamed into place, under a lock, so concurrent callers (e.g. data-parallel
    ranks) build it once and nobody sees a half-written store.
    """
    if not isinstance(spec, DataSpec):
        raise DataError(f"spec must be a DataSpec, got {type(spec).__name__}")
    tok_fp = tokenizer_fingerprint(tokenizer)  # vocabularies are far below 2^32: uint32 always fits
    sources = _resolve(spec)
    key = _cache_key(spec, sources, tok_fp)
    root = Path(cache_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    final = root / key

    def existing(repair: bool) -> TokenStore | None:
        if final.exists():
            try:
                store = TokenStore(final)
                if store.meta.get("key") == key:
                    return store
            except DataError:
                pass
            if repair:  # damaged or foreign (only ever under the lock): rebuild
                shutil.rmtree(final, ignore_errors=True)
        return None

    store = existing(repair=False)
    if store is not None:
        return store
    with _corpus.file_lock(root / f".{key}.lock"):
        store = existing(repair=True)  # another process may have built it while we waited
        if store is not None:
            return store
        for stale in root.glob(f".tmp-{key}-*"):  # left by a crashed run; we hold the lock, nobody else writes them
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=root))
        try:
            os.chmod(tmp, 0o755)  # mkdtemp makes 0700; the cache may be shared
            counts = _tokenise(spec, sources, tokenizer, tok_fp["eos_token_id"], tmp, progress)
            meta = {"format_version": FORMAT_VERSION, "key": key, "dtype": "uint32", "spec": asdict(spec),
                    "sources": [{"source": s.given, **s.fingerprint} for s in sources], "tokenizer": tok_fp,
                    "eos_token_id": tok_fp["eos_token_id"],
                    "documents": counts["train"]["documents"] + counts["eval"]["documents"],
                    "tokens": counts["train"]["tokens"] + counts["eval"]["tokens"], **counts,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False))
            for name in ("train.bin", "eval.bin", "meta.json"):
                with open(tmp / name, "rb") as f:
                    os.fsync(f.fileno())
            os.rename(tmp, final)  # the store appears whole or not at all
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return TokenStore(final)
