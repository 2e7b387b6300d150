"""The model on a GPU (run on the device machine; CPU-only machines skip this file).

Everything else in the suite runs on CPU; these checks add what only a GPU shows: CUDA SDPA in the
softmax layers, bf16 weights with a float32 recurrent state, and cached generation on the device.
"""

import pytest
import torch
import transformers as tf

from hybridserve.convert.stage0 import build_student

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _teacher(family="llama", layers=4):
    cls, cfg = {"llama": (tf.LlamaForCausalLM, tf.LlamaConfig), "qwen2": (tf.Qwen2ForCausalLM, tf.Qwen2Config)}[family]
    torch.manual_seed(0)
    config = cfg(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=layers,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=32, tie_word_embeddings=True)
    return cls(config).eval().cuda()


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_all_softmax_matches_teacher_on_cuda(family):
    teacher = _teacher(family)
    student, _ = build_student(teacher, list(range(4)))
    ids = torch.randint(0, 256, (2, 50), device="cuda")
    with torch.no_grad():
        diff = (teacher(ids).logits - student(ids).logits).abs().max().item()
    assert diff <= 1e-5


@pytest.mark.parametrize("mixer", ["gdn", "gla"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cached_generation_equals_recomputation_on_cuda(mixer, dtype):
    teacher = _teacher()
    student, _ = build_student(teacher, [1], mixer=mixer)
    student = student.to(dtype)
    ids = torch.randint(3, 256, (3, 12), device="cuda")
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding
    mask[1, :2] = 0
    with torch.no_grad():
        generated = student.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
        seq, m = ids, mask
        for _ in range(8):
            nxt = student(seq, attention_mask=m, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            seq, m = torch.cat([seq, nxt], 1), torch.cat([m, torch.ones_like(nxt)], 1)
    if dtype == torch.float32:
        assert torch.equal(generated, seq)
    else:  # bf16 rounding may flip a near-tie; the first tokens must agree
        assert torch.equal(generated[:, :14], seq[:, :14])
    cache_dtype = {s.dtype for s in _recurrent_states(student, ids, mask)}
    assert cache_dtype == {torch.float32}


def _recurrent_states(model, ids, mask):
    from hybridserve.export.cache_hybrid import HybridCache

    cache = HybridCache(model.config)
    with torch.no_grad():
        model(ids, attention_mask=mask, cache=cache)
    return [s for s in cache.states if s is not None]
