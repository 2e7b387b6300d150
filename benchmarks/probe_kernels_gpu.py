"""Probe every Triton kernel path at given head dims, each in its own subprocess, and bisect crashes.

Written for the K = 64 crash (SmolLM2: 9 heads of 64; an illegal memory access reported in the GDN chunk kernels on
an H200 with triton 3.6, while K = 128 passes). A CUDA fault kills its context and surfaces at a later launch, so
every probe runs alone, with CUDA_LAUNCH_BLOCKING=1 (the failing launch raises itself) and HYBRIDSERVE_KERNELS=triton
(the dispatch's head-dim guard lifted), several at a time (one GPU, separate contexts). Each probe compares its
outputs (or gradients) with the float32 PyTorch references.

With --bisect, every crashing or wrong probe is re-run in variants that name the culprit:
  * each autotuned kernel of the path pinned to each of its configs in turn (HYBRIDSERVE_TRITON_CONFIG; the
    autotuner runs every config on its first call, so one bad config fails the call even if another would win),
    the other autotuned kernels pinned to their first config;
  * the GDN state pass with other V splits / warp counts, the row-by-row (I + A)^-1 instead of the 16 x 16 blocks;
  * another ptxas: TRITON_PTXAS_PATH set to a CUDA >= 13 ptxas (HYBRIDSERVE_ALT_PTXAS, Triton's own
    backends/nvidia/bin/ptxas-blackwell, or /usr/local/cuda*/bin/ptxas): fla's investigations found ptxas 12.8
    miscompiling Hopper kernels of this family that 13.1 compiles correctly (fla-org/flash-linear-attention#1262);
  * under compute-sanitizer (memcheck) when it is installed, for the first failing probe.

    python benchmarks/probe_kernels_gpu.py --dims 9,64,64 --dims 16,128,128 --bisect --out $OUT
    python benchmarks/probe_kernels_gpu.py --cpu-smoke --dims 2,32,16     # the plumbing, through the interpreter

Writes probes.json and probes.md under --out. Exit status 0 whatever the probes found (a report, not a test).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TOL = dict(o=1e-2, state=1e-2, grad=2e-2)
# the autotuned kernels each probe launches (bisected config by config); the rest run fixed configs
AUTOTUNED = {
    "gdn_chunk": ["_gdn_chunk_prep_kernel", "_gdn_chunk_out_kernel"],
    "gdn_chunk_varlen_pool": ["_gdn_chunk_prep_kernel", "_gdn_chunk_out_kernel"],
    "gdn_chunk_bwd": ["_gdn_chunk_prep_kernel", "_gdn_bwd_dqkw_kernel"],
    "gdn_public_fwd_bwd": ["_gdn_chunk_prep_kernel", "_gdn_chunk_out_kernel", "_gdn_bwd_dqkw_kernel"],
    "gla_chunk": ["_gla_chunk_out_kernel"],
    "gla_chunk_varlen_pool": ["_gla_chunk_out_kernel"],
    "gla_public_fwd_bwd": ["_gla_chunk_out_kernel"],
}
PROBES = ["gdn_recurrent", "gdn_decode_pool", "gdn_chunk", "gdn_chunk_varlen_pool", "gdn_chunk_bwd",
          "gdn_public_fwd_bwd", "gla_recurrent", "gla_decode_pool", "gla_chunk", "gla_chunk_varlen_pool",
          "gla_chunk_bwd", "gla_public_fwd_bwd"]
# extra variants of the GDN chunk forward's non-autotuned state pass (passed to chunk_gdn_fwd)
STATE_VARIANTS = [dict(BV_state=16, num_warps_state=4), dict(BV_state=32, num_warps_state=4),
                  dict(BV_state=16, num_warps_state=8), dict(BV_state=64, num_warps_state=8)]


# ------------------------------------------------------------------------------------------- one probe (child)
def run_one(name: str, dims, dtype_name: str, size, variant: dict) -> dict:
    """Run probe `name` in this process; returns {metric: relative RMSE} (and 'ok')."""
    import torch
    import torch.nn.functional as F

    import check_kernels_gpu as chk

    kernels = chk.load_kernels()
    from hybridserve.kernels.gated_delta_rule.chunk import chunk_gdn_fwd
    from hybridserve.kernels.gated_delta_rule.chunk_bwd import chunk_gdn_bwd
    from hybridserve.kernels.gated_delta_rule.fused_recurrent import fused_recurrent_gdn_fwd
    from hybridserve.kernels.gla.chunk import chunk_gla_fwd
    from hybridserve.kernels.gla.chunk_bwd import chunk_gla_bwd
    from hybridserve.kernels.gla.fused_recurrent import fused_recurrent_gla_fwd

    chk.H, chk.K, chk.V = H, K, V = dims
    dev = chk.DEV
    dtype = getattr(torch, dtype_name)
    B, T = size
    rel = chk.rel_rmse
    q, k, v, g, beta = chk.gdn_inputs(B, T, dtype=dtype, seed=1)
    beta = beta.float()  # as the model passes it (sigmoid in float32); a different kernel specialisation than bf16
    h0 = torch.randn(B, H, K, V, device=dev) * 0.1
    ht = torch.empty(B, H, K, V, device=dev)
    gen = torch.Generator(device=dev).manual_seed(2)
    gk = F.logsigmoid(torch.randn(B, T, H, K, device=dev, generator=gen) * 3 + 2) / 8
    res = {}
    if name == "gdn_recurrent":
        o = fused_recurrent_gdn_fwd(q, k, v, g, beta, initial_state=h0, final_state=ht)
        ro, rs = chk.ref_gdn(q, k, v, g, beta, h0, chunk=False)
        res = dict(o=rel(o, ro), state=rel(ht, rs))
    elif name in ("gdn_decode_pool", "gla_decode_pool"):
        pool = torch.randn(B + 3, H, K, V, device=dev) * 0.1
        before = pool.clone()
        idx = torch.arange(B, device=dev) + 2
        idx[0] = -1  # a padding row
        if name == "gdn_decode_pool":
            a, b = torch.randn(B, H, device=dev), torch.randn(B, H, device=dev)
            A_log, dt_bias = torch.rand(H, device=dev), torch.rand(H, device=dev)
            o = kernels.gdn_decode_(q[:, 0], k[:, 0], v[:, 0], a, b, A_log, dt_bias, pool, idx)
            gg = -A_log.exp() * F.softplus(a + dt_bias)
            ro, rs = chk.ref_gdn(q[1:, :1], k[1:, :1], v[1:, :1], gg[1:, None], torch.sigmoid(b)[1:, None],
                                 before[idx[1:]], chunk=False)
        else:
            o = kernels.gla_decode_(q[:, 0], k[:, 0], v[:, 0], gk[:, 0], pool, idx)
            ro, rs = chk.ref_gla(q[1:, :1], k[1:, :1], v[1:, :1], gk[1:, :1], before[idx[1:]], chunk=False)
        res = dict(o=rel(o[1:, None], ro), state=rel(pool[idx[1:]], rs))
        res["untouched"] = float(not torch.equal(pool[:2], before[:2]))  # 0.0 when the padding/unused slots held
    elif name == "gdn_chunk":
        o = chunk_gdn_fwd(q, k, v, g, beta, None, initial_state=h0, final_state=ht, **variant)
        ro, rs = chk.ref_gdn(q, k, v, g, beta, h0)
        res = dict(o=rel(o, ro), state=rel(ht, rs))
    elif name in ("gdn_chunk_varlen_pool", "gla_chunk_varlen_pool"):
        cut = [0, 1, T // 2, T - 3, T]  # lengths 1, T/2 - 1, T/2 - 3, 3 (chunk tails everywhere)
        cu = torch.tensor(cut, dtype=torch.int32, device=dev)
        slots = [3, -1, 0, 2]
        pool = torch.randn(5, H, K, V, device=dev) * 0.1
        before = pool.clone()
        idx = torch.tensor(slots, device=dev)
        if name == "gdn_chunk_varlen_pool":
            o = kernels.gdn_prefill_varlen(q[:1], k[:1], v[:1], g[:1], beta[:1], cu, pool, idx)
        else:
            o = kernels.gla_prefill_varlen(q[:1], k[:1], v[:1], gk[:1], cu, pool, idx)
        errs_o, errs_s = [], []
        for n, s in enumerate(slots):
            a_, b_ = cut[n], cut[n + 1]
            h = before[s:s + 1] if s >= 0 else None
            if name == "gdn_chunk_varlen_pool":
                ro, rs = chk.ref_gdn(q[:1, a_:b_], k[:1, a_:b_], v[:1, a_:b_], g[:1, a_:b_], beta[:1, a_:b_], h)
            else:
                ro, rs = chk.ref_gla(q[:1, a_:b_], k[:1, a_:b_], v[:1, a_:b_], gk[:1, a_:b_], h)
            errs_o.append(rel(o[:, a_:b_], ro))
            if s >= 0:
                errs_s.append(rel(pool[s:s + 1], rs))
        res = dict(o=max(errs_o), state=max(errs_s), untouched=float(not torch.equal(pool[[1, 4]], before[[1, 4]])))
    elif name in ("gdn_chunk_bwd", "gla_chunk_bwd"):
        do = torch.randn_like(v)
        dht = torch.randn(B, H, K, V, device=dev)
        if name == "gdn_chunk_bwd":
            grads = chunk_gdn_bwd(q, k, v, g, beta, K**-0.5, h0, do, dht)
            ys = [x.float().requires_grad_(True) for x in (q, k, v, g, beta, h0)]
            ro, rs = chk.ref_gdn(*ys[:5], ys[5])
            names = ["dq", "dk", "dv", "dg", "dbeta", "dh0"]
        else:
            grads = chunk_gla_bwd(q, k, v, gk, K**-0.5, h0, do, dht)
            ys = [x.float().requires_grad_(True) for x in (q, k, v, gk, h0)]
            ro, rs = chk.ref_gla(*ys[:4], ys[4])
            names = ["dq", "dk", "dv", "dgk", "dh0"]
        ((ro * do.float()).sum() + (rs * dht).sum()).backward()
        res = {n: rel(gr, y.grad) for n, gr, y in zip(names, grads, ys)}
    elif name in ("gdn_public_fwd_bwd", "gla_public_fwd_bwd"):
        xs = (q, k, v, g, beta) if name.startswith("gdn") else (q, k, v, gk)
        fn = kernels.chunk_gated_delta_rule if name.startswith("gdn") else kernels.chunk_gla
        ref = chk.ref_gdn if name.startswith("gdn") else chk.ref_gla
        leaves = [x.clone().requires_grad_(True) for x in xs]
        o, _ = fn(*leaves)
        do = torch.randn_like(o)
        o.backward(do)
        ys = [x.float().requires_grad_(True) for x in xs]
        ro, _ = ref(*ys, None)
        ro.backward(do.float())
        res = dict(o=rel(o, ro))
        res.update({f"d{i}": rel(x.grad, y.grad) for i, (x, y) in enumerate(zip(leaves, ys))})
    elif name == "gla_recurrent":
        o = fused_recurrent_gla_fwd(q, k, v, gk, initial_state=h0, final_state=ht)
        ro, rs = chk.ref_gla(q, k, v, gk, h0, chunk=False)
        res = dict(o=rel(o, ro), state=rel(ht, rs))
    elif name == "gla_chunk":
        o = chunk_gla_fwd(q, k, v, gk, None, initial_state=h0, final_state=ht)
        ro, rs = chk.ref_gla(q, k, v, gk, h0)
        res = dict(o=rel(o, ro), state=rel(ht, rs))
    else:
        raise ValueError(f"unknown probe {name}")
    if dev == "cuda":
        torch.cuda.synchronize()
    tol = {m: (0.0 if m == "untouched" else TOL["o"] if m in ("o", "state") else TOL["grad"]) for m in res}
    res["ok"] = float(all(v_ == v_ and v_ <= tol[m] for m, v_ in res.items()))  # NaN fails
    return res


# ------------------------------------------------------------------------------------------ orchestration
def newer_ptxas() -> str | None:
    """A ptxas from CUDA >= 13 to compile Hopper code with instead of Triton's bundled 12.8 (None if none):
    HYBRIDSERVE_ALT_PTXAS if set (e.g. a carried triton 3.7.1 ptxas-blackwell, CUDA 13.1), Triton's own
    ptxas-blackwell (12.9 in triton 3.6: too old), a CUDA toolkit's."""
    cands = [os.environ["HYBRIDSERVE_ALT_PTXAS"]] if os.environ.get("HYBRIDSERVE_ALT_PTXAS") else []
    try:
        import triton

        cands.append(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas-blackwell"))
    except ImportError:
        pass
    cands += sorted(glob.glob("/usr/local/cuda*/bin/ptxas"), reverse=True)
    for c in cands:
        v = ptxas_version(c)
        if v and int(v.split(".")[0]) >= 13:
            return c
    return None


def ptxas_version(path: str) -> str | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else None


def sanitizer() -> str | None:
    return shutil.which("compute-sanitizer") or next(iter(sorted(glob.glob(
        "/usr/local/cuda*/compute-sanitizer/compute-sanitizer") + glob.glob("/usr/local/cuda*/bin/compute-sanitizer"),
        reverse=True)), None)


class Runner:
    def __init__(self, smoke: bool, size, timeout: float, deadline: float):
        self.smoke, self.size, self.timeout, self.deadline = smoke, size, timeout, deadline

    def run(self, name, dims, dtype="bfloat16", env=None, variant=None, wrap=(), label=""):
        """One probe in a fresh process -> a result row."""
        row = dict(probe=name, dims=list(dims), dtype=dtype, variant=label or "default")
        if time.time() > self.deadline:
            return dict(row, status="SKIPPED (time budget)")
        cmd = [*wrap, sys.executable, __file__, "--one", name, "--dims", ",".join(map(str, dims)), "--dtype", dtype,
               "--size", ",".join(map(str, self.size)), "--variant", json.dumps(variant or {})]
        if self.smoke:
            cmd.append("--cpu-smoke")
        full_env = dict(os.environ, CUDA_LAUNCH_BLOCKING="1", HYBRIDSERVE_KERNELS="triton", **(env or {}))
        t0 = time.time()
        # own process group: a timeout kills compute-sanitizer's python child too, not only the direct child
        proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=min(self.timeout, max(10.0, self.deadline - time.time())))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return dict(row, status="TIMEOUT", seconds=round(time.time() - t0, 1))
        row["seconds"] = round(time.time() - t0, 1)
        out = [ln for ln in stdout.splitlines() if ln.startswith("PROBE ")]
        if proc.returncode == 0 and out:
            res = json.loads(out[-1][6:])
            ok = res.pop("ok") == 1.0
            return dict(row, status="PASS" if ok else "WRONG", errors=res)
        return dict(row, status="CRASH", kernel=culprit(stderr), error=last_error(stderr),
                    stderr_tail=(stderr or "")[-3000:], stdout_tail=(stdout or "")[-2000:])


