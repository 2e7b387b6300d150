"""Per-call cost of one serving linear-attention layer on one CUDA GPU, without vLLM.

Splits what a hybrid's linear layer costs per step into host overhead, state traffic and the rest. Each row runs
the functions `serve/linear_layer.py` runs (`serve/linear_core.py`: `plan_step`, `linear_attention_core`,
`gated_rms_norm`), on a synthetic vLLM-style batch:

* part `op`: what runs inside the layer's custom op (short conv, activations, the recurrence over the state pool)
  — in vLLM this is a graph-splitting op, run eagerly between piecewise CUDA graphs for prefill, captured whole in
  the FULL decode graph;
* part `layer`: in_proj → op → gated RMSNorm → out_proj (plain F.linear standing in for vLLM's unquantised
  linears);
* part `plan`: the per-step tensors the layer shares between all its linear layers (built once per step).

Columns: `host` = host time to issue one call (the GPU kept busy by a sleep kernel meanwhile, so the host never
waits); `eager` = wall time per call when calls run back to back eagerly (max of host and device, as vLLM's eager
prefill pays); `device` = GPU time per call with no host gaps (CUDA events around calls issued behind the sleep);
`graph` = per call when replayed from a CUDA graph (decode, as vLLM's FULL decode graphs run it; for prefill, the
op alone, which says whether it can be captured and what a call costs when the host is out of the way); `state MB` =
recurrent + conv state bytes read and written per call; `floor` = those bytes at the device-to-device copy
bandwidth measured in the same run; `GB/s` = state bytes over the graph time (decode) or the device time
(prefill). Calls rotate over `--layers` separate pools (as consecutive layers do), so a state never sits in L2
from one call to the next.

    python benchmarks/serve_layer_gpu.py [--out DIR]           # defaults: GDN, hidden 1536, 12 heads, K = V = 128
    python benchmarks/serve_layer_gpu.py --mixer gla --decode 64,512 --prefill 8x1024,256+15x1024 --no-conv
    python benchmarks/serve_layer_gpu.py --cpu-smoke           # toy sizes on CPU (PyTorch references, wall-clock
                                                               # stand-ins for the CUDA timers): plumbing only

Needs torch (+ triton on the GPU); imports hybridserve from this checkout when it is not installed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def load_core():
    """hybridserve.serve.linear_core, installed or straight from this checkout (the GPU image has no hybridserve):
    the checkout's folders are the package's subpackages, so a bare `hybridserve` package rooted there finds
    them. Neither module imports vLLM."""
    try:
        return importlib.import_module("hybridserve.serve.linear_core")
    except ModuleNotFoundError as e:
        if e.name != "hybridserve":  # installed but incomplete (a package missing from the wheel): say so
            raise
    pkg = types.ModuleType("hybridserve")
    pkg.__path__ = [str(ROOT)]
    sys.modules["hybridserve"] = pkg
    return importlib.import_module("hybridserve.serve.linear_core")


core = load_core()
DEV = "cuda"
SMOKE = False


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------------ timers
def _sleep_cycles(seconds: float) -> int:
    return int(seconds * 2.0e9)  # H200 SM clock under load ~1.98 GHz; generous is fine


def time_eager(fn, calls: int, repeats: int = 3) -> dict:
    """host, eager and device ms per call of fn(i) for i in range(calls) (median of repeats)."""
    fn(0)
    sync()
    hosts, eagers, devices = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(calls):
            fn(i)
        sync()
        eagers.append((time.perf_counter() - t0) * 1e3 / calls)
        if DEV != "cuda":
            hosts.append(eagers[-1])
            devices.append(eagers[-1])
            continue
        # Keep the GPU busy for longer than the host takes to issue everything: the host never waits on the queue
        # (pure issue time) and the calls then run back to back on the device (pure device time).
        torch.cuda._sleep(_sleep_cycles(max(eagers[-1], 0.05) * 1e-3 * calls * 3 + 2e-3))
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        t0 = time.perf_counter()
        for i in range(calls):
            fn(i)
        hosts.append((time.perf_counter() - t0) * 1e3 / calls)
        end.record()
        sync()
        devices.append(start.elapsed_time(end) / calls)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    return {"host_ms": med(hosts), "eager_ms": med(eagers), "device_ms": med(devices)}


def time_graph(fn, calls: int, replays: int = 20, repeats: int = 5) -> float | None:
    """ms per call of fn(0..calls-1) captured in one CUDA graph (median of repeats); None on CPU."""
    if DEV != "cuda":
        return None
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for i in range(calls):
            fn(i)
    torch.cuda.current_stream().wait_stream(s)
    sync()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(calls):
            fn(i)
    g.replay()
    sync()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(replays):
            g.replay()
        b.record()
        sync()
        times.append(a.elapsed_time(b) / (replays * calls))
    del g
    return sorted(times)[len(times) // 2]


def copy_bandwidth() -> float | None:
    """Device-to-device copy, bytes read + written per second (the ceiling for state traffic)."""
    if DEV != "cuda":
        return None
    a = torch.empty(1 << 29, device=DEV, dtype=torch.float32)  # 2 GiB
    b = torch.empty_like(a)
    b.copy_(a)
    sync()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        b.copy_(a)
    end.record()
    sync()
    bw = 2 * a.numel() * 4 * 10 / (start.elapsed_time(end) * 1e-3)
    del a, b
    torch.cuda.empty_cache()
    return bw


# ------------------------------------------------------------------------------------------------ one layer
class Layer:
    """One linear layer's weights and `layers` separate state pools (pool i stands for the i-th linear layer of
    the model), with the shapes the vLLM layer has on one rank."""

    def __init__(self, args, conv: bool, state_dtype: torch.dtype, slots: int):
        dt, dev = args.dtype, DEV
        self.shape = core.LayerShape(args.mixer, args.heads, args.kv_heads, args.key_dim, args.value_dim, True,
                                     16.0 if args.mixer == "gla" else None)
        s = self.shape
        g = torch.Generator(device="cpu").manual_seed(0)

        def rand(*shape, std=1.0, dtype=dt):
            return (torch.randn(*shape, generator=g) * std).to(device=dev, dtype=dtype)

        d = args.hidden
        self.in_w = rand(sum(s.in_sizes), d, std=d**-0.5)
        self.out_w = rand(d, s.H * s.V, std=(s.H * s.V) ** -0.5)
        self.norm_w = torch.ones(s.V, device=dev, dtype=dt)
        self.A_log = self.dt_bias = self.gk_down = self.gk_up = None
        if s.mixer == "gdn":
            self.A_log = torch.empty(s.H).uniform_(1, 16, generator=g).log().to(dev)
            self.dt_bias = torch.full((s.H,), math.log(math.expm1(0.01)), device=dev)
        else:
            self.gk_down = rand(16, d, std=d**-0.5)
            self.gk_up = rand(s.H * s.K, 16, std=0.25)
        C = sum(s.qkv_sizes)
        self.conv_w = rand(C, 1, args.conv_size, std=0.5) if conv else None
        self.recurrent = [torch.zeros(slots, s.H, s.K, s.V, device=dev, dtype=state_dtype)
                          for _ in range(args.layers)]
        self.conv_state = [torch.zeros(slots, C, args.conv_size - 1, device=dev, dtype=dt) if conv else None
                           for _ in range(args.layers)]

    def inputs(self, tokens: int, hidden: int):
        """A hidden-state batch and its projections (so the op alone can be timed on realistic inputs)."""
        g = torch.Generator(device="cpu").manual_seed(1)
        x = torch.randn(tokens, hidden, generator=g).to(device=DEV, dtype=self.in_w.dtype)
        projected = F.linear(x, self.in_w)
        return x, projected, self.gate_logits(x)

    def gate_logits(self, x):
        return None if self.gk_down is None else F.linear(F.linear(x, self.gk_down), self.gk_up)

    def op(self, i: int, projected, gk, out, plan):
        core.linear_attention_core(self.shape, projected, gk, out, plan, self.recurrent[i], self.conv_state[i],
                                   self.conv_w, self.A_log, self.dt_bias)

    def layer(self, i: int, x, out, plan):
        """The vLLM layer's forward: in_proj, the op, gated RMSNorm, out_proj."""
        s = self.shape
        projected = F.linear(x, self.in_w)
        core_out = torch.empty(x.shape[0], s.H * s.V, dtype=x.dtype, device=x.device)
        self.op(i, projected, self.gate_logits(x), core_out, plan)
        start = sum(s.qkv_sizes)
        gate = projected[:, start: start + s.H * s.V]
        o = core.gated_rms_norm(core_out, gate, self.norm_w, 1e-5, s, x.dtype)
        out.copy_(F.linear(o, self.out_w))

    def state_bytes(self, n_seq: int, read_recurrent: bool) -> int:
        """Recurrent (+ conv) state bytes one call moves: decode reads and writes each state; a fresh prefill
        writes the recurrent state only, and reads + writes the conv state (gather, then index_copy)."""
        r = self.recurrent[0]
        rec = n_seq * r[0].numel() * r.element_size() * (2 if read_recurrent else 1)
        c = self.conv_state[0]
        return rec + (0 if c is None else 2 * n_seq * c[0].numel() * c.element_size())


