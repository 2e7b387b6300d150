"""Correctness of hybridserve's Triton kernels at real sizes on a CUDA GPU (H = 16, K = V = 128, bf16).

Every kernel against the PyTorch references (`kernels/*/naive.py`) run in float32 on the same bf16 inputs, and
against fla-core when it is importable; prints a markdown table (relative RMSE rms(out - ref) / rms(ref), max
|out - ref|, PASS/FAIL). Needs torch + triton only (tested for torch 2.11 / triton 3.6 and torch 2.13 / triton 3.7);
hybridserve need not be installed: the kernels are loaded from this checkout.

    python benchmarks/check_kernels_gpu.py [--quick] [--json PATH] [--dims H,K,V]
    python benchmarks/check_kernels_gpu.py --cpu-smoke   # the same script at toy sizes through the Triton
                                                         # interpreter (exercises the script without a GPU)

`benchmarks/kernels.py --check` runs this first and then the benchmarks, in one report. Per-kernel crash probes at other
head dims, each in its own process: benchmarks/probe_kernels_gpu.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
H, K, V = 16, 128, 128
DEV = "cuda"
# sizes: (dense chunk shapes, packed lengths, decode batch, fused recurrent shape, autograd T and B, GLA varlen lengths)
SIZES = dict(
    full=dict(dense=[(1, 4096), (4, 8192)], lens=[1, 63, 64, 65, 1000, 4095, 2500], decode=512, rec=(8, 64),
              grad_T=2048, grad_B=4, gla_lens=[5, 64, 129, 1, 700], gla_decode=256),
    quick=dict(dense=[(1, 4096)], lens=[1, 63, 64, 65, 700], decode=64, rec=(8, 64), grad_T=256, grad_B=4,
               gla_lens=[5, 64, 129, 1, 700], gla_decode=64),
    smoke=dict(dense=[(1, 70)], lens=[1, 63, 66, 5, 9], decode=6, rec=(2, 9), grad_T=40, grad_B=2,
               gla_lens=[5, 20, 66, 1, 3], gla_decode=5),
)


def setup_cpu_smoke():
    """Toy sizes on CPU through the Triton interpreter, to exercise this script without a GPU."""
    import os

    global H, K, V, DEV
    os.environ["TRITON_INTERPRET"] = "1"
    os.environ["HYBRIDSERVE_TRITON_ON_CPU"] = "1"
    sys.path.insert(0, str(ROOT / "tests"))
    import triton_cpu  # noqa: F401  (interpreter fixes for bf16)

    H, K, V, DEV = 2, 32, 16, "cpu"


def load_kernels():
    """hybridserve.kernels, installed or straight from this checkout (the GPU image has no hybridserve)."""
    try:
        import hybridserve.kernels as kernels  # noqa: F401

        return kernels
    except ModuleNotFoundError as e:
        if e.name != "hybridserve":  # installed but incomplete (a package missing from the wheel): say so
            raise
    pkg = sys.modules.setdefault("hybridserve", types.ModuleType("hybridserve"))
    pkg.__path__ = getattr(pkg, "__path__", [])
    spec = importlib.util.spec_from_file_location(
        "hybridserve.kernels", ROOT / "kernels" / "__init__.py", submodule_search_locations=[str(ROOT / "kernels")])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["hybridserve.kernels"] = mod
    spec.loader.exec_module(mod)
    pkg.kernels = mod
    return mod


def load_fla(unguarded: bool = False):
    """fla-core's GDN / GLA ops, or None. unguarded: lift fla 0.6.0's refusal of its gated backward on Hopper with
    triton < 3.7.1 (fla #640), so that the benchmarks can time it anyway (the guard exists for wrong results there:
    times only, never correctness)."""
    if unguarded:
        fla = load_fla()
        if fla is not None:
            try:
                import fla.ops.common.chunk_o as _co

                _co.TRITON_ABOVE_3_7_1 = True
            except Exception:
                pass
        return fla
    try:
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule
        from fla.ops.gla import chunk_gla, fused_recurrent_gla
    except Exception as e:  # not installed, or no triton backend
        print(f"fla not importable ({type(e).__name__}: {str(e)[:120]}); comparing with the references only")
        return None
    return dict(chunk_gdn=chunk_gated_delta_rule, recurrent_gdn=fused_recurrent_gated_delta_rule,
                chunk_gla=chunk_gla, recurrent_gla=fused_recurrent_gla)


def rel_rmse(out, ref):
    out, ref = out.float(), ref.float()
    return ((out - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def max_abs(out, ref):
    return (out.float() - ref.float()).abs().max().item()


def gdn_inputs(B, T, dev=None, dtype=torch.bfloat16, seed=0, req=False):
    """kbench's inputs: unit q, k, v ~ N(0, 1), decay near 1 (logsigmoid(N(0, 1) + 4)), beta ~ sigmoid(U)."""
    dev = dev or DEV
    g_ = torch.Generator(device=dev).manual_seed(seed)
    q = F.normalize(torch.randn(B, T, H, K, device=dev, generator=g_), dim=-1).to(dtype)
    k = F.normalize(torch.randn(B, T, H, K, device=dev, generator=g_), dim=-1).to(dtype)
    v = torch.randn(B, T, H, V, device=dev, generator=g_).to(dtype)
    g = F.logsigmoid(torch.randn(B, T, H, device=dev, generator=g_) + 4.0)
    beta = torch.rand(B, T, H, device=dev, generator=g_).sigmoid().to(dtype)
    xs = [q, k, v, g, beta]
    if req:
        for x in xs:
            x.requires_grad_(True)
    return xs


