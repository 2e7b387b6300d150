"""The linear-attention mixers of a hybrid: Gated DeltaNet (paper student `gdn_v4`) and GLA (`gla_v1`).

Both replace a teacher attention block with a constant-size recurrent state per head. Their weights use
names that cannot collide with the teacher's `q_proj/k_proj/v_proj/o_proj/gate_proj` (vLLM's stacked
loaders match those names as substrings). The recurrence itself lives in `hybridserve.kernels`; an
exported checkpoint carries the plain-PyTorch reference files and falls back to them when hybridserve
is not installed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

try:
    from hybridserve.kernels import (
        chunk_gated_delta_rule,
        chunk_gla,
        fused_recurrent_gated_delta_rule,
        fused_recurrent_gla,
    )
except ModuleNotFoundError as missing:  # an exported checkpoint loaded where hybridserve is not installed
    if not (missing.name or "").startswith("hybridserve"):
        raise  # hybridserve is there but something it needs is not: show the real cause
    from .gated_delta_rule_naive import naive_chunk_gated_delta_rule as chunk_gated_delta_rule
    from .gated_delta_rule_naive import naive_recurrent_gated_delta_rule as fused_recurrent_gated_delta_rule
    from .gla_naive import naive_chunk_gla as chunk_gla
    from .gla_naive import naive_recurrent_gla as fused_recurrent_gla

# Sequences up to this length run the recurrent form at inference (as fla does): one pass, no chunk padding.
RECURRENT_MAX_TOKENS = 64


def _wide(x: torch.Tensor) -> torch.Tensor:
    """x in float32 for the gate / norm arithmetic, or left in float64 (a float64 model stays float64)."""
    return x if x.dtype == torch.float64 else x.float()


def l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """fla's l2norm: x * rsqrt(sum x^2 + eps) in float32 (not F.normalize's max(|x|, eps))."""
    xf = _wide(x)
    return (xf * torch.rsqrt(xf.pow(2).sum(-1, keepdim=True) + eps)).to(x.dtype)


class GatedRMSNorm(nn.Module):
    """RMSNorm over each head's output, optionally multiplied by SiLU(gate) (fla's FusedRMSNormGated)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
        xf = _wide(x)
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * _wide(self.weight)
        if gate is not None:
            y = y * F.silu(_wide(gate))
        return y.to(x.dtype)


