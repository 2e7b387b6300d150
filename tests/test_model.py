"""HybridForCausalLM on tiny random teachers: teacher equivalence, padding, cache / generate, chunk vs recurrent.

Every teacher is a randomly initialised transformers model (hidden 128, 4 heads of 32, 2 KV heads, vocab 256,
float32) with a large init range, random biases and random norm weights, so that attention is far from
uniform and every feature under test (RoPE scaling, sliding window, biases, qk-norm) changes the logits.
"""

from __future__ import annotations

import pytest
import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from hybridserve.convert.stage0 import build_student
from hybridserve.export import HybridConfig
from hybridserve.export import linear_attention
from hybridserve.export.cache_hybrid import HybridCache
from hybridserve.export.linear_attention import RECURRENT_MAX_TOKENS

VOCAB = 256
FAMILIES = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
}
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 10000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is faster, and far faster when other jobs share the 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_teacher(family="llama", layers=2, seed=0, **overrides):
    """A random float32 teacher whose biases and norm weights are random too (so copying them is tested)."""
    config_cls, model_cls = FAMILIES[family]
    kwargs = dict(
        vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=256, initializer_range=0.1,
        bos_token_id=None, eos_token_id=None, pad_token_id=None, tie_word_embeddings=False,
    )
    kwargs.update(overrides)
    torch.manual_seed(seed)
    model = model_cls(config_cls(**kwargs)).eval()
    randomize_(model, seed)
    return model


@torch.no_grad()
def randomize_(model, seed=0):
    gen = torch.Generator().manual_seed(seed + 1)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))
        elif "norm" in name:
            p.copy_(0.5 + torch.rand(p.shape, generator=gen))


