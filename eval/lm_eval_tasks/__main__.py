"""`python -m hybridserve.eval.lm_eval_tasks` prints the folder to pass to `lm_eval --include_path`."""

from . import TASK_DIR

print(TASK_DIR)
