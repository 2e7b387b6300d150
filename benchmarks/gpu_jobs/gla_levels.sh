#!/usr/bin/env bash
# Third GPU job of the fifteenth session (kernels only, fla wheels carried; ~6 min, in priority order; every step
# writes under /tmp/hsb). Nsight Compute (second job) put the GLA forward's intra-chunk kernel at 11.7 of its 17 ms
# at 8 x 32K, where fla's two intra kernels take 5.6. HYBRIDSERVE_GLA_INTRA=levels replaces it (and the backward's
# intra dQ, dK kernel, and the cumsum launch) by one program per chunk with every pair on the tensor cores.
#  1. the GLA checks at real sizes with the level kernels (public op forward and gradients, dense chunks);
#  2. the GLA forward against fla, wall time, each way (kernels.py's gla_prefill: 1 x 4K, 4 x 8K, 1 x 32K, 8 x 32K);
#  3. Nsight Compute, one call each at 8 x 32K: our forward and backward with levels, fla's backward;
#  4. forward + backward against fla, wall time (kernels_bwd.py's gla section, levels).
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
step "check, GLA, levels"
HYBRIDSERVE_GLA_INTRA=levels timeout 150 python3 benchmarks/check_kernels_gpu.py --quick --only gla \
  --json $R/kern/check-gla-levels.json > $R/kern/check-gla-levels.log 2>&1; echo "rc=$?"
for m in levels columns; do
  step "GLA forward vs fla, $m"
  HYBRIDSERVE_GLA_INTRA=$m timeout 90 python3 benchmarks/kernels.py --sections gla_prefill --no-ref \
    --out $R/kern/gla-fwd-$m > $R/kern/gla-fwd-$m.log 2>&1; echo "rc=$?"
done
NCU="ncu --clock-control none --profile-from-start off --section SpeedOfLight --section Occupancy \
  --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis"
for spec in "gla_fwd ours" "gla_bwd ours" "gla_bwd fla"; do
  set -- $spec
  step "ncu: $1 $2 8x32K, levels"
  HYBRIDSERVE_GLA_INTRA=levels timeout 100 $NCU python3 benchmarks/ncu_kernels_gpu.py --what $1 --impl $2 \
    --shape 8x32768 > $R/kern/ncu-$1-$2-levels.txt 2>&1; echo "rc=$?"
done
step "GLA forward + backward vs fla, levels"
HYBRIDSERVE_GLA_INTRA=levels timeout 150 python3 benchmarks/kernels_bwd.py --sections gla --budget-s 90 \
  --out $R/kern/gla-fwdbwd-levels > $R/kern/gla-fwdbwd-levels.log 2>&1; echo "rc=$?"
echo ALLDONE