def random_ids(batch, length, seed=0):
    return torch.randint(1, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def left_pad(seqs, pad_id=0):
    """[B, T] ids and mask for sequences of different lengths, padded on the left."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, T - len(s):] = s
        mask[i, T - len(s):] = 1
    return ids, mask


def max_diff(a, b):
    return (a - b).abs().max().item()


def student_of(teacher, softmax_layers, **options):
    torch.manual_seed(123)
    student, _ = build_student(teacher, softmax_layers, **options)
    return student.eval()


# ------------------------------------------------------------------------------- 1. teacher equivalence
TEACHERS = {
    "llama": dict(family="llama"),
    "qwen2": dict(family="qwen2"),
    "qwen3": dict(family="qwen3"),
    "llama3_rope": dict(family="llama", rope_parameters=LLAMA3_ROPE, max_position_embeddings=128),
    "mistral_window": dict(family="mistral", sliding_window=8),
}


@pytest.mark.parametrize("name", list(TEACHERS))
@torch.no_grad()
def test_all_softmax_hybrid_reproduces_teacher(name):
    teacher = tiny_teacher(**TEACHERS[name])
    L = teacher.config.num_hidden_layers
    student = student_of(teacher, list(range(L)))
    assert student.config.softmax_layers == list(range(L))
    ids = random_ids(2, 24, seed=1)
    expected = teacher(ids).logits
    got = student(ids, use_cache=False).logits
    assert expected.abs().max() > 1.0  # logits of a useful size: 1e-5 is a real tolerance
    assert max_diff(got, expected) <= 1e-5

    # left-padded batch, same positions for both (the teacher would count pads without position_ids)
    seqs = [random_ids(1, n, seed=10 + n)[0] for n in (24, 17, 9)]
    ids, mask = left_pad(seqs)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    expected = teacher(ids, attention_mask=mask, position_ids=pos).logits
    got = student(ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
    real = mask.bool()
    assert max_diff(got[real], expected[real]) <= 1e-5
    # the hybrid derives the same positions from the mask by itself
    got = student(ids, attention_mask=mask, use_cache=False).logits
    assert max_diff(got[real], expected[real]) <= 1e-5

    # cached incremental decoding of the all-softmax hybrid still reproduces the teacher's full forward
    ids = random_ids(2, 24, seed=2)
    expected = teacher(ids).logits
    cache = HybridCache(student.config)
    pieces = [student(ids[:, :10], cache=cache, use_cache=True).logits]
    for t in range(10, 24):
        pieces.append(student(ids[:, t:t + 1], cache=cache, use_cache=True).logits)
    assert cache.get_seq_length() == 24
    assert max_diff(torch.cat(pieces, 1), expected) <= 1e-5


@torch.no_grad()
def test_teacher_features_matter():
    """The equivalence above could not pass by accident: each feature changes the teacher's logits."""
    ids = random_ids(1, 24, seed=3)

    def logits(**kw):
        return tiny_teacher(**kw)(ids).logits

    assert max_diff(logits(family="llama", rope_parameters=LLAMA3_ROPE, max_position_embeddings=128),
                    logits(family="llama", max_position_embeddings=128)) > 1e-2
    assert max_diff(logits(family="mistral", sliding_window=8), logits(family="mistral", sliding_window=None)) > 1e-2
    qwen2 = tiny_teacher("qwen2")
    assert qwen2.model.layers[0].self_attn.k_proj.bias.abs().min() > 0
    qwen3 = tiny_teacher("qwen3")
    assert not torch.allclose(qwen3.model.layers[0].self_attn.q_norm.weight, torch.ones(32))
    # a Mistral window reaches the hybrid as a per-layer sliding window
    student = student_of(tiny_teacher("mistral", sliding_window=8), [0, 1])
    assert [student.config.sliding_window_of(i) for i in range(2)] == [8, 8]
    assert student.config.rope_parameters["rope_type"] == "default"
    student = student_of(tiny_teacher("llama", rope_parameters=LLAMA3_ROPE, max_position_embeddings=128), [0, 1])
    assert student.config.rope_parameters == LLAMA3_ROPE


# ------------------------------------------------------------------------------------------ 2. padding
MIXED = {
    "gdn": dict(),
    "gla": dict(mixer="gla"),
    "gdn_conv": dict(short_conv=True),
    "gdn_runtime_gqa": dict(gqa_mode="runtime"),
}


@pytest.fixture(scope="module")
def teacher4():
    return tiny_teacher("llama", layers=4, seed=4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("lengths", [(5, 11, 17), (70, 50, 30)], ids=["recurrent", "chunk"])
@pytest.mark.parametrize("name", list(MIXED))
@torch.no_grad()
def test_left_padding_equals_unpadded(teacher4, name, lengths, dtype):
    """Pads neither write nor decay the linear state, shift no conv window and are not attended to.

    "chunk": the padded batch (70 tokens) runs the chunk op while the 50- and 30-token sequences alone run
    the recurrent one. float64 shows the equivalence is exact; float32 allows rounding relative to the
    logits' size (differently shaped batches round differently, and the delta rule amplifies it a little).
    """
    student = student_of(teacher4, [1], **MIXED[name]).to(dtype)
    seqs = [random_ids(1, n, seed=n)[0] for n in lengths]
    ids, mask = left_pad(seqs)
    batched = student(ids, attention_mask=mask, use_cache=False).logits
    assert batched.dtype == dtype
    tol = 1e-5 * max(1.0, batched.abs().max().item()) if dtype == torch.float32 else 1e-10
    for i, s in enumerate(seqs):
        alone = student(s[None], use_cache=False).logits[0]
        assert max_diff(batched[i, -len(s):], alone) <= tol, f"sequence {i} ({len(s)} tokens)"


@pytest.mark.parametrize("T", [20, 90], ids=["recurrent", "chunk"])
@pytest.mark.parametrize("name", ["gdn", "gla", "gdn_runtime_gqa"])
@torch.no_grad()
def test_masked_tokens_leave_a_live_state_alone(teacher4, name, T):
    """Left padding meets a zero state, where a pad's decay would go unnoticed; here masked tokens sit in
    the middle of a sequence whose state is already non-zero, so they must neither write nor decay it.
    (Not for the short conv: a masked token is a zero inside its window, by design.)"""
    student = student_of(teacher4, [1], **MIXED[name])
    mixer = student.model.layers[0].linear_attn
    gen = torch.Generator().manual_seed(9)
    prefix, x = torch.randn(2, 7, 128, generator=gen), torch.randn(2, T, 128, generator=gen)
    mask = torch.ones(2, T)
    mask[:, 3:9] = 0
    mask[:, T - 4:T - 2] = 0
    keep = mask[0].bool()
    caches = [HybridCache(student.config), HybridCache(student.config)]
    for cache in caches:
        mixer(prefix, None, cache)
    assert caches[0].recurrent_state(0).abs().max() > 0
    masked = mixer(x, mask, caches[0])
    dropped = mixer(x[:, keep], None, caches[1])
    assert max_diff(masked[:, keep], dropped) <= 1e-5
    assert max_diff(caches[0].recurrent_state(0), caches[1].recurrent_state(0)) <= 1e-5


@torch.no_grad()
def test_padding_is_not_ignored_without_a_mask(teacher4):
    """Sanity for the test above: without the mask, pad tokens do change the real tokens' logits."""
    student = student_of(teacher4, [1])
    seqs = [random_ids(1, n, seed=n)[0] for n in (5, 11)]
    ids, _ = left_pad(seqs)
    unmasked = student(ids, use_cache=False).logits
    alone = student(seqs[0][None], use_cache=False).logits[0]
    assert max_diff(unmasked[0, -5:], alone) > 1e-3


# ------------------------------------------------------------------------------------- 3. cache, generate
def greedy_without_cache(model, ids, mask, steps):
    for _ in range(steps):
        logits = model(ids, attention_mask=mask, use_cache=False).logits[:, -1]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], 1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    return ids


@pytest.mark.parametrize("name", list(MIXED))
@torch.no_grad()
def test_generate_with_cache_equals_greedy_recomputation(teacher4, name):
    student = student_of(teacher4, [1], **MIXED[name])
    seqs = [random_ids(1, n, seed=20 + n)[0] for n in (12, 7, 3)]
    ids, mask = left_pad(seqs)
    seen = []
    hook = student.model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        out = student.generate(
            ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None
        )
    finally:
        hook.remove()
    assert seen == [12] + [1] * 7  # the prompt once, then one new token per step: the cache was used
    expected = greedy_without_cache(student, ids, mask, 8)
    assert out.shape == expected.shape == (3, 20)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("name", list(MIXED))
@torch.no_grad()
def test_chunk_prefill_then_recurrent_decode(teacher4, name, monkeypatch):
    """A prompt longer than RECURRENT_MAX_TOKENS is prefilled by the chunk op; the following tokens run the
    recurrent op from the cached state. Together they give the logits of one full forward."""
    student = student_of(teacher4, [1], **MIXED[name])
    calls = []  # (op, tokens) for every linear-layer call

    def spy(op, fn):
        def wrapped(*args, **kwargs):
            calls.append((op, args[0].shape[1]))
            return fn(*args, **kwargs)
        return wrapped

    for op in ("chunk_gated_delta_rule", "fused_recurrent_gated_delta_rule", "chunk_gla", "fused_recurrent_gla"):
        monkeypatch.setattr(linear_attention, op, spy(op, getattr(linear_attention, op)))
    ids = random_ids(2, 160, seed=5)
    full = student(ids, use_cache=False).logits
    assert calls and all(op.startswith("chunk") for op, _ in calls)
    calls.clear()
    cache = HybridCache(student.config)
    pieces, t = [], 0
    for n in (80, 1, 1, 3, 65, 10):  # chunk, recurrent, ..., chunk from a cached state, recurrent
        pieces.append(student(ids[:, t:t + n], cache=cache, use_cache=True).logits)
        t += n
    assert cache.get_seq_length() == 160
    assert max_diff(torch.cat(pieces, 1), full) <= 1e-4
    per_layer = len(student.config.linear_layers)
    assert len(calls) == 6 * per_layer
    assert [(op.startswith("chunk"), n) for op, n in calls[::per_layer]] == [
        (True, 80), (False, 1), (False, 1), (False, 3), (True, 65), (False, 10)
    ]
    assert RECURRENT_MAX_TOKENS == 64


@torch.no_grad()
def test_generate_long_prompt_batch(teacher4):
    """generate() over a left-padded batch whose prompt exceeds RECURRENT_MAX_TOKENS (chunk prefill)."""
    student = student_of(teacher4, [1], mixer="gdn", short_conv=True)
    seqs = [random_ids(1, n, seed=40 + n)[0] for n in (70, 66, 20)]
    ids, mask = left_pad(seqs)
    out = student.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0,
                           eos_token_id=None)
    assert torch.equal(out, greedy_without_cache(student, ids, mask, 5))