# ------------------------------------------------------------------------------------------------ rows
ROWS: list[dict] = []
HOST_PROFILES: list[str] = []  # --host-profile: where each row's op spends its host time


def host_profile(label: str, fn, calls: int, top: int = 25) -> None:
    """cProfile of `calls` op calls with the GPU kept busy (a sleep kernel ahead of them, as in time_eager), so the
    host never waits on the queue: the profile is pure issue time, by Python function (Triton's launcher, torch
    allocations, our wrappers)."""
    import cProfile
    import io
    import pstats

    fn(0)
    sync()
    if DEV == "cuda":
        torch.cuda._sleep(_sleep_cycles(0.05 + calls * 2e-3))
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for i in range(calls):
        fn(i)
    prof.disable()
    wall = (time.perf_counter() - t0) * 1e6 / calls
    sync()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(top)
    HOST_PROFILES.append(f"## {label}: {wall:.0f} us host per call under cProfile ({calls} calls)\n\n"
                         + text.getvalue())


def report(**kw):
    ROWS.append(kw)
    print("ROW", json.dumps(kw), flush=True)


def decode_rows(args, conv: bool, state_dtype: torch.dtype, batch: int, copy_bw):
    L = args.layers
    layer = Layer(args, conv, state_dtype, batch + 1)  # slot 0 unused, as vLLM's null block
    x, projected, gk = layer.inputs(batch, args.hidden)
    slots = (torch.randperm(batch, generator=torch.Generator().manual_seed(2)) + 1).to(DEV, torch.int32)
    qsl = torch.arange(batch + 1, device=DEV, dtype=torch.int32)
    seq_lens = torch.full((batch,), 1024, device=DEV, dtype=torch.int32)
    make_plan = lambda: core.plan_step(batch, batch, 0, 0, qsl, seq_lens, slots,  # noqa: E731
                                       args.conv_size if conv else None)
    plan = make_plan()
    out = torch.empty(batch, args.heads * args.value_dim, device=DEV, dtype=args.dtype)
    hidden_out = torch.empty_like(x)
    nbytes = layer.state_bytes(batch, read_recurrent=True)
    floor = nbytes / copy_bw * 1e3 if copy_bw else None
    common = dict(step="decode", batch=batch, tokens=batch, mixer=args.mixer, conv=conv,
                  state=str(state_dtype).replace("torch.", ""), state_MB=nbytes / 1e6,
                  floor_ms=floor)
    for part, fn in (("op", lambda i: layer.op(i % L, projected, gk, out, plan)),
                     ("layer", lambda i: layer.layer(i % L, x, hidden_out, plan))):
        t = time_eager(fn, L * args.calls_per_layer)
        t["graph_ms"] = time_graph(fn, L)
        best = t["graph_ms"] or t["device_ms"]
        report(part=part, **common, **t, GBps=nbytes / (best * 1e-3) / 1e9 if part == "op" else None)
        if part == "op" and args.host_profile:
            host_profile(f"decode {batch}, {common['state']} state, conv {conv}", fn, 40)
    if conv:  # without a conv the decode plan is views only: nothing to time
        t = time_eager(lambda i: make_plan(), 8)
        t["graph_ms"] = time_graph(lambda i: make_plan(), 1)
        report(part="plan", **dict(common, state_MB=0.0, floor_ms=None), **t, GBps=None)


