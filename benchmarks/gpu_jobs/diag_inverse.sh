#!/usr/bin/env bash
# Third GPU job of the fourteenth session (kernels only: run through benchmarks/gpu_start.sh with a carry of just the
# fla wheels; ~9 min of device time, in priority order; every step writes under /tmp/hsb).
# The prep kernel's inverse of (I + A)'s diagonal 16 x 16 blocks by doubling products (chunk_prep.doubling_inverse,
# HYBRIDSERVE_GDN_DIAG_INVERSE=doubling) against forward substitution: the prep is over half the forward at 8 x 32K
# (4.26 of 7.9 ms) at ~4x its memory floor, with 8 warps per SM waiting on 15 steps of cross-thread reductions.
#  1. correctness at real sizes with doubling: the GDN chunk checks (dense, packed pool, public op fwd + bwd);
#  2. the chunk forward kernel by kernel, each inverse, with chunk.py's prep (the default);
#  3. the ops whole with doubling next to fla, fwd and fwd + bwd (state_pass_gpu.py; its checks cover the forward);
#  4. the short-prefill one-launch kernel, each inverse (its BT x BT chunk inverse is on the sequential path);
#  5. kernel by kernel with the split and registers preps; the checks at K = V = 64 with doubling.
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
python3 -c "import fla; print('fla', fla.__version__)" > $R/fla.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
step "check, GDN chunk, doubling, K = V = 128"
HYBRIDSERVE_GDN_DIAG_INVERSE=doubling timeout 200 python3 benchmarks/check_kernels_gpu.py --quick --only gdn_chunk \
  --json $R/kern/check-dbl-128.json > $R/kern/check-dbl-128.log 2>&1; echo "rc=$?"
step "chunk forward kernel by kernel, each inverse"
timeout 120 python3 benchmarks/kernels.py --sections ceilings,chunk_phases --out $R/kern/phases \
  > $R/kern/phases.log 2>&1; echo "rc=$?"
step "the ops whole with doubling vs fla"
HYBRIDSERVE_GDN_DIAG_INVERSE=doubling timeout 200 python3 benchmarks/state_pass_gpu.py --out $R/kern/state-pass-dbl \
  --budget-s 90 > $R/kern/state-pass-dbl.log 2>&1; echo "rc=$?"
for inv in substitution doubling; do
  step "short prefill, $inv"
  HYBRIDSERVE_GDN_DIAG_INVERSE=$inv timeout 80 python3 benchmarks/short_prefill_gpu.py --quick \
    --out $R/kern/short-$inv --budget-s 40 > $R/kern/short-$inv.log 2>&1; echo "rc=$?"
done
for prep in split registers; do
  step "kernel by kernel, HYBRIDSERVE_GDN_PREP=$prep"
  HYBRIDSERVE_GDN_PREP=$prep timeout 90 python3 benchmarks/kernels.py --sections chunk_phases \
    --out $R/kern/phases-$prep > $R/kern/phases-$prep.log 2>&1; echo "rc=$?"
done
step "check, GDN chunk, doubling, K = V = 64"
HYBRIDSERVE_GDN_DIAG_INVERSE=doubling timeout 150 python3 benchmarks/check_kernels_gpu.py --quick --only gdn_chunk \
  --dims 9,64,64 --json $R/kern/check-dbl-64.json > $R/kern/check-dbl-64.log 2>&1; echo "rc=$?"
echo ALLDONE
