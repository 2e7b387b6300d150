#!/usr/bin/env bash
# The job the eighteenth session leaves for the next one (kernels only, fla wheels carried; ~14 min, two or three
# calls): the fused state + output pass with the prep's in-chunk attention ("fused-aqk") at its best tile of the
# eighteenth session's fourth job (BV 64 x 4 warps x 2 stages: 2.75 ms at 8 x 32K, its prep 3.12; the default
# "fused" route 3.53 + 2.66), whose whole forward has not run yet:
#  1. the GDN chunk checks at real sizes on that route at that tile;
#  2. the GDN forward (and forward + backward) at the defaults next to fla, then on that route, at 8 x 32K and 4 x 8K;
#  3. its tiles checked and timed alone at 4 x 8K (64 sequences x heads: 128 programs at BV 64);
#  4. V' from X in the fused pass ("fused-x", "fused-x-aqk": the prep makes no W, U, whose round trip through global
#     memory is 1 KB per token and head; CPU-tested, written after the device time ran out): its tiles and the prep's
#     configs checked and timed alone at 8 x 32K, then the forward whole on both routes.
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
python3 -c "import fla; print('fla', fla.__version__)" > $R/fla.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
step "GDN chunk checks, fused-aqk"
HYBRIDSERVE_GDN_STATE_OUT=fused-aqk timeout 150 python3 benchmarks/check_kernels_gpu.py --only gdn_chunk \
  --json $R/kern/check-aqk.json > $R/kern/check-aqk.log 2>&1; echo "rc=$?"
step "GDN forward + backward vs fla, defaults"
timeout 170 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref --shapes 8x32768,4x8192 --budget-s 150 \
  --impls default,fla --out $R/kern/gdn-fwdbwd-fused > $R/kern/gdn-fwdbwd-fused.log 2>&1; echo "rc=$?"
step "GDN forward + backward, fused-aqk"
HYBRIDSERVE_GDN_STATE_OUT=fused-aqk timeout 80 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref \
  --shapes 8x32768,4x8192 --budget-s 60 --impls default --out $R/kern/gdn-fwdbwd-aqk \
  > $R/kern/gdn-fwdbwd-aqk.log 2>&1; echo "rc=$?"
step "fused-aqk tiles and prep configs, 4x8K"
timeout 100 python3 benchmarks/chunk_configs_gpu.py --kernels state_out_aqk,state_out --shape 4x8192 --budget-s 80 \
  --out $R/kern/state-out-4x8K > $R/kern/state-out-4x8K.log 2>&1; echo "rc=$?"
step "fused-x tiles and prep configs checked and timed, 8x32K"
timeout 200 python3 benchmarks/chunk_configs_gpu.py --kernels prep_x,state_out_x,prep_x_aqk,state_out_x_aqk \
  --shape 8x32768 --budget-s 180 --out $R/kern/state-out-x > $R/kern/state-out-x.log 2>&1; echo "rc=$?"
for route in fused-x fused-x-aqk; do
  step "GDN forward + backward, $route"
  HYBRIDSERVE_GDN_STATE_OUT=$route timeout 80 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref \
    --shapes 8x32768,4x8192 --budget-s 60 --impls default --out $R/kern/gdn-fwdbwd-$route \
    > $R/kern/gdn-fwdbwd-$route.log 2>&1; echo "rc=$?"
done
echo ALLDONE
