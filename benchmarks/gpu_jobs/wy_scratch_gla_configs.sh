#!/usr/bin/env bash
# First GPU job of the sixteenth session (kernels only: benchmarks/gpu_start.sh with a carry of just the fla wheels;
# ~12 min of device time, in priority order; every step writes under /tmp/hsb, so a cut keeps what finished).
#  1. the GDN backward's scratch WY kernel (HYBRIDSERVE_GDN_WY=scratch, chunk_bwd_wy.py: B^T through a scratch tile
#     instead of dA^T from its own products; sm_90a 185 registers at 4 warps against 255 at 8): the GDN chunk
#     checks, the backward kernel by kernel (which config the autotuner takes), the op whole next to fla;
#  2. GLA with the configs the compile report pointed at (level kernel BK 64 x 16 warps; backward inter kernel at
#     8 warps): the GLA checks, the forward and forward + backward next to fla;
#  3. Nsight Compute on our GDN backward with the scratch WY kernel at 8 x 32K.
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
python3 -c "import fla; print('fla', fla.__version__)" > $R/fla.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
step "check, GDN chunk, scratch WY"
HYBRIDSERVE_GDN_WY=scratch timeout 200 python3 benchmarks/check_kernels_gpu.py --quick --only gdn_chunk \
  --json $R/kern/check-wy-scratch.json > $R/kern/check-wy-scratch.log 2>&1; echo "rc=$?"
step "backward kernel by kernel, scratch WY"
HYBRIDSERVE_GDN_WY=scratch timeout 150 python3 benchmarks/kernels_bwd.py --sections phases --budget-s 100 \
  --out $R/kern/bwd-phases-wy-scratch > $R/kern/bwd-phases-wy-scratch.log 2>&1; echo "rc=$?"
step "GDN forward + backward vs fla (default, fused, scratch WY)"
timeout 200 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref --budget-s 150 \
  --out $R/kern/gdn-fwdbwd > $R/kern/gdn-fwdbwd.log 2>&1; echo "rc=$?"
step "check, GLA, new configs"
timeout 200 python3 benchmarks/check_kernels_gpu.py --quick --only gla --json $R/kern/check-gla.json \
  > $R/kern/check-gla.log 2>&1; echo "rc=$?"
step "GLA forward vs fla"
timeout 120 python3 benchmarks/kernels.py --sections gla_prefill --no-ref --out $R/kern/gla-fwd \
  > $R/kern/gla-fwd.log 2>&1; echo "rc=$?"
step "GLA forward + backward vs fla"
timeout 200 python3 benchmarks/kernels_bwd.py --sections gla --no-ref --budget-s 150 --out $R/kern/gla-fwdbwd \
  > $R/kern/gla-fwdbwd.log 2>&1; echo "rc=$?"
NCU="ncu --clock-control none --profile-from-start off --section SpeedOfLight --section Occupancy \
  --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis"
step "ncu: GDN bwd ours 8x32K, scratch WY"
HYBRIDSERVE_GDN_WY=scratch timeout 120 $NCU python3 benchmarks/ncu_kernels_gpu.py --what bwd --shape 8x32768 \
  > $R/kern/ncu-bwd-wy-scratch.txt 2>&1; echo "rc=$?"
echo ALLDONE
