#!/usr/bin/env bash
# The nineteenth session's last job (kernels only, fla wheels carried; ~11 min, two calls), after fused-x-aqk became
# the GDN forward's default at N x H >= 64 (routes_fwd_fla.sh, final_report_fla.sh):
#  1. that route's prep configs and fused-pass tiles, each checked at 2 x 1000 and timed alone at 8 x 32K (its tiles
#     were timed at 4 x 8K only);
#  2. GLA forward + backward next to fla at 1 x 4K, 4 x 8K and 8 x 32K (fla's backward autotunes for minutes on its
#     first call: the last shape may not fit).
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
step() { echo "== $1 $(date +%T)"; }
step "fused-x-aqk prep configs and tiles, checked, timed at 8x32K"
timeout 220 python3 benchmarks/chunk_configs_gpu.py --kernels prep_x_aqk,state_out_x_aqk --shape 8x32768 \
  --budget-s 200 --out $R/kern/x-aqk-8x32K > $R/kern/x-aqk-8x32K.log 2>&1; echo "rc=$?"
step "GLA forward + backward vs fla"
timeout 420 python3 benchmarks/kernels_bwd.py --sections gla --no-ref --shapes 1x4096,4x8192,8x32768 \
  --budget-s 400 --impls default,fla --out $R/kern/gla-fwdbwd > $R/kern/gla-fwdbwd.log 2>&1; echo "rc=$?"
echo ALLDONE
