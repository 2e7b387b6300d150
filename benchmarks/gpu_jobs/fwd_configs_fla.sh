#!/usr/bin/env bash
# Fourth GPU job of the seventeenth session (kernels only, fla wheels carried; ~4 min, the session's last device
# time): the forward's prep and out kernels capped at 128 registers (sm_90a: no spills, four programs per SM instead
# of three), now in their autotune lists at K = V = 128 only.
#  1. every prep and out candidate checked (output and final state against the float32 reference) and timed alone
#     at 8 x 32K;
#  2. GDN forward (and forward + backward) next to fla at 8 x 32K.
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
step "forward prep and out configs checked and timed alone, 8x32K"
timeout 150 python3 benchmarks/chunk_configs_gpu.py --kernels prep,out --shape 8x32768 --budget-s 130 \
  --out $R/kern/fwd-configs > $R/kern/fwd-configs.log 2>&1; echo "rc=$?"
step "GDN forward + backward vs fla, 8x32K"
timeout 170 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref --shapes 8x32768 --budget-s 150 \
  --out $R/kern/gdn-fwdbwd > $R/kern/gdn-fwdbwd.log 2>&1; echo "rc=$?"
echo ALLDONE
