"""Run hybridserve's Triton kernels on CPU through Triton's interpreter (tests only).

Import this module before the kernel modules: it sets TRITON_INTERPRET=1 (unless a CUDA device is present, where
the kernels run for real), which makes every `@triton.jit` function defined afterwards an interpreted one, and
patches the interpreter where it is wrong for us. Import the kernel modules next, then call `release_env()`: the
variable is only read when a kernel is defined, and left set it would leak into other tests and their
subprocesses. This module does NOT route the public ops to Triton: that is `TRITON_INTERPRET=1
HYBRIDSERVE_TRITON_ON_CPU=1`, which tests set for themselves (monkeypatch), so every other test keeps the
PyTorch references on CPU.

Interpreter patches:

* bf16 `tl.dot`: the interpreter keeps bf16 values as their raw uint16 bits and np.matmul multiplies the bits
  (triton 3.7.1: x @ x of a random bf16 matrix comes out ~1e10). The patch widens bf16 operands to float32
  first, which is exactly what the tensor cores compute (bf16 products, float32 accumulation).
* float32 -> bf16 casts: the interpreter truncates (and its round-to-nearest branch does not carry into the
  exponent); the GPU rounds to nearest even. Truncation doubles bf16 errors and biases them, which would make
  the interpreter tests stricter than the hardware for no reason. The patch rounds to nearest even.

* triton imported before this module (torch._dynamo imports it, and other test modules import torch._dynamo
  during collection): Triton's own `@triton.jit` helpers (tl.zeros, tl.sum, tl.cumsum, tl.sigmoid, ...) were
  then built as compiled-mode JITFunctions, which refuse to run inside an interpreted kernel. The patch rewraps
  them as InterpretedFunctions, which is what importing triton with TRITON_INTERPRET=1 would have built.

`enable_bounds_check()` adds an address sanitizer to the interpreter (every unmasked load / store address must lie
inside one of the kernel's tensor arguments); tests/test_kernels_triton.py turns it on.

Our kernels need no other shim: an autotuner with several configs would time them through a GPU driver, so under
the interpreter the kernels register only their first config (`kernels/_triton_utils.first_config_only`), and
they never call `.to()` on a loop variable (a Python int in the interpreter).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os

import torch

ON_GPU = torch.cuda.is_available()
_SAVED_ENV = os.environ.get("TRITON_INTERPRET")
if not ON_GPU and importlib.util.find_spec("triton") is not None:
    os.environ["TRITON_INTERPRET"] = "1"


def release_env() -> None:
    """Restore TRITON_INTERPRET once the kernel modules are imported (their @triton.jit functions are interpreted
    from then on). Left set, it would leak into every later test and the subprocesses they start (a torchrun
    test's workers crash under it)."""
    if _SAVED_ENV is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = _SAVED_ENV

DEVICE = "cuda" if ON_GPU else "cpu"

# Every module defining Triton kernels.
KERNEL_MODULES = ("gated_delta_rule.chunk", "gated_delta_rule.chunk_bwd", "gated_delta_rule.chunk_bwd_split",
                  "gated_delta_rule.decode", "gated_delta_rule.fused_recurrent", "gated_delta_rule.prefill_inputs", "gla.chunk",
                  "gla.chunk_bwd", "gla.fused_recurrent", "short_conv.decode", "short_conv.prefill")


def import_kernel_modules() -> None:
    """Import every kernel module with TRITON_INTERPRET set (set here too: an earlier test module may have released
    it already), so their @triton.jit functions are interpreted ones, then release the variable and (on CPU) turn
    the bounds check on. Every kernel module, so that a test file collected later finds them interpreted: one
    imported after release_env() would build compiled kernels (`pytest tests/test_kernels_triton_bwd.py
    tests/test_kernels_triton.py` once failed 14 tests that way)."""
    with interpreted_definitions():
        for module in KERNEL_MODULES:
            importlib.import_module(f"hybridserve.kernels.{module}")
    release_env()
    if not ON_GPU:
        enable_bounds_check()  # every interpreted load / store must stay inside its tensor arguments


@contextlib.contextmanager
def interpreted_definitions():
    """TRITON_INTERPRET=1 on CPU while the block runs, restored after: a @triton.jit kernel defined inside (a test's
    own probe kernel, too) is an interpreted one."""
    saved = os.environ.get("TRITON_INTERPRET")
    if not ON_GPU:
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = saved


@contextlib.contextmanager
def interpreted_one_thread():
    """While a kernel test module runs: TRITON_INTERPRET=1 on CPU (launches read it) and one torch thread (the
    interpreter's numpy work is serial anyway; more threads only contend), both restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with interpreted_definitions():
            yield
    finally:
        torch.set_num_threads(threads)


def route_ops_to_triton(monkeypatch) -> None:
    """Route the public ops' CPU tensors to the Triton kernels (interpreter) for one test."""
    if not ON_GPU:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("HYBRIDSERVE_TRITON_ON_CPU", "1")


def _patch_interpreter() -> None:
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    builder = interpreter.InterpreterBuilder
    if getattr(builder.create_dot, "_hybridserve_bf16", False):
        return
    original = builder.create_dot

    def widen(handle):
        if handle.dtype.scalar == tl.bfloat16:
            bits = handle.data.astype(np.uint32) << 16
            return interpreter.TensorHandle(bits.view(np.float32), tl.float32)
        return handle

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        return original(self, widen(a), widen(b), d, input_precision, max_num_imprecise_acc)

    create_dot._hybridserve_bf16 = True
    builder.create_dot = create_dot

    convert = interpreter._convert_float

    def convert_float(input, input_dtype, output_dtype, rounding_mode):
        if input_dtype == tl.float32 and output_dtype == tl.bfloat16:
            bits = np.ascontiguousarray(input).view(np.uint32).astype(np.uint64)
            rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
            nan = np.isnan(np.ascontiguousarray(input).view(np.float32))
            rounded[nan] = 0x7FC0
            return rounded.reshape(np.shape(input))
        return convert(input, input_dtype, output_dtype, rounding_mode)

    interpreter._convert_float = convert_float


try:
    import triton  # noqa: F401

    HAVE_TRITON = True
except ImportError:
    HAVE_TRITON = False

def enable_bounds_check() -> None:
    """Make every interpreted load and store check its (unmasked) addresses against the extents of the kernel's
    tensor arguments and raise on the first one outside: an address sanitizer for the interpreter, which would
    otherwise read or write whatever memory an out-of-bounds pointer names (on a GPU: an illegal memory access
    or silent corruption)."""
    import numpy as np
    from triton.runtime import interpreter

    executor = interpreter.GridExecutor
    if getattr(executor._init_args_hst, "_hybridserve_bounds", False):
        return
    init_args = executor._init_args_hst
    extents: list = []

    def _init_args_hst(self, args_dev, kwargs):
        args_hst, kwargs_hst = init_args(self, args_dev, kwargs)
        extents.clear()
        for arg in list(args_hst) + list(kwargs_hst.values()):
            if isinstance(arg, torch.Tensor):
                span = sum((n - 1) * st for n, st in zip(arg.shape, arg.stride())) + 1 if arg.numel() else 0
                extents.append((arg.data_ptr(), arg.data_ptr() + span * arg.element_size(), arg.element_size(),
                                tuple(arg.shape)))
        return args_hst, kwargs_hst

    def check(ptrs, mask, what):
        addr = np.asarray(ptrs.data).astype(np.uint64)
        m = np.broadcast_to(np.asarray(mask.data, dtype=bool), addr.shape)
        live = addr[m]
        if live.size == 0:
            return
        ok = np.zeros(live.shape, dtype=bool)
        for lo, hi, esz, _ in extents:
            ok |= (live >= lo) & (live + esz <= hi)
        if not ok.all():
            bad = int(live[~ok][0])
            near = min(extents, key=lambda e: min(abs(bad - e[0]), abs(bad - e[1])))
            raise IndexError(f"out-of-bounds {what} at {bad:#x} ({int((~ok).sum())} addresses); nearest argument "
                             f"{near[3]} spans [{near[0]:#x}, {near[1]:#x})")

    builder = interpreter.InterpreterBuilder
    load, store = builder.create_masked_load, builder.create_masked_store

    def create_masked_load(self, ptrs, mask, other, cache_modifier, eviction_policy, is_volatile):
        check(ptrs, mask, "load")
        return load(self, ptrs, mask, other, cache_modifier, eviction_policy, is_volatile)

    def create_masked_store(self, ptrs, value, mask, cache_modifier, eviction_policy):
        check(ptrs, mask, "store")
        return store(self, ptrs, value, mask, cache_modifier, eviction_policy)

    _init_args_hst._hybridserve_bounds = True
    executor._init_args_hst = _init_args_hst
    builder.create_masked_load = create_masked_load
    builder.create_masked_store = create_masked_store


def _interpret_preimported_language() -> None:
    import sys

    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("triton.language"):
            continue
        for attr, value in list(vars(module).items()):
            if isinstance(value, JITFunction):
                setattr(module, attr, InterpretedFunction(value.fn))


if HAVE_TRITON and not ON_GPU:
    _patch_interpreter()
    _interpret_preimported_language()
    try:  # imported lazily at the first launch, it asserts interpreter mode if triton's helpers are interpreted
        import triton.experimental.gluon  # noqa: F401
    except ImportError:
        pass
