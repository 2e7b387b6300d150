"""Run from the repository root, this folder is also a top-level package `kernels`, which transformers imports when it
probes for Hugging Face's `kernels` library. That import must not register the `hybridserve::*` ops a second time
(torch would dispatch them to the second copy: tests' monkeypatches and the copies' caches would miss each other)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys
import torch
from hybridserve.kernels import ops
body = ops.DIRECT["gdn_chunk_pool"]
import kernels  # what transformers' is_kernels_available() does from the repository root
assert kernels.__name__ == "kernels" and not hasattr(kernels, "ops"), dir(kernels)
assert not any(m.startswith("kernels.") for m in sys.modules), [m for m in sys.modules if m.startswith("kernels.")]
calls = []
ops._gdn_pool_inputs = lambda *a, **k: calls.append(1) or (a[0], a[1], a[2], a[3], a[4])
H, K, V, T = 1, 16, 16, 3
x = torch.randn(T, H, K)
try:
    torch.ops.hybridserve.gdn_chunk_pool(x, x, x, torch.zeros(T, H), torch.ones(T, H), None, None, None, None,
                                         torch.zeros(1, H, K, V), torch.zeros(1, dtype=torch.int32),
                                         torch.tensor([0, T], dtype=torch.int32), None, 1.0, False)
except Exception:
    pass
assert calls == [1], "torch.ops.hybridserve.gdn_chunk_pool no longer runs hybridserve.kernels.ops"
print("ok")
"""


def test_top_level_kernels_import_is_inert():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr
