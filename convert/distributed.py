"""Data parallelism through torchrun + PyTorch FSDP2 (`fully_shard`); a no-op in a plain process.

Under `torchrun --nproc_per_node N hybridserve convert ...` every rank holds a shard of the student and
of the teacher (each decoder layer is its own FSDP unit), reads its own rows of each global batch, and
checkpoints go through torch.distributed.checkpoint's full-state-dict API (gathered to rank 0 on CPU),
so a run saved with N ranks resumes with any N, or in one process. NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as td


def is_distributed() -> bool:
    return td.is_available() and td.is_initialized()


def world_size() -> int:
    return td.get_world_size() if is_distributed() else 1


def rank() -> int:
    return td.get_rank() if is_distributed() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        td.barrier()


def init_from_env(device: str = "auto") -> torch.device:
    """Join the torchrun process group when launched by torchrun; pick this rank's device."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_distributed():
        td.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def shutdown() -> None:
    if is_distributed():
        td.barrier()
        td.destroy_process_group()


def shard(model: torch.nn.Module) -> torch.nn.Module:
    """FSDP2 on every decoder layer (where nearly all parameters live). Embeddings, final norm and head
    stay replicated: they may be tied across what would be two FSDP units, and the chunked KL reads the
    head's weight outside a forward; their gradients are averaged by `sync_replicated_grads`."""
    if not is_distributed():
        return model
    from torch.distributed.fsdp import fully_shard

    for layer in model.model.layers:
        fully_shard(layer)
    return model


def shard_each(modules) -> None:
    """FSDP2 on each module of an iterable (stage 1's mixers)."""
    if is_distributed():
        from torch.distributed.fsdp import fully_shard

        for m in modules:
            fully_shard(m)


def _is_dtensor(t) -> bool:
    return hasattr(t, "full_tensor")


def sync_replicated_grads(params) -> None:
    """Average over ranks the gradients that FSDP does not own (replicated parameters)."""
    if not is_distributed():
        return
    for p in params:
        if p.grad is not None and not _is_dtensor(p.grad):
            td.all_reduce(p.grad, op=td.ReduceOp.AVG if td.get_backend() == "nccl" else td.ReduceOp.SUM)
            if td.get_backend() != "nccl":  # gloo has no AVG
                p.grad.div_(world_size())


def _options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_state_dict(module: torch.nn.Module) -> dict:
    """The whole (unsharded) state on CPU: on rank 0 under FSDP, in every plain process."""
    if not is_distributed():
        return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(module, options=_options())


def load_full_state_dict(module: torch.nn.Module, state: dict) -> None:
    if not is_distributed():
        module.load_state_dict(state, strict=True)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True, strict=True))


def full_optimizer_state_dict(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    if not is_distributed():
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(module, optimizer, options=_options())


def load_full_optimizer_state_dict(module, optimizer, state: dict) -> None:
    if not is_distributed():
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(module, optimizer, state, options=StateDictOptions(full_state_dict=True))


def clip_grad_norm(params, max_norm: float) -> float:
    """Global L2 gradient norm over sharded (DTensor) and replicated parameters; clip to max_norm."""
    norms = []
    for p in params:
        if p.grad is None:
            continue
        n = torch.linalg.vector_norm(p.grad.float())
        norms.append(n.full_tensor() if _is_dtensor(n) else n)
    if not norms:
        return 0.0
    total = torch.linalg.vector_norm(torch.stack(norms))
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for p in params:
        if p.grad is not None:
            p.grad.mul_(coef.to(p.grad.device))
    return float(total)


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    if not is_distributed() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    if td.get_backend() == "nccl":
        t = t.cuda()
    td.all_reduce(t)
    return {k: float(v) / world_size() for k, v in zip(keys, t.tolist())}
