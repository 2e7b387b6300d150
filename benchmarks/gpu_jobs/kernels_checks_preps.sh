#!/usr/bin/env bash
# First GPU job of the fourteenth session (through benchmarks/gpu_start.sh; ~12 min of device time, in priority
# order; every step writes under /tmp/hsb, so a job cut short still brings back what finished). Kernels only.
# Carry fla (benchmarks/README.md, "Habits"): its rows are the 1.3x / fwd+bwd comparisons of issue #7.
#  1. correctness at real sizes with the defaults (pipelined forward state pass at BV 64, one launch up to 512
#     tokens) at K = V = 128, and at K = V = 64 (SmolLM2's heads: the prep kernel's shared block inverse,
#     refactored); then K = V = 128 with every pass at 2 and 3 stages (if they pass, DH_STAGES_CHECKED and
#     GLA_STATE_STAGES = 3 can go on), and K = V = 64 at 3 stages (before TUNED_HEAD_DIMS can take (64, 64));
#  2. the ops whole at the defaults, 1, 2 and 3 stages, next to fla, fwd and fwd+bwd (state_pass_gpu.py);
#  3. the chunk forward kernel by kernel with each prep (HYBRIDSERVE_GDN_PREP=scratch, split, registers);
#  4. the ops whole with the two new preps (the forward at 8 x 32K decides; the phases tell which half pays).
set -u
export PYTHONPATH=/tmp/site VLLM_USE_FLASHINFER_SAMPLER=0
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
python3 -c "import fla; print('fla', fla.__version__)" > $R/fla.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
step "check, defaults, K = V = 128"
timeout 200 python3 benchmarks/check_kernels_gpu.py --quick --json $R/kern/check-128.json > $R/kern/check-128.log 2>&1
echo "rc=$?"
step "check, defaults, K = V = 64"
timeout 200 python3 benchmarks/check_kernels_gpu.py --quick --dims 9,64,64 --json $R/kern/check-64.json \
  > $R/kern/check-64.log 2>&1; echo "rc=$?"
for st in 2 3; do
  step "check, K = V = 128, every pass at $st stages (the dh pass and GLA's state pass: timed, not yet checked)"
  HYBRIDSERVE_STATE_STAGES=$st timeout 200 python3 benchmarks/check_kernels_gpu.py --quick \
    --json $R/kern/check-128-s$st.json > $R/kern/check-128-s$st.log 2>&1; echo "rc=$?"
done
step "check, K = V = 64, every pass at 3 stages"
HYBRIDSERVE_STATE_STAGES=3 timeout 200 python3 benchmarks/check_kernels_gpu.py --quick --dims 9,64,64 \
  --json $R/kern/check-64-s3.json > $R/kern/check-64-s3.log 2>&1; echo "rc=$?"
step "the ops whole at the defaults vs fla"
timeout 330 python3 benchmarks/state_pass_gpu.py --out $R/kern/state-pass --budget-s 150 > $R/kern/state-pass.log 2>&1
echo "rc=$?"
step "chunk forward kernel by kernel, each prep"
timeout 150 python3 benchmarks/kernels.py --sections ceilings,chunk_phases --out $R/kern/phases \
  > $R/kern/phases.log 2>&1; echo "rc=$?"
for prep in split registers; do
  HYBRIDSERVE_GDN_PREP=$prep timeout 150 python3 benchmarks/kernels.py --sections chunk_phases \
    --out $R/kern/phases-$prep > $R/kern/phases-$prep.log 2>&1; echo "rc=$?"
done
for prep in split registers; do
  step "the ops whole with HYBRIDSERVE_GDN_PREP=$prep"
  HYBRIDSERVE_GDN_PREP=$prep timeout 330 python3 benchmarks/state_pass_gpu.py --out $R/kern/state-pass-$prep \
    --budget-s 100 > $R/kern/state-pass-$prep.log 2>&1; echo "rc=$?"
done
echo ALLDONE
