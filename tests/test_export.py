"""The Hub-ready checkpoint format (export/checkpoint.py) and the memory numbers (export/memory.py).

The central check loads saved checkpoints with `AutoModelForCausalLM.from_pretrained(...,
trust_remote_code=True)` in a subprocess where hybridserve cannot be imported, exactly as a user of the
Hub would, and compares its logits and greedy tokens with the in-process model. One subprocess serves
every case (its start-up dominates the cost).
"""

from __future__ import annotations

import http.server
import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

from hybridserve.export import (
    ExportError,
    HybridConfig,
    HybridForCausalLM,
    load_hybrid,
    memory_summary,
    push_to_hub,
    save_hybrid,
    verify_checkpoint,
)
from hybridserve.export import checkpoint as ckpt
from hybridserve.export.cache_hybrid import HybridCache

S, L = "full_attention", "linear_attention"
LLAMA3_ROPE = {
    "rope_type": "llama3", "rope_theta": 50000.0, "factor": 8.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 64,
}
CASES = {
    # name: (config overrides, save kwargs)
    "gdn": (dict(linear_mixer="gdn", layer_types=[S, L, L, S], linear_short_conv=True, rope_parameters=LLAMA3_ROPE), {}),
    "gla": (dict(linear_mixer="gla", layer_types=[L, S, L], teacher_family="qwen3", tie_word_embeddings=True), {}),
    "gdn_sharded": (dict(linear_mixer="gdn", layer_types=[L, S, L, L], linear_gqa_mode="runtime"),
                    {"max_shard_size": "300KB"}),
}


