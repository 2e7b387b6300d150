"""Gated DeltaNet (the gdn_v4 student's recurrence) in plain PyTorch: the ground truth for every kernel.

Shapes (fla layout): q, k [B, T, H, K]; v [B, T, H, V]; g (log decay, <= 0) and beta [B, T, H];
state [B, H, K, V]. Per head and token:

    S_t = exp(g_t) S_{t-1} + beta_t k_t (v_t - exp(g_t) S_{t-1}^T k_t)^T,      o_t = S_t^T (scale q_t)

q and k arrive already L2-normalised (the layer does it). Arithmetic runs in float32, or float64 when the
inputs are float64 (the reference tests); outputs come back in q's dtype, the final state in the
arithmetic dtype. This file imports only torch: it is copied next to exported checkpoints.
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
def naive_recurrent_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False):
    """Token-by-token recurrence: slow, obviously right. Returns (o, final_state or None)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    dt = _work_dtype(q)
    scale = K**-0.5 if scale is None else scale
    out_dtype = q.dtype
    q, k, v, g, beta = (x.to(dt) for x in (q, k, v, g, beta))
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dt).clone()
    out = q.new_empty(B, T, H, V)
    for t in range(T):
        S = S * g[:, t].exp()[..., None, None]
        k_t = k[:, t]
        delta = (v[:, t] - torch.einsum("bhk,bhkv->bhv", k_t, S)) * beta[:, t, :, None]
        S = S + k_t[..., :, None] * delta[..., None, :]
        out[:, t] = torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, S)
    return out.to(out_dtype), (S if output_final_state else None)


@_no_autocast
def naive_chunk_gated_delta_rule(
    q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False, chunk_size: int = 64
):
    """Chunked (WY / UT-transform) form: the algorithm the Triton chunk kernel implements.

    Inside a chunk with cumulative log decay G, the state is S_t = e^{G_t} S_0 + sum_{i<=t} e^{G_t-G_i} k_i u_i^T,
    where the pseudo-values U solve the unit lower-triangular system
        (I + diag(beta) A) U = diag(beta) (V - diag(e^G) K S_0),   A_ti = e^{G_t-G_i} k_t.k_i  (i < t),
    so that O = diag(e^G) Q S_0 + (M * Q K^T) U and S_C = e^{G_C} S_0 + (K * e^{G_C-G})^T U.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    C = chunk_size
    dt = _work_dtype(q)
    scale = K**-0.5 if scale is None else scale
    out_dtype = q.dtype
    pad = (-T) % C
    # Padding tokens have k = v = beta = g = 0: they neither decay nor write the state.
    q, k, v = (torch.nn.functional.pad(x.to(dt), (0, 0, 0, 0, 0, pad)) for x in (q, k, v))
    g, beta = (torch.nn.functional.pad(x.to(dt), (0, 0, 0, pad)) for x in (g, beta))
    N = (T + pad) // C
    # -> [B, H, N, C, D]
    q, k, v = (x.view(B, N, C, H, -1).permute(0, 3, 1, 2, 4) for x in (q, k, v))
    g, beta = (x.view(B, N, C, H).permute(0, 3, 1, 2) for x in (g, beta))
    q = q * scale
    G = g.cumsum(-1)  # [B, H, N, C]
    idx = torch.arange(C, device=q.device)
    strictly_lower = idx[:, None] > idx[None, :]
    lower = idx[:, None] >= idx[None, :]
    gap = G[..., :, None] - G[..., None, :]  # G_t - G_i, finite only where i <= t
    decay_lower = torch.where(lower, gap, torch.full_like(gap, float("-inf"))).exp()
    A = torch.where(strictly_lower, decay_lower * (k @ k.transpose(-1, -2)), torch.zeros_like(gap))
    # W_v = T diag(beta) V and W_k = T diag(beta e^G) K with T = (I + diag(beta) A)^{-1}, by forward
    # substitution: a closed-form inverse (power series) cancels huge terms when keys are correlated.
    system = torch.eye(C, dtype=dt, device=q.device) + beta[..., :, None] * A
    w_v = torch.linalg.solve_triangular(system, beta[..., None] * v, upper=False, unitriangular=True)
    w_k = torch.linalg.solve_triangular(system, (beta * G.exp())[..., None] * k, upper=False, unitriangular=True)
    attn = decay_lower * (q @ k.transpose(-1, -2))  # zero above the diagonal
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dt).clone()
    # Per-chunk views through unbind (one stack in backward) rather than indexing (a full-size zero
    # tensor per chunk in backward): the state recurrence is the only sequential part.
    outs = []
    for w_v_n, w_k_n, q_n, k_n, G_n, attn_n in zip(*(x.unbind(2) for x in (w_v, w_k, q, k, G, attn))):
        u = w_v_n - w_k_n @ S
        outs.append((G_n[..., None].exp() * q_n) @ S + attn_n @ u)
        g_last = G_n[..., -1]
        S = g_last.exp()[..., None, None] * S + (k_n * (g_last[..., None] - G_n).exp()[..., None]).transpose(-1, -2) @ u
    out = torch.stack(outs, dim=2).permute(0, 2, 3, 1, 4).reshape(B, N * C, H, V)[:, :T]
    return out.to(out_dtype), (S if output_final_state else None)
