"""Stage losses: the chunked KL/CE equals the full-logits formula (float64) with the same gradients, and
its memory does not grow with the vocabulary; the alignment loss is the paper code's RMS-L2."""

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hybridserve.convert.losses import alignment_loss, chunked_distill_loss, naive_distill_loss


@pytest.mark.parametrize("temperature, kl_weight, ce_weight", [(1.0, 1.0, 0.0), (2.0, 1.0, 0.0), (1.0, 0.0, 1.0), (1.5, 1.0, 0.3)])
@pytest.mark.parametrize("chunk", [7, 64, 1000])
def test_chunked_equals_full_logits_float64(temperature, kl_weight, ce_weight, chunk):
    torch.manual_seed(0)
    N, d, V = 37, 16, 50
    s_hidden = torch.randn(2, N, d, dtype=torch.float64, requires_grad=True)
    s_head = torch.randn(V, d, dtype=torch.float64, requires_grad=True)
    t_hidden, t_head = torch.randn(2, N, d, dtype=torch.float64), torch.randn(V, d, dtype=torch.float64)
    labels = torch.randint(0, V, (2, N))
    labels[0, :5] = -100
    loss, kl, ce = chunked_distill_loss(s_hidden, s_head, t_hidden, t_head, labels, temperature=temperature,
                                        kl_weight=kl_weight, ce_weight=ce_weight, chunk_tokens=chunk)
    grads = torch.autograd.grad(3 * loss, [s_hidden, s_head])
    reference = naive_distill_loss(s_hidden @ s_head.T, t_hidden @ t_head.T, labels, temperature=temperature,
                                   kl_weight=kl_weight, ce_weight=ce_weight)
    ref_grads = torch.autograd.grad(3 * reference, [s_hidden, s_head])
    assert abs(loss.item() - reference.item()) <= 1e-8
    for a, b in zip(grads, ref_grads):
        assert (a - b).abs().max().item() <= 1e-8
    assert abs(kl_weight * kl.item() + ce_weight * ce.item() - loss.item()) <= 1e-10


def test_kl_is_zero_for_identical_models_and_positive_otherwise():
    torch.manual_seed(1)
    h, w = torch.randn(10, 8), torch.randn(30, 8)
    _, kl, _ = chunked_distill_loss(h, w.clone().requires_grad_(), h, w)
    assert abs(kl.item()) < 1e-6
    _, kl, _ = chunked_distill_loss(h, (w + 0.5 * torch.randn_like(w)).requires_grad_(), h, w)
    assert kl.item() > 1e-3


def test_tied_head_gets_both_gradients():
    """With tied embeddings the head weight is also the embedding: gradients from both paths add up."""
    torch.manual_seed(2)
    emb = torch.nn.Embedding(20, 8)
    ids = torch.randint(0, 20, (2, 6))
    t_hidden, t_head = torch.randn(2, 6, 8), torch.randn(20, 8)
    loss, _, _ = chunked_distill_loss(emb(ids).tanh(), emb.weight, t_hidden, t_head, chunk_tokens=4)
    loss.backward()
    ref = emb.weight.detach().clone().requires_grad_()
    naive_distill_loss(torch.nn.functional.embedding(ids, ref).tanh() @ ref.T, t_hidden @ t_head.T).backward()
    assert torch.allclose(emb.weight.grad, ref.grad, atol=1e-6)


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any op creates (elements): a precise, allocator-independent probe."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(result):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return result


def _largest_tensor(n_tokens: int, vocab: int, chunk: int, d: int = 32) -> int:
    torch.manual_seed(0)
    s_hidden = torch.randn(n_tokens, d, requires_grad=True)
    s_head = torch.randn(vocab, d, requires_grad=True)
    t_hidden, t_head = torch.randn(n_tokens, d), torch.randn(vocab, d)
    with LargestTensor() as probe:
        loss, _, _ = chunked_distill_loss(s_hidden, s_head, t_hidden, t_head, chunk_tokens=chunk)
        loss.backward()
    return probe.largest


def test_memory_is_one_chunk_of_logits_not_tokens_times_vocab():
    """No [tokens, vocab] tensor is ever created: the largest is one [chunk, vocab] block (or the
    [vocab, d] head), whatever the number of tokens."""
    chunk, vocab, d = 32, 4096, 32
    for n_tokens in (256, 1024):
        largest = _largest_tensor(n_tokens, vocab, chunk, d)
        assert largest == max(chunk * vocab, vocab * d), (n_tokens, largest)
    assert _largest_tensor(256, 2 * vocab, chunk, d) == chunk * 2 * vocab  # linear in V, chunk-sized slope


def test_alignment_loss_is_rms_l2_per_token():
    s, t = torch.zeros(2, 3, 4), torch.ones(2, 3, 4)
    assert alignment_loss(s, t, "l2").item() == pytest.approx(math.sqrt(4) / math.sqrt(4))
    assert alignment_loss(s, 3 * t, "mse").item() == pytest.approx(9.0)
    with pytest.raises(ValueError, match="unknown alignment loss"):
        alignment_loss(s, t, "cosine")


def test_missing_inputs_are_rejected():
    h, w = torch.randn(4, 8), torch.randn(10, 8)
    with pytest.raises(ValueError, match="teacher"):
        chunked_distill_loss(h, w, None, None)
    with pytest.raises(ValueError, match="labels"):
        chunked_distill_loss(h, w, h, w, None, ce_weight=1.0)
