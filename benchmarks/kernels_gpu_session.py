"""One GPU session for the kernels issue: probes, correctness at real sizes, backward timings; one report.

Stages, each in its own process (a CUDA fault, a hang or an OOM ends that stage only) under a shared time budget:
  1. probes    benchmarks/probe_kernels_gpu.py: every kernel path at H,K,V = 9,64,64 (SmolLM2) and 16,128,128, one
               subprocess each with CUDA_LAUNCH_BLOCKING=1, failures bisected (autotune configs, state-pass splits,
               row-by-row inverse, CUDA 13 ptxas, compute-sanitizer if installed)
  2. check     benchmarks/check_kernels_gpu.py at 16,128,128 (full sizes), then --quick at 9,64,64 with the
               head-dim guard lifted (HYBRIDSERVE_KERNELS=triton)
  3. timings   benchmarks/kernels_bwd.py: GDN fwd+bwd at 1x4K and 8x32K (ours / fla guard-bypassed / reference),
               our GDN backward alone, the blocked 16x16 inverse vs row by row, GLA fwd+bwd
Writes $OUT/session.md (all reports, in order, with each stage's status and time) and $OUT/session.json, plus each
stage's own files. Nothing here needs hybridserve installed (the kernels load from this checkout) or the network.

    python benchmarks/kernels_gpu_session.py --out $OUT            # <= ~7.5 minutes on an H200
    python benchmarks/kernels_gpu_session.py --cpu-smoke --out DIR  # the plumbing, through the interpreter
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_stage(name, cmd, out: Path, cap_s: float, deadline: float, env=None) -> dict:
    """Run one stage with a timeout of min(cap, what is left); its output goes to OUT/<name>.log."""
    left = deadline - time.time()
    rec = dict(stage=name, command=" ".join(cmd))
    if left < 20:
        return dict(rec, status="skipped (time budget)", seconds=0)
    t0 = time.time()
    log = out / f"{name}.log"
    with open(log, "w") as f:
        rc = run_group(cmd, f, min(cap_s, left), dict(os.environ, **(env or {})))
    status = "ok" if rc == 0 else f"timed out after {min(cap_s, left):.0f} s" if rc is None else f"exit {rc}"
    rec.update(status=status, seconds=round(time.time() - t0))
    print(f"[{name}] {status} in {rec['seconds']} s", flush=True)
    return rec


def run_group(cmd, stdout, timeout: float, env: dict):
    """Run cmd in its own process group; on timeout kill the whole group (a stage's own subprocesses too, so nothing
    keeps the GPU busy behind the next stage). Returns the exit status, or None after a timeout."""
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


def tail(path: Path, n=60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no output)"


def check_table(out: Path, name: str) -> str:
    """check_kernels_gpu.py's rows (its --json) as a table; the log's tail when the stage ended without them."""
    try:
        rows = json.loads((out / f"{name}.json").read_text())
    except (OSError, ValueError):
        return "```\n" + tail(out / f"{name}.log", 80) + "\n```"
    fmt = lambda x: "–" if x != x else f"{x:.2e}"  # noqa: E731  (NaN: a flag row)
    lines = ["| check | against | rel RMSE | max abs | tol | result |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['check']} | {r['against']} | {fmt(r['rel_rmse'])} | {fmt(r['max_abs'])} | "
              f"{r['tol'] or '–'} | {'PASS' if r['ok'] else '**FAIL**'} |" for r in rows]
    n_ok = sum(r["ok"] for r in rows)
    return "\n".join(lines) + f"\n\n{n_ok}/{len(rows)} checks passed."


def section(out: Path, title: str, md_name: str | None, log_name: str, rec: dict) -> str:
    body = f"## {title}\n\n`{rec['command']}`: **{rec['status']}**, {rec['seconds']} s\n\n"
    md = out / md_name if md_name else None
    if md is not None and md.exists():
        body += md.read_text()
    else:
        body += "```\n" + tail(out / log_name) + "\n```"
    return body + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT"), required=os.environ.get("OUT") is None)
    ap.add_argument("--budget-s", type=float, default=450.0, help="the whole session (the device allows 600 s)")
    ap.add_argument("--cpu-smoke", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    deadline = t0 + args.budget_s
    py = sys.executable
    smoke = ["--cpu-smoke"] if args.cpu_smoke else []
    dims = ["--dims", "2,32,16"] if args.cpu_smoke else ["--dims", "9,64,64", "--dims", "16,128,128"]
    probes = [py, str(HERE / "probe_kernels_gpu.py"), *dims, "--bisect", "--out", str(out), "--workers", "8",
              "--budget-s", "130", "--timeout", "120", *smoke]
    if args.cpu_smoke:
        probes += ["--probes", "gdn_chunk,gla_chunk_bwd"]
    recs = [run_stage("probes", probes, out, 190, deadline)]
    recs.append(run_stage("check_128", [py, str(HERE / "check_kernels_gpu.py"), "--json", str(out / "check_128.json"),
                                        *smoke], out, 110, deadline - 150))
    recs.append(run_stage("check_64", [py, str(HERE / "check_kernels_gpu.py"), "--quick", "--dims",
                                       "2,32,16" if args.cpu_smoke else "9,64,64", "--json",
                                       str(out / "check_64.json"), *smoke], out, 70, deadline - 120,
                          env={"HYBRIDSERVE_KERNELS": "triton"}))
    left = deadline - time.time()
    recs.append(run_stage("timings", [py, str(HERE / "kernels_bwd.py"), "--out", str(out), "--budget-s",
                                      str(max(30, int(left - 40))), *smoke], out, left, deadline))
    md = [f"# Kernel GPU session ({time.time() - t0:.0f} s)\n",
          "| stage | status | s |", "|---|---|---|"] + [f"| {r['stage']} | {r['status']} | {r['seconds']} |"
                                                      for r in recs]
    md.append("")
    md.append(section(out, "1. Probes", "probes.md", "probes.log", recs[0]))
    md.append("## 2. Correctness at real sizes\n")
    for rec, name in ((recs[1], "check_128"), (recs[2], "check_64")):
        md.append(f"`{rec['command']}`: **{rec['status']}**, {rec['seconds']} s\n\n{check_table(out, name)}\n")
    md.append(section(out, "3. Timings", "kernels_bwd.md", "timings.log", recs[3]))
    (out / "session.md").write_text("\n".join(md))
    results = dict(stages=recs)
    for name in ("probes.json", "check_128.json", "check_64.json", "kernels_bwd.json"):
        p = out / name
        if p.exists():
            try:
                results[name] = json.loads(p.read_text())
            except ValueError:
                results[name] = "unreadable"
    (out / "session.json").write_text(json.dumps(results, indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main()
