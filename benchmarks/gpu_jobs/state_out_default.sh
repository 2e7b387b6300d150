#!/usr/bin/env bash
# Third GPU job of the eighteenth session (kernels only, fla wheels carried; ~7 min, one call): the fused state +
# output pass as the default from 64 sequences x heads, at its best tile of the second job (BV 32 x 4 warps x 2
# stages, 3.53 ms at 8 x 32K against 3.75 for the split route's two kernels):
#  1. the GDN chunk checks at real sizes at the new defaults (4 x 8K takes the fused route, 1 x 4K the split one);
#  2. the fused pass's tiles around the best one, checked and timed alone at 8 x 32K;
#  3. the GDN forward (and forward + backward) next to fla in one run at 8 x 32K and 4 x 8K, then the split route's
#     for the same shapes in the same job.
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
python3 -c "import fla; print('fla', fla.__version__)" > $R/fla.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
step "GDN chunk checks at the defaults"
timeout 150 python3 benchmarks/check_kernels_gpu.py --only gdn_chunk --json $R/kern/check-defaults.json \
  > $R/kern/check-defaults.log 2>&1; echo "rc=$?"
step "fused state + out tiles checked and timed, 8x32K"
timeout 110 python3 benchmarks/chunk_configs_gpu.py --kernels state_out --shape 8x32768 --budget-s 90 \
  --out $R/kern/state-out-8x32K > $R/kern/state-out-8x32K.log 2>&1; echo "rc=$?"
step "GDN forward + backward vs fla, defaults (fused state + out)"
timeout 170 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref --shapes 8x32768,4x8192 --budget-s 150 \
  --impls default,fla --out $R/kern/gdn-fwdbwd-fused > $R/kern/gdn-fwdbwd-fused.log 2>&1; echo "rc=$?"
step "GDN forward + backward, split route"
HYBRIDSERVE_GDN_STATE_OUT=split timeout 100 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref \
  --shapes 8x32768,4x8192 --budget-s 80 --impls default --out $R/kern/gdn-fwdbwd-split \
  > $R/kern/gdn-fwdbwd-split.log 2>&1; echo "rc=$?"
echo ALLDONE
