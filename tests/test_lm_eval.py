"""lm-evaluation-harness adapter: an exported hybrid runs under `lm_eval --model hf` (trust_remote_code) on the
offline hybridserve_* tasks shipped in eval/lm_eval_tasks, and lm-eval sees exactly the prompts of `hybridserve eval`
and produces the same greedy answers and scores as hybridserve's own HF backend. No Hub access (offline flags set)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from hybridserve.eval.backends import HFBackend
from hybridserve.eval.common import EvalError
from hybridserve.eval.lm_eval_tasks import GROUP, TASK_DIR, TASK_NAMES
from hybridserve.eval.scoring import string_match_all
from hybridserve.eval.tasks import TASKS, generate_samples
from hybridserve.export import HybridConfig, HybridForCausalLM, load_hybrid, save_hybrid
from hybridserve.serve.compat import vllm_version

from .helpers import tiny_tokenizer

HAVE_VLLM = vllm_version() is not None

LENGTH, SAMPLES, TASK = 1024, 2, "niah_single_number"


@pytest.fixture(scope="module")
def hybrid_dir(tmp_path_factory):
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    config = HybridConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, max_position_embeddings=1100,
        layer_types=["full_attention", "linear_attention"], pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, initializer_range=0.2,
    )
    return save_hybrid(HybridForCausalLM(config).eval(), tmp_path_factory.mktemp("lm-eval") / "tiny-hybrid", tokenizer=tok)


def _load_task_yaml(path: Path) -> dict:
    """A task file with lm-eval's `!function` tags read as plain strings."""
    loader = type("TaskLoader", (yaml.SafeLoader,), {})
    loader.add_constructor("!function", lambda ld, node: f"!function {ld.construct_scalar(node)}")
    return yaml.load(path.read_text(), Loader=loader)


def test_lm_eval_hf_model_on_an_exported_hybrid_matches_hybridserve(hybrid_dir, tmp_path):
    out = tmp_path / "lm-eval-out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1")
    # the command of docs/eval.md, cut to 2 samples of one task
    command = [sys.executable, "-m", "lm_eval", "--model", "hf",
               "--model_args", f"pretrained={hybrid_dir},trust_remote_code=True,dtype=float32",
               "--include_path", str(TASK_DIR), "--tasks", f"hybridserve_{TASK}",
               "--metadata", json.dumps({"max_seq_lengths": [LENGTH], "num_samples": SAMPLES}),
               "--device", "cpu", "--batch_size", "1", "--output_path", str(out), "--log_samples"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())["results"][f"hybridserve_{TASK}"]
    logged = [json.loads(line) for line in next(out.rglob(f"samples_hybridserve_{TASK}_*.jsonl")).read_text().splitlines()]
    logged.sort(key=lambda row: row["doc"]["index"])

    # what `hybridserve eval` generates and answers for the same settings, with its own loader and backend
    backend = HFBackend(load_hybrid(hybrid_dir).eval(), tiny_tokenizer(), name="tiny")
    samples = generate_samples(TASK, backend.tokenizer, LENGTH, SAMPLES, seed=0)
    answers = backend.generate([s.input_ids for s in samples], TASKS[TASK].max_new_tokens)
    assert len(logged) == SAMPLES
    for row, sample, answer in zip(logged, samples, answers, strict=True):
        assert row["arguments"]["gen_args_0"]["arg_0"] == sample.prompt  # the exact prompt, chat template included
        assert row["doc"]["outputs"] == sample.answers and row["doc"]["num_tokens"] == sample.num_tokens
        assert LENGTH - 16 <= sample.num_tokens <= LENGTH
        assert row["resps"][0][0].strip() == answer.strip()  # same greedy continuation through lm-eval's HF loader
        assert row["score"] == string_match_all(answer, sample.answers)
    expected = sum(string_match_all(a, s.answers) for a, s in zip(answers, samples)) / SAMPLES
    assert results["score,none"] == pytest.approx(expected) and results[f"{LENGTH},none"] == pytest.approx(expected)
    assert results["2048,none"] == -1  # a length that was not run
    assert any(a.strip() for a in answers), "the tiny model should say something, or the comparison is vacuous"


