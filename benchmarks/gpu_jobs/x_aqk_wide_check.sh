#!/usr/bin/env bash
# The nineteenth session's confirmation (kernels only, fla wheels carried; ~3 min, one call): fused-x-aqk's fused
# pass in V blocks of 64 from 128 sequences x heads (2.44 ms alone at 8 x 32K against 3.51 for BV 32,
# x_aqk_tiles_gla_fla.sh): the checks at real sizes and the GDN prefill rows of the report next to fla, then every
# route at 8 x 32K and 4 x 8K.
set -u
export PYTHONPATH=/tmp/site
R=/tmp/hsb; mkdir -p $R/kern
step() { echo "== $1 $(date +%T)"; }
step "checks, GDN prefill rows vs fla"
timeout 200 python3 benchmarks/kernels.py --check --sections ceilings,gdn_prefill --budget-s 180 \
  --out $R/kern/report-wide > $R/kern/report-wide.log 2>&1; echo "rc=$?"
step "GDN forward + backward, every state + out route"
timeout 200 python3 benchmarks/kernels_bwd.py --sections fwdbwd --no-ref --shapes 8x32768,4x8192 --budget-s 180 \
  --impls default,route,fla --out $R/kern/gdn-routes-wide > $R/kern/gdn-routes-wide.log 2>&1; echo "rc=$?"
echo ALLDONE
