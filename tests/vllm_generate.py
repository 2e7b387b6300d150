"""Greedy generation with the vLLM offline engine, for tests/test_serve.py (run as a script: the engine core is a
spawned process that re-imports its parent's main module, so this code lives under a __main__ guard).

    python tests/vllm_generate.py SPEC.json OUT.json

SPEC: model, prompts (token-id lists, sent together: continuous batching), repeat (indices of prompts sent again
afterwards, for prefix caching), max_tokens, engine (LLM keyword arguments).
OUT: tokens (one list per prompt), repeat_tokens, repeat_cached (cached prompt tokens per repeated prompt).
"""

import json
import os
import sys


def main() -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    from vllm import LLM, SamplingParams

    spec = json.loads(open(sys.argv[1]).read())
    llm = LLM(model=spec["model"], seed=0, **spec["engine"])
    params = SamplingParams(temperature=0.0, max_tokens=spec["max_tokens"], ignore_eos=True)
    outputs = llm.generate([{"prompt_token_ids": p} for p in spec["prompts"]], params, use_tqdm=False)
    result = {"tokens": [list(o.outputs[0].token_ids) for o in outputs], "repeat_tokens": [], "repeat_cached": []}
    if spec.get("repeat"):
        again = llm.generate([{"prompt_token_ids": spec["prompts"][i]} for i in spec["repeat"]], params, use_tqdm=False)
        result["repeat_tokens"] = [list(o.outputs[0].token_ids) for o in again]
        result["repeat_cached"] = [o.num_cached_tokens or 0 for o in again]
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