def culprit(stderr: str) -> str | None:
    """The Triton kernel whose launch raised (the innermost kernel name in the traceback)."""
    names = re.findall(r"(_(?:gdn|gla)_\w+_kernel)", stderr or "")
    return names[-1] if names else None


def last_error(stderr: str) -> str:
    lines = [ln for ln in (stderr or "").splitlines() if "Error" in ln or "error" in ln]
    return (lines[-1] if lines else (stderr or "").strip()[-200:])[:300]


def n_configs(kernel: str) -> int:
    """How many autotune configs `kernel` has (its module imported without pins, nothing launched)."""
    import check_kernels_gpu as chk

    chk.load_kernels()
    from hybridserve.kernels.gated_delta_rule import chunk as gc
    from hybridserve.kernels.gated_delta_rule import chunk_bwd as gb
    from hybridserve.kernels.gla import chunk as lc

    table = {"_gdn_chunk_prep_kernel": gc._prep_configs, "_gdn_chunk_out_kernel": gc._out_configs,
             "_gdn_bwd_dqkw_kernel": gb._dqk_configs, "_gla_chunk_out_kernel": lc._out_configs}
    saved = os.environ.pop("HYBRIDSERVE_TRITON_CONFIG", None)
    try:
        return len(table[kernel]())
    finally:
        if saved is not None:
            os.environ["HYBRIDSERVE_TRITON_CONFIG"] = saved


