"""What the one-question GPU scripts (state_pass_gpu.py, short_prefill_gpu.py) share: their common options, the
report header (card, versions, command), rows printed as they come, and steps run in order under a time budget with
the report rewritten after each, so a run cut short keeps what finished."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernels as kb  # noqa: E402  (benchmarks/kernels.py: _try, CPU smoke set-up)


def parser(doc: str, quick_help: str, budget_s: float) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT"))
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--cpu-smoke", action="store_true")
    ap.add_argument("--budget-s", type=float, default=budget_s, help="start no new step after this many seconds")
    return ap


def header(smoke: bool) -> dict:
    """The card (or the CPU smoke), torch, triton, CUDA and fla versions, and the command line."""
    import triton

    return dict(gpu="CPU smoke (interpreter; numbers meaningless)" if smoke else torch.cuda.get_device_name(0),
                torch=torch.__version__, triton=triton.__version__, cuda=torch.version.cuda,
                fla=getattr(sys.modules.get("fla"), "__version__", None), command="python " + " ".join(sys.argv))


def add(rows: list, **r) -> None:
    rows.append(r)
    print("  " + json.dumps(r, default=str), flush=True)


def write(out, stem: str, info: dict, rows: list, md: str) -> None:
    """OUT/<stem>.json (info + rows) and OUT/<stem>.md; nothing without --out."""
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        Path(out, f"{stem}.json").write_text(json.dumps(dict(info=info, rows=rows), indent=1, default=str))
        Path(out, f"{stem}.md").write_text(md)


def run_steps(steps, budget_s: float, after_each) -> None:
    """(name, fn) in order; none starts after budget_s seconds; a step's error is reported and the next runs;
    after_each() (the report) after every step."""
    t0 = time.time()
    for name, fn in steps:
        if time.time() - t0 > budget_s:
            print(f"[{time.time() - t0:.0f} s] budget spent: skipping {name}", flush=True)
            continue
        kb._try(name, fn)
        print(f"[{time.time() - t0:.0f} s] {name} done", flush=True)
        after_each()
