"""Parquet files and `hf:` sources of hybridserve.convert.data (the `[data]` extra: pyarrow, datasets), offline.

`hf:` is exercised with local dataset folders, which `datasets.load_dataset` opens with the same streaming code path
as a Hub dataset; a Hub name is only tried in offline mode, where it must fail with one clear DataError.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hybridserve.convert import data as D
from hybridserve.convert.data import DataError, DataSpec, prepare_tokens

from .helpers import tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Nothing here may reach the Hub: datasets and huggingface_hub read these flags at import time."""
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def enc(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def docs_of(tok, arr) -> list[str]:
    """Split a packed stream at EOS; every document must end with one."""
    out, cur = [], []
    for t in np.asarray(arr).tolist():
        if t == tok.eos_token_id:
            out.append(tok.decode(cur))
            cur = []
        else:
            cur.append(t)
    assert not cur, "stream must end with EOS"
    return out


def doc_text(i: int) -> str:
    return f"Row {i}: the {['red', 'green', 'blue'][i % 3]} fox jumps {i * 13 % 97} times over the lazy dog."


def write_parquet(path: Path, texts, column: str = "text", row_group_size: int = 64, **extra) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({column: texts, **extra}), path, row_group_size=row_group_size)
    return path


def prep(tok, cache, *sources, **kw):
    return prepare_tokens(DataSpec(list(map(str, sources)), **kw), tok, cache, progress=False)


# --- parquet ---------------------------------------------------------------------------------------------------------


def test_parquet_file_and_folder_in_order_with_eos(tmp_path, tok):
    texts = [doc_text(i) for i in range(300)]  # > 256 rows: crosses the reader's record batches and row groups
    rows = texts[:150] + [None, "   "] + texts[150:]  # a null and a blank row are skipped, not tokenised
    folder = tmp_path / "corpus"
    write_parquet(folder / "a" / "part-0.parquet", rows[:200], id=list(range(200)))
    write_parquet(folder / "b" / "part-1.parquet", rows[200:], id=list(range(200, len(rows))))
    (folder / "a" / "notes.md").write_text("ignored")
    store = prep(tok, tmp_path / "cache", folder, eval_fraction=0.05)
    held = [t for t in texts if D.doc_fraction(t) < 0.05]
    assert 3 <= len(held) <= 40
    # file order (sorted paths), row order inside a file, EOS after every document, in both splits
    assert docs_of(tok, store.train) == [t for t in texts if t not in held]
    assert docs_of(tok, store.eval) == held
    assert store.meta["documents"] == 300 and store.meta["skipped_empty"] == 2
    eos = tok.eos_token_id
    assert store.eval.tolist() == sum((enc(tok, t) + [eos] for t in held), [])
    # one file works as a source on its own, with another column as the text
    one = write_parquet(tmp_path / "body.parquet", texts[:20], column="body", label=["x"] * 20)
    assert prep(tok, tmp_path / "cache", one, text_field="body").meta["documents"] == 20


def test_parquet_errors(tmp_path, tok):
    cache = tmp_path / "cache"
    no_text = write_parquet(tmp_path / "a.parquet", ["x", "y"], column="body", id=[1, 2])
    with pytest.raises(DataError, match=r"no column 'text' \(columns: body, id\).*text_field"):
        prep(tok, cache, no_text)
    numbers = tmp_path / "n.parquet"
    pq.write_table(pa.table({"text": [1, 2, 3]}), numbers)
    with pytest.raises(DataError, match="column 'text' holds int64, not text"):
        prep(tok, cache, numbers)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(no_text.read_bytes()[:-40])  # truncated: the footer is gone
    with pytest.raises(DataError, match="not a readable parquet file"):
        prep(tok, cache, broken)
    assert not list(cache.glob("*/meta.json"))


# --- hf: -------------------------------------------------------------------------------------------------------------


def dataset_folder(root: Path, n: int = 240) -> tuple[Path, list[str]]:
    """A Hub-style dataset folder: data/train-0000k-of-00003.parquet shards, as `datasets` names them."""
    texts = [doc_text(i) for i in range(n)]
    for k in range(3):
        write_parquet(root / "data" / f"train-{k:05d}-of-00003.parquet", texts[k::3], row_group_size=16)
    order = [t for k in range(3) for t in texts[k::3]]  # shard by shard
    return root, order


