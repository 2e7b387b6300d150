#!/usr/bin/env bash
# First GPU job of the fifteenth session (kernels only: benchmarks/gpu_start.sh with a carry of just the fla wheels;
# ~18 min of device time, in priority order; every step writes under /tmp/hsb, so a cut keeps what finished).
# The kernel half of the fourteenth session's queue (tiles_serving.sh, since renamed gla_backward_serving.sh and
# refilled), reordered so the three missed targets of issue #7 come first; the serving steps of the resolved #4
# wait for a lease with the vLLM carry.
#  1. the prep's off-diagonal inverse blocks on the tensor cores (HYBRIDSERVE_GDN_INVERSE_LOWER=input; sm_90a
#     237 -> 164 registers at 4 warps): the GDN chunk checks, then the forward kernel by kernel next to the default;
#  2. the served decode kernel at BV 16/32/64 x 1/2/4 warps, both state dtypes, checked against float64 first;
#  3. the split backward with 16-bit intermediates (HYBRIDSERVE_GDN_BWD_INTERMEDIATES=input): checks, then kernel
#     by kernel next to float32 intermediates;
#  4. the ops whole next to fla with both switches on (the forward shows the first, forward + backward both);
#  5. Nsight Compute on one forward at 8 x 32K (each lower-block precision) and one bf16 decode step at 512
#     (warp stalls, occupancy; fails at once on gVisor);
#  6. the doubling inverse checked at K = V = 64; GLA next to fla (forward).
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
python3 -c "import fla; print('fla', fla.__version__)" > $R/fla.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
step "check, GDN chunk, TF32 lower blocks"
HYBRIDSERVE_GDN_INVERSE_LOWER=input timeout 200 python3 benchmarks/check_kernels_gpu.py --quick --only gdn_chunk \
  --json $R/kern/check-lower.json > $R/kern/check-lower.log 2>&1; echo "rc=$?"
for low in ieee input; do
  step "chunk forward kernel by kernel, lower blocks $low"
  HYBRIDSERVE_GDN_INVERSE_LOWER=$low timeout 120 python3 benchmarks/kernels.py --sections ceilings,chunk_phases \
    --out $R/kern/phases-lower-$low > $R/kern/phases-lower-$low.log 2>&1; echo "rc=$?"
done
step "decode, one-tile kernel: BV x warps"
timeout 200 python3 benchmarks/decode_sweep_gpu.py --quick --tile-grid --out $R/kern/decode-tiles \
  > $R/kern/decode-tiles.log 2>&1; echo "rc=$?"
step "check, GDN chunk, 16-bit backward intermediates"
HYBRIDSERVE_GDN_BWD_INTERMEDIATES=input timeout 150 python3 benchmarks/check_kernels_gpu.py --quick --only gdn_chunk \
  --json $R/kern/check-bwd16.json > $R/kern/check-bwd16.log 2>&1; echo "rc=$?"
for inter in float32 input; do
  step "backward kernel by kernel, intermediates $inter"
  HYBRIDSERVE_GDN_BWD_INTERMEDIATES=$inter timeout 150 python3 benchmarks/kernels_bwd.py --sections phases \
    --budget-s 100 --out $R/kern/bwd-phases-$inter > $R/kern/bwd-phases-$inter.log 2>&1; echo "rc=$?"
done
step "the ops whole, TF32 lower blocks and 16-bit backward intermediates, vs fla"
HYBRIDSERVE_GDN_INVERSE_LOWER=input HYBRIDSERVE_GDN_BWD_INTERMEDIATES=input timeout 200 \
  python3 benchmarks/state_pass_gpu.py --out $R/kern/state-pass-both --budget-s 60 \
  > $R/kern/state-pass-both.log 2>&1; echo "rc=$?"
NCU="ncu --clock-control none --profile-from-start off --section SpeedOfLight --section Occupancy \
  --section LaunchStats --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis"
for low in ieee input; do
  step "ncu: fwd 8x32K, lower blocks $low"
  HYBRIDSERVE_GDN_INVERSE_LOWER=$low timeout 120 $NCU python3 benchmarks/ncu_kernels_gpu.py --what fwd \
    --shape 8x32768 > $R/kern/ncu-fwd-$low.txt 2>&1; echo "rc=$?"
done
step "ncu: bf16 decode 512"
timeout 100 $NCU python3 benchmarks/ncu_kernels_gpu.py --what decode --batch 512 > $R/kern/ncu-decode512.txt 2>&1
echo "rc=$?"
step "check, GDN chunk, doubling, K = V = 64"
HYBRIDSERVE_GDN_DIAG_INVERSE=doubling timeout 150 python3 benchmarks/check_kernels_gpu.py --quick --only gdn_chunk \
  --dims 9,64,64 --json $R/kern/check-dbl-64.json > $R/kern/check-dbl-64.log 2>&1; echo "rc=$?"
step "GLA vs fla, forward"
timeout 150 python3 benchmarks/kernels.py --sections gla_prefill --out $R/kern/gla-fwd > $R/kern/gla-fwd.log 2>&1
echo "rc=$?"
echo ALLDONE
