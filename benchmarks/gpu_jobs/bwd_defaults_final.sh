#!/usr/bin/env bash
# Third GPU job of the seventeenth session (kernels only, fla wheels carried; ~7 min): the defaults as they now stand
# at K = V = 128 after the two sweeps (bwd_configs_dkt.sh, bwd_lists_fla.sh): WY kernel BK 64 x 4 warps x 3 stages
# first in its list (4.29 ms alone at 8 x 32K), dqkw with DK_T capped at 128 registers (5.35), dV'_intra BV 128 x 3
# stages (1.12), the dh pass BV 64 x 1 stage once there are 256 programs of it (3.25 against 4.14).
#  1. the GDN chunk checks at K = V = 128;
#  2. GDN forward + backward next to fla at 1 x 4K, 4 x 8K and 8 x 32K;
#  3. the backward kernel by kernel at 8 x 32K.
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
python3 -c "import fla; print('fla', fla.__version__)" > $R/fla.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
step "check, GDN chunk, defaults, K = V = 128"
timeout 200 python3 benchmarks/check_kernels_gpu.py --quick --only gdn_chunk --json $R/kern/check-128.json \
  > $R/kern/check-128.log 2>&1; echo "rc=$?"
step "GDN forward + backward vs fla, 1x4K, 4x8K, 8x32K"
timeout 300 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref --shapes 1x4096,4x8192,8x32768 \
  --budget-s 270 --out $R/kern/gdn-fwdbwd > $R/kern/gdn-fwdbwd.log 2>&1; echo "rc=$?"
step "backward kernel by kernel, 8x32K"
timeout 150 python3 benchmarks/kernels_bwd.py --sections phases --shapes 8x32768 --budget-s 120 \
  --out $R/kern/bwd-phases > $R/kern/bwd-phases.log 2>&1; echo "rc=$?"
echo ALLDONE
