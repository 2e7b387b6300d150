#!/usr/bin/env bash
# Third GPU job of the sixteenth session (kernels only, fla wheels carried; ~4 min, the session's last device time):
# the defaults as they now stand at K = V = 128 (WY kernel scratch-input, GLA backward intra by levels, the training
# op keeping the forward's inverse) plus the dV'_intra kernel autotuned over BV 64 / 128 (one Q K^T per chunk at
# 128): the GDN chunk checks, then GDN forward + backward next to fla at 8 x 32K.
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
step "check, GDN chunk, defaults"
timeout 200 python3 benchmarks/check_kernels_gpu.py --quick --only gdn_chunk --json $R/kern/check-defaults.json \
  > $R/kern/check-defaults.log 2>&1; echo "rc=$?"
step "GDN forward + backward vs fla, 8x32K"
timeout 150 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref --shapes 8x32768 --budget-s 120 \
  --out $R/kern/gdn-fwdbwd > $R/kern/gdn-fwdbwd.log 2>&1; echo "rc=$?"
echo ALLDONE
