#!/usr/bin/env bash
# Second GPU job of the eighteenth session (kernels only, fla wheels carried; ~10 min over two calls), in priority
# order:
#  1. the GDN forward with its output fused into the state pass (chunk_state_out.py, HYBRIDSERVE_GDN_STATE_OUT=fused;
#     new, CPU-tested): the GDN chunk checks at real sizes on that route, then every tile checked and timed alone at
#     8 x 32K (the split route's state + out: 1.67 + 1.97 ms in the seventeenth session);
#  2. the GDN forward (and forward + backward) next to fla in one run, split route, then fused, at 8 x 32K and 4 x 8K;
#  3. the fused tiles at 4 x 8K and 1 x 32K (where it may not pay: fewer programs);
#  4. GLA after the first job's defaults (the backward's inter kernel capped at 128 registers, the forward's state
#     pass in 32 x 32 tiles for one sequence): the GLA checks, fwd + bwd next to fla at 1 x 4K and 4 x 8K, the forward
#     next to fla over the grid.
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
python3 -c "import fla; print('fla', fla.__version__)" > $R/fla.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
step "GDN chunk checks, fused state + out"
HYBRIDSERVE_GDN_STATE_OUT=fused timeout 150 python3 benchmarks/check_kernels_gpu.py --only gdn_chunk \
  --json $R/kern/check-state-out.json > $R/kern/check-state-out.log 2>&1; echo "rc=$?"
step "fused state + out tiles checked and timed, 8x32K"
timeout 150 python3 benchmarks/chunk_configs_gpu.py --kernels state_out --shape 8x32768 --budget-s 130 \
  --out $R/kern/state-out-8x32K > $R/kern/state-out-8x32K.log 2>&1; echo "rc=$?"
step "GDN forward + backward vs fla, split route"
timeout 200 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref --shapes 8x32768,4x8192 --budget-s 170 \
  --impls default,fla --out $R/kern/gdn-fwdbwd-split > $R/kern/gdn-fwdbwd-split.log 2>&1; echo "rc=$?"
step "GDN forward + backward, fused state + out"
HYBRIDSERVE_GDN_STATE_OUT=fused timeout 150 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref \
  --shapes 8x32768,4x8192 --budget-s 120 --impls default --out $R/kern/gdn-fwdbwd-fused \
  > $R/kern/gdn-fwdbwd-fused.log 2>&1; echo "rc=$?"
for shape in 4x8192 1x32768; do
  step "fused state + out tiles, $shape"
  timeout 120 python3 benchmarks/chunk_configs_gpu.py --kernels state_out --shape $shape --budget-s 100 \
    --out $R/kern/state-out-$shape > $R/kern/state-out-$shape.log 2>&1; echo "rc=$?"
done
step "GLA checks"
timeout 120 python3 benchmarks/check_kernels_gpu.py --only gla --json $R/kern/check-gla.json \
  > $R/kern/check-gla.log 2>&1; echo "rc=$?"
step "GLA forward + backward vs fla, 1x4K and 4x8K"
timeout 200 python3 benchmarks/kernels_bwd.py --sections gla --no-ref --shapes 1x4096,4x8192 --budget-s 170 \
  --out $R/kern/gla-fwdbwd > $R/kern/gla-fwdbwd.log 2>&1; echo "rc=$?"
step "GLA forward vs fla, the issue's grid"
timeout 150 python3 benchmarks/kernels.py --sections gla_prefill --no-ref --budget-s 120 \
  --out $R/kern/gla-prefill > $R/kern/gla-prefill.log 2>&1; echo "rc=$?"
echo ALLDONE