def test_hf_local_folder_is_streamed_like_the_files(tmp_path, tok, monkeypatch):
    folder, order = dataset_folder(tmp_path / "ds")
    calls = []
    real = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    via_hf = prep(tok, tmp_path / "cache", f"hf:{folder}", eval_fraction=0.05)
    assert calls and calls[0][1]["streaming"] is True and calls[0][1]["split"] == "train"
    assert isinstance(real(str(folder), split="train", streaming=True), datasets.IterableDataset)
    held = [t for t in order if D.doc_fraction(t) < 0.05]
    assert docs_of(tok, via_hf.train) == [t for t in order if t not in held] and docs_of(tok, via_hf.eval) == held
    # the same rows read as plain parquet files give the same tokens (another cache entry)
    direct = prep(tok, tmp_path / "cache", folder, eval_fraction=0.05)
    assert direct.path != via_hf.path
    assert np.array_equal(direct.train, via_hf.train) and np.array_equal(direct.eval, via_hf.eval)
    # deterministic: a fresh cache builds the identical store, byte for byte
    again = prep(tok, tmp_path / "other-cache", f"hf:{folder}", eval_fraction=0.05)
    for name in ("train.bin", "eval.bin"):
        assert (again.path / name).read_bytes() == (via_hf.path / name).read_bytes()
    assert again.path.name == via_hf.path.name
    # a changed data file changes the cache key (a local hf: folder is fingerprinted like files)
    shard = folder / "data" / "train-00000-of-00003.parquet"
    write_parquet(shard, [doc_text(i) for i in range(0, 240, 3)][:-1], row_group_size=16)
    changed = prep(tok, tmp_path / "cache", f"hf:{folder}", eval_fraction=0.05)
    assert changed.path != via_hf.path and changed.meta["documents"] == 239


def test_hf_splits_configs_and_text_field(tmp_path, tok):
    folder = tmp_path / "jsonl-ds"
    folder.mkdir()
    train = [f"Train document {i} about foxes." for i in range(30)]
    test = [f"Test document {i} about dogs." for i in range(10)]
    (folder / "train.jsonl").write_text("".join(json.dumps({"content": t, "n": i}) + "\n" for i, t in enumerate(train)))
    (folder / "test.jsonl").write_text("".join(json.dumps({"content": t, "n": i}) + "\n" for i, t in enumerate(test)))
    store = prep(tok, tmp_path / "cache", f"hf:{folder}@test", text_field="content", eval_fraction=0.2)
    assert sorted(docs_of(tok, store.train) + docs_of(tok, store.eval)) == sorted(test)
    with pytest.raises(DataError, match="no field 'text'.*content"):
        prep(tok, tmp_path / "cache", f"hf:{folder}")


def test_hf_stream_stops_at_max_tokens(tmp_path, tok, monkeypatch):
    folder, order = dataset_folder(tmp_path / "ds", n=3000)
    consumed = [0]
    real = datasets.load_dataset

    class Counting:
        def __init__(self, ds):
            self.ds = ds

        def __iter__(self):
            for row in self.ds:
                consumed[0] += 1
                yield row

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: Counting(real(*a, **k)))
    monkeypatch.setattr(D, "_BATCH_CHARS", 2000)  # tokenise in small batches, as a big corpus would be
    store = prep(tok, tmp_path / "cache", f"hf:{folder}", max_tokens=1500)
    assert store.meta["tokens"] == 1500 and store.meta["truncated"]
    assert consumed[0] < 200, f"read {consumed[0]} of 3000 rows for 1500 tokens: the stream was not cut off"


def test_hf_errors(tmp_path, tok):
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="set max_tokens"):  # a Hub stream may be endless
        prep(tok, cache, "hf:org/name")
    with pytest.raises(DataError, match=r"cannot open hf:org/name.*(OfflineMode|Couldn't reach)"):
        prep(tok, cache, "hf:org/name", max_tokens=100)
    folder, _ = dataset_folder(tmp_path / "ds", n=30)
    with pytest.raises(DataError, match=r"cannot open .*@validation.*Bad split"):
        prep(tok, cache, f"hf:{folder}@validation")
    single = folder / "data" / "train-00000-of-00003.parquet"
    with pytest.raises(DataError, match="not a file; pass .* without hf:"):
        prep(tok, cache, f"hf:{single}")
    with pytest.raises(DataError, match="bad Hugging Face source"):
        prep(tok, cache, "hf:@train")
    assert not list(cache.glob("*/meta.json")) and not list(cache.glob(".tmp-*"))