def bisect(runner: Runner, bad: dict, counts: dict, alt_ptxas: str | None, sanitizer_path: str | None,
           first: bool) -> list:
    """Variants of one failing probe (see the module docstring)."""
    name, dims, dtype = bad["probe"], bad["dims"], bad["dtype"]
    jobs = []
    tuned = AUTOTUNED.get(name, [])
    base = {kn: 0 for kn in tuned}
    if tuned:
        jobs.append(dict(env={"HYBRIDSERVE_TRITON_CONFIG": pins(base)}, label="every autotuned kernel at config 0"))
    for kn in tuned:
        for i in range(1, counts[kn]):
            jobs.append(dict(env={"HYBRIDSERVE_TRITON_CONFIG": pins(dict(base, **{kn: i}))},
                             label=f"{kn} config {i} (others 0)"))
    if name == "gdn_chunk":
        for sv in STATE_VARIANTS:
            jobs.append(dict(variant=sv, env={"HYBRIDSERVE_TRITON_CONFIG": pins(base)},
                             label=f"state pass {sv} (autotuned at config 0)"))
    if name.startswith("gdn_chunk") or name == "gdn_public_fwd_bwd":
        jobs.append(dict(env={"HYBRIDSERVE_GDN_BLOCKED_INVERSE": "0"}, label="row-by-row (I + A)^-1"))
    if alt_ptxas:
        jobs.append(dict(env={"TRITON_PTXAS_PATH": alt_ptxas, "TRITON_CACHE_DIR": "/tmp/hybridserve-triton-ptxas13"},
                         label=f"ptxas {ptxas_version(alt_ptxas)} ({alt_ptxas})"))
    with ThreadPoolExecutor(max_workers=runner_workers(runner)) as pool:
        rows = list(pool.map(lambda j: runner.run(name, dims, dtype, env=j.get("env"), variant=j.get("variant"),
                                                  label=j["label"]), jobs))
    if sanitizer_path and first and bad["status"] == "CRASH":
        rows.append(runner.run(name, dims, dtype, wrap=(sanitizer_path, "--tool", "memcheck", "--print-limit", "20"),
                               label="compute-sanitizer memcheck"))
    return rows


