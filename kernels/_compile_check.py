"""Compile every Triton kernel for Hopper (sm_90a) without a GPU and report registers / spills.

`triton.compile` with an explicit GPUTarget runs the whole pipeline (TTIR -> TTGIR -> LLVM -> PTX -> cubin with the
ptxas bundled in Triton's wheel) on any machine; `ptxas -v` on the PTX gives the resource report. Used by the
tests (compile errors that the interpreter does not see) and by `benchmarks/check_kernels_gpu.py`.

    python -m hybridserve.kernels._compile_check [--quick] [--dims 9,64,64]   # one line per kernel variant
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

import torch


def _jit_fn(kernel):
    import triton

    fn = kernel
    while not isinstance(fn, triton.runtime.jit.JITFunction):
        fn = fn.fn
    return fn


def _ptxas_path():
    """The ptxas Triton compiles Hopper code with (TRITON_PTXAS_PATH if set), or None."""
    import triton

    try:
        return triton.knobs.nvidia.ptxas.path
    except Exception:  # an older triton without knobs: its bundled binary
        path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
        return path if os.path.exists(path) else None


def compile_one(kernel, signature: dict, constexprs: dict, num_warps=4, num_stages=2, arch=90, maxnreg=None):
    """Compile for sm_{arch}a; returns (compiled kernel, registers or None, spill bytes or None). maxnreg caps the
    registers per thread as triton.Config(maxnreg=) does (what a tighter cap would spill, for more warps per SM).

    Specialised as Triton's launcher specialises a real launch: every pointer 16-byte aligned (torch's allocations
    are), and the integer arguments typed "i32:16" / "i64:16" known to be multiples of 16. Without these hints the
    loads of a state tile compile to one scalar access per element instead of 16-byte vectors, and the register
    report is far from what runs (the decode kernel: 229 instead of 168 registers)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = _jit_fn(kernel)
    # constexpr parameters left out take their defaults, as a launch does (else they would compile as pointers)
    constexprs = {**{p.name: p.default for p in fn.params if p.is_constexpr and p.has_default}, **constexprs}
    sig, aligned = {}, []
    for i, a in enumerate(fn.arg_names):
        t = "constexpr" if a in constexprs else signature.get(a, "*fp32")
        if t.startswith("*") or t.endswith(":16"):
            aligned.append(i)
        sig[a] = t.split(":")[0]
    src = ASTSource(fn, signature=sig, constexprs=dict(constexprs),
                    attrs={(i,): [["tt.divisibility", 16]] for i in aligned})
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                              options=dict(num_warps=num_warps, num_stages=num_stages,
                                           **({"maxnreg": maxnreg} if maxnreg else {})))
    regs = spills = None
    ptxas = _ptxas_path()
    if ptxas:
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "k.ptx")
            with open(p, "w") as f:
                f.write(compiled.asm["ptx"])
            # the flags Triton itself passes (its register numbers differ without --regAllocOptLevel=2)
            r = subprocess.run([ptxas, "-v", "--regAllocOptLevel=2", f"--gpu-name=sm_{arch}a", p, "-o",
                                os.path.join(d, "k.o")], capture_output=True, text=True)
            m = re.search(r"Used (\d+) registers", r.stderr)
            regs = int(m.group(1)) if m else None
            m = re.search(r"(\d+) bytes spill stores", r.stderr)
            spills = int(m.group(1)) if m else None
    return compiled, regs, spills