def gla_inputs(B, T, dev=None, dtype=torch.bfloat16, seed=0, req=False):
    """gla_v1-like: q, k, v ~ N(0, 1) (k scaled), gk = logsigmoid(N(0, 1) * 3 + 2) / 16 per key channel."""
    dev = dev or DEV
    g_ = torch.Generator(device=dev).manual_seed(seed)
    q = torch.randn(B, T, H, K, device=dev, generator=g_).to(dtype)
    k = (torch.randn(B, T, H, K, device=dev, generator=g_) * K**-0.5).to(dtype)
    v = torch.randn(B, T, H, V, device=dev, generator=g_).to(dtype)
    gk = F.logsigmoid(torch.randn(B, T, H, K, device=dev, generator=g_) * 3 + 2) / 16
    xs = [q, k, v, gk]
    if req:
        for x in xs:
            x.requires_grad_(True)
    return xs


def reference_pullback(xs, naive, seed):
    """For the inputs xs of a chunked op (q, k, v, gates...; B sequences) draw dO, h0 and dht (generator `seed`) and
    run `naive`, its float32 PyTorch reference, from h0 under torch.func.vjp: (h0, do, dht, (o, final state), the
    gradients of every input and h0)."""
    B, v = xs[0].shape[0], xs[2]
    gen = torch.Generator(device=DEV).manual_seed(seed)
    do = torch.randn(v.shape, device=DEV, generator=gen).to(v.dtype)
    h0 = torch.randn(B, H, K, V, device=DEV, generator=gen) * 0.1
    dht = torch.randn(B, H, K, V, device=DEV, generator=gen) * 0.1
    n = len(xs)
    fwd, pullback = torch.func.vjp(lambda *a: naive(*a[:n], K**-0.5, a[n], True), *[x.float() for x in xs], h0)
    return h0, do, dht, fwd, pullback((do.float(), dht))


class Report:
    def __init__(self):
        self.rows = []

    def add(self, what, out, ref, tol, against="ref fp32"):
        if out is None or ref is None:
            return
        finite = bool(torch.isfinite(out.float()).all())
        r = rel_rmse(out, ref) if finite else float("nan")
        m = max_abs(out, ref) if finite else float("nan")
        ok = finite and r <= tol
        self.rows.append(dict(check=what, against=against, rel_rmse=r, max_abs=m, tol=tol, ok=ok))
        print(f"  {'PASS' if ok else 'FAIL'} {what} vs {against}: rel {r:.2e} max {m:.2e} (tol {tol:.0e})",
              flush=True)

    def flag(self, what, ok, note=""):
        self.rows.append(dict(check=what, against=note, rel_rmse=float("nan"), max_abs=float("nan"), tol=0.0,
                              ok=bool(ok)))
        print(f"  {'PASS' if ok else 'FAIL'} {what} {note}", flush=True)

    def markdown(self):
        lines = ["| check | against | rel RMSE | max abs | tol | result |", "|---|---|---|---|---|---|"]
        for r in self.rows:
            rel = "–" if r["rel_rmse"] != r["rel_rmse"] else f"{r['rel_rmse']:.2e}"
            mx = "–" if r["max_abs"] != r["max_abs"] else f"{r['max_abs']:.2e}"
            tol = "–" if not r["tol"] else f"{r['tol']:.0e}"
            res = "PASS" if r["ok"] else "**FAIL**"
            lines.append(f"| {r['check']} | {r['against']} | {rel} | {mx} | {tol} | {res} |")
        n_fail = sum(not r["ok"] for r in self.rows)
        lines.append(f"\n{len(self.rows) - n_fail}/{len(self.rows)} checks passed.")
        return "\n".join(lines)


