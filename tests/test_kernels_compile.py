"""What needs no interpreter and no GPU: every Triton kernel compiled for Hopper (sm_90a) with Triton's own ptxas,
and `hybridserve.kernels` importable without triton."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def test_import_does_not_need_triton():
    code = "import sys, hybridserve.kernels; assert 'triton' not in sys.modules, 'triton imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_kernels_compile_for_hopper():
    """Compile the bf16 serving/prefill variants to sm_90a machine code with Triton's bundled ptxas: catches what
    only the real compiler rejects (the interpreter accepts more). No GPU needed. A subprocess, because the
    kernels of this process are interpreted."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-m", "hybridserve.kernels._compile_check", "--quick"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert len(lines) >= 10 and all("registers" in line for line in lines), r.stdout
    # the chunk state pass with 2 stages: Triton's pipeliner prefetches the next chunks (cp.async), with 1 it does not
    copies = {stages: int(re.search(r"(\d+) cp\.async", line).group(1)) for line in lines
              for stages in (1, 2) if line.startswith("gdn chunk state") and f"stages={stages} " in line}
    assert copies[1] == 0 and copies[2] > 0, copies
