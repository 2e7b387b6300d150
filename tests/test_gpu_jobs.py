"""The GPU jobs (benchmarks/gpu_jobs/*.sh) run unattended on a lent machine, where a typo costs device time that
cannot be had back: each must parse as bash, and every `--option` a job passes to a benchmark script must be one
that script's --help lists (its own parser, or the shared one of benchmarks/gpu_steps.py)."""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JOBS = sorted((ROOT / "benchmarks" / "gpu_jobs").glob("*.sh"))


def calls(job: Path):
    """(script, subcommand or None, --options) of every `python3 benchmarks/X.py ...` command in the job."""
    text = job.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        m = re.search(r"python3 (benchmarks/\S+\.py)(.*)", line)
        if m:
            words = shlex.split(m.group(2).split(">")[0].split(";")[0])
            sub = words[0] if words and not words[0].startswith("-") and "/" not in words[0] else None
            yield m.group(1), sub, [re.match(r"--[\w-]+", w).group(0) for w in words if w.startswith("--")]


@functools.lru_cache(maxsize=None)
def help_text(script: str, sub: str | None) -> str:
    args = [sys.executable, str(ROOT / script)] + ([sub] if sub else []) + ["--help"]
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    return r.stdout + r.stderr


@pytest.mark.parametrize("job", JOBS, ids=lambda p: p.name)
def test_gpu_job_parses_and_passes_known_options(job):
    subprocess.run(["bash", "-n", str(job)], check=True)
    found = list(calls(job))
    assert found, f"{job.name} runs no benchmark script"
    for script, sub, options in found:
        assert (ROOT / script).exists(), f"{job.name}: {script} does not exist"
        if not options:
            continue
        text = help_text(script, sub)
        for opt in options:
            assert re.search(rf"{re.escape(opt)}\b", text), f"{job.name}: {script} {sub or ''} has no option {opt}"
