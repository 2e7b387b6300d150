#!/usr/bin/env bash
# First GPU job of the seventeenth session (kernels only: benchmarks/gpu_start.sh with a carry of just the fla wheels;
# ~10 min of device time, in priority order; every step writes under /tmp/hsb, so a cut keeps what finished).
#  1. every candidate config of the GDN split backward's tunable kernels pinned alone, checked against the float32
#     reference and timed at 8 x 32K (benchmarks/chunk_configs_gpu.py): the WY kernel pipelined (2-3 stages) and
#     capped, the dqkw kernel with dK accumulated transposed (DK_T: no dsT product, 166 registers, two programs per
#     SM at a 128 cap), dV'_intra, the dh pass's tiles;
#  2. the GDN chunk checks at the new autotune lists (WY with 2-stage configs, dqkw with DK_T ones);
#  3. GDN forward + backward next to fla at 8 x 32K at those lists.
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
python3 -c "import fla; print('fla', fla.__version__)" > $R/fla.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
step "each backward config checked and timed alone, 8x32K"
timeout 360 python3 benchmarks/chunk_configs_gpu.py --shape 8x32768 --budget-s 330 --out $R/kern/bwd-configs \
  > $R/kern/bwd-configs.log 2>&1; echo "rc=$?"
step "check, GDN chunk, new autotune lists"
timeout 200 python3 benchmarks/check_kernels_gpu.py --quick --only gdn_chunk --json $R/kern/check-lists.json \
  > $R/kern/check-lists.log 2>&1; echo "rc=$?"
step "GDN forward + backward vs fla, 8x32K"
timeout 240 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref --shapes 8x32768 --budget-s 200 \
  --out $R/kern/gdn-fwdbwd > $R/kern/gdn-fwdbwd.log 2>&1; echo "rc=$?"
echo ALLDONE
