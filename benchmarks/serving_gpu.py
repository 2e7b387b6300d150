"""Serving benchmark on a GPU machine, in pieces that each fit one device call (docs/benchmarks/serving.md).

  python benchmarks/serving_gpu.py build ROOT qwen2_1p5b [llama_3b]        # random-weight models, built on the GPU
  python benchmarks/serving_gpu.py run ROOT RESULTS NAME [NAME ...] [--rows ...] [--gpu-mem 0.9]
      # NAME: a folder under ROOT, then optionally _bf16state (a bfloat16 recurrent state) and/or _unpacked
      # (a state page per linear layer: serve_state_pack 1), then optionally _vllmsched / _hybridsched (which
      # scheduler: vLLM's own, or serve/scheduler.py's), then optionally _pdecode (decode.py's persistent decode
      # kernel), e.g. qwen2_1p5b_hybrid_bf16state_unpacked_vllmsched
  python benchmarks/serving_gpu.py report RESULTS OUT_DIR HYBRID BASELINE  # on any machine, from the JSON files

Models per shape: `<shape>` (the dense teacher: Qwen2.5-1.5B or Llama-3.2-3B shape), `<shape>_hybrid` (our
25 % hybrid: GDN in the layers method.md's GA-S2 ranking leaves linear, recurrent state float32), and for
Qwen2.5-1.5B `qwen3next_1p5b` (vLLM's own Qwen3-Next-style GDN hybrid of the same width, dense MLP: the anchor).
Weights are random (speed does not depend on them); prompts are random tokens with a fixed output length.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when not installed

SHAPES = {
    # name: (family, HF config kwargs, GA-S2 softmax layers at 25 % from method.md)
    "qwen2_1p5b": ("qwen2", dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                                 num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=40960,
                                 rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True),
                   [14, 19, 20, 23, 24, 26, 27]),
    "llama_3b": ("llama", dict(vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                               num_attention_heads=24, num_key_value_heads=8, head_dim=128,
                               max_position_embeddings=40960, rope_theta=5e5, rms_norm_eps=1e-5,
                               tie_word_embeddings=True),
                 [14, 8, 5, 12, 15, 13, 2]),
}
TOKENIZER = Path(__file__).resolve().parent / "tokenizer"  # a small local tokenizer (ids stay below its vocab)
ROWS = "1024:256:512,8192:256:128,32768:128:32,128:1024:512,32768:256:160"


def _save(model, path: Path, tokenizer_dir: Path) -> None:
    model.save_pretrained(str(path), safe_serialization=True)
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, path / f.name)


def build(root: Path, shapes: list[str]) -> None:
    import torch
    import transformers as tf

    from hybridserve.export import HybridConfig, HybridForCausalLM, save_hybrid
    from hybridserve.export.configuration_hybrid import layer_types_for

    common = dict(bos_token_id=1, eos_token_id=2, pad_token_id=3)
    tokenizer = tf.AutoTokenizer.from_pretrained(str(TOKENIZER))
    for shape in shapes:
        family, kw, softmax = SHAPES[shape]
        t0 = time.time()
        cls = {"qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM), "llama": (tf.LlamaConfig, tf.LlamaForCausalLM)}[family]
        torch.manual_seed(0)
        with torch.device("cuda"):
            teacher = cls[1](cls[0](**kw, **common)).to(torch.bfloat16)
        _save(teacher, root / shape, TOKENIZER)
        del teacher
        hybrid_cfg = HybridConfig(teacher_family=family, **kw, **common,
                                  layer_types=layer_types_for(kw["num_hidden_layers"], softmax), linear_mixer="gdn")
        with torch.device("cuda"):
            hybrid = HybridForCausalLM(hybrid_cfg).to(torch.bfloat16)
        save_hybrid(hybrid, root / f"{shape}_hybrid", tokenizer=tokenizer, overwrite=True,
                    provenance={"teacher": f"random {shape}", "teacher_kind": "random-weights benchmark"})
        del hybrid
        torch.cuda.empty_cache()
        print(f"BUILT {shape} and {shape}_hybrid in {time.time() - t0:.0f} s", flush=True)
        if shape == "qwen2_1p5b":
            L = kw["num_hidden_layers"]
            lt = ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(L)]
            nkw = dict(kw, head_dim=128, linear_num_key_heads=8, linear_num_value_heads=16, linear_key_head_dim=128,
                       linear_value_head_dim=128, linear_conv_kernel_dim=4, layer_types=lt)
            cfg = tf.Qwen3NextConfig(num_experts=0, mlp_only_layers=list(range(L)), **nkw, **common)
            with torch.device("cuda"):
                native = tf.Qwen3NextForCausalLM(cfg).to(torch.bfloat16)
            _save(native, root / "qwen3next_1p5b", TOKENIZER)
            del native
            torch.cuda.empty_cache()
            print("BUILT qwen3next_1p5b", flush=True)


BF16_STATE, UNPACKED = "_bf16state", "_unpacked"
VLLM_SCHED, HYBRID_SCHED = "_vllmsched", "_hybridsched"
PERSISTENT_DECODE = "_pdecode"


def _model_variant(name: str) -> tuple[str, dict | None, dict | None]:
    """A model name -> (its folder under ROOT, extra engine arguments, extra environment). `<model>_bf16state`
    serves <model> with a bfloat16 recurrent state (vLLM's --mamba-ssm-cache-dtype; what vLLM's own GDN hybrids use
    by default: the model dtype); `..._unpacked` gives each linear layer its own state page (no state packing: the
    layout before serve/state_packing.py); `..._vllmsched` serves a hybridserve model with vLLM's own scheduler
    (HYBRIDSERVE_STOCK_SCHEDULER=1), `..._hybridsched` any model with hybridserve's (serve/scheduler.py; the plugin's
    default for hybridserve models); a final `_pdecode` runs decode through kernels/gated_delta_rule/decode.py
    (HYBRIDSERVE_GDN_DECODE=persistent); qwen3next models get vLLM's Triton GDN prefill (its SM90 default is
    FlashInfer, not carried)."""
    from hybridserve.serve.plugin import SCHEDULER, STOCK_SCHEDULER_ENV

    extra: dict = {}
    env: dict = {}
    if name.endswith(PERSISTENT_DECODE):
        name = name[: -len(PERSISTENT_DECODE)]
        env["HYBRIDSERVE_GDN_DECODE"] = "persistent"
    if name.endswith(VLLM_SCHED):
        name = name[: -len(VLLM_SCHED)]
        env[STOCK_SCHEDULER_ENV] = "1"
    elif name.endswith(HYBRID_SCHED):
        name = name[: -len(HYBRID_SCHED)]
        extra["scheduler_cls"] = SCHEDULER
    if name.endswith(UNPACKED):
        name = name[: -len(UNPACKED)]
        extra["hf_overrides"] = {"serve_state_pack": 1}
    if name.endswith(BF16_STATE):
        name = name[: -len(BF16_STATE)]
        extra["mamba_ssm_cache_dtype"] = "bfloat16"
    if name.startswith("qwen3next"):
        extra["additional_config"] = {"gdn_prefill_backend": "triton"}
    return name, extra or None, env or None


def run(root: Path, results: Path, names: list[str], rows: str, gpu_mem: float, max_model_len: int,
        repeats: int = 3, model_timeout: float = 560, prefix_caching: bool = False) -> None:
    from hybridserve.serve.bench import BenchModel, _config, engine_settings, machine, parse_rows, run_model

    results.mkdir(parents=True, exist_ok=True)
    parsed = parse_rows(rows)
    engine = engine_settings(parsed, {n: _config(str(root / _model_variant(n)[0])) for n in names}, max_model_len=max_model_len,
                             dtype="bfloat16", gpu_memory_utilization=gpu_mem, max_num_seqs=512, repeats=repeats)
    if prefix_caching:  # the hybrids' "align" mode: states cached at block boundaries (random prompts: no hits)
        engine["prefix_caching"] = True
    (results / "machine.json").write_text(json.dumps({**machine(), "rows": parsed, "engine": engine}, indent=2))
    for name in names:
        folder, extra, env = _model_variant(name)
        t0 = time.time()
        try:
            # resume: the same command again on the same machine serves only the models not yet measured
            result = run_model(BenchModel(name, str(root / folder), extra, env), parsed, results, engine,
                               timeout=model_timeout, resume=True)
        except Exception as e:  # keep going: the other models' numbers are still worth having
            print(f"FAILED {name}: {e}", flush=True)
            continue
        (results / f"{name}.result.json").write_text(json.dumps(result, indent=2))
        done = f"INCOMPLETE ({result['incomplete']})" if result.get("incomplete") else "DONE"
        print(f"{done} {name} in {time.time() - t0:.0f} s", flush=True)


def report(results: Path, out_dir: Path, hybrid: str, baseline: str, others: list[str]) -> None:
    from hybridserve.serve.bench import write_report

    info = json.loads((results / "machine.json").read_text())
    models = [json.loads((results / f"{n}.result.json").read_text()) for n in [hybrid, baseline, *others]]
    write_report(models, info.pop("rows"), info.pop("engine"), out_dir, hybrid=hybrid, baseline=baseline,
                 command="benchmarks/serving_gpu.py (build, run, report)", machine_info=info)


if __name__ == "__main__":
    os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "build":
        build(Path(args[0]), args[1:])
    elif cmd == "run":
        import argparse

        parser = argparse.ArgumentParser(prog="serving_gpu.py run")
        parser.add_argument("root", type=Path)
        parser.add_argument("results", type=Path)
        parser.add_argument("names", nargs="+")
        parser.add_argument("--rows", default=ROWS)
        parser.add_argument("--gpu-mem", type=float, default=0.9)
        parser.add_argument("--max-model-len", type=int, default=33792)
        parser.add_argument("--repeats", type=int, default=3, help="timed runs of every row (median reported)")
        parser.add_argument("--model-timeout", type=float, default=560,
                            help="seconds per model (start-up included) before it is stopped; its finished rows stay")
        parser.add_argument("--prefix-caching", action="store_true",
                            help="serve with prefix caching on (the hybrids' align mode): what it costs without hits")
        a = parser.parse_args(args)
        run(a.root, a.results, a.names, a.rows, a.gpu_mem, a.max_model_len, a.repeats, a.model_timeout,
            a.prefix_caching)
    elif cmd == "report":
        report(Path(args[0]), Path(args[1]), args[2], args[3], args[4:])
    else:
        sys.exit(__doc__)
