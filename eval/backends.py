"""Backends: what runs the model. The runner only talks to the `Backend` protocol, so the same prompts (token ids)
and the same scoring apply to every backend.

* `HFBackend`: any transformers causal LM (our `HybridForCausalLM` included), batched, greedy, left padding.
* `VLLMBackend` (eval/backend_vllm.py): vLLM's offline engine in a worker process, through the serve plugin.

`load_backend(spec)` turns a model string into an `HFBackend`: a hybrid checkpoint folder (config.json with
model_type "hybridserve"), any HF causal-LM folder or Hub id, a .gguf file, or a builtin teacher name
("smollm2-135m"); with `backend="vllm"`, into a `VLLMBackend` (folders and Hub ids only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

from .common import EvalError

Prompt = str | Sequence[int]


@dataclass
class ContinuationScore:
    """Teacher-forced scores of a continuation: per token, its log-probability and whether it is the argmax."""

    logprobs: list[float]
    greedy: list[bool]

    @property
    def total(self) -> float:
        return float(sum(self.logprobs))

    @property
    def is_greedy(self) -> bool:
        return all(self.greedy)


@runtime_checkable
class Backend(Protocol):
    """What an evaluation backend provides.

    name        label of the model in results
    tokenizer   the model's tokenizer (prompts are generated and sized with it)
    max_length  the model's maximum positions (prompt + generated tokens), or None if unknown
    """

    name: str
    tokenizer: object
    max_length: int | None

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int) -> list[str]:
        """Greedy continuation of each prompt (text, or token ids used as they are), decoded without special
        tokens; generation stops at the end-of-sequence token."""
        ...

    def loglikelihood(self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[ContinuationScore]:
        """For each (context ids, continuation ids), with a non-empty context: the log-probability of every
        continuation token given all tokens before it, and whether it was the greedy choice."""
        ...


def _eos_ids(model, tokenizer) -> list[int]:
    ids: list[int] = []
    for source in (getattr(getattr(model, "generation_config", None), "eos_token_id", None),
                   getattr(tokenizer, "eos_token_id", None) if tokenizer is not None else None):
        for i in source if isinstance(source, (list, tuple)) else [source]:
            if isinstance(i, int) and i not in ids:
                ids.append(i)
    return ids


def loglikelihood_requests(requests: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[tuple[list[int], list[int]]]:
    """(context, continuation) pairs as int lists, checked the same way for every backend."""
    reqs = [([int(t) for t in c], [int(t) for t in x]) for c, x in requests]
    for context, continuation in reqs:
        if not context:
            raise EvalError("loglikelihood needs at least one context token (e.g. bos) before the continuation")
        if not continuation:
            raise EvalError("loglikelihood needs a non-empty continuation")
    return reqs


class HFBackend:
    """A transformers causal LM. Batches are left-padded with explicit position ids; decoding is greedy."""

    def __init__(self, model, tokenizer=None, *, name: str = "model", batch_size: int = 1,
                 max_length: int | None = None):
        import torch

        self.model = model.eval() if hasattr(model, "eval") else model
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = max(1, int(batch_size))
        config = getattr(model, "config", None)
        self.max_length = max_length if max_length is not None else getattr(config, "max_position_embeddings", None)
        pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
        eos = _eos_ids(model, tokenizer)
        self.eos_ids = eos
        self.pad_id = pad if pad is not None else (eos[0] if eos else 0)
        try:
            self.device = next(model.parameters()).device
        except (StopIteration, AttributeError):
            self.device = torch.device("cpu")

    def __repr__(self) -> str:
        return f"HFBackend({self.name!r}, batch_size={self.batch_size})"

    # ---------------------------------------------------------------- helpers
    def _ids(self, prompt: Prompt) -> list[int]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise EvalError("a text prompt needs a tokenizer; pass token ids or give the backend a tokenizer")
            return list(self.tokenizer(prompt, add_special_tokens=True, verbose=False)["input_ids"])
        return [int(i) for i in prompt]

    def _batch(self, seqs: list[list[int]]):
        """Left-padded ids, attention mask and position ids (positions count real tokens only)."""
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            if s:
                ids[row, width - len(s):] = torch.tensor(s, dtype=torch.long)
                mask[row, width - len(s):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids.to(self.device), mask.to(self.device), positions.to(self.device)

    def _order(self, lengths: list[int]) -> list[list[int]]:
        """Batches of request indices, longest first, so that padding stays small."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _decode(self, new_tokens: list[int]) -> str:
        for j, t in enumerate(new_tokens):
            if t in self.eos_ids:
                new_tokens = new_tokens[:j]
                break
        if self.tokenizer is None:
            return " ".join(map(str, new_tokens))
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True)

    # ---------------------------------------------------------------- Backend
    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int) -> list[str]:
        import torch
        from transformers import GenerationConfig

        seqs = [self._ids(p) for p in prompts]
        if any(not s for s in seqs):
            raise EvalError("cannot generate from an empty prompt")
        config = GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=self.pad_id,
            eos_token_id=self.eos_ids or None,
        )
        out: list[str] = [""] * len(seqs)
        for batch in self._order([len(s) for s in seqs]):
            ids, mask, _ = self._batch([seqs[i] for i in batch])
            with torch.inference_mode():
                generated = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
            for row, i in enumerate(batch):
                out[i] = self._decode(generated[row, ids.shape[1]:].tolist())
        return out

    def loglikelihood(self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[ContinuationScore]:
        import torch

        reqs = loglikelihood_requests(requests)
        out: list[ContinuationScore | None] = [None] * len(reqs)
        for batch in self._order([len(c) + len(x) for c, x in reqs]):
            seqs = [reqs[i][0] + reqs[i][1] for i in batch]
            keep = max(len(reqs[i][1]) for i in batch) + 1  # logits of the last `keep` positions
            ids, mask, positions = self._batch(seqs)
            with torch.inference_mode():
                logits = self._forward(ids, mask, positions, keep)
            logprobs = torch.log_softmax(logits.float(), dim=-1)  # [B, keep, V]; position -1 predicts nothing
            best = logprobs.argmax(-1)
            for row, i in enumerate(batch):
                cont = torch.tensor(reqs[i][1], device=logprobs.device)
                n = len(cont)
                lp = logprobs[row, keep - 1 - n: keep - 1]  # predictions for the continuation tokens
                got = lp.gather(-1, cont[:, None])[:, 0]
                out[i] = ContinuationScore(got.tolist(), (best[row, keep - 1 - n: keep - 1] == cont).tolist())
        return out  # type: ignore[return-value]

    def _forward(self, ids, mask, positions, keep: int):
        kwargs = dict(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False)
        try:
            logits = self.model(**kwargs, logits_to_keep=keep).logits
        except TypeError:  # an older model without logits_to_keep
            logits = self.model(**kwargs).logits
        return logits[:, -keep:]


# ------------------------------------------------------------------------------------------------ loading


def _label(spec: str) -> str:
    p = Path(spec)
    return p.name if p.exists() and p.name else spec


def _is_hybrid(folder: Path) -> bool:
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type") == "hybridserve"
    except (OSError, ValueError):
        return False


BACKENDS = ("hf", "vllm")


def load_backend(spec: str, *, batch_size: int | None = 1, device: str = "cpu", dtype: str = "float32",
                 trust_remote_code: bool = False, name: str | None = None, backend: str = "hf",
                 engine_args: dict | None = None) -> Backend:
    """A backend for a model string (see the module docstring). `engine_args`: extra `vllm.LLM` arguments (vllm
    only); `device` is for hf only (vLLM runs on the platform its build is for); `batch_size` None: the backend's
    default."""
    if backend not in BACKENDS:
        raise EvalError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "vllm":
        from .backend_vllm import DEFAULT_BATCH_SIZE, VLLMBackend

        return VLLMBackend(spec, name=name or _label(spec), batch_size=batch_size or DEFAULT_BATCH_SIZE, dtype=dtype,
                           trust_remote_code=trust_remote_code, engine_args=engine_args)
    if engine_args:
        raise EvalError("engine arguments are for the vllm backend only")
    batch_size = batch_size or 1
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype, None) if dtype != "auto" else "auto"
    if dtype != "auto" and not isinstance(torch_dtype, torch.dtype):
        raise EvalError(f"unknown dtype {dtype!r}; use float32, bfloat16, float16 or auto")
    from hybridserve.convert.teacher import BUILTIN_TEACHERS, TeacherError, load_teacher
    from hybridserve.export.checkpoint import ExportError, load_hybrid

    label = name or _label(spec)
    path = Path(spec).expanduser()
    try:
        if spec in BUILTIN_TEACHERS or (path.is_file() and path.suffix.lower() == ".gguf"):
            model, tokenizer, _ = load_teacher(spec, dtype=torch_dtype if torch_dtype != "auto" else torch.float32,
                                               device=device)
        elif path.is_dir():
            if not (path / "config.json").is_file():
                raise EvalError(f"model folder {spec!r} has no config.json")
            tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
            if _is_hybrid(path):
                model = load_hybrid(path, dtype=None if dtype == "auto" else dtype, device=device)
            else:
                model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype,
                                                             trust_remote_code=trust_remote_code).to(device)
        elif path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") != 1:
            raise EvalError(f"model {spec!r} not found: not a folder, a .gguf file, a builtin "
                            f"({', '.join(BUILTIN_TEACHERS)}) or a Hub id org/name")
        else:  # a Hub id
            tokenizer = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(spec, dtype=torch_dtype,
                                                         trust_remote_code=trust_remote_code).to(device)
    except (TeacherError, ExportError) as e:
        raise EvalError(str(e)) from e
    except OSError as e:
        raise EvalError(f"could not load model {spec!r}: {e}") from e
    if tokenizer is None:
        raise EvalError(f"model {spec!r} has no tokenizer")
    return HFBackend(model.eval(), tokenizer, name=label, batch_size=batch_size)
