"""Distillation losses: stage-1 attention-output alignment and stage-2 KL over the full vocabulary.

The KL never materialises a [tokens, vocab] float32 logits tensor for either model: it walks the tokens
in chunks, and computes the gradient of each chunk inside the forward pass (as fla's fused KL does), so
peak memory is one chunk of logits whatever the vocabulary and sequence length.
"""

from __future__ import annotations

import math

import torch


def alignment_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Stage-1 loss of one layer, student vs teacher attention output, both [B, T, d].

    "l2" (RADLADS / the paper's code): mean over tokens of ||t - s||_2 / sqrt(d) — an RMS error per token,
    not squared. "mse": mean squared error.
    """
    diff = student.float() - teacher.float()
    if kind == "l2":
        return diff.norm(dim=-1).mean() / math.sqrt(diff.shape[-1])
    if kind == "mse":
        return diff.pow(2).mean()
    raise ValueError(f"unknown alignment loss {kind!r}; choose l2 or mse")


class _ChunkedDistill(torch.autograd.Function):
    """Mean over tokens of  kl_weight * T^2 * KL(p_t^T || p_s^T) + ce_weight * CE(p_s, label).

    Forward computes loss and gradients chunk by chunk; backward only scales the saved gradients.
    """

    @staticmethod
    def forward(ctx, s_hidden, s_weight, t_hidden, t_weight, labels, temperature, kl_weight, ce_weight, chunk):
        n = s_hidden.shape[0]
        n_valid = max(int((labels >= 0).sum()), 1) if ce_weight else 1  # CE averages over labelled tokens
        acc = torch.float64 if s_hidden.dtype == torch.float64 else torch.float32  # float32 at least
        grad_hidden = torch.zeros_like(s_hidden, dtype=acc)
        grad_weight = torch.zeros_like(s_weight, dtype=acc) if s_weight.requires_grad else None
        kl_sum = s_hidden.new_zeros((), dtype=acc)
        ce_sum = s_hidden.new_zeros((), dtype=acc)
        w_s = s_weight.to(acc)
        w_t = t_weight.to(acc)
        for start in range(0, n, chunk):
            h = s_hidden[start : start + chunk].to(acc)
            s_logits = h @ w_s.T
            grad_logits = torch.zeros_like(s_logits)
            if kl_weight:
                with torch.no_grad():
                    t_logp = torch.log_softmax((t_hidden[start : start + chunk].to(acc) @ w_t.T) / temperature, -1)
                s_logp = torch.log_softmax(s_logits / temperature, -1)
                t_p = t_logp.exp()
                kl_sum += (t_p * (t_logp - s_logp)).sum()
                # d/dz_s of T^2 * KL(p_t || softmax(z_s / T)) = T * (p_s - p_t)
                grad_logits += (kl_weight * temperature / n) * (s_logp.exp() - t_p)
                del t_logp, s_logp, t_p
            if ce_weight:
                logp = torch.log_softmax(s_logits, -1)
                y = labels[start : start + chunk]
                valid = y >= 0
                picked = logp.gather(-1, y.clamp(min=0)[:, None]).squeeze(-1)
                ce_sum -= (picked * valid).sum()
                g = logp.exp()
                g[torch.arange(len(y), device=y.device), y.clamp(min=0)] -= 1.0
                grad_logits += (ce_weight / n_valid) * g * valid[:, None]
                del logp, g
            grad_hidden[start : start + chunk] = grad_logits @ w_s
            if grad_weight is not None:
                grad_weight += grad_logits.T @ h
            del s_logits, grad_logits
        ctx.save_for_backward(grad_hidden, grad_weight if grad_weight is not None else torch.empty(0))
        ctx.has_weight_grad = grad_weight is not None
        ctx.dtypes = (s_hidden.dtype, s_weight.dtype)
        kl = kl_sum * temperature**2 / n
        ce = ce_sum / n_valid
        ctx.mark_non_differentiable(kl, ce)
        return kl_weight * kl + ce_weight * ce, kl, ce

    @staticmethod
    def backward(ctx, grad_loss, _grad_kl, _grad_ce):
        grad_hidden, grad_weight = ctx.saved_tensors
        gh = (grad_hidden * grad_loss).to(ctx.dtypes[0])
        gw = (grad_weight * grad_loss).to(ctx.dtypes[1]) if ctx.has_weight_grad else None
        return gh, gw, None, None, None, None, None, None, None


def chunked_distill_loss(
    student_hidden: torch.Tensor,
    student_head: torch.Tensor,
    teacher_hidden: torch.Tensor | None,
    teacher_head: torch.Tensor | None,
    labels: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
    kl_weight: float = 1.0,
    ce_weight: float = 0.0,
    chunk_tokens: int = 1024,
):
    """Distillation loss from final hidden states and LM-head weights, chunked over tokens.

    student_hidden / teacher_hidden: [..., d] (flattened to tokens); heads: [V, d]. Returns
    (loss, kl, ce) where loss = kl_weight * KL + ce_weight * CE and kl / ce are detached per-token means
    (KL(teacher || student) in nats, times T^2). `labels` ([...], -100 = ignore) are needed for CE.
    """
    if kl_weight and (teacher_hidden is None or teacher_head is None):
        raise ValueError("a KL term needs the teacher's hidden states and LM head")
    if ce_weight and labels is None:
        raise ValueError("a CE term needs labels")
    d = student_hidden.shape[-1]
    s = student_hidden.reshape(-1, d)
    t = teacher_hidden.reshape(-1, d).detach() if teacher_hidden is not None else s.detach()
    tw = teacher_head.detach() if teacher_head is not None else student_head.detach()
    y = labels.reshape(-1) if labels is not None else torch.zeros(s.shape[0], dtype=torch.long, device=s.device)
    return _ChunkedDistill.apply(s, student_head, t, tw, y, float(temperature), float(kl_weight), float(ce_weight), int(chunk_tokens))


def naive_distill_loss(student_logits, teacher_logits, labels=None, *, temperature=1.0, kl_weight=1.0, ce_weight=0.0):
    """The same loss from full logits (tests only: it materialises [tokens, vocab])."""
    V = student_logits.shape[-1]
    s = student_logits.reshape(-1, V)
    loss = s.new_zeros(())
    if kl_weight:
        t_logp = torch.log_softmax(teacher_logits.reshape(-1, V) / temperature, -1)
        s_logp = torch.log_softmax(s / temperature, -1)
        kl = torch.nn.functional.kl_div(s_logp, t_logp, log_target=True, reduction="sum") / s.shape[0]
        loss = loss + kl_weight * kl * temperature**2
    if ce_weight:
        loss = loss + ce_weight * torch.nn.functional.cross_entropy(s, labels.reshape(-1), ignore_index=-100)
    return loss
