#!/usr/bin/env bash
# Second GPU job of the seventeenth session (kernels only, fla wheels carried; ~9 min). The first job
# (bwd_configs_dkt.sh) timed every candidate alone: WY 3 stages 5.52 ms (6.92 at 1), dqkw with DK_T capped at 128
# registers 5.37 (8.06), dV'_intra BV 128 x 3 stages 1.12 (1.20). The autotune lists now lead with those.
#  1. the remaining candidates checked and timed alone (WY 4 stages / capped at 3, BK 64; dqkw DK_T uncapped at 3
#     stages; dV'_intra 4 stages; dh BV 64 at 4 warps);
#  2. the GDN chunk checks at the new lists, K = V = 128 and K = V = 64 (SmolLM2's heads; dV'_intra runs there too);
#  3. GDN forward + backward next to fla at 1 x 4K and 8 x 32K;
#  4. the backward kernel by kernel at 8 x 32K (both layouts, the inverse kept).
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
python3 -c "import fla; print('fla', fla.__version__)" > $R/fla.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
step "remaining backward candidates checked and timed alone, 8x32K"
timeout 240 python3 benchmarks/chunk_configs_gpu.py --shape 8x32768 --budget-s 210 --out $R/kern/bwd-configs \
  > $R/kern/bwd-configs.log 2>&1; echo "rc=$?"
step "check, GDN chunk, new lists, K = V = 128"
timeout 200 python3 benchmarks/check_kernels_gpu.py --quick --only gdn_chunk --json $R/kern/check-128.json \
  > $R/kern/check-128.log 2>&1; echo "rc=$?"
step "check, GDN chunk, new lists, K = V = 64"
HYBRIDSERVE_KERNELS=triton timeout 200 python3 benchmarks/check_kernels_gpu.py --quick --only gdn_chunk --dims 9,64,64 \
  --json $R/kern/check-64.json > $R/kern/check-64.log 2>&1; echo "rc=$?"
step "GDN forward + backward vs fla, 1x4K and 8x32K"
timeout 300 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref --shapes 1x4096,8x32768 --budget-s 260 \
  --out $R/kern/gdn-fwdbwd > $R/kern/gdn-fwdbwd.log 2>&1; echo "rc=$?"
step "backward kernel by kernel, 8x32K"
timeout 150 python3 benchmarks/kernels_bwd.py --sections phases --shapes 8x32768 --budget-s 120 \
  --out $R/kern/bwd-phases > $R/kern/bwd-phases.log 2>&1; echo "rc=$?"
echo ALLDONE
