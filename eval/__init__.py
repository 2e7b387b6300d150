"""eval/: long-context recall and perplexity evaluation of hybrids next to their teachers.

* `tasks`: RULER-style prompts (NIAH single / multi-key / multi-value / multi-query, variable tracking, common- and
  frequent-word extraction) and MQAR on token ids, sized in the model's own tokens, deterministic by seed.
* `perplexity`: sliding-window perplexity on held-out text.
* `backends`: the `Backend` protocol (generate + loglikelihood) and the transformers backend.
* `runner`: models x tasks x lengths, resumable result files, JSON / markdown / plot.
* `lm_eval_tasks/`: the same generation tasks as lm-eval task files (`lm_eval --include_path`), offline.

Command line: `hybridserve eval MODEL [MODEL ...]` or `python -m hybridserve.eval`. See docs/eval.md.
"""

from .backends import Backend, ContinuationScore, HFBackend, load_backend
from .common import EvalError, Needle, Sample
from .haystack import Haystack, make_haystack
from .perplexity import PerplexityResult, perplexity, sliding_windows, text_perplexity
from .runner import EvalSettings, run_eval, run_unit
from .scoring import string_match_all, string_match_part
from .tasks import SUITES, TASKS, generate_sample, generate_samples, resolve_tasks

__all__ = [
    "Backend", "ContinuationScore", "EvalError", "EvalSettings", "HFBackend", "Haystack", "Needle",
    "PerplexityResult", "SUITES", "Sample", "TASKS", "generate_sample", "generate_samples", "load_backend",
    "make_haystack", "perplexity", "resolve_tasks", "run_eval", "run_unit", "sliding_windows",
    "string_match_all", "string_match_part", "text_perplexity",
]
