"""The model card (README.md) of an exported hybrid: what it is, its layer map, settings, memory, provenance.

Kept apart from checkpoint.py because it is text layout only; `save_hybrid` calls `write_model_card`
with the provenance and `memory_summary` it has already computed.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .memory import format_bytes

_MIXER_NAMES = {"gdn": "Gated DeltaNet", "gla": "Gated Linear Attention (GLA)"}


def layer_map(config) -> str:
    """'S L L S': one letter per layer, S = softmax attention, L = linear attention."""
    return " ".join("S" if t == "full_attention" else "L" for t in config.layer_types)


_CARD = """---
{front}
---

# {name}

A linear/softmax **hybrid** distilled from {teacher} with hybridserve: {n_soft} of {n_layers} layers keep the
teacher's softmax attention, the other {n_lin} use {mixer}, whose fixed-size recurrent state replaces a KV
cache that grows with every token.

## Layer map

`S` = softmax attention, `L` = linear attention, layer 0 first:

```
{layer_map}
```

Softmax layers: `{softmax}`

## Architecture

| setting | value |
|---|---|
{arch}

## Generation memory ({dtype_bytes}-byte KV cache, {state_dtype_bytes}-byte recurrent state)

| | teacher | hybrid |
|---|---|---|
{memory}
{break_even}
## Provenance

| | |
|---|---|
{provenance}

## Usage

The model's code ships with the weights (plain PyTorch, no hybridserve needed):

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

path = "{name}"  # this folder, or its Hub repo id
tokenizer = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)
inputs = tokenizer("The capital of France is", return_tensors="pt")
print(tokenizer.decode(model.generate(**inputs, max_new_tokens=20)[0]))
```
"""


def write_model_card(tmp: Path, model, config, prov: dict, summary: dict, name: str) -> None:
    """README.md in `tmp`: Hub front matter (base_model and license only when provenance knows them)."""
    front = {"library_name": "transformers", "tags": ["hybridserve", "linear-attention", "hybrid"]}
    if prov.get("hub_id"):
        front["base_model"] = prov["hub_id"]
    if prov.get("license"):
        front["license"] = prov["license"]
    n_params = sum(p.numel() for p in model.parameters())  # parameters() counts tied weights once
    c, s = config, summary
    mixer = _MIXER_NAMES.get(c.linear_mixer, c.linear_mixer)
    arch = {
        "teacher family": c.teacher_family,
        "hidden size / vocabulary": f"{c.hidden_size} / {c.vocab_size}",
        "attention heads / kv heads / head dim": f"{c.num_attention_heads} / {c.num_key_value_heads} / {c.head_dim}",
        "linear mixer": f"{mixer} (`{c.linear_mixer}`)",
        "linear heads / kv heads": f"{c.linear_num_heads} / {c.linear_num_kv_heads} (gqa mode `{c.linear_gqa_mode}`)",
        "linear key / value head dim": f"{c.linear_key_head_dim} / {c.linear_value_head_dim}",
        "short conv": f"size {c.linear_conv_size}" if c.linear_short_conv and c.linear_mixer == "gdn" else "no",
        "output gate": "yes" if c.linear_output_gate else "no",
        "recurrent state dtype": c.linear_state_dtype,
        "parameters": f"{n_params:,} ({n_params / 1e6:.2f} M)",
    }
    memory = [
        ("KV cache per token", s["teacher_kv_bytes_per_token"], s["hybrid_kv_bytes_per_token"]),
        ("recurrent state per sequence", 0, s["recurrent_state_bytes_per_sequence"]),
        ("short-conv state per sequence", 0, s["conv_state_bytes_per_sequence"]),
    ] + [
        (f"cache per sequence at {n} tokens", n * s["teacher_kv_bytes_per_token"],
         n * s["hybrid_kv_bytes_per_token"] + s["state_bytes_per_sequence"])
        for n in (4096, 32768)
    ]
    break_even = s["break_even_tokens"]
    text = _CARD.format(
        front=yaml.safe_dump(front, sort_keys=False).rstrip(), name=name, mixer=mixer,
        teacher=prov.get("teacher") or prov.get("hub_id") or f"a {c.teacher_family} model",
        n_soft=len(c.softmax_layers), n_lin=len(c.linear_layers), n_layers=len(c.layer_types),
        layer_map=layer_map(c), softmax=c.softmax_layers, dtype_bytes=s["dtype_bytes"],
        state_dtype_bytes=s["state_dtype_bytes"],
        arch="\n".join(f"| {k} | {v} |" for k, v in arch.items()),
        memory="\n".join(f"| {k} | {format_bytes(t)} | {format_bytes(h)} |" for k, t, h in memory),
        break_even=f"\nBeyond {break_even} tokens of context, the hybrid needs less cache memory than the teacher.\n"
        if break_even is not None else "",
        # a '|' inside a value would split the table row
        provenance="\n".join(f"| {k} | `{str(v).replace('|', '/')}` |" for k, v in prov.items()),
    )
    (tmp / "README.md").write_text(text, encoding="utf-8")


__all__ = ["layer_map", "write_model_card"]