@pytest.mark.parametrize("name", ["gdn_conv", "gla"])
@torch.no_grad()
def test_generate_from_inputs_embeds(teacher4, name):
    """A prompt given as embeddings: afterwards input_ids holds only the generated tokens."""
    student = student_of(teacher4, [1], **MIXED[name])
    ids = random_ids(2, 9, seed=8)
    options = dict(max_new_tokens=5, do_sample=False, pad_token_id=0, eos_token_id=None)
    from_ids = student.generate(ids, **options)
    from_embeds = student.generate(inputs_embeds=student.model.embed_tokens(ids), **options)
    assert torch.equal(from_embeds, from_ids[:, 9:])


@torch.no_grad()
def test_cache_holds_constant_linear_state(teacher4):
    student = student_of(teacher4, [1], gqa_mode="runtime", short_conv=True)
    cache = HybridCache(student.config)
    student(random_ids(2, 30), cache=cache, use_cache=True)
    before = cache.state_bytes()
    kv_before = cache.keys[1].shape
    student(random_ids(2, 1), cache=cache, use_cache=True)
    assert cache.keys[1].shape[-2] == kv_before[-2] + 1
    for i in student.config.linear_layers:
        assert cache.keys[i] is None
        assert cache.states[i].shape == (2, 4, 32, 32) and cache.states[i].dtype == torch.float32
        assert [c.shape[-1] for c in cache.conv_states[i]] == [3, 3, 3]
    # one more token adds only the softmax layer's k and v: 2 KV heads * 32 * 2 tensors * 2 sequences * 4 bytes
    assert cache.state_bytes() - before == 2 * 32 * 2 * 2 * 4


