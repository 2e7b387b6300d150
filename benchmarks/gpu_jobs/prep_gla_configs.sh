#!/usr/bin/env bash
# First GPU job of the eighteenth session (kernels only, fla wheels carried; ~10 min over two calls): the kernel
# half of gla_backward_serving.sh without its fla comparisons and ncu steps (the session's second job times the
# forward against fla in one run with the new candidates), in priority order:
#  1. the GDN forward's prep configs checked and timed alone at 8 x 32K (LOWER_ONLY: the scratch round trip skips
#     the zero blocks above the diagonal; written untimed in the seventeenth session);
#  2. every GLA candidate config checked and timed alone at 8 x 32K;
#  3. the GLA forward's at 1 x 32K (one sequence: 0.75x fla, its sequential state pass the bottleneck).
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
python3 -c "import fla; print('fla', fla.__version__)" > $R/fla.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
step "GDN forward prep configs checked and timed, 8x32K"
timeout 150 python3 benchmarks/chunk_configs_gpu.py --kernels prep --shape 8x32768 --budget-s 130 \
  --out $R/kern/prep-configs > $R/kern/prep-configs.log 2>&1; echo "rc=$?"
step "GLA forward configs checked and timed, 1x32K"
timeout 170 python3 benchmarks/chunk_configs_gpu.py --kernels gla_state,gla_out,gla_intra --shape 1x32768 \
  --budget-s 140 --out $R/kern/gla-configs-1x32K > $R/kern/gla-configs-1x32K.log 2>&1; echo "rc=$?"
step "GLA configs checked and timed, 8x32K"
timeout 300 python3 benchmarks/chunk_configs_gpu.py --kernels gla_intra,gla_state,gla_out,gla_bwd_intra,gla_bwd_inter \
  --shape 8x32768 --budget-s 270 --out $R/kern/gla-configs > $R/kern/gla-configs.log 2>&1; echo "rc=$?"
echo ALLDONE
