"""`hybridserve eval MODEL [MODEL ...]`: long-context recall (RULER-style) and perplexity, several models side by
side. Register with `app.command("eval")(eval_command)`; also runnable as `python -m hybridserve.eval`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

import typer
from rich.console import Console

_console = Console(stderr=True, soft_wrap=True)
_out = Console(soft_wrap=True)


def _fail(message: str) -> None:
    _console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=1)


def _parse_lengths(text: str) -> list[int]:
    lengths = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        scale = 1
        if part[-1] in "kK":
            part, scale = part[:-1], 1024
        try:
            lengths.append(int(float(part) * scale))
        except ValueError:
            _fail(f"--lengths must be comma-separated token counts such as 1024,2048,4K; got {text!r}")
    if not lengths:
        _fail("--lengths is empty")
    return lengths


def _parse_engine_args(items: list[str] | None) -> dict:
    """KEY=VALUE pairs for vllm.LLM; VALUE is read as JSON when it parses (2, 0.8, true), else as text."""
    import json

    args = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            _fail(f"--engine-arg must be KEY=VALUE with a vllm.LLM argument name, e.g. tensor_parallel_size=2; "
                  f"got {item!r}")
        try:
            args[key.strip()] = json.loads(value)
        except ValueError:
            args[key.strip()] = value
    return args


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def eval_command(
    models: List[str] = typer.Argument(
        ..., metavar="MODEL", help="Models to compare: hybrid checkpoint folders, HF causal-LM folders or Hub ids, .gguf files, or a "
        "builtin teacher (smollm2-135m)."),
    suite: str = typer.Option("ruler", help="Task suite: ruler, niah, ar (MQAR), recall (ruler + ar), ppl, all."),
    tasks: str = typer.Option(None, help="Comma-separated tasks instead of a suite, e.g. niah_single_number,vt,ppl."),
    lengths: str = typer.Option("1024,2048,4096", help="Prompt lengths in the model's own tokens, e.g. 1K,2K,4K."),
    samples: int = typer.Option(20, help="Samples per task and length (needle depths are spread over them)."),
    seed: int = typer.Option(0, help="Seed of the prompt generator: the same seed gives the same prompts."),
    haystack: str = typer.Option("noise", help="Filler text: noise (repeated sentences), corpus, corpus:<source>, "
                                 "or file:<path>."),
    chat: str = typer.Option("auto", help="Wrap prompts in the tokenizer's chat template: auto, on, off."),
    max_new_tokens: int = typer.Option(None, help="Generation budget for every task (default: each task's own)."),
    ppl_text: str = typer.Option("corpus", help="Perplexity text: corpus (held-out split), corpus:<source>, "
                                 "or a text file."),
    ppl_tokens: int = typer.Option(16384, help="Perplexity: score at most this many tokens of the text."),
    ppl_stride: int = typer.Option(None, help="Perplexity: sliding-window stride (default: half the window)."),
    backend: str = typer.Option("hf", help="What runs the models: hf (transformers) or vllm (vLLM's offline "
                                "engine in a worker process; model folders and Hub ids)."),
    engine_arg: List[str] = typer.Option(None, "--engine-arg", help="vllm only: a vllm.LLM argument KEY=VALUE "
                                         "(repeatable), e.g. tensor_parallel_size=2, gpu_memory_utilization=0.8."),
    batch_size: int = typer.Option(None, help="Prompts per forward pass, left padded (hf; default 1), or per "
                                   "engine call (vllm; default 64)."),
    device: str = typer.Option("cpu", help="Torch device, e.g. cpu or cuda (hf only: vLLM uses its build's "
                               "platform)."),
    dtype: str = typer.Option("float32", help="Weight dtype: float32, bfloat16, float16 or auto."),
    trust_remote_code: bool = typer.Option(False, help="Allow HF folders with custom model code."),
    out: Path = typer.Option(Path("runs/eval"), "--out", "-o", help="Output folder (results, tables, plot)."),
    fresh: bool = typer.Option(False, help="Ignore existing result files instead of resuming."),
    plot: bool = typer.Option(True, help="Write scores.png (needs matplotlib: pip install 'hybridserve[eval]')."),
    progress: bool = typer.Option(True, help="Show a progress bar on stderr."),
) -> None:
    """Long-context recall (RULER-style NIAH, VT, CWE, FWE, MQAR) and perplexity: JSON, markdown table and plot."""
    _quiet_libraries()
    from hybridserve.convert.teacher import TeacherError
    from hybridserve.eval.backends import BACKENDS, load_backend
    from hybridserve.eval.common import EvalError
    from hybridserve.eval.runner import EvalSettings, run_eval
    from hybridserve.eval.tasks import resolve_tasks
    from hybridserve.export.checkpoint import ExportError

    try:
        settings = EvalSettings(
            tasks=resolve_tasks(suite, tasks), lengths=_parse_lengths(lengths), samples=samples, seed=seed,
            haystack=haystack, chat=chat, max_new_tokens=max_new_tokens, ppl_text=ppl_text, ppl_tokens=ppl_tokens,
            ppl_stride=ppl_stride,
        )
        if any(t != "ppl" for t in settings.tasks):
            from hybridserve.eval.haystack import make_haystack

            make_haystack(haystack)  # a bad or empty haystack fails before any model loads
        if backend not in BACKENDS:
            raise EvalError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        engine_args = _parse_engine_args(engine_arg)
        if engine_args and backend != "vllm":
            raise EvalError("--engine-arg is for --backend vllm only")
        if backend == "vllm":
            # vLLM backends are ready Backend objects for the runner; each starts its engine at its first request
            # (a model whose results are all on disk never starts one), and only one engine runs at a time.
            runnable = [load_backend(m, backend="vllm", batch_size=batch_size, dtype=dtype,
                                     trust_remote_code=trust_remote_code, engine_args=engine_args) for m in models]
        else:
            runnable = list(models)
        try:
            summary = run_eval(
                runnable, settings, out, resume=not fresh, progress=progress, batch_size=batch_size or 1,
                device=device, dtype=dtype, trust_remote_code=trust_remote_code, plot=plot,
                log=lambda msg: _console.print(msg, highlight=False),
            )
        finally:
            for b in runnable:
                if not isinstance(b, str):
                    b.close()
    except (EvalError, TeacherError, ExportError, FileNotFoundError) as e:
        _fail(str(e))
    from hybridserve.eval.report import markdown_report

    _out.print(markdown_report(summary), highlight=False, markup=False)
    files = summary["files"]
    _console.print(f"wrote {files['json']}, {files['markdown']}" + (f", {files['plot']}" if files["plot"] else ""),
                   highlight=False)