def prefill_rows(args, conv: bool, state_dtype: torch.dtype, n_seq: int, seq_len: int, copy_bw, decodes: int = 0):
    """n_seq fresh prompts of seq_len tokens, after `decodes` one-token requests (a mixed step, as vLLM's chunked
    prefill runs them while earlier requests decode; decode-first, as vLLM orders a batch)."""
    L = args.layers
    P = n_seq * seq_len
    T = decodes + P
    layer = Layer(args, conv, state_dtype, decodes + n_seq + 1)
    x, projected, gk = layer.inputs(T, args.hidden)
    slots = torch.arange(1, decodes + n_seq + 1, device=DEV, dtype=torch.int32)
    qsl = torch.cat([torch.arange(0, decodes, device=DEV, dtype=torch.int32),
                     torch.arange(decodes, T + 1, seq_len, device=DEV, dtype=torch.int32)])
    # decodes continue a 1024-token context (their state is read); prompts are fresh (no earlier state)
    seq_lens = torch.cat([torch.full((decodes,), 1024, device=DEV, dtype=torch.int32),
                          torch.full((n_seq,), seq_len, device=DEV, dtype=torch.int32)])
    make_plan = lambda: core.plan_step(decodes, decodes, n_seq, P, qsl, seq_lens, slots,  # noqa: E731
                                       args.conv_size if conv else None)
    plan = make_plan()
    out = torch.empty(T, args.heads * args.value_dim, device=DEV, dtype=args.dtype)
    hidden_out = torch.empty_like(x)
    nbytes = layer.state_bytes(n_seq, read_recurrent=False) + layer.state_bytes(decodes, read_recurrent=True)
    step = f"prefill {n_seq}x{seq_len}" if not decodes else f"mixed {decodes}+{n_seq}x{seq_len}"
    common = dict(step=step, batch=decodes + n_seq, tokens=T, mixer=args.mixer, conv=conv,
                  state=str(state_dtype).replace("torch.", ""), state_MB=nbytes / 1e6,
                  floor_ms=nbytes / copy_bw * 1e3 if copy_bw else None, graph_ms=None)
    calls = L * max(1, args.calls_per_layer // 2)
    for part, fn in (("op", lambda i: layer.op(i % L, projected, gk, out, plan)),
                     ("layer", lambda i: layer.layer(i % L, x, hidden_out, plan))):
        t = time_eager(fn, calls)
        if part == "op":  # can the prefill op be captured (issue #7: a short prefill call <= 0.15 ms wall)?
            try:
                t["graph_ms"] = time_graph(fn, L)
            except Exception as e:  # not capturable: say why instead of a number
                t["graph_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
                print(f"prefill op not graph-capturable ({step}): {t['graph_error']}", flush=True)
                torch.cuda.synchronize()
        report(part=part, **{**common, **t},
               GBps=nbytes / (t["device_ms"] * 1e-3) / 1e9 if part == "op" else None)
        if part == "op" and args.host_profile:
            host_profile(f"{step}, {common['state']} state, conv {conv}", fn, 40)
    t = time_eager(lambda i: make_plan(), 8)
    report(part="plan", **dict(common, state_MB=0.0, floor_ms=None), **t, GBps=None)


# ------------------------------------------------------------------------------------------------ check
def check(args) -> list[dict]:
    """One mixed step (decodes with a padding row, then prefills: fresh and continuing, shorter and longer than
    the conv window and the 64-token chunk) through linear_attention_core on the device and on CPU (the PyTorch
    references), from the same pools: relative RMSE of the outputs and of the updated pools."""
    results = []
    dec_slots = [7, -1, 2, 9, 4]
    lens, context = [1, 37, 200, 64, 3], [5, 0, 40, 0, 900]
    pre_slots = [1, 3, 8, 5, 6]
    nd = len(dec_slots)
    T = nd + sum(lens)
    qsl = torch.tensor([0] + [1] * nd + lens).cumsum(0).to(torch.int32)
    seq_lens = torch.tensor([30] * nd + [n + c for n, c in zip(lens, context)], dtype=torch.int32)
    slots = torch.tensor(dec_slots + pre_slots, dtype=torch.int32)
    for conv in [c for c in (False, True) if not (c and args.no_conv) and not (not c and args.conv_only)]:
        for act, state in ((torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16)):
            a = argparse.Namespace(**{**vars(args), "dtype": act, "layers": 1})
            layer = Layer(a, conv, state, 10)
            g = torch.Generator().manual_seed(3)
            for pool in (layer.recurrent[0], layer.conv_state[0]):
                if pool is not None:
                    pool.copy_((torch.randn(pool.shape, generator=g) * 0.3).to(pool.dtype))
            _, projected, gk = layer.inputs(T, args.hidden)
            runs = {}
            for dev in (DEV, "cpu"):
                to = lambda t: None if t is None else t.to(dev)  # noqa: E731
                rec, cst = to(layer.recurrent[0]).clone(), to(layer.conv_state[0])
                cst = None if cst is None else cst.clone()
                plan = core.plan_step(nd, nd, len(lens), sum(lens), to(qsl), to(seq_lens), to(slots),
                                      args.conv_size if conv else None)
                out = torch.zeros(T, args.heads * args.value_dim, device=dev, dtype=act)
                core.linear_attention_core(layer.shape, to(projected), to(gk), out, plan, rec, cst, to(layer.conv_w),
                                           to(layer.A_log), to(layer.dt_bias))
                runs[dev] = [t.float().cpu() for t in (out, rec) + ((cst,) if conv else ())]
            real = torch.ones(T, dtype=torch.bool)
            real[1] = False  # the padding decode row: unspecified output
            errs = []
            for i, (x, ref) in enumerate(zip(runs[DEV], runs["cpu"])):
                if i == 0:
                    x, ref = x[real], ref[real]
                errs.append(((x - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item())
            tol = 1e-4 if act == torch.float32 else 2e-2
            r = dict(conv=conv, dtype=str(act).replace("torch.", ""), out=errs[0], recurrent=errs[1],
                     conv_state=errs[2] if conv else None, ok=all(e <= tol for e in errs))
            print("CHECK", json.dumps(r), flush=True)
            results.append(r)
    return results


# ------------------------------------------------------------------------------------------------ report
def _us(ms):
    return "–" if ms is None else f"{ms * 1e3:.1f}"


def markdown(info: dict, checks: list[dict]) -> str:
    lines = [f"# Serving linear layer, per call ({info['device']})", "",
             f"`{info['command']}`", "",
             f"{info['mixer'].upper()}, hidden {info['hidden']}, {info['heads']} heads ({info['kv_heads']} kv), "
             f"K = {info['key_dim']}, V = {info['value_dim']}, {info['dtype']} activations, conv size "
             f"{info['conv_size']}; calls rotate over {info['layers']} pools. Copy bandwidth (read + write): "
             + (f"{info['copy_GBps']:.0f} GB/s." if info["copy_GBps"] else "not measured (CPU)."), "",
             "| step | conv | state | part | host µs | eager µs | device µs | graph µs | state MB | floor µs | GB/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in ROWS:
        lines.append(f"| {r['step']} | {'yes' if r['conv'] else 'no'} | {r['state']} | {r['part']} | "
                     f"{_us(r['host_ms'])} | {_us(r['eager_ms'])} | {_us(r['device_ms'])} | {_us(r['graph_ms'])} | "
                     f"{r['state_MB']:.3g} | {_us(r['floor_ms'])} | "
                     f"{'–' if r['GBps'] is None else format(r['GBps'], '.0f')} |")
    lines += ["", "host: issue time (GPU kept busy); eager: back-to-back wall time; device: GPU time without host "
              "gaps; graph: CUDA-graph replay; floor: state bytes at copy bandwidth. Per layer and step: host "
              "overhead ≈ eager − device (when host-bound), state traffic ≈ floor, the rest ≈ graph (or device) "
              "− floor."]
    lines += [f"- {r['step']}, {r['state']} state: the op could not be captured in a CUDA graph ({r['graph_error']})"
              for r in ROWS if r.get("graph_error")]
    if checks:
        lines += ["", "Check (one mixed step, device vs the CPU references; relative RMSE):", "",
                  "| conv | dtype | out | recurrent | conv state | ok |", "|---|---|---|---|---|---|"]
        for c in checks:
            cs = "–" if c["conv_state"] is None else f"{c['conv_state']:.1e}"
            lines.append(f"| {'yes' if c['conv'] else 'no'} | {c['dtype']} | {c['out']:.1e} | {c['recurrent']:.1e} | "
                         f"{cs} | {'yes' if c['ok'] else '**NO**'} |")
    return "\n".join(lines) + "\n"


def parse_prefill(text: str) -> list[tuple[int, int, int]]:
    """'8x1024,256+15x1024' -> [(decodes, sequences, length)]: 'D+' puts D decoding requests in the same step."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        decodes, _, rest = item.lower().rpartition("+")
        n, _, t = rest.partition("x")
        out.append((int(decodes or 0), int(n), int(t)))
    return out


def main(argv=None):
    global DEV, SMOKE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=1536)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=None, help="default: --heads (head-faithful GQA expansion)")
    ap.add_argument("--key-dim", type=int, default=128)
    ap.add_argument("--value-dim", type=int, default=128)
    ap.add_argument("--mixer", choices=["gdn", "gla"], default="gdn")
    ap.add_argument("--conv-size", type=int, default=4)
    ap.add_argument("--no-conv", action="store_true", help="only rows without a short conv")
    ap.add_argument("--conv-only", action="store_true", help="only rows with a short conv")
    ap.add_argument("--decode", default="64,256,512", help="decode batch sizes ('' for none)")
    ap.add_argument("--state-dtypes", default="float32,bfloat16")
    ap.add_argument("--prefill", default="8x1024,1x4096,256+15x1024",
                    help="packed prefill batches, SEQSxLEN, or D+SEQSxLEN with D decodes in the step ('' for none)")
    ap.add_argument("--dtype", default="bfloat16", help="activations and weights")
    ap.add_argument("--layers", type=int, default=4, help="separate pools the calls rotate over")
    ap.add_argument("--calls-per-layer", type=int, default=4)
    ap.add_argument("--out", default=os.environ.get("OUT"), help="folder for serve_layer.json / .md")
    ap.add_argument("--check", action="store_true", help="first compare one mixed step with the CPU references")
    ap.add_argument("--host-profile", action="store_true",
                    help="also profile each row's op calls on the host (cProfile) into host_profile.md")
    ap.add_argument("--pytorch-conv", action="store_true",
                    help="the short conv (decode and prefill) through serve/short_conv.py's PyTorch path, as before the "
                         "Triton kernels of kernels/short_conv/, to time the two (the eleventh session's run called "
                         "this flag --pytorch-conv-decode, when only decode had a kernel)")
    ap.add_argument("--cpu-smoke", action="store_true")
    args = ap.parse_args(argv)
    if args.pytorch_conv:
        real_use_triton = core.use_triton
        core.use_triton = lambda *t, head_dims=True: head_dims and real_use_triton(*t)  # noqa: E731
    if args.cpu_smoke:
        DEV, SMOKE = "cpu", True
        args.hidden, args.heads, args.key_dim, args.value_dim = 64, 2, 16, 16
        args.decode, args.prefill, args.layers, args.calls_per_layer = "3", "2x9,1x20,3+2x9", 2, 1
        args.dtype, args.check = "float32", True
    elif not torch.cuda.is_available():
        sys.exit("no CUDA device (use --cpu-smoke for the CPU plumbing check)")
    args.kv_heads = args.kv_heads or args.heads
    args.dtype = getattr(torch, args.dtype)
    if args.mixer == "gla" and not args.no_conv:
        args.no_conv = True  # checkpoints have a short conv with GDN only
    convs = [c for c in (False, True) if not (c and args.no_conv) and not (not c and args.conv_only)]
    state_dtypes = [getattr(torch, s) for s in args.state_dtypes.split(",") if s]
    copy_bw = copy_bandwidth()
    info = dict(command="python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
                device=torch.cuda.get_device_name() if DEV == "cuda" else f"CPU ({platform.processor() or 'cpu'})",
                torch=torch.__version__, mixer=args.mixer, hidden=args.hidden, heads=args.heads,
                kv_heads=args.kv_heads, key_dim=args.key_dim, value_dim=args.value_dim,
                dtype=str(args.dtype).replace("torch.", ""), conv_size=args.conv_size, layers=args.layers,
                copy_GBps=copy_bw / 1e9 if copy_bw else None, smoke=SMOKE)
    try:
        import triton

        info["triton"] = triton.__version__
    except Exception:
        info["triton"] = None
    with torch.inference_mode():  # as vLLM runs the model: no autograd or version-counter work per op call
        checks, text = _measure(args, convs, state_dtypes, copy_bw, info)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "serve_layer.json").write_text(json.dumps({"info": info, "checks": checks, "rows": ROWS}, indent=1))
        (out / "serve_layer.md").write_text(text)
        if HOST_PROFILES:
            (out / "host_profile.md").write_text("# Host time of the serving op, by function\n\n"
                                                 + "\n".join(HOST_PROFILES))


def _measure(args, convs, state_dtypes, copy_bw, info) -> tuple[list[dict], str]:
    checks = check(args) if args.check else []
    for conv in convs:
        for batch in [int(b) for b in args.decode.split(",") if b]:
            for sd in state_dtypes:
                decode_rows(args, conv, sd, batch, copy_bw)
                if DEV == "cuda":
                    torch.cuda.empty_cache()
        for decodes, n_seq, seq_len in parse_prefill(args.prefill):
            prefill_rows(args, conv, state_dtypes[0], n_seq, seq_len, copy_bw, decodes)
    return checks, markdown(info, checks)


if __name__ == "__main__":
    main()
