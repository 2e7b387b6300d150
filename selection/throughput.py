"""Measured decode speed of each chosen set (CUDA only): the stage-0 hybrid of that set, bf16, batch 1.

Stage-0 weights decode at the same speed as distilled ones (same shapes), so no training is needed to time
what a budget buys. On CPU this is skipped: the number would say nothing about serving."""

from __future__ import annotations

import time

import torch


@torch.no_grad()
def decode_tokens_per_s(model, prompt_tokens: int = 512, new_tokens: int = 128, device="cuda") -> float:
    ids = torch.randint(10, model.config.vocab_size - 1, (1, prompt_tokens), device=device)
    model.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)  # warm-up (kernels, allocator)
    torch.cuda.synchronize()
    start = time.perf_counter()
    model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    torch.cuda.synchronize()
    return new_tokens / (time.perf_counter() - start)


def measure_budgets(context, budgets: list[dict], device: torch.device) -> None:
    from ..convert.stage0 import build_student

    teacher = context.teacher
    for entry in budgets:
        student, _ = build_student(teacher, entry["layers"], **context.student_options)
        student = student.to(device=device, dtype=torch.bfloat16).eval()
        entry["throughput"] = {"tokens_per_s": decode_tokens_per_s(student, device=device),
                               "prompt_tokens": 512, "new_tokens": 128, "batch": 1, "dtype": "bfloat16"}
        del student
        torch.cuda.empty_cache()