class ShortConv(nn.Module):
    """Causal depthwise conv over time with a rolling state of the last `size - 1` inputs."""

    def __init__(self, channels: int, size: int):
        super().__init__()
        self.size = size
        self.weight = nn.Parameter(torch.empty(channels, 1, size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        # x [B, T, C] -> channels first; `state` holds the previous size-1 inputs [B, C, size-1].
        xt = x.transpose(1, 2)
        if state is None:
            state = xt.new_zeros(xt.shape[0], xt.shape[1], self.size - 1)
        full = torch.cat([state.to(xt.dtype), xt], dim=-1)
        y = F.conv1d(full, self.weight.to(xt.dtype), groups=xt.shape[1])
        return y.transpose(1, 2), full[..., -(self.size - 1) :]


def decay_init(num_heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """fla's GatedDeltaNet decay init: A ~ U(0, 16); dt log-uniform in [1e-3, 1e-1] (floor 1e-4);
    dt_bias = softplus^-1(dt). Returns (A_log, dt_bias)."""
    A_log = torch.empty(num_heads).uniform_(0, 16).log()
    dt = torch.exp(torch.rand(num_heads) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
    return A_log, dt + torch.log(-torch.expm1(-dt))


class LinearMixer(nn.Module):
    """What GDN and GLA share: q/k/v projections (k/v possibly with fewer heads), output gate, norm, out_proj."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        d = config.hidden_size
        self.num_heads = H = config.linear_num_heads
        self.num_kv_heads = Hkv = config.linear_num_kv_heads
        self.key_dim = K = config.linear_key_head_dim
        self.value_dim = V = config.linear_value_head_dim
        self.state_dtype = getattr(torch, config.linear_state_dtype)
        bias = config.linear_qkv_bias
        self.query_proj = nn.Linear(d, H * K, bias=bias)
        self.key_proj = nn.Linear(d, Hkv * K, bias=bias)
        self.value_proj = nn.Linear(d, Hkv * V, bias=bias)
        self.out_gate_proj = nn.Linear(d, H * V, bias=False) if config.linear_output_gate else None
        self.out_norm = GatedRMSNorm(V, config.linear_norm_eps)
        self.out_proj = nn.Linear(H * V, d, bias=False)

    def _heads(self, q, k, v):
        B, T, _ = q.shape
        q = q.view(B, T, self.num_heads, self.key_dim)
        k = k.view(B, T, self.num_kv_heads, self.key_dim)
        v = v.view(B, T, self.num_kv_heads, self.value_dim)
        if self.num_kv_heads != self.num_heads:  # runtime GQA: head h reads kv head h // group
            group = self.num_heads // self.num_kv_heads
            k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
        return q, k, v

    def _output(self, x, o):
        B, T = o.shape[:2]
        gate = None
        if self.out_gate_proj is not None:
            gate = self.out_gate_proj(x).view(B, T, self.num_heads, self.value_dim)
        return self.out_proj(self.out_norm(o, gate).reshape(B, T, -1))

    def _use_recurrent(self, T: int) -> bool:
        return not self.training and T <= RECURRENT_MAX_TOKENS


class GatedDeltaNet(LinearMixer):
    """gdn_v4: SiLU(q,k,v) (after an optional short conv), L2-normalised q/k, beta = sigmoid(b),
    per-head decay g = -exp(A_log) * softplus(a + dt_bias), gated RMSNorm output."""

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        d, H = config.hidden_size, self.num_heads
        self.beta_proj = nn.Linear(d, H, bias=False)
        self.decay_proj = nn.Linear(d, H, bias=False)
        self.A_log = nn.Parameter(torch.empty(H))
        self.dt_bias = nn.Parameter(torch.empty(H))
        self.short_conv = config.linear_short_conv
        if self.short_conv:
            size = config.linear_conv_size
            self.query_conv = ShortConv(H * self.key_dim, size)
            self.key_conv = ShortConv(self.num_kv_heads * self.key_dim, size)
            self.value_conv = ShortConv(self.num_kv_heads * self.value_dim, size)
        with torch.no_grad():
            A_log, dt_bias = decay_init(H)
            self.A_log.copy_(A_log)
            self.dt_bias.copy_(dt_bias)

    def forward(self, x, mask=None, cache=None):
        B, T, _ = x.shape
        q, k, v = self.query_proj(x), self.key_proj(x), self.value_proj(x)
        if mask is not None:  # padding contributes nothing (nor to the conv window)
            m = mask[..., None].to(q.dtype)
            q, k, v = q * m, k * m, v * m
        if self.short_conv:
            states = cache.conv_state(self.layer_idx) if cache is not None else None
            states = states or (None, None, None)
            q, sq = self.query_conv(q, states[0])
            k, sk = self.key_conv(k, states[1])
            v, sv = self.value_conv(v, states[2])
            if cache is not None:
                cache.set_conv_state(self.layer_idx, (sq, sk, sv))
        q, k, v = self._heads(F.silu(q), F.silu(k), F.silu(v))
        q, k = l2norm(q), l2norm(k)
        beta = torch.sigmoid(_wide(self.beta_proj(x)))
        g = -_wide(self.A_log).exp() * F.softplus(_wide(self.decay_proj(x)) + _wide(self.dt_bias))
        if mask is not None:  # padding tokens: beta = 0 (no write), g = 0 (no decay)
            beta, g = beta * mask[..., None], g * mask[..., None]
        state = cache.recurrent_state(self.layer_idx) if cache is not None else None
        op = fused_recurrent_gated_delta_rule if self._use_recurrent(T) else chunk_gated_delta_rule
        o, state = op(q, k, v, g, beta, self.key_dim**-0.5, state, cache is not None)
        if cache is not None:
            cache.set_recurrent_state(self.layer_idx, state.to(self.state_dtype))
        return self._output(x, o)


class GatedLinearAttention(LinearMixer):
    """gla_v1: identity feature map, per-key-channel decay gk = logsigmoid(low-rank(x)) / normaliser,
    gated RMSNorm output."""

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        d = config.hidden_size
        rank = config.gla_gate_low_rank_dim
        self.decay_down_proj = nn.Linear(d, rank, bias=False)
        self.decay_up_proj = nn.Linear(rank, self.num_heads * self.key_dim, bias=True)
        self.gate_logit_normalizer = config.gla_gate_logit_normalizer

    def forward(self, x, mask=None, cache=None):
        B, T, _ = x.shape
        q, k, v = self._heads(self.query_proj(x), self.key_proj(x), self.value_proj(x))
        gk = F.logsigmoid(_wide(self.decay_up_proj(self.decay_down_proj(x)))) / self.gate_logit_normalizer
        gk = gk.view(B, T, self.num_heads, self.key_dim)
        if mask is not None:  # padding tokens: k = 0 (no write), gk = 0 (no decay)
            m = mask[:, :, None, None]
            k, gk = k * m.to(k.dtype), gk * m
        state = cache.recurrent_state(self.layer_idx) if cache is not None else None
        op = fused_recurrent_gla if self._use_recurrent(T) else chunk_gla
        o, state = op(q, k, v, gk, self.key_dim**-0.5, state, cache is not None)
        if cache is not None:
            cache.set_recurrent_state(self.layer_idx, state.to(self.state_dtype))
        return self._output(x, o)


LINEAR_MIXER_CLASSES = {"gdn": GatedDeltaNet, "gla": GatedLinearAttention}