def ref_gdn(q, k, v, g, beta, h0, chunk=True):
    from hybridserve.kernels.gated_delta_rule.naive import (naive_chunk_gated_delta_rule,
                                                            naive_recurrent_gated_delta_rule)

    fn = naive_chunk_gated_delta_rule if chunk else naive_recurrent_gated_delta_rule
    return fn(q.float(), k.float(), v.float(), g.float(), beta.float(), None, h0, True)


def ref_gla(q, k, v, gk, h0, chunk=True):
    from hybridserve.kernels.gla.naive import naive_chunk_gla, naive_recurrent_gla

    if chunk:
        return naive_chunk_gla(q.float(), k.float(), v.float(), gk.float(), None, h0, True, chunk_size=16)
    return naive_recurrent_gla(q.float(), k.float(), v.float(), gk.float(), None, h0, True)


def public_op_grads(rep, tag, op, ref, xs, names, tol):
    """o and every input gradient of a public chunk op (Triton forward and backward) against autograd through the
    float32 reference, on the same inputs and the same random dO."""
    o, _ = op(*xs)
    do = torch.randn_like(o)
    o.backward(do)
    grads = [x.grad.clone() for x in xs]
    ys = [x.detach().float().requires_grad_(True) for x in xs]
    ro, _ = ref(*ys, None)
    ro.backward(do.float())
    rep.add(f"{tag} public chunk op o {xs[0].shape[0]}x{xs[0].shape[1]}", o, ro, tol)
    for name, gr, y in zip(names, grads, ys):
        rep.add(f"{tag} public chunk op {name} (Triton backward)", gr, y.grad, 2e-2)


GROUPS = ("gdn_chunk", "gdn_decode", "gdn_recurrent", "gla")


