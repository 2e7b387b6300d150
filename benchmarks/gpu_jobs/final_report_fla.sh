#!/usr/bin/env bash
# A job the eighteenth session leaves for a later one (kernels only, fla wheels carried; ~15 min over two or three
# calls): the whole benchmark in one run with fla beside ours, at the defaults of the day, so that the report
# (docs/benchmarks/kernels.md) can lead with one table of every row the issue asks for (prefill fwd and fwd + bwd over
# 1 x 4K, 4 x 8K, 1 x 32K, 8 x 32K; decode at batch 1-512 next to the copy bandwidth of the same run; GLA alike) and
# the correctness checks at real sizes. Its first table is still the second session's, without fla.
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
python3 -c "import fla; print('fla', fla.__version__)" > $R/fla.txt 2>&1
# a route chosen for the forward's state + output pass (when the default is not yet the code's), on the record
echo "HYBRIDSERVE_GDN_STATE_OUT=${HYBRIDSERVE_GDN_STATE_OUT:-default}" | tee $R/kern/report-env.txt
step() { echo "== $1 $(date +%T)"; }
step "the issue's benchmark, checks first, fla beside ours"
timeout 1100 python3 benchmarks/kernels.py --check --no-sweep --no-ref --budget-s 800 --out $R/kern/report \
  > $R/kern/report.log 2>&1; echo "rc=$?"
step "GDN forward + backward, every state + out route, one sequence (the default there: split)"
timeout 200 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref --shapes 1x32768,1x4096,2x8192 \
  --budget-s 180 --impls default,route,fla --out $R/kern/gdn-routes-small > $R/kern/gdn-routes-small.log 2>&1
echo "rc=$?"
echo ALLDONE
