"""Gated Linear Attention (the gla_v1 student's recurrence) in plain PyTorch: the ground truth for GLA kernels.

Shapes (fla layout): q, k [B, T, H, K]; v [B, T, H, V]; gk (per-key-channel log decay, <= 0) [B, T, H, K];
state [B, H, K, V]. Per head and token:

    S_t = diag(exp(gk_t)) S_{t-1} + k_t v_t^T,      o_t = S_t^T (scale q_t)

Arithmetic runs in float32 (float64 for float64 inputs); outputs come back in q's dtype. Imports only
torch: this file is copied next to exported checkpoints.
"""

from __future__ import annotations

import torch


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _no_autocast(fn):
    """The references promise float32 (or float64) arithmetic: keep an outer autocast from lowering it."""

    def wrapped(q, *args, **kwargs):
        with torch.autocast(q.device.type, enabled=False):
            return fn(q, *args, **kwargs)

    wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
    return wrapped


@_no_autocast
def naive_recurrent_gla(q, k, v, gk, scale=None, initial_state=None, output_final_state=False):
    """Token-by-token recurrence. Returns (o, final_state or None)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    dt = _work_dtype(q)
    scale = K**-0.5 if scale is None else scale
    out_dtype = q.dtype
    q, k, v, gk = (x.to(dt) for x in (q, k, v, gk))
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dt).clone()
    out = q.new_empty(B, T, H, V)
    for t in range(T):
        S = S * gk[:, t].exp()[..., None] + k[:, t, :, :, None] * v[:, t, :, None, :]
        out[:, t] = torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, S)
    return out.to(out_dtype), (S if output_final_state else None)


@_no_autocast
def naive_chunk_gla(q, k, v, gk, scale=None, initial_state=None, output_final_state=False, chunk_size: int = 32):
    """Chunked form. With cumulative per-channel log decay Bc inside a chunk,

        o_t = (q_t * e^{Bc_t})^T S_0 + sum_{i<=t} (sum_c q_tc k_ic e^{Bc_tc - Bc_ic}) v_i
        S_C = diag(e^{Bc_C}) S_0 + sum_i (k_i * e^{Bc_C - Bc_i}) v_i^T

    The intra-chunk weights are formed from decay differences (never e^{+Bc}), so strong decays cannot
    overflow; this costs a [C, C, K] tensor per chunk, which is why the chunk is small.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    C = chunk_size
    dt = _work_dtype(q)
    scale = K**-0.5 if scale is None else scale
    out_dtype = q.dtype
    pad = (-T) % C
    # Padding tokens have k = v = gk = 0: no decay, no write.
    q, k, v, gk = (torch.nn.functional.pad(x.to(dt), (0, 0, 0, 0, 0, pad)) for x in (q, k, v, gk))
    N = (T + pad) // C
    q, k, v, gk = (x.view(B, N, C, H, -1).permute(0, 3, 1, 2, 4) for x in (q, k, v, gk))  # [B, H, N, C, D]
    q = q * scale
    Bc = gk.cumsum(-2)
    idx = torch.arange(C, device=q.device)
    lower = (idx[:, None] >= idx[None, :])[..., None]  # [C, C, 1]
    gap = Bc[..., :, None, :] - Bc[..., None, :, :]  # [B, H, N, C(t), C(i), K]
    weights = torch.where(lower, gap, torch.full_like(gap, float("-inf"))).exp()
    attn = torch.einsum("bhntk,bhnik,bhntik->bhnti", q, k, weights)
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dt).clone()
    outs = []  # per-chunk views through unbind: one stack in backward instead of a zero tensor per chunk
    for q_n, k_n, v_n, Bc_n, attn_n in zip(*(x.unbind(2) for x in (q, k, v, Bc, attn))):
        outs.append((q_n * Bc_n.exp()) @ S + attn_n @ v_n)
        last = Bc_n[..., -1, :]  # [B, H, K]
        S = last.exp()[..., None] * S + (k_n * (last[:, :, None] - Bc_n).exp()).transpose(-1, -2) @ v_n
    out = torch.stack(outs, dim=2).permute(0, 2, 3, 1, 4).reshape(B, N * C, H, V)[:, :T]
    return out.to(out_dtype), (S if output_final_state else None)