def run_checks(size="full", groups=GROUPS):
    """The checks of `groups`: gdn_chunk (the chunked forward dense and packed into a pool, the public op's backward),
    gdn_decode, gdn_recurrent, gla (all of GLA's)."""
    kernels = load_kernels()
    sz = SIZES[size]
    on_gpu = DEV == "cuda"
    from hybridserve.kernels.gated_delta_rule.chunk import chunk_gdn_fwd
    from hybridserve.kernels.gated_delta_rule.fused_recurrent import fused_recurrent_gdn_fwd
    from hybridserve.kernels.gla.chunk import chunk_gla_fwd

    fla = load_fla()
    rep = Report()
    dev = DEV
    TOL = 1e-2  # bf16 inputs at thousands of tokens (the CPU tests hold 5e-3 at <= 140 tokens)
    t_start = time.time()

    if "gdn_chunk" in groups:
        # ---------------------------------------------------------------- GDN chunk, dense [B, T]
        for B, T in sz["dense"]:
            print(f"GDN chunk B={B} T={T}", flush=True)
            q, k, v, g, beta = gdn_inputs(B, T, seed=B * T)
            h0 = torch.randn(B, H, K, V, device=dev) * 0.1
            ht = torch.empty(B, H, K, V, device=dev)
            o = chunk_gdn_fwd(q, k, v, g, beta, None, initial_state=h0, final_state=ht)
            ro, rs = ref_gdn(q, k, v, g, beta, h0)
            rep.add(f"gdn chunk o {B}x{T}", o, ro, TOL)
            rep.add(f"gdn chunk final state {B}x{T}", ht, rs, TOL)
            if fla is not None:
                fo, fs = fla["chunk_gdn"](q, k, v, g, beta, initial_state=h0, output_final_state=True)
                rep.add(f"gdn chunk o {B}x{T}", o, fo, TOL, "fla chunk")
                rep.add(f"fla chunk o {B}x{T} (fla's own error)", fo, ro, TOL)
                rep.add(f"gdn chunk final state {B}x{T}", ht, fs, TOL, "fla chunk")
            del q, k, v, g, beta, o, ro, rs
            if on_gpu:
                torch.cuda.empty_cache()

        # ------------------------------------------------------ GDN chunk, packed sequences into a state pool
        lens = sz["lens"]
        slots = [9, 2, -1, 5, 0, 7, 3][:len(lens)]
        has = [1, 0, 1, 1, 1, 0, 1][:len(lens)]
        cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device=dev)
        TT = sum(lens)
        for state_dtype in (torch.float32, torch.bfloat16):
            print(f"GDN chunk varlen pool {state_dtype}", flush=True)
            q, k, v, g, beta = gdn_inputs(1, TT, seed=7)
            pool = torch.full((12, H, K, V), 7.25, device=dev, dtype=state_dtype)
            used = [s for s in slots if s >= 0]
            pool[used] = (torch.randn(len(used), H, K, V, device=dev) * 0.1).to(state_dtype)
            before = pool.clone()
            o = kernels.gdn_prefill_varlen(q, k, v, g, beta, cu, pool, torch.tensor(slots, device=dev),
                                           torch.tensor(has, dtype=torch.bool, device=dev))
            outs, finals = [], []
            for n, s in enumerate(slots):
                a, b = cu[n].item(), cu[n + 1].item()
                h0 = before[s:s + 1].float() if (s >= 0 and has[n]) else None
                ro, rs = ref_gdn(q[:, a:b], k[:, a:b], v[:, a:b], g[:, a:b], beta[:, a:b], h0)
                outs.append(ro)
                finals.append(rs)
            rep.add(f"gdn prefill_varlen o (state {str(state_dtype)[6:]})", o, torch.cat(outs, 1), TOL)
            real = [n for n, s in enumerate(slots) if s >= 0]
            rep.add(f"gdn prefill_varlen pool states ({str(state_dtype)[6:]})", pool[[slots[n] for n in real]],
                    torch.cat([finals[n] for n in real]), TOL)
            untouched = [i for i in range(12) if i not in used]
            rep.flag(f"gdn prefill_varlen untouched slots bit-exact ({str(state_dtype)[6:]})",
                     torch.equal(pool[untouched], before[untouched]))
            del q, k, v, g, beta

    if "gdn_decode" in groups:
        # ------------------------------------------------------------ GDN decode: fused gates, pool, padding
        N = sz["decode"]
        for state_dtype in (torch.float32, torch.bfloat16):
            print(f"GDN decode N={N} {state_dtype}", flush=True)
            gen = torch.Generator(device=dev).manual_seed(3)
            steps = 4
            qs = torch.randn(steps, N, H, K, device=dev, generator=gen).bfloat16()
            ks = torch.randn(steps, N, H, K, device=dev, generator=gen).bfloat16()
            vs = torch.randn(steps, N, H, V, device=dev, generator=gen).bfloat16()
            a_s = torch.randn(steps, N, H, device=dev, generator=gen).bfloat16()
            b_s = torch.randn(steps, N, H, device=dev, generator=gen).bfloat16()
            A_log = torch.log(torch.rand(H, device=dev, generator=gen) * 15 + 1)
            dt_bias = torch.rand(H, device=dev, generator=gen) - 3
            idx = torch.randperm(N + 8, device=dev, generator=gen)[:N]
            idx[::7] = -1  # padding rows
            pool = (torch.randn(N + 8, H, K, V, device=dev, generator=gen) * 0.1).to(state_dtype)
            before = pool.clone()
            ref_state = pool.float().clone()
            outs = []
            # one capture, several replays: the decode op must be CUDA-graph safe
            static = [x[0].clone() for x in (qs, ks, vs, a_s, b_s)]
            if on_gpu:
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    kernels.gdn_decode_(*static[:3], *static[3:], A_log, dt_bias, pool.clone(), idx, use_qk_l2norm=True)
                torch.cuda.current_stream().wait_stream(s)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    o_static = kernels.gdn_decode_(*static[:3], *static[3:], A_log, dt_bias, pool, idx,
                                                   use_qk_l2norm=True)
                pool.copy_(before)
                replay = graph.replay
            else:
                def replay():
                    o_static.copy_(kernels.gdn_decode_(*static[:3], *static[3:], A_log, dt_bias, pool, idx,
                                                       use_qk_l2norm=True))
                o_static = torch.empty(N, H, V, dtype=torch.bfloat16)
            for t in range(steps):
                for dst, src in zip(static, (qs[t], ks[t], vs[t], a_s[t], b_s[t])):
                    dst.copy_(src)
                replay()
                outs.append(o_static.clone())
            # reference: gates, l2 norm and the recurrence in float32, state carried in float32 (rounded to the pool
            # dtype after each step, as the kernel stores it)
            valid = idx >= 0
            slots_ = idx[valid]
            err_o = []
            for t in range(steps):
                gg = -A_log.exp() * F.softplus(a_s[t].float() + dt_bias)
                bb = torch.sigmoid(b_s[t].float())
                qn = qs[t].float() * torch.rsqrt(qs[t].float().pow(2).sum(-1, keepdim=True) + 1e-6)
                kn = ks[t].float() * torch.rsqrt(ks[t].float().pow(2).sum(-1, keepdim=True) + 1e-6)
                from hybridserve.kernels.gated_delta_rule.naive import naive_recurrent_gated_delta_rule

                h0 = ref_state[slots_]
                ro, rs = naive_recurrent_gated_delta_rule(qn[valid, None], kn[valid, None], vs[t][valid, None].float(),
                                                          gg[valid, None], bb[valid, None], None, h0, True)
                ref_state[slots_] = rs.to(state_dtype).float()
                err_o.append((outs[t][valid], ro[:, 0]))
            rep.add(f"gdn decode_ o, {steps} graph replays (state {str(state_dtype)[6:]})",
                    torch.cat([e[0] for e in err_o]), torch.cat([e[1] for e in err_o]), TOL)
            rep.add(f"gdn decode_ pool after {steps} steps ({str(state_dtype)[6:]})", pool[slots_], ref_state[slots_],
                    TOL)
            untouched = torch.ones(N + 8, dtype=torch.bool, device=dev)
            untouched[slots_] = False
            rep.flag(f"gdn decode_ padding/unused slots bit-exact ({str(state_dtype)[6:]})",
                     torch.equal(pool[untouched], before[untouched]))
            if fla is not None and state_dtype == torch.float32:
                fo, fs = fla["recurrent_gdn"](qs[0][valid, None], ks[0][valid, None], vs[0][valid, None],
                                              g=(-A_log.exp() * F.softplus(a_s[0].float() + dt_bias))[valid, None],
                                              beta=torch.sigmoid(b_s[0].float())[valid, None],
                                              initial_state=before[slots_].float(), output_final_state=True,
                                              use_qk_l2norm_in_kernel=True)
                rep.add("gdn decode_ o step 1", outs[0][valid], fo[:, 0], TOL, "fla fused_recurrent")

    if "gdn_recurrent" in groups:
        # ----------------------------------------------------------- GDN recurrent, short prefill (<= 64 tokens)
        print("GDN fused recurrent dense", flush=True)
        RB, RT = sz["rec"]
        q, k, v, g, beta = gdn_inputs(RB, RT, seed=11)
        h0 = torch.randn(RB, H, K, V, device=dev) * 0.1
        ht = torch.empty(RB, H, K, V, device=dev)
        o = fused_recurrent_gdn_fwd(q, k, v, g, beta, initial_state=h0, final_state=ht)
        ro, rs = ref_gdn(q, k, v, g, beta, h0, chunk=False)
        rep.add(f"gdn fused_recurrent o {RB}x{RT}", o, ro, TOL)
        rep.add(f"gdn fused_recurrent final state {RB}x{RT}", ht, rs, TOL)

    # ---------------------------------------------------------------------- autograd through the public ops
    if "gdn_chunk" in groups:
        print("GDN public op fwd+bwd", flush=True)
        # 4 sequences x 16 heads: the forward's default state + output route there is a fused one (fused-x-aqk, whose
        # prep keeps X for the backward), 2 would take the split route
        xs = gdn_inputs(sz["grad_B"], sz["grad_T"], seed=12, req=True)
        public_op_grads(rep, "gdn", kernels.chunk_gated_delta_rule, ref_gdn, xs, ["dq", "dk", "dv", "dg", "dbeta"], TOL)
    if "gla" in groups:
        print("GLA public op fwd+bwd", flush=True)
        xs = gla_inputs(2, sz["grad_T"], seed=13, req=True)
        public_op_grads(rep, "gla", kernels.chunk_gla, ref_gla, xs, ["dq", "dk", "dv", "dgk"], TOL)

        # ------------------------------------------------------------------------------------------ GLA
        for B, T in sz["dense"]:
            print(f"GLA chunk B={B} T={T}", flush=True)
            q, k, v, gk = gla_inputs(B, T, seed=B + T)
            h0 = torch.randn(B, H, K, V, device=dev) * 0.1
            ht = torch.empty(B, H, K, V, device=dev)
            o = chunk_gla_fwd(q, k, v, gk, None, initial_state=h0, final_state=ht)
            ro, rs = ref_gla(q, k, v, gk, h0)
            rep.add(f"gla chunk o {B}x{T}", o, ro, TOL)
            rep.add(f"gla chunk final state {B}x{T}", ht, rs, TOL)
            if fla is not None:
                fo, fs = fla["chunk_gla"](q, k, v, gk, initial_state=h0, output_final_state=True)
                rep.add(f"gla chunk o {B}x{T}", o, fo, TOL, "fla chunk_gla")
            del q, k, v, gk, o, ro, rs
            if on_gpu:
                torch.cuda.empty_cache()
        print("GLA decode / varlen", flush=True)
        N = sz["gla_decode"]
        q, k, v, logits = gla_inputs(N, 1, seed=5)
        logits = torch.randn(N, 1, H, K, device=dev) * 3 + 2
        idx = torch.randperm(N + 4, device=dev)[:N]
        idx[::5] = -1
        pool = torch.randn(N + 4, H, K, V, device=dev) * 0.1
        before = pool.clone()
        o = kernels.gla_decode_(q[:, 0], k[:, 0], v[:, 0], logits[:, 0], pool, idx, gate_logit_normalizer=16.0)
        valid = idx >= 0
        ro, rs = ref_gla(q[valid], k[valid], v[valid], F.logsigmoid(logits[valid]) / 16, before[idx[valid]],
                         chunk=False)
        rep.add("gla decode_ o (fused gate)", o[valid], ro[:, 0], TOL)
        rep.add("gla decode_ pool", pool[idx[valid]], rs, TOL)
        lens = sz["gla_lens"]
        slots = [0, 3, -1, 1, 2]
        cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device=dev)
        q, k, v, gk = gla_inputs(1, sum(lens), seed=6)
        pool = torch.randn(5, H, K, V, device=dev) * 0.1
        before = pool.clone()
        o = kernels.gla_prefill_varlen(q, k, v, gk, cu, pool, torch.tensor(slots, device=dev))
        outs, fin = [], []
        for n, s in enumerate(slots):
            a, b = cu[n].item(), cu[n + 1].item()
            ro, rs = ref_gla(q[:, a:b], k[:, a:b], v[:, a:b], gk[:, a:b], before[s:s + 1] if s >= 0 else None)
            outs.append(ro)
            fin.append(rs)
        rep.add("gla prefill_varlen o", o, torch.cat(outs, 1), TOL)
        rep.add("gla prefill_varlen pool", pool[[0, 3, 1, 2]], torch.cat([fin[0], fin[1], fin[3], fin[4]]), TOL)
        rep.flag("gla prefill_varlen unused slot bit-exact", torch.equal(pool[4], before[4]))
    print(f"checks took {time.time() - t_start:.0f} s", flush=True)
    return rep