def test_task_files_match_the_generator():
    files = {p.stem: _load_task_yaml(p) for p in TASK_DIR.glob("hybridserve_*.yaml")}
    assert set(TASK_NAMES) == {t for t, spec in TASKS.items() if spec.kind == "generate"}
    assert set(files) == {f"hybridserve_{t}" for t in TASK_NAMES} | {GROUP}
    for task in TASK_NAMES:
        spec = files[f"hybridserve_{task}"]
        assert spec["task"] == f"hybridserve_{task}"
        assert spec["custom_dataset"] == f"!function hybridserve_tasks.{task}"
        assert spec["generation_kwargs"]["max_gen_toks"] == TASKS[task].max_new_tokens  # hybridserve eval's budget
        assert spec["generation_kwargs"]["do_sample"] is False
    assert files[GROUP]["task"] == [f"hybridserve_{t}" for t in TASK_NAMES]
    printed = subprocess.run([sys.executable, "-m", "hybridserve.eval.lm_eval_tasks"], capture_output=True, text=True,
                             check=True).stdout.strip()
    assert Path(printed) == TASK_DIR and (TASK_DIR / "_hybridserve_template_yaml").is_file()


def _documents_module():
    """hybridserve_tasks.py as lm-eval loads it: by file path, not as a package module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("hybridserve_tasks", TASK_DIR / "hybridserve_tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_documents_and_bad_input(hybrid_dir):
    docs = _documents_module()
    data = docs.vt(pretrained=str(hybrid_dir), max_seq_lengths=[500, 600], num_samples=3, seed=5, version=1.0)["test"]
    assert [row["max_length"] for row in data] == [500] * 3 + [600] * 3
    same = generate_samples("vt", tiny_tokenizer(), 600, 3, seed=5)
    assert [row["input"] for row in data][3:] == [s.prompt for s in same]
    plain = docs.vt(pretrained=str(hybrid_dir), max_seq_lengths=500, num_samples=1, chat="off")["test"][0]
    assert "<|im_start|>" not in plain["input"] and "<|im_start|>" in data[0]["input"]
    assert docs.process_results(data[0], [" ".join(data[0]["outputs"])])["score"] == 1.0
    assert docs.process_results(data[0], [""])["score"] == 0.0
    assert docs.aggregate_length([-1, -1]) == -1 and docs.aggregate_length([1.0, 0.0, -1]) == 0.5
    with pytest.raises(EvalError, match="pass --model_args pretrained="):
        docs.vt(max_seq_lengths=[500])
    with pytest.raises(EvalError, match="needs 1104 positions.*max_position_embeddings 1100"):
        docs.niah_single_number(pretrained=str(hybrid_dir), max_seq_lengths=[1072])
    with pytest.raises(EvalError, match="max_seq_lengths must be"):
        docs.vt(pretrained=str(hybrid_dir), max_seq_lengths=["4k"])


@pytest.mark.skipif(not HAVE_VLLM, reason="vLLM is not installed")
def test_lm_eval_vllm_model_on_an_exported_hybrid(hybrid_dir, tmp_path):
    """`lm_eval --model vllm` (through hybridserve's launcher, which lets lm-eval find the CPU build): lm-eval sends
    our prompts to the vLLM engine serving the hybrid and gets hybridserve's greedy answers (vLLM's text drops a
    trailing incomplete UTF-8 character that transformers' decode shows as U+FFFD)."""
    out = tmp_path / "lm-eval-vllm"
    length = 512
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               VLLM_CPU_KVCACHE_SPACE="1", VLLM_CPU_OMP_THREADS_BIND="nobind",
               TQDM_DISABLE="1")  # as after any `hybridserve` CLI test in this process: the launcher must cope
    command = [sys.executable, "-P", "-m", "hybridserve.eval.lm_eval_vllm", "--model", "vllm",
               "--model_args", f"pretrained={hybrid_dir},dtype=float32,max_model_len=1024,enforce_eager=True",
               "--include_path", str(TASK_DIR), "--tasks", f"hybridserve_{TASK}",
               "--metadata", json.dumps({"max_seq_lengths": [length], "num_samples": SAMPLES}),
               "--batch_size", "auto", "--output_path", str(out), "--log_samples"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    logged = [json.loads(line) for line in next(out.rglob(f"samples_hybridserve_{TASK}_*.jsonl")).read_text().splitlines()]
    logged.sort(key=lambda row: row["doc"]["index"])
    backend = HFBackend(load_hybrid(hybrid_dir).eval(), tiny_tokenizer(), name="tiny")
    samples = generate_samples(TASK, backend.tokenizer, length, SAMPLES, seed=0)
    answers = backend.generate([s.input_ids for s in samples], TASKS[TASK].max_new_tokens)
    assert len(logged) == SAMPLES and any(a.strip() for a in answers)
    for row, sample, answer in zip(logged, samples, answers, strict=True):
        assert row["arguments"]["gen_args_0"]["arg_0"] == sample.prompt
        assert row["resps"][0][0].strip() == answer.rstrip("\ufffd").strip()
