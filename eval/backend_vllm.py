"""`VLLMBackend`: the evaluation `Backend` on vLLM's offline engine (`hybridserve eval --backend vllm`).

Design: one long-lived worker process per model (`hybridserve.eval.vllm_worker`) holds the `vllm.LLM` and answers
batched requests as JSON lines over its stdin/stdout. Why a process, and why one that lives:

* vLLM cannot run inside the caller: its engine core is a *spawned* process that re-imports the main module, so
  the `LLM` must be created under a `__main__` guard that a library cannot rely on (pytest, notebooks, the CLI).
* An engine start costs 20-30 s on a small CPU and minutes for a large model on a GPU (load, compile, KV-cache
  profiling), so it happens once per model, not once per (task, length) as a script per call would do.
* A process per model returns all its memory when it ends, and only one engine runs at a time: starting a worker
  closes the worker of any other `VLLMBackend` first (each engine claims most of the accelerator's memory).

The worker starts lazily, at the first generate/loglikelihood call, so a model whose results are all on disk
(a resumed run) never starts an engine; it stops at `close()`, when the backend is garbage-collected, or at exit.
It runs with `python -P` (a source checkout's folders must not shadow installed packages) in its own session
(Ctrl-C reaches the parent, which then shuts the worker down), and its output goes to a log file whose exception
lines and tail are in every error. If it dies, the next read sees end-of-file and raises an `EvalError` with them.

Same tokens, same scoring as `HFBackend`: the runner passes token ids; generation is greedy (temperature 0,
token ids only) and stops at the same end-of-sequence ids (generation config + tokenizer, passed as
`stop_token_ids`); the new tokens are cut at the first of them and decoded by the same code. Loglikelihood uses
`prompt_logprobs=1`: the log-probability of each prompt token and its rank (rank 1 = the argmax). Prefix caching is
off by default, so every prompt is computed in full (the eval's prompts barely share prefixes anyway). Token ids are
decoded here, not by vLLM: vLLM's incremental detokenizer holds back a trailing incomplete UTF-8 sequence, which
would make the text differ from transformers' at the budget's edge.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Sequence

from .backends import ContinuationScore, HFBackend, Prompt, _eos_ids, loglikelihood_requests
from .common import EvalError

VLLM_DTYPES = ("float32", "bfloat16", "float16", "auto")
DEFAULT_BATCH_SIZE = 64  # requests per engine call: vLLM schedules them itself (continuous batching)
_LOG_TAIL_LINES = 25
_active: weakref.ref | None = None  # the backend whose worker is running, if any (one engine at a time)


_EXCEPTION_LINE = re.compile(r"\b([A-Za-z_.]*(?:Error|Exception)): (.+)$")


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The exceptions the log reports (vLLM's last line often just says "see root cause above"), then its tail."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    all_lines = text.strip().splitlines()
    causes = dict.fromkeys(m.group(0) for line in all_lines if (m := _EXCEPTION_LINE.search(line)))
    head = ["exceptions in the log:", *(f"  {c}" for c in list(causes)[-5:]), "log tail:"] if causes else []
    return "\n".join(head + all_lines[-lines:]) or "(empty log)"


class _Worker:
    """The running worker process: send a request, read its one-line answer."""

    def __init__(self, spec: dict, log_path: Path, startup_timeout: float):
        from hybridserve.serve.server import python_command

        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB of KV cache on the CPU build; ignored on GPUs
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        env.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the Hub
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.log_path = log_path
        self._log = open(log_path, "w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [*python_command(), "-m", "hybridserve.eval.vllm_worker", json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env, start_new_session=True,
        )
        self._buffer = b""
        self.info = self._read(startup_timeout, "starting vLLM")
        if not self.info.get("ready"):
            self.kill()
            raise EvalError(f"the vLLM worker did not start: {self.info}; log {log_path}:\n{_log_tail(log_path)}")

    def _read(self, timeout: float | None, what: str) -> dict:
        """The next protocol line (skipping anything that is not one of our JSON objects)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    return message
            wait = 5.0 if deadline is None else min(5.0, deadline - time.monotonic())
            if wait <= 0:
                self.kill()
                raise EvalError(f"vLLM worker: no answer after {timeout:.0f} s while {what}; "
                                f"log {self.log_path}:\n{_log_tail(self.log_path)}")
            ready, _, _ = select.select([fd], [], [], wait)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if chunk:
                    self._buffer += chunk
                    continue
            if not ready and self.proc.poll() is None:
                continue
            # end of file or a dead process: the worker is gone
            code = self.proc.wait()
            self.kill()
            raise EvalError(f"the vLLM worker exited (status {code}) while {what}; log {self.log_path}:\n"
                            f"{_log_tail(self.log_path)}")

    def request(self, message: dict, what: str) -> dict:
        if self.proc.poll() is not None:
            raise EvalError(f"the vLLM worker is not running (status {self.proc.returncode}); log {self.log_path}:\n"
                            f"{_log_tail(self.log_path)}")
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the read below reports the dead worker with its log
        answer = self._read(None, what)
        if not answer.get("ok"):
            raise EvalError(f"vLLM rejected the request while {what}: {answer.get('error')}")
        return answer

    def close(self, timeout: float = 60.0) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b'{"op": "close"}\n')
                self.proc.stdin.close()
            except (BrokenPipeError, ValueError, OSError):
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        """Kill what is left of the worker's session (its engine-core process included)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        self._log.close()


def _shutdown(holder: list) -> None:
    """Finalizer: close the worker in `holder` (a list so the backend object itself is not referenced)."""
    if holder:
        worker = holder.pop()
        worker.close()


class VLLMBackend:
    """A model folder (a hybrid export or any causal LM vLLM supports) or Hub id, run by vLLM in a worker process.

    `engine_args` are extra `vllm.LLM` keyword arguments (e.g. `tensor_parallel_size`, `gpu_memory_utilization`,
    `enforce_eager`); `max_model_len` defaults to the model's positions. Logs go to `log_dir` (default: a
    temporary folder)."""

    def __init__(self, model: str, *, name: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 dtype: str = "float32", trust_remote_code: bool = False, max_model_len: int | None = None,
                 engine_args: dict | None = None, log_dir: str | Path | None = None,
                 startup_timeout: float = 1800.0):
        from hybridserve.serve.compat import VllmVersionError, check_vllm

        try:
            self.vllm_version = check_vllm()
        except VllmVersionError as e:
            raise EvalError(f"the vLLM backend needs vLLM: {e}") from None
        if dtype not in VLLM_DTYPES:
            raise EvalError(f"unknown dtype {dtype!r} for vLLM; use {', '.join(VLLM_DTYPES)}")
        path = Path(model).expanduser()
        self.model = str(path) if path.is_dir() else model
        self.name = name or (path.name if path.exists() else model)
        self.batch_size = max(1, int(batch_size))
        self.startup_timeout = startup_timeout
        self.log_dir = Path(log_dir) if log_dir is not None else None
        config = _model_config(self.model)
        self.tokenizer = _tokenizer(self.model, trust_remote_code)
        self.eos_ids = _eos_ids(_GenerationDefaults(self.model, config), self.tokenizer)
        positions = config.get("max_position_embeddings")
        if max_model_len is not None and positions and max_model_len > positions:
            raise EvalError(f"max_model_len {max_model_len} exceeds the {positions} positions of model {model!r}")
        self.max_length = max_model_len or positions
        engine = {"model": self.model, "dtype": dtype, "seed": 0, "trust_remote_code": trust_remote_code,
                  "enable_prefix_caching": False}
        if self.max_length:
            engine["max_model_len"] = self.max_length
        engine.update(engine_args or {})
        self.engine_args = engine
        self._worker: list[_Worker] = []  # holds at most one; shared with the finalizer
        self._finalizer = weakref.finalize(self, _shutdown, self._worker)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"VLLMBackend({self.name!r}, {state}, batch_size={self.batch_size})"

    # ---------------------------------------------------------------- worker lifecycle
    @property
    def running(self) -> bool:
        return bool(self._worker) and self._worker[0].proc.poll() is None

    def start(self) -> None:
        """Start the engine now (otherwise the first request does); closes any other VLLMBackend's engine."""
        global _active
        if self.running:
            return
        self.close()
        other = _active() if _active is not None else None
        if other is not None and other is not self:
            other.close()
        folder = self.log_dir or Path(tempfile.gettempdir()) / "hybridserve-eval-vllm"
        folder.mkdir(parents=True, exist_ok=True)
        safe_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in self.name)
        log_path = folder / f"{safe_name}-{os.getpid()}.log"
        worker = _Worker({"engine": self.engine_args}, log_path, self.startup_timeout)
        self._worker.append(worker)
        _active = weakref.ref(self)
        if worker.info.get("max_model_len"):
            self.max_length = int(worker.info["max_model_len"])

    def close(self) -> None:
        """Shut the engine down (a later request starts it again)."""
        _shutdown(self._worker)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _request(self, message: dict, what: str) -> dict:
        self.start()
        return self._worker[0].request(message, what)

    # ---------------------------------------------------------------- Backend
    _ids = HFBackend._ids  # the same prompt handling and decoding as the transformers backend
    _decode = HFBackend._decode

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int) -> list[str]:
        seqs = [self._ids(p) for p in prompts]
        if any(not s for s in seqs):
            raise EvalError("cannot generate from an empty prompt")
        if not seqs:
            return []
        answer = self._request({"op": "generate", "prompts": seqs, "max_tokens": int(max_new_tokens),
                                "stop_token_ids": self.eos_ids}, f"generating for {len(seqs)} prompts")
        return [self._decode(list(tokens)) for tokens in answer["tokens"]]

    def loglikelihood(self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[ContinuationScore]:
        reqs = loglikelihood_requests(requests)
        if not reqs:
            return []
        answer = self._request({"op": "loglikelihood", "requests": [[c + x, len(c)] for c, x in reqs]},
                               f"scoring {len(reqs)} sequences")
        return [ContinuationScore(list(lp), [bool(g) for g in best])
                for lp, best in zip(answer["logprobs"], answer["greedy"])]


# ------------------------------------------------------------------------------------------------ model files


def _model_config(model: str) -> dict:
    """config.json of a folder or Hub id, as a dict (a hybrid's config needs no remote code to be read)."""
    path = Path(model).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        raise EvalError(f"the vLLM backend runs model folders and Hub ids, not .gguf files ({model}); "
                        "use --backend hf for it")
    from hybridserve.convert.teacher import BUILTIN_TEACHERS

    if model in BUILTIN_TEACHERS:
        raise EvalError(f"{model!r} is a builtin GGUF teacher: the vLLM backend runs model folders and Hub ids; "
                        "use --backend hf for it")
    if path.is_dir():
        file = path / "config.json"
        if not file.is_file():
            raise EvalError(f"model folder {model!r} has no config.json")
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except ValueError as e:
            raise EvalError(f"{file} is not valid JSON: {e}") from None
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise EvalError(f"model {model!r} not found: the vLLM backend takes a model folder or a Hub id org/name")
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(model, "config.json")).read_text(encoding="utf-8"))
    except Exception as e:  # noqa: BLE001 - offline, missing or private: one message either way
        raise EvalError(f"could not read the config of {model!r}: {e}") from None


def _tokenizer(model: str, trust_remote_code: bool):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise EvalError(f"could not load the tokenizer of {model!r}: {e}") from None


class _GenerationDefaults:
    """What `_eos_ids` reads from a transformers model: its generation config (generation_config.json, else the
    model config's ids, as transformers builds it), without loading any weights."""

    def __init__(self, model: str, config: dict):
        from transformers import GenerationConfig

        try:
            self.generation_config = GenerationConfig.from_pretrained(model)
        except (OSError, ValueError):
            self.generation_config = GenerationConfig(eos_token_id=config.get("eos_token_id"))