def main():
    global H, K, V
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--cpu-smoke", action="store_true")
    ap.add_argument("--dims", default=None,
                    help="H,K,V instead of 16,128,128 (e.g. 9,64,64: SmolLM2's heads; set HYBRIDSERVE_KERNELS=triton "
                         "to route the public ops to Triton at head dims the dispatch has not validated)")
    ap.add_argument("--only", default=",".join(GROUPS),
                    help=f"comma-separated check groups (default all: {', '.join(GROUPS)})")
    args = ap.parse_args()
    groups = tuple(x.strip() for x in args.only.split(",") if x.strip())
    if not groups or set(groups) - set(GROUPS):
        ap.error(f"--only takes a comma-separated subset of {', '.join(GROUPS)}")
    if args.cpu_smoke:
        setup_cpu_smoke()
    if args.dims:
        H, K, V = (int(x) for x in args.dims.split(","))
    import triton

    card = torch.cuda.get_device_name() if DEV == "cuda" else "CPU (Triton interpreter, toy sizes)"
    print(f"# hybridserve kernels: GPU correctness\n\n{card} | torch {torch.__version__} | "
          f"triton {triton.__version__} | H={H} K={K} V={V} | `{' '.join(sys.argv)}`\n")
    rep = run_checks("smoke" if args.cpu_smoke else "quick" if args.quick else "full", groups)
    print("\n" + rep.markdown())
    if args.json:
        Path(args.json).write_text(json.dumps(rep.rows, indent=1))
    sys.exit(0 if all(r["ok"] for r in rep.rows) else 1)


if __name__ == "__main__":
    main()
