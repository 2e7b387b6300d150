"""The command line end to end: `hybridserve export` and `hybridserve info`, good and bad input.

Fast tests run the Typer app in-process on tiny teachers; the slow test runs the README's main job on
the real SmolLM2-135M teacher in a subprocess and reloads the export where hybridserve is absent.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from typer.testing import CliRunner

from hybridserve.export import load_hybrid, verify_checkpoint
from hybridserve.main import app

from .helpers import save_tiny_teacher

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher") / "llama", "llama", num_hidden_layers=4)


def test_export_from_teacher_then_info(teacher_dir, tmp_path):
    out = tmp_path / "hybrid"
    code, text = run("export", teacher_dir, "--out", out, "--softmax-layers", "1,3", "--mixer", "gla", "--dtype", "float32")
    assert code == 0, text
    verify_checkpoint(out)
    model = load_hybrid(out)
    assert model.config.softmax_layers == [1, 3] and model.config.linear_mixer == "gla"
    provenance = json.loads((out / "hybridserve.json").read_text())
    assert provenance["provenance"]["stage"] == "stage0"

    code, text = run("info", out, "--json")
    assert code == 0, text
    report = json.loads(text)
    assert report["layer_map"] == "L S L S"
    memory = report["memory"]
    assert memory["hybrid_kv_bytes_per_token"] * 2 == memory["teacher_kv_bytes_per_token"]
    assert report["parameters"]["hybrid"] == sum(p.numel() for p in model.parameters())
    # 2 softmax + 2 linear layers: no packing, vLLM groups each kind on its own.
    layout = report["vllm"]
    assert {k: layout[k] for k in ("state_pack", "cache_groups", "cache_groups_unpacked")} == {
        "state_pack": 1, "cache_groups": 2, "cache_groups_unpacked": 2}
    # the attention block vLLM sizes to hold one layer's state page (estimated at 64-token granularity)
    state_per_layer = memory["state_bytes_per_sequence"] // 2
    blocks = -(-state_per_layer // (64 * memory["kv_bytes_per_token_per_layer"]))
    assert layout["attention_block_tokens"] == 64 * blocks

    code, text = run("info", out)
    assert code == 0 and "KV cache / token" in text and "L S L S" in text and "2 cache groups" in text
    assert "scheduler: hybridserve's" in " ".join(text.split())


def test_ratio_picks_uniform_layers_and_prompt_generates(teacher_dir, tmp_path):
    out = tmp_path / "hybrid"
    code, text = run("export", teacher_dir, "--out", out, "--ratio", "0.5", "--prompt", "hello", "--max-new-tokens", "3")
    assert code == 0, text
    assert load_hybrid(out).config.softmax_layers == [1, 3]
    assert "teacher:" in text and "hybrid (reloaded export):" in text


def test_reexport_changes_dtype(teacher_dir, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    assert run("export", teacher_dir, "--out", first, "--dtype", "float32")[0] == 0
    code, text = run("export", first, "--out", second, "--dtype", "bfloat16")
    assert code == 0, text
    assert next(load_hybrid(second, dtype="auto").parameters()).dtype == torch.bfloat16
    assert json.loads((second / "hybridserve.json").read_text())["provenance"]["reexported_from"] == str(first)


def _assert_clean_failure(code, text, *needles):
    assert code == 1, text
    assert "Traceback" not in text
    for needle in needles:
        assert needle in text, text


def test_unsupported_architecture(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64)).save_pretrained(gpt2)
    code, text = run("export", gpt2, "--out", tmp_path / "out")
    _assert_clean_failure(code, text, "unsupported teacher architecture")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("layers, needle", [("1,9", "index 9 is out of range"), ("1,1", "repeat"), ("a,b", "integers")])
def test_bad_layer_lists(teacher_dir, tmp_path, layers, needle):
    code, text = run("export", teacher_dir, "--out", tmp_path / "out", "--softmax-layers", layers)
    _assert_clean_failure(code, text, needle)
    assert not (tmp_path / "out").exists()


def test_unknown_mixer_and_dtype(teacher_dir, tmp_path):
    _assert_clean_failure(*run("export", teacher_dir, "--out", tmp_path / "o", "--mixer", "mamba"), "unknown linear mixer")
    _assert_clean_failure(*run("export", teacher_dir, "--out", tmp_path / "o", "--dtype", "int8"), "--dtype")
    assert not (tmp_path / "o").exists()


def test_missing_tokenizer(tmp_path):
    teacher = save_tiny_teacher(tmp_path / "notok", "llama", with_tokenizer=False)
    _assert_clean_failure(*run("export", teacher, "--out", tmp_path / "out"), "tokenizer")
    assert not (tmp_path / "out").exists()


def test_non_empty_output_needs_overwrite(teacher_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    _assert_clean_failure(*run("export", teacher_dir, "--out", out), "--overwrite")
    assert (out / "keep.txt").read_text() == "precious"
    assert run("export", teacher_dir, "--out", out, "--overwrite")[0] == 0
    assert not (out / "keep.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp folders left behind


def test_corrupt_weights_and_bad_config(teacher_dir, tmp_path):
    out = tmp_path / "hybrid"
    assert run("export", teacher_dir, "--out", out, "--dtype", "float32")[0] == 0
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _assert_clean_failure(*run("export", out, "--out", tmp_path / "again"), "model.safetensors")
    assert not (tmp_path / "again").exists()

    config = json.loads((out / "config.json").read_text())
    config["layer_types"] = config["layer_types"][:-1]
    (out / "config.json").write_text(json.dumps(config))
    _assert_clean_failure(*run("info", out), "layer_types has 3 entries but the model has 4 layers")


def test_info_on_non_hybrid(teacher_dir):
    _assert_clean_failure(*run("info", teacher_dir), "not a hybridserve hybrid")


@pytest.mark.slow
def test_readme_main_job_on_real_smollm2(tmp_path):
    """The README's main job: SmolLM2-135M -> 25 % softmax GDN hybrid -> export -> reload -> generate."""
    out = tmp_path / "smollm2-hybrid"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "hybridserve", "export", "smollm2-135m", "--ratio", "0.25", "--out", str(out),
               "--prompt", "The capital of France is", "--max-new-tokens", "8"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout  # the teacher's continuation, printed for comparison
    assert "hybrid (reloaded export):" in done.stdout
    verify_checkpoint(out)
    config = json.loads((out / "config.json").read_text())
    assert config["layer_types"].count("full_attention") == 8  # round-half-up(0.25 * 30)
    assert config["tie_word_embeddings"] is True

    # A fresh process where hybridserve cannot be imported: plain transformers + the files in the folder.
    script = textwrap.dedent(f"""
        import importlib.abc, sys, torch
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "hybridserve":
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        sys.meta_path.insert(0, Block())
        from transformers import AutoModelForCausalLM, AutoTokenizer
        tok = AutoTokenizer.from_pretrained({str(out)!r}, trust_remote_code=True)
        model = AutoModelForCausalLM.from_pretrained({str(out)!r}, trust_remote_code=True, dtype=torch.float32)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
        ids = tok("Once upon a time", return_tensors="pt")
        new = model.generate(**ids, max_new_tokens=6, min_new_tokens=6, do_sample=False)[0, ids["input_ids"].shape[1]:]
        assert new.numel() == 6 and torch.isfinite(model(**ids).logits).all()
        print("GENERATED", repr(tok.decode(new)))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "GENERATED" in done.stdout
