"""The process that holds one `vllm.LLM` for `VLLMBackend`: `python -P -m hybridserve.eval.vllm_worker SPEC_JSON`.

Protocol (one JSON object per line): the worker answers `{"ready": ..., "max_model_len": ..., "vllm": ...}` once the
engine is up (or exits non-zero), then for each request line on stdin writes one answer line on stdout:

    {"op": "generate", "prompts": [[ids], ...], "max_tokens": N, "stop_token_ids": [...]}
        -> {"ok": true, "tokens": [[new ids], ...]}            greedy, stops at a stop id (which may be included)
    {"op": "loglikelihood", "requests": [[[ids], start], ...]}
        -> {"ok": true, "logprobs": [[...], ...], "greedy": [[...], ...]}
           per request, for every token at position >= start: its log-probability given the tokens before it and
           whether it was the top choice (vLLM's rank 1)
    {"op": "close"}  (or end of stdin) -> the worker shuts the engine down and exits 0

A request that vLLM rejects (e.g. a prompt longer than max_model_len) answers `{"ok": false, "error": "..."}` and
the worker keeps serving. Only these lines go to stdout: the worker moves its own stdout onto stderr before vLLM is
imported, so every log line of vLLM (and of the engine-core process it spawns, which inherits the descriptors)
lands in the log file the parent gave as stderr.

The engine core is a spawned process that re-imports this module, hence the `__main__` guard.
"""

from __future__ import annotations

import json
import os
import sys


def _protocol_stream():
    """A private copy of the original stdout for the protocol; stdout itself then points at stderr."""
    stream = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")  # os.dup: not inherited by children
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def _generate(llm, request: dict) -> dict:
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=int(request["max_tokens"]),
                            stop_token_ids=[int(i) for i in request.get("stop_token_ids") or []], detokenize=False)
    outputs = llm.generate([{"prompt_token_ids": p} for p in request["prompts"]], params, use_tqdm=False)
    return {"ok": True, "tokens": [list(o.outputs[0].token_ids) for o in outputs]}


def _loglikelihood(llm, request: dict) -> dict:
    from vllm import SamplingParams

    # prompt_logprobs=1: at every prompt position vLLM returns the actual token (with its rank among the whole
    # vocabulary) and the top-1 token; rank 1 means the actual token was the argmax.
    params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=1, detokenize=False)
    pairs = request["requests"]
    outputs = llm.generate([{"prompt_token_ids": ids} for ids, _ in pairs], params, use_tqdm=False)
    logprobs, greedy = [], []
    for (ids, start), out in zip(pairs, outputs):
        positions = out.prompt_logprobs
        lp, best = [], []
        for pos in range(int(start), len(ids)):
            entry = positions[pos][ids[pos]]
            lp.append(float(entry.logprob))
            best.append(entry.rank == 1)
        logprobs.append(lp)
        greedy.append(best)
    return {"ok": True, "logprobs": logprobs, "greedy": greedy}


def serve(spec: dict, requests, answers) -> None:
    from vllm import LLM

    from hybridserve.serve.compat import vllm_version

    llm = LLM(**spec["engine"])
    config = llm.llm_engine.model_config
    answers.write(json.dumps({"ready": True, "max_model_len": config.max_model_len, "vllm": vllm_version()}) + "\n")
    handlers = {"generate": _generate, "loglikelihood": _loglikelihood}
    try:  # 0.32 raises VLLMValidationError (a client error, not a ValueError) for e.g. a too-long prompt
        from vllm.exceptions import VLLMClientError
    except ImportError:  # older releases raise ValueError
        VLLMClientError = ValueError  # noqa: N806
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        op = request.get("op")
        if op == "close":
            break
        if op not in handlers:
            answers.write(json.dumps({"ok": False, "error": f"unknown op {op!r}"}) + "\n")
            continue
        try:
            answer = handlers[op](llm, request)
        except (VLLMClientError, ValueError, TypeError, KeyError, IndexError) as e:  # a bad request; the engine lives
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        answers.write(json.dumps(answer) + "\n")


def main(argv: list[str]) -> int:
    answers = _protocol_stream()
    spec = json.loads(argv[0])
    serve(spec, sys.stdin, answers)
    answers.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
