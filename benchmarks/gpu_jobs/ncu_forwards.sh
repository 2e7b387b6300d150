#!/usr/bin/env bash
# The nineteenth session's last call (kernels only, fla wheels carried; ~5 min): Nsight Compute on the forwards at
# the defaults of the day, ours beside fla, 8 x 32K: GLA (1.0x fla, the 1.3x missed: which kernel, bound by
# what) and GDN (fused-x-aqk, BV 64 at 128 sequences x heads: 1.46x fla), for the report's measured causes.
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
step() { echo "== $1 $(date +%T)"; }
NCU="ncu --clock-control none --profile-from-start off --section SpeedOfLight --section Occupancy \
  --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis"
for spec in "gla_fwd ours" "gla_fwd fla" "fwd ours"; do
  set -- $spec
  step "ncu: $1 $2 8x32K"
  timeout 110 $NCU python3 benchmarks/ncu_kernels_gpu.py --what $1 --impl $2 --shape 8x32768 \
    > $R/kern/ncu-$1-$2.txt 2>&1; echo "rc=$?"
done
echo ALLDONE
