"""`hybridserve convert` on one GPU inside a fixed wall-clock budget: calibrate, size the token budgets, run, collect.

    python benchmarks/convert_gpu.py TEACHER --data DATA --work /tmp/cv --results $OUT --minutes 16

The issue asks for ~20M + 20M tokens "at a budget that fits about 20 minutes"; the throughput with a given kernel
path is not known beforehand, and a learning-rate schedule needs its step count up front. So:
  1. calibration: the same command at the same batch shapes for a few steps per stage (also fills the token cache
     and Triton's compile cache); steady-state tokens/s per stage = tokens between the 3rd and the last step over
     the seconds between them (the first steps carry compilation and autotuning);
  2. sizing: equal token budgets for stages 1 and 2 (capped at --max-tokens each) that fit what is left of the
     budget after a fixed allowance for teacher loading, evaluations, checkpoints and the export;
  3. the run itself (resumable like any convert run), then its curves, summary and the sizing decision are copied
     to --results (at most 8 files: the device tool brings back no more).
The kernel path is whatever `hybridserve.kernels` dispatches to (HYBRIDSERVE_TRITON_HEAD_DIMS / HYBRIDSERVE_KERNELS
in the environment); it is recorded in sizing.json.

CPU smoke test of the plumbing (tiny shapes, a few seconds of budget):
    python benchmarks/convert_gpu.py smollm2-135m --data builtin --work /tmp/cvs --results /tmp/cvs-out --minutes 3 \
        --device cpu --stage1 4x64:4 --stage2 2x64:2 --calib-steps 4,4 --max-tokens 2048
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def shape(text: str) -> tuple[int, int, int]:
    """BATCHxSEQ:MICRO -> (batch, seq, micro)."""
    bs, _, micro = text.partition(":")
    batch, _, seq = bs.partition("x")
    return int(batch), int(seq), int(micro or batch)


def convert_cmd(a, out: Path, steps1: int, steps2: int, eval_every: tuple[int, int], eval_blocks: int,
                resume: bool = False) -> list[str]:
    (b1, s1, m1), (b2, s2, m2) = a.stage1, a.stage2
    sets = {
        "stage1.tokens": steps1 * b1 * s1, "stage1.seq_len": s1, "stage1.batch_size": b1, "stage1.micro_batch_size": m1,
        "stage1.eval_every": eval_every[0], "stage1.eval_blocks": eval_blocks, "stage1.checkpoint_every": a.checkpoint_every,
        "stage2.tokens": steps2 * b2 * s2, "stage2.seq_len": s2, "stage2.batch_size": b2, "stage2.micro_batch_size": m2,
        "stage2.eval_every": eval_every[1], "stage2.eval_blocks": eval_blocks, "stage2.checkpoint_every": a.checkpoint_every,
    }
    cmd = [sys.executable, "-m", "hybridserve", "convert", a.teacher, "--out", str(out), "--preset", "paper",
           "--ratio", str(a.ratio), "--mixer", a.mixer, "--device", a.device]
    for d in a.data:
        cmd += ["--data", d]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    return cmd + ["--resume"] * resume


def steady_rate(metrics: Path) -> float:
    """Tokens/s between the 3rd logged step and the last one (compilation and autotuning stay out)."""
    rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r.get("step", 0) > 0 and "seconds" in r]
    if len(rows) < 4:
        raise SystemExit(f"{metrics}: too few steps to calibrate ({len(rows)}); raise --calib-steps")
    first, last = rows[2], rows[-1]
    return (last["tokens"] - first["tokens"]) / max(last["seconds"] - first["seconds"], 1e-9)


def run(cmd: list[str], log: Path) -> float:
    t0 = time.time()
    print("+", " ".join(cmd), flush=True)
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    if proc.returncode:
        sys.stdout.write(log.read_text()[-4000:])
        raise SystemExit(f"convert failed ({proc.returncode}); log {log}")
    return time.time() - t0


def kernel_path() -> dict:
    import torch

    from hybridserve.kernels._triton_utils import cuda_head_dims, triton_available

    info = {"HYBRIDSERVE_KERNELS": os.environ.get("HYBRIDSERVE_KERNELS", "auto"),
            "HYBRIDSERVE_TRITON_HEAD_DIMS": os.environ.get("HYBRIDSERVE_TRITON_HEAD_DIMS", ""),
            "triton_head_dims": sorted(cuda_head_dims()), "triton_importable": triton_available(),
            "torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teacher")
    ap.add_argument("--data", action="append", default=[])
    ap.add_argument("--work", type=Path, required=True, help="run folders (calibration and the run)")
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=16.0, help="wall clock for everything, calibration included")
    ap.add_argument("--max-tokens", type=int, default=20_000_000, help="cap per stage (the issue's example)")
    ap.add_argument("--stage1", type=shape, default=shape("96x512:48"), help="BATCHxSEQ:MICRO (paper: 96x512)")
    ap.add_argument("--stage2", type=shape, default=shape("32x4096:8"), help="BATCHxSEQ:MICRO (paper: 32x4096)")
    ap.add_argument("--calib-steps", default="12,6")
    ap.add_argument("--allowance-s", type=float, default=90.0, help="teacher load, evals, checkpoints, export")
    ap.add_argument("--evals", type=int, default=10, help="held-out evaluations per stage")
    ap.add_argument("--eval-blocks", type=int, default=16)
    ap.add_argument("--checkpoint-every", type=int, default=100)
    ap.add_argument("--ratio", type=float, default=0.25)
    ap.add_argument("--mixer", default="gdn")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--resume", action="store_true", help="continue the main run in WORK/run (sizing.json kept)")
    a = ap.parse_args()
    a.data = a.data or ["builtin"]
    start = time.time()
    a.work.mkdir(parents=True, exist_ok=True)
    a.results.mkdir(parents=True, exist_ok=True)
    sizing_file = a.work / "sizing.json"
    if a.resume and sizing_file.exists():
        sizing = json.loads(sizing_file.read_text())
    else:
        c1, c2 = (int(x) for x in a.calib_steps.split(","))
        calib = a.work / "calib"
        shutil.rmtree(calib, ignore_errors=True)
        calib_s = run(convert_cmd(a, calib, c1, c2, (c1, c2), 1), a.work / "calib.log")
        r1, r2 = steady_rate(calib / "stage1" / "metrics.jsonl"), steady_rate(calib / "stage2" / "metrics.jsonl")
        left = a.minutes * 60 - (time.time() - start) - a.allowance_s
        per_token = 1 / r1 + 1 / r2
        tokens = min(a.max_tokens, max(left, 0) / per_token)
        (b1, s1, _), (b2, s2, _) = a.stage1, a.stage2
        steps1, steps2 = max(int(tokens // (b1 * s1)), 2), max(int(tokens // (b2 * s2)), 2)
        sizing = {"calibration_s": round(calib_s, 1), "stage1_tokens_per_s": round(r1), "stage2_tokens_per_s": round(r2),
                  "seconds_left_for_training": round(left), "steps": [steps1, steps2],
                  "tokens": [steps1 * b1 * s1, steps2 * b2 * s2], "shapes": [list(a.stage1), list(a.stage2)],
                  "kernels": kernel_path(), "command": None}
        print("SIZING", json.dumps(sizing), flush=True)
    steps1, steps2 = sizing["steps"]
    evals = (max(steps1 // a.evals, 1), max(steps2 // a.evals, 1))
    cmd = convert_cmd(a, a.work / "run", steps1, steps2, evals, a.eval_blocks, resume=a.resume)
    sizing["command"] = " ".join(cmd[1:])
    sizing_file.write_text(json.dumps(sizing, indent=2))
    sizing["run_s"] = round(run(cmd, a.work / "run.log"), 1)
    sizing["total_s"] = round(time.time() - start, 1)
    run_dir = a.work / "run"
    (a.results / "sizing.json").write_text(json.dumps(sizing, indent=2))
    for src, name in [(run_dir / "summary.json", "summary.json"), (run_dir / "stage1" / "metrics.jsonl", "stage1.jsonl"),
                      (run_dir / "stage2" / "metrics.jsonl", "stage2.jsonl"), (a.work / "run.log", "run.log")]:
        if src.exists():
            shutil.copy(src, a.results / name)
    summary = json.loads((run_dir / "summary.json").read_text())
    print("RESULTS", json.dumps({"timings": summary.get("timings"), "results": summary.get("results")}), flush=True)


if __name__ == "__main__":
    main()
