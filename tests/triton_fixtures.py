"""The pytest fixtures every Triton test module shares; import them by name into the module:

    from .triton_fixtures import interpreted_module, triton_ops  # noqa: F401  (pytest fixtures)

(after `from . import triton_cpu`, which must come first: see tests/triton_cpu.py)."""

from __future__ import annotations

import pytest

from . import triton_cpu


@pytest.fixture(autouse=True, scope="module")
def interpreted_module():
    """One intra-op thread (tiny tensors); TRITON_INTERPRET=1 while the module's tests run (Triton consults it at
    launch too), and only then."""
    with triton_cpu.interpreted_one_thread():
        yield


@pytest.fixture
def triton_ops(monkeypatch):
    """The public ops' CPU tensors go to the Triton kernels (the interpreter) for one test."""
    triton_cpu.route_ops_to_triton(monkeypatch)