def _variants(quick: bool, dims=(16, 128, 128)):
    """(name, kernel, signature, constexprs, num_warps, num_stages) of every kernel variant the launchers use at head
    dims (H, K, V), with their block sizes."""
    from ._triton_utils import cdiv, next_pow2
    from .gated_delta_rule import chunk as gc
    from .gated_delta_rule import chunk_bwd as gb
    from .gated_delta_rule import chunk_bwd_split as gs
    from .gated_delta_rule import chunk_bwd_wy as gw
    from .gated_delta_rule import chunk_prep as gq
    from .gated_delta_rule import chunk_state_out as gso
    from .gated_delta_rule import decode as gd
    from .gated_delta_rule import fused_chunk as gf
    from .gated_delta_rule import fused_recurrent as gr
    from .gated_delta_rule import prefill_inputs as gp
    from .gla import chunk as lc
    from .gla import chunk_bwd as lb
    from .gla import fused_recurrent as lr
    from .short_conv import decode as sc
    from .short_conv import prefill as sp

    H, K, V = dims
    BKc, BVc = min(64, max(16, next_pow2(K))), min(64, max(16, next_pow2(V)))  # 64-wide tiles of the chunk kernels
    BKf, BVf = max(16, next_pow2(K)), max(16, next_pow2(V))  # whole head dims
    tag = f"H={H} K={K} V={V}"
    typed = lambda value: "i64:16" if value % 16 == 0 else "i64"  # noqa: E731  (as the launcher specialises it)
    # the recurrent kernels' strides at a real launch: tokens [TT, H, D], gates [TT, H], state slots [H, K, V]
    token_strides = dict(s_qt=typed(H * K), s_qh=typed(K), s_kt=typed(H * K), s_kh=typed(K), s_vt=typed(H * V),
                         s_vh=typed(V), s_ot=typed(H * V), s_oh=typed(V), s_gt=typed(H), s_gh="i64", s_bt=typed(H),
                         s_bh="i64", s_h0=typed(H * K * V), s_ht=typed(H * K * V))
    dts = ["bf16"] if quick else ["bf16", "fp16", "fp32"]
    for dt in dts:
        prec = "ieee" if dt == "fp32" else "tf32"
        for state in (["fp32", "bf16"] if dt == "bf16" else ["fp32"]):
            sig = dict(q=f"*{dt}", k=f"*{dt}", v=f"*{dt}", g="*fp32", beta=f"*{dt}", A_log="*fp32", dt_bias="*fp32",
                       o=f"*{dt}", h0=f"*{state}", ht=f"*{state}", state_idx="*i32", has_h0="*u8",
                       cu_seqlens="*i32", scale="fp32", T="i32", **token_strides)
            BV, nw = gr.default_block_v(K, V, torch.bfloat16 if state == "bf16" else torch.float32)
            for fused in (True, False):
                yield (f"gdn fused_recurrent {dt} state={state} fused_gate={fused} {tag}",
                       gr._gdn_fused_recurrent_fwd_kernel, sig,
                       dict(H=H, K=K, V=V, BK=next_pow2(K), BV=BV, IS_VARLEN=not fused, USE_H0=True, STORE_HT=True,
                            INDEXED=True, HAS_H0_MASK=not fused, FUSED_GATE=fused, QK_L2NORM=fused), nw, 1)
            sig = dict(q=f"*{dt}", k=f"*{dt}", v=f"*{dt}", g=f"*{dt}", beta=f"*{dt}", A_log="*fp32", dt_bias="*fp32",
                       o=f"*{dt}", pool=f"*{state}", state_idx="*i32", scale="fp32", num_tiles="i32",
                       s_qn=typed(H * K), s_qh=typed(K), s_kn=typed(H * K), s_kh=typed(K), s_vn=typed(H * V),
                       s_vh=typed(V), s_on=typed(H * V), s_oh=typed(V), s_gn=typed(H), s_gh="i64", s_bn=typed(H),
                       s_bh="i64", s_slot=typed(H * K * V))
            dflt = gd.default_decode_config(K, V, torch.bfloat16 if state == "bf16" else torch.float32)
            for stages in sorted({1, 2, dflt["stages"]}):  # > 1: the loop pipelined through shared memory (cp.async)
                yield (f"gdn decode persistent {dt} state={state} stages={stages} {tag}",
                       gd._gdn_decode_persistent_kernel, sig,
                       dict(H=H, K=K, V=V, NV=-(-V // dflt["BV"]), BK=next_pow2(K), BV=dflt["BV"], FUSED_GATE=True,
                            QK_L2NORM=True, PREFETCH=dflt["prefetch"] and stages == 1, STAGES=stages),
                       dflt["num_warps"], stages)
            sig = dict(q=f"*{dt}", k=f"*{dt}", v=f"*{dt}", gk="*fp32", o=f"*{dt}", h0=f"*{state}", ht=f"*{state}",
                       state_idx="*i32", has_h0="*u8", cu_seqlens="*i32", scale="fp32", gate_norm="fp32", T="i32",
                       **{**token_strides, "s_gt": typed(H * K), "s_gh": typed(K)})  # GLA's gate is [TT, H, K]
            yield (f"gla fused_recurrent {dt} state={state} {tag}", lr._gla_fused_recurrent_fwd_kernel, sig,
                   dict(H=H, K=K, V=V, BK=next_pow2(K), BV=BV, IS_VARLEN=True, USE_H0=True, STORE_HT=True,
                        INDEXED=True, HAS_H0_MASK=True, FUSED_GATE=True), nw, 1)
        # the short conv's decode step: x a column slice of the projection, the pool a strided view (vLLM's page)
        sig = dict(x=f"*{dt}", s_xn="i64", w=f"*{dt}", s_wc="i64", s_ww="i64", pool=f"*{dt}", s_ps=typed(H * K * V),
                   s_pc="i64", s_pw="i64", idx="*i32", y=f"*{dt}", s_yn=typed(3 * H * K), C="i32")
        for silu in (True, False):
            yield (f"short conv decode {dt} silu={silu} {tag}", sc._short_conv_decode_kernel, sig,
                   dict(W=4, BC=512, SILU=silu), 4, 1)
        sig = dict(x=f"*{dt}", s_xt="i64", w=f"*{dt}", s_wc="i64", s_ww="i64", pool=f"*{dt}", s_ps=typed(H * K * V),
                   s_pc="i64", s_pw="i64", idx="*i32", cu="*i32", has_h0="*i32", token_seq="*i32", y=f"*{dt}",
                   s_yt=typed(3 * H * K), T="i32", C="i32")
        yield (f"short conv prefill {dt} {tag}", sp._short_conv_prefill_kernel, sig,
               dict(W=4, BT=16, BC=128, HAS_H0_MASK=True, SILU=False), 4, 1)
        sig = dict(x=f"*{dt}", s_xt="i64", pool=f"*{dt}", s_ps=typed(H * K * V), s_pc="i64", s_pw="i64", idx="*i32",
                   cu="*i32", has_h0="*i32", C="i32")
        yield (f"short conv prefill state {dt} {tag}", sp._short_conv_state_kernel, sig,
               dict(W=4, BC=512, HAS_H0_MASK=True), 4, 1)
        sig = dict(q=f"*{dt}", k=f"*{dt}", v=f"*{dt}", a=f"*{dt}", b=f"*{dt}", A_log="*fp32", dt_bias="*fp32",
                   qt=f"*{dt}", kt=f"*{dt}", vt=f"*{dt}", g="*fp32", beta="*fp32", TT="i32",
                   **{s: "i32" for s in "s_qt s_qh s_kt s_kh s_vt s_vh s_at s_ah s_bt s_bh".split()})
        for norm, silu in ((True, True), (True, False), (False, False)):  # serving: SiLU + L2 norm
            yield (f"gdn prefill inputs {dt} l2norm={norm} silu={silu} {tag}", gp._gdn_prefill_inputs_kernel, sig,
                   dict(H=H, K=K, V=V, BT=gp.default_block_t(BKf, BVf), BK=BKf, BV=BVf, QK_L2NORM=norm, SILU=silu),
                   4, 1)
        common = dict(cu_seqlens="*i32", chunk_seq="*i32", chunk_off="*i32", T="i32", NTs="i32", N="i32")
        sig = dict(k=f"*{dt}", v=f"*{dt}", g="*fp32", beta=f"*{dt}", gcum="*fp32", w=f"*{dt}", u=f"*{dt}", **common)
        for cfg in gc._prep_configs():
            # (varlen, store_x, blocked, doubling, the lower blocks' products at the input's precision)
            # the last: also the in-chunk attention (chunk_state_out.py's "fused-aqk" route)
            cases = [(True, False, True, False, False, False), (False, True, True, False, False, False),
                     (True, False, False, False, False, False), (True, False, True, True, False, False),
                     (True, False, True, True, True, False), (False, True, True, True, True, False),
                     (True, False, True, True, True, True)]
            for varlen, store_x, blocked, dbl, low, aqk in cases:
                yield (f"gdn chunk prep {dt} varlen={varlen} store_x={store_x} blocked={blocked} doubling={dbl} "
                       f"lower={prec if low else 'ieee'} aqk={aqk} {cfg} {tag}", gc._gdn_chunk_prep_kernel,
                       dict(sig, Xbuf="*fp32", **(dict(q=f"*{dt}", aqk=f"*{dt}") if aqk else {})),
                       dict(H=H, K=K, V=V, BT=64, BK=BKc, BV=BVc, IS_VARLEN=varlen, DOT_PREC=prec, STORE_X=store_x,
                            BLOCKED_INV=blocked, STORE_WU=True, DOUBLING=dbl, LOWER_PREC=prec if low else "ieee",
                            STORE_AQK=aqk, **cfg.kwargs), cfg.num_warps, cfg.num_stages, cfg.maxnreg)
            if quick:
                break
        # the split prep (HYBRIDSERVE_GDN_PREP=split): chunk.py's kernel up to X, then chunk_prep.py's W, U kernel
        cfg = gc._prep_configs()[0]
        yield (f"gdn chunk prep split: X only {dt} {cfg} {tag}", gc._gdn_chunk_prep_kernel, dict(sig, Xbuf="*fp32"),
               dict(H=H, K=K, V=V, BT=64, BK=BKc, BV=BVc, IS_VARLEN=True, DOT_PREC=prec, STORE_X=True,
                    BLOCKED_INV=True, STORE_WU=False), cfg.num_warps, cfg.num_stages)
        for cfg in gq._gdn_chunk_wu_kernel.configs:
            yield (f"gdn chunk prep split: W, U {dt} {cfg} {tag}", gq._gdn_chunk_wu_kernel,
                   dict(k=f"*{dt}", v=f"*{dt}", beta=f"*{dt}", gcum="*fp32", w=f"*{dt}", u=f"*{dt}", Xbuf="*fp32",
                        **common),
                   dict(H=H, K=K, V=V, BT=64, BD=min(64, max(BKf, BVf)), IS_VARLEN=True, DOT_PREC=prec),
                   cfg.num_warps, cfg.num_stages)
            if quick:
                break
        # the prep kernel with its tiles in registers (chunk_prep.py; HYBRIDSERVE_GDN_PREP=registers)
        for cfg in gq._prep_configs():
            for varlen, store_x, dbl, low in ((True, False, False, False), (False, True, False, False),
                                              (True, False, True, False), (True, False, True, True)):
                yield (f"gdn chunk prep registers {dt} varlen={varlen} store_x={store_x} doubling={dbl} "
                       f"lower={prec if low else 'ieee'} {cfg} {tag}", gq._gdn_chunk_prep_registers_kernel,
                       dict(sig, Xbuf="*fp32"),
                       dict(H=H, K=K, V=V, BT=64, BK=BKf, BV=BVf, IS_VARLEN=varlen, DOT_PREC=prec, STORE_X=store_x,
                            DOUBLING=dbl, LOWER_PREC=prec if low else "ieee", **cfg.kwargs), cfg.num_warps,
                       cfg.num_stages)
            if quick:
                break
        sig = dict(k=f"*{dt}", w=f"*{dt}", u=f"*{dt}", gcum="*fp32", hbuf=f"*{dt}", vnew=f"*{dt}", h0="*fp32",
                   ht="*fp32", state_idx="*i32", has_h0="*u8", cu_seqlens="*i32", chunk_off="*i32", T="i32",
                   NTs="i32", s_h0="i64", s_ht="i64")
        for bv in ([min(32, BVf)] if quick else sorted({min(b, BVf) for b in (16, 32, 64)})):
            for stages in (1, 2) if quick else (1, 2, 3):  # > 1: the chunk loop pipelined (state_pass_stages)
                yield (f"gdn chunk state {dt} BV={bv} stages={stages} {tag}", gc._gdn_chunk_state_kernel, sig,
                       dict(H=H, K=K, V=V, BT=64, BK=BKf, BV=bv, IS_VARLEN=True, USE_H0=True, STORE_HT=True,
                            INDEXED=True, HAS_H0_MASK=True, DOT_PREC=prec), 4, stages)
        yield (f"gdn chunk state {dt} dense {tag}", gc._gdn_chunk_state_kernel, sig,
               dict(H=H, K=K, V=V, BT=64, BK=BKf, BV=min(32, BVf), IS_VARLEN=False, USE_H0=True, STORE_HT=True,
                    INDEXED=False, HAS_H0_MASK=False, DOT_PREC=prec), 4, 1)
        # the state pass with the output fused in (chunk_state_out.py; HYBRIDSERVE_GDN_STATE_OUT=fused)
        sig = dict(q=f"*{dt}", k=f"*{dt}", w=f"*{dt}", u=f"*{dt}", gcum="*fp32", o=f"*{dt}", h0="*fp32", ht="*fp32",
                   state_idx="*i32", has_h0="*u8", cu_seqlens="*i32", scale="fp32", T="i32", s_h0="i64", s_ht="i64")
        so_bv, so_warps, so_stages = gso.default_state_out_tile(1, H, K, V)
        for bv, warps, stages in [(so_bv, so_warps, so_stages)] + ([] if quick else gso.STATE_OUT_TILES):
            # the in-chunk attention made here, or loaded (the prep's: "-aqk"); V' from W, U or from X ("fused-x")
            for aqk, from_x in ((False, False), (True, False), (False, True), (True, True)):
                xs = dict(v=f"*{dt}", beta=f"*{dt}", xbuf="*fp32") if from_x else {}
                yield (f"gdn chunk state_out {dt} BV={min(bv, BVf)} warps={warps} stages={stages} aqk={aqk} "
                       f"from_x={from_x} {tag}", gso._gdn_chunk_state_out_kernel,
                       dict(sig, **(dict(aqk=f"*{dt}") if aqk else {}), **xs),
                       dict(H=H, K=K, V=V, BT=64, BK=BKf, BV=min(bv, BVf), IS_VARLEN=True, USE_H0=True,
                            STORE_HT=True, INDEXED=True, HAS_H0_MASK=True, DOT_PREC=prec, LOAD_AQK=aqk,
                            FROM_X=from_x), warps, stages)
        # the one-launch kernel for short inputs (fused_chunk.py): its default tiles, then the larger chunks
        # (raw: serving's call, the projection's columns and raw gates; else the prepared token-major inputs)
        fcfg = gf.default_fused_config(1, H, V)
        for raw in (True, False):
            C = typed(3 * H * K + 2 * H) if raw else None  # the projection's row stride
            sig = dict(q=f"*{dt}", k=f"*{dt}", v=f"*{dt}", g=f"*{dt}" if raw else "*fp32", beta=f"*{dt}",
                       A_log="*fp32", dt_bias="*fp32", o=f"*{dt}", h0="*fp32", ht="*fp32", state_idx="*i32",
                       has_h0="*u8", cu_seqlens="*i32", scale="fp32", T="i32",
                       s_qt=C or typed(H * K), s_qh=typed(K), s_kt=C or typed(H * K), s_kh=typed(K),
                       s_vt=C or typed(H * V), s_vh=typed(V), s_gt=C or typed(H), s_gh="i64", s_bt=C or typed(H),
                       s_bh="i64", s_h0=typed(H * K * V), s_ht=typed(H * K * V))
            tiles = [(fcfg["BT"], fcfg["BV"])] + ([] if quick or not raw else [(16, 32), (32, 16), (32, 32)])
            for (bt, bv), dbl in [(tile, False) for tile in tiles] + [(tiles[0], True)]:
                yield (f"gdn fused chunk {dt} raw={raw} BT={bt} BV={min(bv, BVf)} doubling={dbl} {tag}",
                       gf._gdn_fused_chunk_kernel, sig,
                       dict(H=H, K=K, V=V, BT=bt, BK=BKf, BV=min(bv, BVf), IS_VARLEN=True, USE_H0=True,
                            STORE_HT=True, INDEXED=True, HAS_H0_MASK=True, DOT_PREC=prec, RAW=raw, QK_L2NORM=raw,
                            SILU=raw, DOUBLING=dbl), fcfg["num_warps"], fcfg["num_stages"])
        sig = dict(q=f"*{dt}", k=f"*{dt}", vnew=f"*{dt}", gcum="*fp32", hbuf=f"*{dt}", o=f"*{dt}", scale="fp32",
                   **common)
        for cfg in gc._out_configs():
            for varlen in (True, False):
                yield (f"gdn chunk out {dt} varlen={varlen} {cfg} {tag}", gc._gdn_chunk_out_kernel, sig,
                       dict(H=H, K=K, V=V, BT=64, BK=BKc, IS_VARLEN=varlen, DOT_PREC=prec, **cfg.kwargs),
                       cfg.num_warps, cfg.num_stages)
            if quick:
                break
        # GDN backward
        sig = dict(q=f"*{dt}", k=f"*{dt}", do=f"*{dt}", gcum="*fp32", dv="*fp32", scale="fp32", T="i32",
                   NTs="i32", N="i32")
        for bv, w, s in gb.DV_LOCAL_CONFIGS[:1] if quick else gb.DV_LOCAL_CONFIGS:
            yield (f"gdn bwd dv_local {dt} BV={bv} warps={w} {tag}", gb._gdn_bwd_dv_local_kernel, sig,
                   dict(H=H, K=K, V=V, BT=64, BK=BKc, BV=min(bv, max(16, next_pow2(V))), DOT_PREC=prec), w, s)
        sig = dict(q=f"*{dt}", k=f"*{dt}", w=f"*{dt}", do=f"*{dt}", gcum="*fp32", dv="*fp32", dhbuf="*fp32",
                   dht="*fp32", dh0="*fp32", scale="fp32", T="i32", NTs="i32")
        for stages in (1,) if quick else (1, 2, 3):
            yield (f"gdn bwd dh {dt} stages={stages} {tag}", gb._gdn_bwd_dh_kernel, sig,
                   dict(H=H, K=K, V=V, BT=64, BK=BKf, BV=min(32, BVf), USE_DHT=True, STORE_DH0=True, DOT_PREC=prec),
                   4, stages)
        sig = dict(q=f"*{dt}", k=f"*{dt}", vnew=f"*{dt}", do=f"*{dt}", gcum="*fp32", hbuf=f"*{dt}",
                   dhbuf="*fp32", dv="*fp32", dq=f"*{dt}", dk="*fp32", dw="*fp32", dg="*fp32", ptmp=f"*{dt}",
                   scale="fp32", T="i32", NTs="i32", N="i32")
        for cfg in gb._dqk_configs():
            yield (f"gdn bwd dqkw {dt} {cfg} {tag}", gb._gdn_bwd_dqkw_kernel, sig,
                   dict(H=H, K=K, V=V, BT=64, BK=BKf, DOT_PREC=prec, **cfg.kwargs), cfg.num_warps, cfg.num_stages)
            if quick:
                break
        sig = dict(k=f"*{dt}", v=f"*{dt}", beta=f"*{dt}", gcum="*fp32", Xbuf="*fp32", dw="*fp32", dv="*fp32",
                   dk_part="*fp32", dg_part="*fp32", dk=f"*{dt}", dvout=f"*{dt}", dbeta=f"*{dt}", dg="*fp32",
                   T="i32", NTs="i32", N="i32")
        yield (f"gdn bwd wy {dt} {tag}", gb._gdn_bwd_wy_kernel, sig,
               dict(H=H, K=K, V=V, BT=64, BK=BKc, BV=BVc, DOT_PREC=prec), 8, 1)
        # the split layout (the default at K = V = 128), its intermediates dV', dW, partial dK in float32 or, with
        # HYBRIDSERVE_GDN_BWD_INTERMEDIATES=input, in the input dtype (dv_local and dh write dV' then too)
        for inter in sorted({"fp32", dt}):
            if inter != "fp32":
                for bv, w, s in gb.DV_LOCAL_CONFIGS[:1] if quick else gb.DV_LOCAL_CONFIGS:
                    yield (f"gdn bwd dv_local {dt} dv={inter} BV={bv} warps={w} {tag}", gb._gdn_bwd_dv_local_kernel,
                           dict(q=f"*{dt}", k=f"*{dt}", do=f"*{dt}", gcum="*fp32", dv=f"*{inter}", scale="fp32",
                                T="i32", NTs="i32", N="i32"),
                           dict(H=H, K=K, V=V, BT=64, BK=BKc, BV=min(bv, max(16, next_pow2(V))), DOT_PREC=prec),
                           w, s)
                yield (f"gdn bwd dh {dt} dv={inter} stages=2 {tag}", gb._gdn_bwd_dh_kernel,
                       dict(q=f"*{dt}", k=f"*{dt}", w=f"*{dt}", do=f"*{dt}", gcum="*fp32", dv=f"*{inter}",
                            dhbuf=f"*{dt}", dht="*fp32", dh0="*fp32", scale="fp32", T="i32", NTs="i32"),
                       dict(H=H, K=K, V=V, BT=64, BK=BKf, BV=min(32, BVf), USE_DHT=True, STORE_DH0=True,
                            DOT_PREC=prec), 4, 2)
            sig = dict(q=f"*{dt}", k=f"*{dt}", vnew=f"*{dt}", do=f"*{dt}", gcum="*fp32", hbuf=f"*{dt}",
                       dhbuf=f"*{dt}", dv=f"*{inter}", dq=f"*{dt}", dk=f"*{inter}", dw=f"*{inter}", dg="*fp32",
                       scale="fp32", T="i32", NTs="i32", N="i32", TTH="i32")
            for cfg in gs._dqkw_configs():
                yield (f"gdn bwd split dqkw {dt} inter={inter} {cfg} {tag}", gs._gdn_bwd_dqkw_split_kernel, sig,
                       dict(H=H, K=K, V=V, BT=64, BK=gs.split_block_k(K), DOT_PREC=prec, **cfg.kwargs),
                       cfg.num_warps, cfg.num_stages)
                if quick:
                    break
            sig = dict(k=f"*{dt}", v=f"*{dt}", beta=f"*{dt}", gcum="*fp32", Xbuf="*fp32", dw=f"*{inter}",
                       dv=f"*{inter}", dk_part=f"*{inter}", dg_part="*fp32", dk=f"*{dt}", dvout=f"*{dt}",
                       dbeta=f"*{dt}", dg="*fp32", T="i32", NTs="i32", N="i32", TTH="i32")
            for cfg in gs._wy_configs():
                yield (f"gdn bwd split wy {dt} inter={inter} {cfg} {tag}", gs._gdn_bwd_wy_split_kernel, sig,
                       dict(H=H, K=K, V=V, BT=64, BK=BKc, BV=BVc, NK=cdiv(K, gs.split_block_k(K)), DOT_PREC=prec),
                       cfg.num_warps, cfg.num_stages)
                if quick:
                    break
            for cfg in gw._wy_scratch_configs():
                for operands in (False, True):
                    yield (f"gdn bwd split wy scratch {dt} inter={inter} input_operands={operands} {cfg} {tag}",
                           gw._gdn_bwd_wy_scratch_kernel, dict(sig, scratch="*fp32"),
                           dict(H=H, K=K, V=V, BT=64, NK=cdiv(K, gs.split_block_k(K)), DOT_PREC=prec,
                                INPUT_OPERANDS=operands, **cfg.kwargs),
                           cfg.num_warps, cfg.num_stages, cfg.maxnreg)
                if quick:
                    break
        # GLA forward
        dBK, dBV = lc.default_state_blocks(1, H, K, V)
        sig = dict(gk="*fp32", gcum="*fp32", **common)
        yield (f"gla chunk cumsum {dt} {tag}", lc._gla_chunk_cumsum_kernel, sig,
               dict(H=H, K=K, BT=64, BK=BKc, IS_VARLEN=True), 4, 1)
        sig = dict(k=f"*{dt}", v=f"*{dt}", gcum="*fp32", hbuf=f"*{dt}", h0="*fp32", ht="*fp32", state_idx="*i32",
                   has_h0="*u8", cu_seqlens="*i32", chunk_off="*i32", T="i32", NTs="i32", s_h0="i64", s_ht="i64")
        yield (f"gla chunk state {dt} {tag}", lc._gla_chunk_state_kernel, sig,
               dict(H=H, K=K, V=V, BT=64, BK=dBK, BV=dBV, IS_VARLEN=True, USE_H0=True, STORE_HT=True, INDEXED=True,
                    HAS_H0_MASK=True, DOT_PREC=prec), 8 if dBK * dBV >= 4096 else 4, 1)
        sig = dict(q=f"*{dt}", k=f"*{dt}", gcum="*fp32", A="*fp32", scale="fp32", **common)
        for varlen in (True, False):
            yield (f"gla chunk intra {dt} varlen={varlen} {tag}", lc._gla_chunk_intra_kernel, sig,
                   dict(H=H, K=K, BT=64, BC=16, BK=BKf, IS_VARLEN=varlen, DOT_PREC=prec), 4, 1)
            for cfg in lc._intra_levels_configs():
                yield (f"gla chunk intra levels {dt} varlen={varlen} {cfg} {tag}", lc._gla_chunk_intra_levels_kernel,
                       sig, dict(H=H, K=K, BT=64, LEVELS=6, IS_VARLEN=varlen, DOT_PREC=prec, **cfg.kwargs),
                       cfg.num_warps, cfg.num_stages)
                if quick:
                    break
        sig = dict(q=f"*{dt}", v=f"*{dt}", gcum="*fp32", A="*fp32", hbuf=f"*{dt}", o=f"*{dt}", scale="fp32", **common)
        for cfg in lc._out_configs():
            yield (f"gla chunk out {dt} {cfg} {tag}", lc._gla_chunk_out_kernel, sig,
                   dict(H=H, K=K, V=V, BT=64, BK=BKc, IS_VARLEN=True, DOT_PREC=prec, **cfg.kwargs),
                   cfg.num_warps, cfg.num_stages)
            if quick:
                break
        # GLA backward
        sig = dict(q=f"*{dt}", do=f"*{dt}", gcum="*fp32", dhbuf="*fp32", dht="*fp32", dh0="*fp32",
                   cu_seqlens="*i32", chunk_off="*i32", scale="fp32", T="i32", NTs="i32")
        yield (f"gla bwd dh {dt} {tag}", lb._gla_bwd_dh_kernel, sig,
               dict(H=H, K=K, V=V, BT=64, BK=dBK, BV=dBV, IS_VARLEN=True, USE_DHT=True, STORE_DH0=True,
                    DOT_PREC=prec), 8 if dBK * dBV >= 4096 else 4, 1)
        sig = dict(q=f"*{dt}", k=f"*{dt}", v=f"*{dt}", gcum="*fp32", do=f"*{dt}", dq_intra="*fp32",
                   dk_intra="*fp32", scale="fp32", **common)
        yield (f"gla bwd intra {dt} {tag}", lb._gla_bwd_intra_kernel, sig,
               dict(H=H, K=K, V=V, BT=64, BC=16, BK=BKf, BV=BVf, IS_VARLEN=True, DOT_PREC=prec), 4, 1)
        for cfg in lb._intra_levels_configs():
            yield (f"gla bwd intra levels {dt} {cfg} {tag}", lb._gla_bwd_intra_levels_kernel, sig,
                   dict(H=H, K=K, V=V, BT=64, BV=BVc, LEVELS=6, IS_VARLEN=True, DOT_PREC=prec, **cfg.kwargs),
                   cfg.num_warps, cfg.num_stages)
            if quick:
                break
        sig = dict(q=f"*{dt}", k=f"*{dt}", v=f"*{dt}", gcum="*fp32", do=f"*{dt}", hbuf=f"*{dt}", dhbuf="*fp32",
                   dq_intra="*fp32", dk_intra="*fp32", dq=f"*{dt}", dk=f"*{dt}", dgk="*fp32", scale="fp32", **common)
        for w, s, r in lb.INTER_CONFIGS[:1] if quick else lb.INTER_CONFIGS:
            yield (f"gla bwd inter {dt} warps={w} stages={s} maxnreg={r} {tag}", lb._gla_bwd_inter_kernel, sig,
                   dict(H=H, K=K, V=V, BT=64, BK=BKc, BV=BVc, IS_VARLEN=True, DOT_PREC=prec), w, s, r)
        sig = dict(k=f"*{dt}", gcum="*fp32", do=f"*{dt}", A="*fp32", dhbuf="*fp32", dv=f"*{dt}", **common)
        yield (f"gla bwd dv {dt} {tag}", lb._gla_bwd_dv_kernel, sig,
               dict(H=H, K=K, V=V, BT=64, BK=BKc, BV=BVc, IS_VARLEN=True, DOT_PREC=prec), 4, 2)


def compile_all(quick: bool = True, verbose: bool = False, dims=(16, 128, 128)):
    """Yield (variant name, registers or None, spill bytes or None, shared-memory bytes) for every kernel variant;
    raises on a compile error."""
    for name, kernel, sig, constexprs, nw, ns, *maxnreg in _variants(quick, dims):  # maxnreg: a config's cap
        compiled, regs, spills = compile_one(kernel, sig, constexprs, nw, ns, maxnreg=(maxnreg or [None])[0])
        smem = compiled.metadata.shared
        if verbose:
            # cp.async: global -> shared copies in flight while the loop computes, i.e. Triton's pipeliner took the loop
            print(f"{name}: {regs} registers, {spills} bytes spilled, {smem} bytes shared, "
                  f"{async_copies(compiled)} cp.async", flush=True)
        yield name, regs, spills, smem


def async_copies(compiled) -> int:
    """Number of cp.async instructions in the PTX: 0 for a loop that waits for each load."""
    return len(re.findall(r"\bcp\.async\.c[ag]\b", compiled.asm["ptx"]))


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="bf16 only, the first autotune config of each kernel")
    ap.add_argument("--dims", action="append", default=[],
                    help="H,K,V (repeatable; default 16,128,128), e.g. --dims 9,64,64 for SmolLM2's heads")
    args = ap.parse_args()
    for d in args.dims or ["16,128,128"]:
        for _ in compile_all(quick=args.quick, verbose=True, dims=tuple(int(x) for x in d.split(","))):
            pass
