"""hybridserve's offline RULER-style tasks for lm-evaluation-harness (`lm_eval --include_path <this folder>`).

The YAML files here define lm-eval tasks `hybridserve_<task>` (and the group `hybridserve_ruler`) whose documents
come from hybridserve's own generator (`hybridserve.eval.tasks`): no dataset download, any length, sized in the
evaluated model's tokens, scored with RULER's string match. See docs/eval.md, "lm-evaluation-harness".

    lm_eval --model hf --model_args pretrained=runs/hybrid,trust_remote_code=True \\
        --include_path "$(python -m hybridserve.eval.lm_eval_tasks)" --tasks hybridserve_ruler \\
        --metadata '{"max_seq_lengths":[1024,2048],"num_samples":20}'
"""

from pathlib import Path

TASK_DIR = Path(__file__).resolve().parent
# The generation tasks of hybridserve.eval.tasks that run under lm-eval (MQAR scores teacher-forced token ids, which
# lm-eval's generate_until cannot express; run it with `hybridserve eval --tasks mqar`).
TASK_NAMES = (
    "niah_single_number", "niah_single_uuid", "niah_single_word", "niah_multikey", "niah_multivalue",
    "niah_multiquery", "vt", "cwe", "fwe",
)
GROUP = "hybridserve_ruler"
