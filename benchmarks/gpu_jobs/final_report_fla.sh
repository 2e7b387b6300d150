#!/usr/bin/env bash
# The whole benchmark in one run with fla beside ours, at the defaults of the day (kernels only, fla wheels
# carried; ~1 min on a machine whose kernels are compiled, 4-5 min cold): prefill fwd and fwd + bwd over 1 x 4K, 4 x 8K,
# 1 x 32K, 8 x 32K; decode at batch 1-512 next to the copy bandwidth of the same run; GLA alike; the correctness checks
# at real sizes first. Then every GDN state + output route at one and two sequences, where the default is the split
# route. Written by the eighteenth session; the nineteenth ran it three times (jobs 2, 3, 6: job 2 on a stale install,
# job 6 at the final defaults; docs/benchmarks/kernels.md leads with job 6's report).
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
