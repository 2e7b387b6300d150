"""Stage 0 (`hybridserve.convert.stage0.build_student`): what is copied, how k/v are expanded (method.md §9
defect 1), bias transfer (defect 2), tied embeddings (defect 4), gradients everywhere (defect 7), fresh init
(§3.3) and the errors for bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from hybridserve.convert.stage0 import build_student, expand_kv
from hybridserve.export import HybridConfig, HybridConfigError

VOCAB, HEADS, KV_HEADS, HEAD_DIM, HIDDEN = 256, 4, 2, 32, 128
GROUP = HEADS // KV_HEADS
FAMILIES = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread is faster, and far faster when other jobs share the 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@torch.no_grad()
def tiny_teacher(family="llama", layers=3, seed=0, **overrides):
    config_cls, model_cls = FAMILIES[family]
    kwargs = dict(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=256, num_hidden_layers=layers,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM, max_position_embeddings=128,
        initializer_range=0.1, bos_token_id=None, eos_token_id=None, pad_token_id=None, tie_word_embeddings=False,
    )
    kwargs.update(overrides)
    torch.manual_seed(seed)
    model = model_cls(config_cls(**kwargs)).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    for name, p in model.named_parameters():  # random biases and norm weights, so copying them is visible
        if name.endswith("bias"):
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))
        elif "norm" in name:
            p.copy_(0.5 + torch.rand(p.shape, generator=gen))
    return model


def build(teacher, softmax_layers=(1,), **options):
    torch.manual_seed(1)
    student, report = build_student(teacher, list(softmax_layers), **options)
    return student, report


def heads(weight, n):
    """[n * D, ...] rows -> [n, D, ...] per head."""
    return weight.reshape(n, -1, *weight.shape[1:])


# ---------------------------------------------------------------------------------- k/v expansion
@pytest.mark.parametrize("mixer", ["gdn", "gla"])
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_head_faithful_kv_expansion(family, mixer):
    teacher = tiny_teacher(family)
    student, report = build(teacher, [1], mixer=mixer)
    assert student.config.linear_gqa_mode == "head" and student.config.linear_num_kv_heads == HEADS
    for i in (0, 2):
        t_attn = teacher.model.layers[i].self_attn
        s_attn = student.model.layers[i].linear_attn
        for t_proj, s_proj in ((t_attn.k_proj, s_attn.key_proj), (t_attn.v_proj, s_attn.value_proj)):
            assert s_proj.weight.shape == (HEADS * HEAD_DIM, HIDDEN)
            t_w, s_w = heads(t_proj.weight, KV_HEADS), heads(s_proj.weight, HEADS)
            for h in range(HEADS):
                assert torch.equal(s_w[h], t_w[h // GROUP]), f"layer {i} head {h}"
            if family == "qwen2":  # method.md defect 2: the teacher's biases are transferred
                t_b, s_b = heads(t_proj.bias, KV_HEADS), heads(s_proj.bias, HEADS)
                assert t_proj.bias.abs().min() > 0
                for h in range(HEADS):
                    assert torch.equal(s_b[h], t_b[h // GROUP])
            else:
                assert s_proj.bias is None
        # q and o are copied exactly (with q's bias for Qwen2)
        assert torch.equal(s_attn.query_proj.weight, t_attn.q_proj.weight)
        assert torch.equal(s_attn.out_proj.weight, t_attn.o_proj.weight)
        if family == "qwen2":
            assert torch.equal(s_attn.query_proj.bias, t_attn.q_proj.bias)
        assert f"model.layers.{i}.linear_attn.key_proj.weight" in report.expanded
    assert student.config.linear_qkv_bias is (family == "qwen2")


def test_head_expansion_keeps_teacher_attention_scores():
    """Head-faithful k: student head h's q.k^T equals the teacher's for query head h (before the feature map)."""
    teacher = tiny_teacher("llama")
    student, _ = build(teacher, [1])
    x = torch.randn(5, HIDDEN)
    t_attn, s_attn = teacher.model.layers[0].self_attn, student.model.layers[0].linear_attn
    tq, tk = t_attn.q_proj(x).view(5, HEADS, -1), t_attn.k_proj(x).view(5, KV_HEADS, -1)
    sq, sk = s_attn.query_proj(x).view(5, HEADS, -1), s_attn.key_proj(x).view(5, HEADS, -1)
    for h in range(HEADS):
        assert torch.allclose(sq[:, h] @ sk[:, h].T, tq[:, h] @ tk[:, h // GROUP].T, atol=1e-5)


def test_legacy_row_expansion_reproduces_the_paper_and_is_not_head_faithful():
    teacher = tiny_teacher("qwen2")
    student, _ = build(teacher, [1], gqa_mode="legacy_row")
    assert student.config.linear_gqa_mode == "legacy_row"
    t_attn, s_attn = teacher.model.layers[0].self_attn, student.model.layers[0].linear_attn
    for t_proj, s_proj in ((t_attn.k_proj, s_attn.key_proj), (t_attn.v_proj, s_attn.value_proj)):
        assert torch.equal(s_proj.weight, t_proj.weight.repeat_interleave(GROUP, dim=0))
        assert torch.equal(s_proj.bias, t_proj.bias.repeat_interleave(GROUP, dim=0))
        faithful = heads(t_proj.weight, KV_HEADS).repeat_interleave(GROUP, dim=0).reshape(s_proj.weight.shape)
        assert not torch.equal(s_proj.weight, faithful)
        # head 1 should be a copy of teacher KV head 0 but holds rows of it duplicated instead
        assert not torch.equal(heads(s_proj.weight, HEADS)[1], heads(t_proj.weight, KV_HEADS)[0])


def test_runtime_gqa_keeps_kv_heads():
    teacher = tiny_teacher("qwen2")
    student, _ = build(teacher, [1], gqa_mode="runtime")
    assert student.config.linear_num_kv_heads == KV_HEADS and student.config.linear_num_heads == HEADS
    t_attn, s_attn = teacher.model.layers[2].self_attn, student.model.layers[2].linear_attn
    assert s_attn.num_kv_heads == KV_HEADS
    for t_proj, s_proj in ((t_attn.k_proj, s_attn.key_proj), (t_attn.v_proj, s_attn.value_proj)):
        assert s_proj.weight.shape == (KV_HEADS * HEAD_DIM, HIDDEN)
        assert torch.equal(s_proj.weight, t_proj.weight) and torch.equal(s_proj.bias, t_proj.bias)
    # and at run time head h reads KV head h // group: same mixer output as the head-expanded student
    expanded, _ = build(teacher, [1], gqa_mode="head")
    expanded.load_state_dict(
        {**expanded.state_dict(), **{k: v for k, v in student.state_dict().items() if "key_proj" not in k
                                     and "value_proj" not in k}}
    )
    ids = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(student(ids, use_cache=False).logits, expanded(ids, use_cache=False).logits, atol=1e-5)


def test_expand_kv_modes():
    w = torch.arange(2 * 3 * 5, dtype=torch.float32).view(6, 5)  # 2 KV heads of 3 rows
    head = expand_kv(w, 2, 4, "head")
    assert torch.equal(head, torch.cat([w[0:3], w[0:3], w[3:6], w[3:6]]))
    assert torch.equal(expand_kv(w, 2, 4, "legacy_row"), w.repeat_interleave(2, dim=0))
    assert torch.equal(expand_kv(w, 2, 4, "runtime"), w)
    b = torch.arange(6.0)
    assert torch.equal(expand_kv(b, 2, 4, "head"), torch.cat([b[:3], b[:3], b[3:], b[3:]]))
    assert torch.equal(expand_kv(w, 4, 4, "head"), w)


def test_bias_transfer_can_be_turned_off():
    teacher = tiny_teacher("qwen2")
    student, _ = build(teacher, [1], transfer_bias=False)
    assert student.model.layers[0].linear_attn.key_proj.bias is None
    # the kept softmax layer is the teacher's, biases included
    assert torch.equal(student.model.layers[1].self_attn.k_proj.bias, teacher.model.layers[1].self_attn.k_proj.bias)


# ------------------------------------------------------------------------------- what is copied as is
@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_shared_weights_and_softmax_layers_are_identical(family):
    teacher = tiny_teacher(family)
    student, report = build(teacher, [1])
    t_sd, s_sd = teacher.state_dict(), student.state_dict()
    shared = [k for k in t_sd if ".self_attn." not in k or k.startswith("model.layers.1.")]
    assert any("q_norm" in k for k in shared) == (family == "qwen3")
    for key in shared:
        assert key in s_sd, key
        assert torch.equal(s_sd[key], t_sd[key]), key
    assert not any(k.startswith("model.layers.1.linear_attn") for k in s_sd)
    assert not any(k.startswith(("model.layers.0.self_attn", "model.layers.2.self_attn")) for k in s_sd)
    # every teacher tensor is used except the replaced attentions' own extras (Qwen3's q/k norms)
    assert all(".self_attn." in k and "_norm" in k for k in report.dropped), report.dropped
    assert student.lm_head.weight is not student.model.embed_tokens.weight


def test_tied_embeddings_stay_tied():
    teacher = tiny_teacher("qwen2", tie_word_embeddings=True)
    assert teacher.lm_head.weight is teacher.model.embed_tokens.weight
    student, report = build(teacher, [1])
    assert student.config.tie_word_embeddings is True
    assert student.lm_head.weight is student.model.embed_tokens.weight
    assert torch.equal(student.lm_head.weight, teacher.model.embed_tokens.weight)
    assert "lm_head.weight" not in report.fresh
    # still tied after training-like updates
    with torch.no_grad():
        student.model.embed_tokens.weight.add_(1.0)
    assert torch.equal(student.lm_head.weight, student.model.embed_tokens.weight)


def test_untied_embeddings_stay_untied():
    teacher = tiny_teacher("llama", tie_word_embeddings=False)
    student, _ = build(teacher, [1])
    assert student.config.tie_word_embeddings is False
    assert student.lm_head.weight is not student.model.embed_tokens.weight
    assert student.lm_head.weight.data_ptr() != student.model.embed_tokens.weight.data_ptr()
    assert torch.equal(student.lm_head.weight, teacher.lm_head.weight)
    assert not torch.equal(student.lm_head.weight, student.model.embed_tokens.weight)


# --------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize(
    "family, options, tied",
    [
        ("llama", dict(mixer="gdn"), False),
        ("qwen2", dict(mixer="gdn", short_conv=True), True),
        ("qwen3", dict(mixer="gla"), False),
        ("llama", dict(mixer="gdn", gqa_mode="runtime"), True),
    ],
)
def test_every_trainable_parameter_gets_a_gradient(family, options, tied):
    """method.md defect 7: no detached or dead weights anywhere in the student."""
    teacher = tiny_teacher(family, tie_word_embeddings=tied)
    student, _ = build(teacher, [1], **options)
    student.train()
    ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(0))
    loss = student(ids, labels=ids, use_cache=False).loss
    assert torch.isfinite(loss)
    loss.backward()
    params = dict(student.named_parameters())
    assert params, "no parameters"
    for name, p in params.items():
        assert p.requires_grad, name
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, f"{name} got a zero gradient"


# --------------------------------------------------------------------------------------- fresh init
@pytest.mark.parametrize("mixer", ["gdn", "gla"])
def test_fresh_parameters(mixer):
    teacher = tiny_teacher("llama", layers=4)
    student, report = build(teacher, [1], mixer=mixer, short_conv=mixer == "gdn")
    bound = 1 / math.sqrt(HIDDEN)  # PyTorch's default nn.Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for i in student.config.linear_layers:
        mixer_module = student.model.layers[i].linear_attn
        assert torch.equal(mixer_module.out_norm.weight, torch.ones(HEAD_DIM))
        fresh = [mixer_module.out_gate_proj]
        if mixer == "gdn":
            A = mixer_module.A_log.exp()
            assert ((A > 0) & (A <= 16)).all() and A.max() > 1  # A ~ U(0, 16)
            dt = F.softplus(mixer_module.dt_bias)
            assert ((dt >= 1e-4 * 0.999) & (dt <= 0.1 * 1.001)).all()
            fresh += [mixer_module.beta_proj, mixer_module.decay_proj]
            conv_bound = 1 / math.sqrt(mixer_module.query_conv.size)
            for conv in (mixer_module.query_conv, mixer_module.key_conv, mixer_module.value_conv):
                assert conv.weight.abs().max() <= conv_bound and conv.weight.std() > conv_bound / 3
        else:
            fresh += [mixer_module.decay_down_proj]
        for linear in fresh:
            w = linear.weight
            assert w.abs().max() <= bound and w.std() > bound / 2.5, "not the default nn.Linear init"
        names = [f"model.layers.{i}.linear_attn.{n}" for n in ("out_gate_proj.weight", "out_norm.weight")]
        assert all(n in report.fresh for n in names)
    # heads differ: A_log and dt_bias are drawn per head
    gdn = student.model.layers[0].linear_attn
    if mixer == "gdn":
        assert gdn.A_log.unique().numel() == HEADS and gdn.dt_bias.unique().numel() == HEADS


def test_a_seed_makes_stage0_reproducible_and_leaves_the_random_state_alone():
    """build_student(seed=s): the same student every time (what `hybridserve export --seed` relies on: the same
    command, the same checkpoint), another seed other fresh parameters, the teacher's copies unchanged, and the
    caller's random state untouched."""
    teacher = tiny_teacher("llama", layers=4)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, _ = build_student(teacher, [1], seed=0, short_conv=True)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.rand(7)  # a different random state going in: the seed decides alone
    b, _ = build_student(teacher, [1], seed=0, short_conv=True)
    c, report = build_student(teacher, [1], seed=1, short_conv=True)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[n], sb[n]) for n in sa)
    assert not torch.equal(sa["model.layers.0.linear_attn.beta_proj.weight"],
                           sc["model.layers.0.linear_attn.beta_proj.weight"])
    assert all(torch.equal(sa[n], sc[n]) for n in report.copied)


