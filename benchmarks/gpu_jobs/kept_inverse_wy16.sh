#!/usr/bin/env bash
# Second GPU job of the sixteenth session (kernels only, fla wheels carried; ~11 min, in priority order; every step
# writes under /tmp/hsb). The first job timed the scratch WY kernel: 7.44 ms against 8.56 (products) at 8 x 32K,
# forward + backward 32.6 ms against fla's 28.5, and GLA's forward at fla's level (11.9 = 11.9 ms at 8 x 32K).
#  1. the training op that keeps the forward's (I + A)^-1 and cumulative gates (gdn_chunk_train; the backward's
#     recompute is then the W, U kernel instead of the whole prep): the GDN chunk checks (their public-op backward
#     goes through it), at the default WY kernel and with HYBRIDSERVE_GDN_WY=scratch-input (every WY product in
#     bf16, as fla's);
#  2. the backward kernel by kernel with scratch-input (rows: fused, split, split with the inverse kept);
#  3. GDN forward + backward next to fla (default, fused, scratch, scratch-input rows);
#  4. GLA forward + backward next to fla at 8 x 32K alone (the first job's budget ended after 1 x 4K);
#  5. Nsight Compute on the GDN backward with the inverse kept and scratch-input.
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
python3 -c "import fla; print('fla', fla.__version__)" > $R/fla.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
for wy in products scratch-input; do
  step "check, GDN chunk, inverse kept, WY $wy"
  HYBRIDSERVE_GDN_WY=$wy timeout 200 python3 benchmarks/check_kernels_gpu.py --quick --only gdn_chunk \
    --json $R/kern/check-kept-$wy.json > $R/kern/check-kept-$wy.log 2>&1; echo "rc=$?"
done
step "backward kernel by kernel, WY scratch-input"
HYBRIDSERVE_GDN_WY=scratch-input timeout 200 python3 benchmarks/kernels_bwd.py --sections phases --budget-s 150 \
  --out $R/kern/bwd-phases-wy16 > $R/kern/bwd-phases-wy16.log 2>&1; echo "rc=$?"
step "GDN forward + backward vs fla"
timeout 200 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref --budget-s 150 \
  --out $R/kern/gdn-fwdbwd > $R/kern/gdn-fwdbwd.log 2>&1; echo "rc=$?"
step "GLA forward + backward vs fla, 8x32K"
timeout 200 python3 benchmarks/kernels_bwd.py --sections gla --no-ref --shapes 8x32768 --budget-s 150 \
  --out $R/kern/gla-fwdbwd > $R/kern/gla-fwdbwd.log 2>&1; echo "rc=$?"
NCU="ncu --clock-control none --profile-from-start off --section SpeedOfLight --section Occupancy \
  --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis"
step "ncu: GDN bwd ours 8x32K, inverse kept, WY scratch-input"
HYBRIDSERVE_GDN_WY=scratch-input timeout 120 $NCU python3 benchmarks/ncu_kernels_gpu.py --what bwd \
  --shape 8x32768 > $R/kern/ncu-bwd-kept-wy16.txt 2>&1; echo "rc=$?"
echo ALLDONE
