#!/usr/bin/env bash
# Fourth GPU job of the eighteenth session (kernels only, fla wheels carried; ~5 min, the session's last ~400 s of
# device time): the fused state + output pass with its in-chunk attention made by the prep
# (HYBRIDSERVE_GDN_STATE_OUT=fused-aqk; CPU-tested): the Q K^T product leaves the sequential loop, where each V block
# recomputed it, and with it 37-45 registers (sm_90a: 255 with spills -> 218 without at BV 32 x 4 warps).
#  1. its tiles and the prep's configs on that route, each checked and timed alone at 8 x 32K;
#  2. the GDN forward (and forward + backward) on that route, then at the defaults (fused), at 8 x 32K and 4 x 8K;
#  3. the GDN chunk checks at real sizes on that route.
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
step "fused-aqk tiles and prep configs checked and timed, 8x32K"
timeout 110 python3 benchmarks/chunk_configs_gpu.py --kernels state_out_aqk,prep_aqk --shape 8x32768 --budget-s 90 \
  --out $R/kern/state-out-aqk > $R/kern/state-out-aqk.log 2>&1; echo "rc=$?"
step "GDN forward + backward, fused-aqk"
HYBRIDSERVE_GDN_STATE_OUT=fused-aqk timeout 80 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref \
  --shapes 8x32768,4x8192 --budget-s 60 --impls default --out $R/kern/gdn-fwdbwd-aqk \
  > $R/kern/gdn-fwdbwd-aqk.log 2>&1; echo "rc=$?"
step "GDN forward + backward, defaults (fused)"
timeout 80 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref --shapes 8x32768,4x8192 --budget-s 60 \
  --impls default --out $R/kern/gdn-fwdbwd-fused > $R/kern/gdn-fwdbwd-fused.log 2>&1; echo "rc=$?"
step "GDN chunk checks, fused-aqk"
HYBRIDSERVE_GDN_STATE_OUT=fused-aqk timeout 150 python3 benchmarks/check_kernels_gpu.py --only gdn_chunk \
  --json $R/kern/check-aqk.json > $R/kern/check-aqk.log 2>&1; echo "rc=$?"
echo ALLDONE