def test_decay_init_distribution():
    from hybridserve.export.linear_attention import decay_init

    torch.manual_seed(0)
    A_log, dt_bias = decay_init(20000)
    A, dt = A_log.exp(), F.softplus(dt_bias)
    assert 0 < A.min() and A.max() <= 16 and abs(A.mean().item() - 8) < 0.2
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    # log-uniform: the median of dt is near sqrt(1e-3 * 1e-1) = 1e-2
    assert abs(math.log10(dt.median().item()) + 2) < 0.05


# --------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "layers, named",
    [([3], "3"), ([0, 7], "7"), ([-1], "-1"), ([1, 1], "1"), ([0, 2, 2], "2"), ([1.0], "1.0"), (["1"], "'1'"),
     ([True], "True")],
)
def test_bad_softmax_layers(layers, named):
    teacher = tiny_teacher("llama")
    with pytest.raises(HybridConfigError) as err:
        build_student(teacher, layers)
    assert named in str(err.value)


def test_unsupported_teacher_family():
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(
        GPT2Config(n_embd=64, n_layer=2, n_head=2, vocab_size=VOCAB, n_positions=32, bos_token_id=0, eos_token_id=0)
    )
    with pytest.raises(HybridConfigError, match="gpt2"):
        build_student(gpt2, [0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_hidden_layers=3, layer_types=["linear_attention"] * 2), "layer_types has 2 entries"),
        (dict(num_hidden_layers=2, layer_types=["linear_attention"] * 3), "layer_types has 3 entries"),
        (dict(num_hidden_layers=2, layer_types=["linear_attention", "sliding"]), "sliding"),
        (dict(num_hidden_layers=2, layer_types=["linear_attention", "mamba"]), "mamba"),
        (dict(linear_mixer="mamba2"), "mamba2"),
        (dict(teacher_family="gpt2"), "gpt2"),
        (dict(linear_gqa_mode="rows"), "rows"),
        (dict(num_hidden_layers=2, teacher_layer_types=["full_attention"]), "teacher_layer_types"),
    ],
)
def test_bad_hybrid_config(kwargs, message):
    base = dict(hidden_size=HIDDEN, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, num_hidden_layers=2)
    with pytest.raises(HybridConfigError, match=message):
        HybridConfig(**{**base, **kwargs})
