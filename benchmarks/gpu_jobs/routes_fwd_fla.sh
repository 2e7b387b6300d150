#!/usr/bin/env bash
# The nineteenth session's first job (kernels only, fla wheels carried; ~6 min, one call): which of the GDN forward's
# state + output routes (chunk_state_out.state_out_route) to make the default before the whole report
# (final_report_fla.sh) runs on it. Replaces the eighteenth session's fused_aqk_fla.sh, which never ran:
#  1. the fused pass's tiles on the routes not timed whole yet ("fused-aqk", "fused-x", "fused-x-aqk"), each checked
#     against the float64 reference at 2 x 1000 (partial chunks, initial state) and timed alone at 4 x 8K;
#  2. the forward and forward + backward of every route at its default tile, with fla in the same process, at
#     8 x 32K and 4 x 8K (each shape: ours at the defaults, the four other routes, fla, in that order).
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
python3 -c "import fla; print('fla', fla.__version__)" > $R/fla.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
step "fused pass tiles on the untimed routes, checked, timed at 4x8K"
timeout 130 python3 benchmarks/chunk_configs_gpu.py --kernels state_out_aqk,state_out_x,state_out_x_aqk \
  --shape 4x8192 --budget-s 110 --out $R/kern/state-out-routes-4x8K > $R/kern/state-out-routes-4x8K.log 2>&1
echo "rc=$?"
step "GDN forward + backward, every state + out route, fla beside"
timeout 300 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref --shapes 8x32768,4x8192 --budget-s 280 \
  --impls default,route,fla --out $R/kern/gdn-routes > $R/kern/gdn-routes.log 2>&1; echo "rc=$?"
echo ALLDONE