def runner_workers(runner: Runner) -> int:
    return 1 if runner.smoke else WORKERS[0]


WORKERS = [6]


def pins(d: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in d.items())


def markdown(info: dict, rows: list, bisects: list) -> str:
    out = ["# Kernel probes (one subprocess each, CUDA_LAUNCH_BLOCKING=1, head-dim guard lifted)\n",
           " | ".join(f"{k} {v}" for k, v in info.items()) + "\n",
           "| H, K, V | dtype | probe | variant | result | culprit / errors (rel RMSE vs float32 reference) | s |",
           "|---|---|---|---|---|---|---|"]

    def line(r):
        if r["status"] in ("PASS", "WRONG"):
            detail = ", ".join(f"{k} {v:.1e}" for k, v in r["errors"].items())
        else:
            detail = f"{r.get('kernel') or '?'}: {r.get('error', '')}".replace("|", "/")
        status = r["status"] if r["status"] == "PASS" else f"**{r['status']}**"
        return (f"| {','.join(map(str, r['dims']))} | {r['dtype']} | {r['probe']} | {r['variant']} | {status} | "
                f"{detail} | {r.get('seconds', '')} |")

    out += [line(r) for r in rows]
    if bisects:
        out.append("\n## Bisection of the failing probes\n")
        out += ["| H, K, V | dtype | probe | variant | result | culprit / errors | s |",
                "|---|---|---|---|---|---|---|"]
        out += [line(r) for r in bisects]
        for r in bisects:
            if r["variant"] == "compute-sanitizer memcheck":
                out.append("\n### compute-sanitizer\n\n```\n" + (r.get("stdout_tail", "") + r.get("stderr_tail", ""))
                           [-4000:] + "\n```")
    n_bad = sum(r["status"] != "PASS" for r in rows)
    out.append(f"\n{len(rows) - n_bad}/{len(rows)} probes passed.")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dims", action="append", default=[], help="H,K,V (repeatable)")
    ap.add_argument("--dtype", action="append", default=[], help="bfloat16 (default) and/or float32")
    ap.add_argument("--probes", default=",".join(PROBES))
    ap.add_argument("--size", default="8,1000", help="B,T of the probe inputs (T crosses chunk boundaries)")
    ap.add_argument("--bisect", action="store_true", help="re-run failing probes in variants (module docstring)")
    ap.add_argument("--workers", type=int, default=6, help="probes at a time")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds per probe")
    ap.add_argument("--budget-s", type=float, default=280.0, help="start no probe after this many seconds")
    ap.add_argument("--out", default=os.environ.get("OUT"))
    ap.add_argument("--cpu-smoke", action="store_true")
    ap.add_argument("--bisect-all", action="store_true", help=argparse.SUPPRESS)  # exercises --bisect's plumbing
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--variant", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cpu_smoke:
        import check_kernels_gpu as chk

        chk.setup_cpu_smoke()
    if args.one:  # child: one probe, one line of JSON
        dims = tuple(int(x) for x in args.dims[0].split(","))
        size = tuple(int(x) for x in args.size.split(","))
        res = run_one(args.one, dims, args.dtype[0] if args.dtype else "bfloat16", size, json.loads(args.variant))
        print("PROBE " + json.dumps(res), flush=True)
        return
    t0 = time.time()
    WORKERS[0] = max(1, args.workers)
    dims_list = [tuple(int(x) for x in d.split(",")) for d in (args.dims or ["9,64,64", "16,128,128"])]
    size = tuple(int(x) for x in args.size.split(",")) if not args.cpu_smoke else (2, 70)
    runner = Runner(args.cpu_smoke, size, args.timeout, t0 + args.budget_s)
    alt, san = newer_ptxas(), sanitizer()
    info = dict(python=sys.version.split()[0], size=f"B,T = {size}", newer_ptxas=alt, compute_sanitizer=san)
    try:
        import torch
        import triton

        info.update(torch=torch.__version__, triton=triton.__version__,
                    gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else "none (interpreter)")
        info["bundled_ptxas"] = ptxas_version(triton.knobs.nvidia.ptxas.path)
    except Exception as e:  # report what is known
        info["env_error"] = f"{type(e).__name__}: {e}"
    jobs = [(n, d, dt) for d in dims_list for dt in (args.dtype or ["bfloat16"]) for n in args.probes.split(",")]
    with ThreadPoolExecutor(max_workers=runner_workers(runner)) as pool:
        rows = list(pool.map(lambda j: runner.run(*j), jobs))
    for r in rows:
        print(f"{r['status']:>8} {r['probe']} {r['dims']} {r['dtype']} {r.get('kernel') or ''} "
              f"{r.get('errors') or r.get('error', '')}", flush=True)
    bisects = []
    if args.bisect or args.bisect_all:
        bad = [r for r in rows if r["status"] in ("CRASH", "WRONG", "TIMEOUT") or args.bisect_all]
        counts = {kn: n_configs(kn) for kns in AUTOTUNED.values() for kn in kns} if bad else {}
        for i, r in enumerate(bad):
            bisects += bisect(runner, r, counts, alt, san, first=i == 0)
        for r in bisects:
            print(f"  bisect {r['status']:>8} {r['probe']} {r['dims']} {r['variant']} {r.get('kernel') or ''}",
                  flush=True)
    info["seconds"] = round(time.time() - t0)
    md = markdown(info, rows, bisects)
    print("\n" + md)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        Path(args.out, "probes.json").write_text(json.dumps(dict(info=info, probes=rows, bisect=bisects), indent=1))
        Path(args.out, "probes.md").write_text(md)


if __name__ == "__main__":
    main()
