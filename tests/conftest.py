"""Shared test setup.

The GDN chunked forward has two Triton paths: the three kernels of chunk.py and, for inputs of at most
HYBRIDSERVE_GDN_FUSED_MAX_TOKENS tokens (512 by default at K = V = 128), the one-launch kernel of fused_chunk.py.
The interpreter tests use small inputs, which by default would all take the one-launch kernel and leave chunk.py
untested. Every test therefore starts on chunk.py (the setting 0); the tests of the one-launch kernel and of the
default switch it on, or clear it, themselves (monkeypatch)."""

import pytest


@pytest.fixture(autouse=True)
def _chunk_path_by_default(monkeypatch):
    monkeypatch.setenv("HYBRIDSERVE_GDN_FUSED_MAX_TOKENS", "0")