def tiny_config(**overrides) -> HybridConfig:
    layer_types = overrides.pop("layer_types", [S, L, L, S])
    base = dict(
        vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=len(layer_types),
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=256,
        layer_types=layer_types, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    return HybridConfig(**{**base, **overrides})


def tiny_model(seed: int = 0, **overrides) -> HybridForCausalLM:
    torch.manual_seed(seed)
    return HybridForCausalLM(tiny_config(**overrides)).eval()


try:  # the shared tiny tokenizer (tests/helpers.py), when it is there
    from .helpers import tiny_tokenizer
except ImportError:

    def tiny_tokenizer():
        """A byte-level BPE tokenizer with <pad>=0, <s>=1, </s>=2."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<pad>", "<s>", "</s>"], show_progress=False)
        tok.train_from_iterator(["the quick brown fox jumps over the lazy dog", "hybrid models keep a state"] * 10, trainer)
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def temp_leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp-"))


# The script the subprocess runs: hybridserve is blocked before anything else is imported.
REMOTE_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "hybridserve" or name.startswith("hybridserve."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    try:
        import hybridserve  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("hybridserve is importable in the subprocess")

    import torch
    from transformers import AutoModelForCausalLM

    ids = torch.load("ids.pt")
    for case in sys.argv[1:]:
        model = AutoModelForCausalLM.from_pretrained(case, trust_remote_code=True, dtype=torch.float32).eval()
        mixer = next(l.linear_attn for l in model.model.layers if hasattr(l, "linear_attn"))
        kernels = sys.modules[type(mixer).__module__]
        with torch.no_grad():
            logits = model(ids).logits
            tokens = model.generate(ids, max_new_tokens=4, do_sample=False)
        torch.save({
            "logits": logits,
            "tokens": tokens,
            "module": type(model).__module__,
            "kernel_module": kernels.chunk_gated_delta_rule.__module__,
            "tied": model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(),
            "layer_types": list(model.config.layer_types),
        }, f"result-{case}.pt")
    assert not any(m == "hybridserve" or m.startswith("hybridserve.") for m in sys.modules), "hybridserve leaked in"
    """
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every CASES model saved, its in-process outputs, and the outputs of one remote-code subprocess."""
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(123)
    ids = torch.randint(3, 256, (2, 12))
    torch.save(ids, root / "ids.pt")
    models, expected, paths = {}, {}, {}
    for seed, (name, (overrides, save_kwargs)) in enumerate(CASES.items()):
        model = tiny_model(seed, **overrides)
        with torch.no_grad():
            expected[name] = (model(ids).logits, model.generate(ids, max_new_tokens=4, do_sample=False))
        paths[name] = save_hybrid(
            model, root / name, tokenizer=tiny_tokenizer(),
            provenance={"teacher": "org/teacher", "teacher_kind": "hub", "license": "apache-2.0", "stage": "stage1"},
            **save_kwargs,
        )
        models[name] = model
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(root / "hf_home"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, *CASES], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    remote = {name: torch.load(root / f"result-{name}.pt") for name in CASES}
    return {"root": root, "ids": ids, "models": models, "expected": expected, "paths": paths, "remote": remote}


# ------------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("case", list(CASES))
def test_remote_code_load_without_hybridserve_matches(exported, case):
    remote = exported["remote"][case]
    logits, tokens = exported["expected"][case]
    assert remote["module"].startswith("transformers_modules.")  # the copied files, not hybridserve
    assert remote["kernel_module"].endswith("gated_delta_rule_naive")  # the fallback kernels were used
    assert (remote["logits"] - logits).abs().max().item() <= 1e-6
    assert torch.equal(remote["tokens"], tokens)
    assert remote["layer_types"] == CASES[case][0]["layer_types"]


def test_tied_embeddings_stay_tied_and_are_stored_once(exported):
    assert exported["remote"]["gla"]["tied"] and not exported["remote"]["gdn"]["tied"]
    model = load_hybrid(exported["paths"]["gla"])
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    with safe_open(str(exported["paths"]["gla"] / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "model.embed_tokens.weight" in keys and "lm_head.weight" not in keys
    with safe_open(str(exported["paths"]["gdn"] / "model.safetensors"), framework="pt") as f:
        assert "lm_head.weight" in set(f.keys())  # untied: both kept


@pytest.mark.parametrize("case", list(CASES))
def test_load_hybrid_round_trip(exported, case):
    original = exported["models"][case]
    model = load_hybrid(exported["paths"][case])
    assert type(model) is HybridForCausalLM and not model.training
    with torch.no_grad():
        assert torch.equal(model(exported["ids"]).logits, exported["expected"][case][0])
    a, b = original.config, model.config
    for field in ("layer_types", "linear_mixer", "linear_num_heads", "linear_num_kv_heads", "linear_key_head_dim",
                  "linear_value_head_dim", "linear_gqa_mode", "linear_short_conv", "linear_conv_size",
                  "linear_output_gate", "linear_state_dtype", "rope_parameters", "teacher_family",
                  "tie_word_embeddings", "num_key_value_heads", "head_dim"):
        assert getattr(b, field) == getattr(a, field), field
    if case == "gdn":
        assert b.rope_parameters["rope_type"] == "llama3" and b.rope_parameters["factor"] == 8.0


def test_load_hybrid_dtype(exported):
    model = load_hybrid(exported["paths"]["gdn"], dtype="bfloat16")
    assert model.dtype == torch.bfloat16


def test_checkpoint_contents(exported):
    path = exported["paths"]["gdn"]
    for name, src in ckpt._source_paths().items():
        assert (path / name).read_bytes() == src.read_bytes(), name
    config = json.loads((path / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_hybrid.HybridConfig",
                                  "AutoModelForCausalLM": "modeling_hybrid.HybridForCausalLM"}
    assert config["architectures"] == ["HybridForCausalLM"] and config["model_type"] == "hybridserve"
    generation = json.loads((path / "generation_config.json").read_text())  # derived from the config's ids
    assert (generation["bos_token_id"], generation["eos_token_id"], generation["pad_token_id"]) == (1, 2, 0)

    manifest = json.loads((path / "hybridserve.json").read_text())
    assert manifest["layer_map"] == "S L L S" and manifest["softmax_layers"] == [0, 3]
    assert manifest["provenance"]["teacher"] == "org/teacher" and manifest["provenance"]["stage"] == "stage1"
    assert manifest["provenance"]["hybridserve_version"] and manifest["provenance"]["date"]

    card = (path / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "transformers"
    assert front["tags"] == ["hybridserve", "linear-attention", "hybrid"]
    assert front["base_model"] == "org/teacher" and front["license"] == "apache-2.0"
    n_params = sum(p.numel() for p in exported["models"]["gdn"].parameters())
    for text in ("S L L S", "[0, 3]", "Gated DeltaNet", f"{n_params:,}", "1.0 KiB", "512 B",
                 "trust_remote_code=True", "org/teacher", "stage1"):
        assert text in card, text

    from transformers import AutoTokenizer

    tokenizer, fresh = AutoTokenizer.from_pretrained(path), tiny_tokenizer()
    assert tokenizer("the lazy fox").input_ids == fresh("the lazy fox").input_ids
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (fresh.eos_token_id, fresh.pad_token_id)


def test_card_without_hub_teacher_has_no_base_model(tmp_path):
    from transformers import GenerationConfig

    out = save_hybrid(tiny_model(linear_mixer="gla"), tmp_path / "c", provenance={"teacher": "smollm2-135m",
                      "teacher_kind": "builtin", "sha256": "ab" * 32}, generation_config=GenerationConfig(max_new_tokens=7))
    front = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert "base_model" not in front and "license" not in front
    assert "ab" * 32 in (out / "README.md").read_text()
    assert json.loads((out / "generation_config.json").read_text())["max_new_tokens"] == 7


def test_sharded_checkpoint(exported):
    path = exported["paths"]["gdn_sharded"]
    shards = sorted(path.glob("model-*.safetensors"))
    index = json.loads((path / "model.safetensors.index.json").read_text())
    assert len(shards) > 1 and not (path / "model.safetensors").exists()
    assert set(index["weight_map"].values()) == {s.name for s in shards}
    verify_checkpoint(path)  # and the subprocess loaded it: test_remote_code_load_without_hybridserve_matches


# ------------------------------------------------------------------------------------------------ atomicity


def test_refuses_a_non_empty_folder_without_overwrite(tmp_path):
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(ExportError, match="already exists and is not empty; pass --overwrite"):
        save_hybrid(tiny_model(), out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "precious"
    assert temp_leftovers(out) == []


def test_empty_folder_and_overwrite(tmp_path):
    out = tmp_path / "ckpt"
    out.mkdir()
    save_hybrid(tiny_model(), out)  # an empty folder is fine without overwrite
    (out / "stale.txt").write_text("old")
    save_hybrid(tiny_model(seed=1, linear_mixer="gla"), out, overwrite=True)
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "config.json").read_text())["linear_mixer"] == "gla"
    verify_checkpoint(out)
    assert temp_leftovers(out) == []


@pytest.mark.parametrize("existing", [False, True])
def test_failure_mid_save_leaves_no_trace(tmp_path, monkeypatch, existing):
    out = tmp_path / "ckpt"
    if existing:
        save_hybrid(tiny_model(), out)
        before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*args, **kwargs):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(ckpt, "_write_model_card", boom)
    with pytest.raises(RuntimeError, match="injected failure"):
        save_hybrid(tiny_model(seed=1), out, overwrite=True)
    if existing:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    else:
        assert not out.exists()
    assert temp_leftovers(out) == []


def test_failed_final_rename_restores_the_old_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "ckpt"
    save_hybrid(tiny_model(), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst) == out and ".old" not in Path(src).name:  # the commit rename, not the restore
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(ExportError, match="could not write the checkpoint .*No space left"):
        save_hybrid(tiny_model(seed=1), out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert temp_leftovers(out) == []


def test_stale_temp_folders_are_cleaned_or_restored(tmp_path):
    out = tmp_path / "ckpt"
    dead_pid = 2**22 + 12345  # above Linux's pid_max default, so no such process
    (tmp_path / f".ckpt.tmp-{dead_pid}-abc").mkdir()  # a crashed save
    live = tmp_path / f".ckpt.tmp-{os.getppid()}-def"  # a save still running in another process
    live.mkdir()
    save_hybrid(tiny_model(), out)
    assert temp_leftovers(out) == [live.name]

    # A crash between the two renames of an overwrite: out is gone, the old checkpoint is set aside.
    aside = tmp_path / f".ckpt.tmp-{dead_pid}-ghi.old"
    os.replace(out, aside)
    ckpt._clean_stale(out)
    verify_checkpoint(out)
    assert temp_leftovers(out) == [live.name]


def test_save_rejects_a_non_hybrid_model(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2))
    with pytest.raises(ExportError, match="model_type 'llama'"):
        save_hybrid(llama, tmp_path / "x")
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------------ verification


@pytest.fixture
def copy_of(exported, tmp_path):
    def make(case):
        return Path(shutil.copytree(exported["paths"][case], tmp_path / case))

    return make


@pytest.mark.parametrize("case", ["gdn", "gdn_sharded"])
def test_verify_detects_a_truncated_weights_file(copy_of, case):
    path = copy_of(case)
    victim = sorted(path.glob("*.safetensors"))[-1]
    with open(victim, "r+b") as f:
        f.truncate(victim.stat().st_size - 100)
    with pytest.raises(ExportError, match=f"{victim.name} .*corrupt.*truncated"):
        verify_checkpoint(path)
    with pytest.raises(ExportError, match=victim.name):
        load_hybrid(path)


def test_verify_detects_a_garbage_header(copy_of):
    path = copy_of("gdn")
    (path / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ExportError, match="model.safetensors .*corrupt"):
        verify_checkpoint(path)


def test_verify_problems(copy_of, tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        verify_checkpoint(tmp_path / "nowhere")

    path = copy_of("gdn")
    (path / "linear_attention.py").unlink()
    with pytest.raises(ExportError, match="lacks the model source files linear_attention.py"):
        verify_checkpoint(path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(ExportError, match="not a hybridserve model"):
        verify_checkpoint(path)
    (path / "config.json").unlink()
    with pytest.raises(ExportError, match="no config.json"):
        verify_checkpoint(path)

    sharded = copy_of("gdn_sharded")
    shard = sorted(sharded.glob("model-*.safetensors"))[0]
    shard.unlink()
    with pytest.raises(ExportError, match=f"shard {shard.name} listed in model.safetensors.index.json is missing"):
        verify_checkpoint(sharded)


# ------------------------------------------------------------------------------------------------ push_to_hub


def _hub_http():
    """The HTTP client module huggingface_hub raises from (httpx in 1.x, httpx2 later)."""
    from huggingface_hub.errors import HfHubHTTPError

    return importlib.import_module(HfHubHTTPError.__mro__[1].__module__.split(".")[0])


def _http_error(status: int):
    from huggingface_hub.errors import HfHubHTTPError

    http = _hub_http()
    response = http.Response(status, request=http.Request("POST", "https://huggingface.co/api/repos/create"))
    return HfHubHTTPError(f"{status} Client Error", response=response)


OFFLINE = "cannot reach the Hugging Face Hub.*offline"


def _requests_connection_error():
    requests = pytest.importorskip("requests")
    return requests.exceptions.ConnectionError("Max retries exceeded with url: /api/repos/create")


@pytest.mark.parametrize(
    "make_error, message",
    [
        (lambda: _hub_http().ConnectError("[Errno -3] Temporary failure in name resolution"), OFFLINE),
        (_requests_connection_error, OFFLINE),
        (lambda: _http_error(401), "not authorised.*HF_TOKEN.*hf auth login"),
        (lambda: _http_error(403), "not authorised.*HTTP 403"),
        (lambda: importlib.import_module("huggingface_hub.errors").LocalTokenNotFoundError("no token"), "not authorised"),
        (lambda: _http_error(500), "refused.*HTTP 500"),
    ],
    ids=["connect-error", "requests-connection-error", "http-401", "http-403", "no-token", "http-500"],
)
@pytest.mark.parametrize("failing", ["create_repo", "upload_folder"])
def test_push_to_hub_errors_become_export_errors(exported, monkeypatch, make_error, message, failing):
    from huggingface_hub import HfApi

    def fail(self, *args, **kwargs):
        raise make_error()

    monkeypatch.setattr(HfApi, "create_repo", lambda self, *a, **k: "https://huggingface.co/me/x")
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, *a, **k: None)
    monkeypatch.setattr(HfApi, failing, fail)
    with pytest.raises(ExportError, match=message):
        push_to_hub(exported["paths"]["gla"], "me/x", token="hf_bad")


def test_push_to_hub_verifies_first_and_uploads(exported, copy_of, monkeypatch):
    from huggingface_hub import HfApi

    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **k: calls.append(("create", repo_id, k)) or "https://hf.co/me/x")
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **k: calls.append(("upload", k)))
    broken = copy_of("gla")
    (broken / "config.json").unlink()
    with pytest.raises(ExportError, match="no config.json"):
        push_to_hub(broken, "me/x")
    assert calls == []
    assert push_to_hub(exported["paths"]["gla"], "me/x", private=True) == "https://hf.co/me/x"
    assert calls[0] == ("create", "me/x", {"token": None, "private": True, "exist_ok": True})
    assert calls[1][1]["folder_path"] == str(exported["paths"]["gla"]) and calls[1][1]["repo_id"] == "me/x"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_push_to_hub_through_the_real_client(exported, monkeypatch):
    """No mocks of huggingface_hub: a closed local port (offline) and a local server that answers 401."""
    from huggingface_hub import constants

    # CI sets HF_HUB_OFFLINE=1; this test talks only to 127.0.0.1, so let the client try.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(ExportError, match=OFFLINE):
        push_to_hub(exported["paths"]["gla"], "me/x", token="hf_bad")

    class Unauthorised(http.server.BaseHTTPRequestHandler):
        def _deny(self):
            body = b'{"error": "Invalid credentials in Authorization header"}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_HEAD = _deny

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unauthorised)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(ExportError, match="not authorised.*HTTP 401.*HF_TOKEN"):
            push_to_hub(exported["paths"]["gla"], "me/x", token="hf_bad")
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------------------------ memory


def test_memory_summary_hand_computed():
    config = tiny_config(linear_mixer="gdn", layer_types=[S, L, L, S], linear_short_conv=True)
    m = memory_summary(config)  # bf16 KV: 2 bytes; float32 state: 4 bytes
    assert (m["num_layers"], m["num_softmax_layers"], m["num_linear_layers"]) == (4, 2, 2)
    assert m["teacher_kv_bytes_per_token"] == 4 * 2 * 2 * 32 * 2 == 1024
    assert m["hybrid_kv_bytes_per_token"] == 2 * 2 * 2 * 32 * 2 == 512
    assert m["recurrent_state_bytes_per_sequence"] == 2 * 4 * 32 * 32 * 4 == 32768
    # window of 3 over q, k, v channels (4 heads x 32 each), 2 bytes, two linear layers
    assert m["conv_state_bytes_per_sequence"] == 2 * 3 * (128 + 128 + 128) * 2 == 4608
    assert m["state_bytes_per_sequence"] == 32768 + 4608
    assert m["break_even_tokens"] == 73  # ceil(37376 / 512)

    # GLA has no short conv; runtime GQA narrows the conv's k/v channels but not the state
    assert memory_summary(tiny_config(linear_mixer="gla"))["conv_state_bytes_per_sequence"] == 0
    gqa = memory_summary(tiny_config(linear_gqa_mode="runtime", linear_short_conv=True, linear_state_dtype="bfloat16"), 4)
    assert gqa["conv_state_bytes_per_sequence"] == 2 * 3 * (128 + 64 + 64) * 4
    assert gqa["recurrent_state_bytes_per_sequence"] == 2 * 4 * 32 * 32 * 2
    # config.json dicts work too (what `hybridserve info` reads)
    assert memory_summary(json.loads(config.to_json_string())) == m
    all_softmax = memory_summary(tiny_config(layer_types=[S, S]))
    assert all_softmax["state_bytes_per_sequence"] == 0 and all_softmax["break_even_tokens"] is None


@pytest.mark.parametrize("overrides", [
    dict(linear_mixer="gdn", linear_short_conv=True, linear_gqa_mode="runtime"),
    dict(linear_mixer="gla", layer_types=[L, S, L]),
], ids=["gdn-conv-runtime-gqa", "gla"])
def test_memory_summary_matches_what_the_cache_holds(overrides):
    model = tiny_model(**overrides)
    cache = HybridCache(model.config)
    tokens = 9
    with torch.no_grad():
        model(torch.randint(3, 256, (1, tokens)), cache=cache, use_cache=True)
    m = memory_summary(model.config, dtype_bytes=4)  # the model runs in float32
    assert cache.state_bytes() == tokens * m["hybrid_kv_bytes_per_token"] + m["state_bytes_per_sequence"]