# ------------------------------------------------------------------------------------ 5. config round trip
def test_config_round_trip():
    config = HybridConfig(
        teacher_family="qwen2", vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, rope_parameters=dict(LLAMA3_ROPE),
        sliding_window=8, teacher_layer_types=["full_attention", "sliding_attention"] * 2,
        layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
        linear_mixer="gdn", linear_gqa_mode="runtime", linear_qkv_bias=True, linear_short_conv=True, linear_conv_size=3,
        linear_state_dtype="bfloat16", tie_word_embeddings=True,
    )
    d = config.to_dict()
    again = HybridConfig(**d)
    assert again.to_dict() == d
    for key in ("layer_types", "teacher_layer_types", "linear_mixer", "linear_gqa_mode", "linear_num_kv_heads",
                "linear_conv_size", "linear_short_conv", "rope_parameters", "sliding_window", "attention_bias",
                "tie_word_embeddings", "linear_state_dtype"):
        assert getattr(again, key) == getattr(config, key), key
    assert again.softmax_layers == [1, 3] and again.linear_layers == [0, 2]
    assert again.linear_num_kv_heads == 2 and again.attention_bias is True
    assert again.sliding_window_of(1) == again.sliding_window_of(3) == 8 and again.sliding_window_of(0) is None
    assert HybridConfig(num_hidden_layers=3, num_attention_heads=4, hidden_size=128).softmax_layers == []
