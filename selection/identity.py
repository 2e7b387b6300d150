"""Which teacher a selection belongs to, so a selection file from another teacher is refused.

The identity is a digest of the teacher's architecture fields and of a sample of its weights, rounded to
bfloat16 first: the same teacher loaded in float32 on a CPU or in bfloat16 on a GPU gives the same digest,
while another checkpoint (or a fine-tune of the same architecture) does not.
"""

from __future__ import annotations

import dataclasses
import hashlib

import torch

from .errors import SelectionError

_ARCH_FIELDS = ("model_type", "num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
                "head_dim", "intermediate_size", "vocab_size")


@torch.no_grad()
def teacher_identity(teacher, info=None) -> dict:
    config = teacher.config
    arch = {f: getattr(config, f, None) for f in _ARCH_FIELDS}
    h = hashlib.sha256(repr(sorted(arch.items())).encode())
    samples = [teacher.get_input_embeddings().weight[:8]]
    for layer in teacher.model.layers:
        samples += [layer.self_attn.q_proj.weight[:2], layer.mlp.down_proj.weight[:2]]
    for t in samples:
        h.update(t.detach().to("cpu", torch.bfloat16).view(torch.int16).numpy().tobytes())
    identity = {"digest": h.hexdigest()[:32], **arch}
    if info is not None:
        data = dataclasses.asdict(info) if dataclasses.is_dataclass(info) else dict(info)
        identity.update(source=data.get("source"), sha256=data.get("sha256"))
    return identity


def check_same_teacher(selection_teacher: dict, teacher, info=None, where: str = "the selection file") -> None:
    mine = teacher_identity(teacher, info)
    if selection_teacher.get("digest") != mine["digest"]:
        raise SelectionError(
            f"{where} was made for another teacher ({selection_teacher.get('source')!r}, "
            f"{selection_teacher.get('num_hidden_layers')} layers, digest {selection_teacher.get('digest')}) than "
            f"this one ({mine.get('source')!r}, {mine['num_hidden_layers']} layers, digest {mine['digest']}); "
            f"run `hybridserve select` for this teacher"
        )
