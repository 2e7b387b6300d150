#!/usr/bin/env bash
# Second GPU job of the fifteenth session (kernels only, fla wheels carried; ~5 min): Nsight Compute on ours and on
# fla-core's ops, same inputs, one call each, so every kernel's duration, occupancy and memory throughput sit beside
# its counterpart. The GLA forward is 0.59-0.70x fla (first job: 1 x 32K 2.86 vs 1.68 ms) with no kernel-by-kernel
# timing of either; the GDN backward is 0.85x fla at 8 x 32K (33.6 vs 28.4 ms fwd + bwd) after both switches.
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
NCU="ncu --clock-control none --profile-from-start off --section SpeedOfLight --section Occupancy \
  --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis"
export HYBRIDSERVE_GDN_INVERSE_LOWER=input HYBRIDSERVE_GDN_BWD_INTERMEDIATES=input
for spec in "gla_fwd ours" "gla_fwd fla" "fwd fla" "bwd fla" "bwd ours"; do
  set -- $spec
  step "ncu: $1 $2 8x32K"
  timeout 150 $NCU python3 benchmarks/ncu_kernels_gpu.py --what $1 --impl $2 --shape 8x32768 \
    > $R/kern/ncu-$1-$2.txt 2>&1; echo "rc=$?"
done
echo ALLDONE
