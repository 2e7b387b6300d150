#!/usr/bin/env bash
# The job the fourteenth session left for the next one (through benchmarks/gpu_start.sh with the vLLM carry; ~35 min
# of device time, in priority order; every step writes under /tmp/hsb, so a job cut short still brings back what
# finished). More than one lease holds: the kernel steps come first (issue #7 is open), the serving steps of the
# resolved #4 last, so a cut loses those.
#  0. Nsight Compute on one call of each path the targets miss (the forward at 8 x 32K, the backward at 8 x 32K, bf16
#     decode at 512 and 64): warp stall reasons, occupancy, memory throughput (ncu_kernels_gpu.py; on a gVisor
#     machine ncu cannot read the counters and the step fails at once);
#  0b. the prep kernel's off-diagonal inverse blocks on the tensor cores (HYBRIDSERVE_GDN_INVERSE_LOWER=input: TF32
#     for bf16 inputs; sm_90a report 237 -> 164 registers at 4 warps, 170 -> 128 at 8, i.e. 12-16 warps per SM
#     instead of 8): checked, kernel by kernel next to the default in the same run, the ops whole next to fla;
#  1. the decode kernel as served (one tile per program) at BV 16/32/64 x warps 1/2/4, both state dtypes, checked
#     against float64 first: one warp keeps the K reductions inside a warp (3-4 barriers per program against 18) and
#     was never timed; the bf16 state's 62-75 % of copy bandwidth is the target's miss;
#  2. the diagonal inverse by doubling at K = V = 64 (the GDN chunk checks; job 2 of the fourteenth session ran out
#     after the first), before TUNED_HEAD_DIMS could take (64, 64);
#  2b. the split backward with 16-bit intermediates (HYBRIDSERVE_GDN_BWD_INTERMEDIATES=input: dV', dW, partial dK
#     in bf16 as fla keeps them, ~10 GB less traffic at 8 x 32K): checked, kernel by kernel against float32
#     intermediates in the same run, and whole next to fla;
#  2c. GLA against fla, forward and forward + backward (never timed next to fla: fla was not carried, or the budget
#     ran out first);
#  3. the serving layer at the defaults (the after of the thirteenth session's two layer runs);
#  4. what prefix caching's align mode costs the Qwen hybrid without hits: 1K and 8K rows, on and off;
#  5. the Qwen short rows (1K/256, 128/1024) hybrid vs teacher at the defaults, one repeat.
set -u
export PYTHONPATH=/tmp/site VLLM_USE_FLASHINFER_SAMPLER=0
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
python3 -c "import fla; print('fla', fla.__version__)" > $R/fla.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
NCU="ncu --clock-control none --profile-from-start off --section SpeedOfLight --section Occupancy \
  --section LaunchStats --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis"
for spec in "fwd --shape 8x32768" "bwd --shape 8x32768" "decode --batch 512" "decode --batch 64"; do
  name=$(echo $spec | tr -d ' -')
  step "ncu: $spec"
  timeout 150 $NCU python3 benchmarks/ncu_kernels_gpu.py --what $spec > $R/kern/ncu-$name.txt 2>&1; echo "rc=$?"
done
step "ncu: fwd, TF32 lower blocks"
HYBRIDSERVE_GDN_INVERSE_LOWER=input timeout 150 $NCU python3 benchmarks/ncu_kernels_gpu.py --what fwd \
  --shape 8x32768 > $R/kern/ncu-fwd-lower-input.txt 2>&1; echo "rc=$?"
step "check, GDN chunk, TF32 lower blocks"
HYBRIDSERVE_GDN_INVERSE_LOWER=input timeout 200 python3 benchmarks/check_kernels_gpu.py --quick --only gdn_chunk \
  --json $R/kern/check-lower.json > $R/kern/check-lower.log 2>&1; echo "rc=$?"
for low in ieee input; do
  step "chunk forward kernel by kernel (with the prep's autotuned config), lower blocks $low"
  HYBRIDSERVE_GDN_INVERSE_LOWER=$low timeout 120 python3 benchmarks/kernels.py --sections ceilings,chunk_phases \
    --out $R/kern/phases-lower-$low > $R/kern/phases-lower-$low.log 2>&1; echo "rc=$?"
done
step "the ops whole with TF32 lower blocks vs fla"
HYBRIDSERVE_GDN_INVERSE_LOWER=input timeout 200 python3 benchmarks/state_pass_gpu.py --out $R/kern/state-pass-lower \
  --budget-s 90 > $R/kern/state-pass-lower.log 2>&1; echo "rc=$?"
step "decode, one-tile kernel: BV x warps"
timeout 200 python3 benchmarks/decode_sweep_gpu.py --quick --tile-grid --out $R/kern/decode-tiles \
  > $R/kern/decode-tiles.log 2>&1; echo "rc=$?"
step "check, GDN chunk, doubling, K = V = 64"
HYBRIDSERVE_GDN_DIAG_INVERSE=doubling timeout 200 python3 benchmarks/check_kernels_gpu.py --quick --only gdn_chunk \
  --dims 9,64,64 --json $R/kern/check-dbl-64.json > $R/kern/check-dbl-64.log 2>&1; echo "rc=$?"
step "check, GDN chunk, 16-bit backward intermediates"
HYBRIDSERVE_GDN_BWD_INTERMEDIATES=input timeout 150 python3 benchmarks/check_kernels_gpu.py --quick --only gdn_chunk \
  --json $R/kern/check-bwd16.json > $R/kern/check-bwd16.log 2>&1; echo "rc=$?"
for inter in float32 input; do
  step "backward kernel by kernel, intermediates $inter"
  HYBRIDSERVE_GDN_BWD_INTERMEDIATES=$inter timeout 200 python3 benchmarks/kernels_bwd.py --sections phases \
    --budget-s 150 --out $R/kern/bwd-phases-$inter > $R/kern/bwd-phases-$inter.log 2>&1; echo "rc=$?"
done
step "the ops whole with 16-bit backward intermediates vs fla"
HYBRIDSERVE_GDN_BWD_INTERMEDIATES=input timeout 200 python3 benchmarks/state_pass_gpu.py \
  --out $R/kern/state-pass-bwd16 --budget-s 90 > $R/kern/state-pass-bwd16.log 2>&1; echo "rc=$?"
step "GLA vs fla: forward, then forward + backward"
timeout 150 python3 benchmarks/kernels.py --sections gla_prefill --out $R/kern/gla-fwd > $R/kern/gla-fwd.log 2>&1
echo "rc=$?"
timeout 200 python3 benchmarks/kernels_bwd.py --sections gla --budget-s 150 --out $R/kern/gla-fwdbwd \
  > $R/kern/gla-fwdbwd.log 2>&1; echo "rc=$?"
step "serve layer at the defaults"
timeout 150 python3 benchmarks/serve_layer_gpu.py --out $R/kern/layer-defaults --check --conv-only --decode 64,512 \
  --prefill 1x128,1x512,1x1024,1x4096,8x1024,256+15x1024 > $R/kern/layer-defaults.log 2>&1; echo "rc=$?"
step "build qwen"
python3 benchmarks/serving_gpu.py build $R/models qwen2_1p5b > $R/build-qwen.log 2>&1; echo "rc=$?"
step "align mode cost, Qwen hybrid"
for pc in off on; do
  python3 benchmarks/serving_gpu.py run $R/models $R/res_align_$pc qwen2_1p5b_hybrid_bf16state \
    --rows 1024:256:512,8192:256:128 --repeats 1 --model-timeout 300 $([ $pc = on ] && echo --prefix-caching) \
    > $R/run-align-$pc.log 2>&1; echo "rc=$?"
done
step "Qwen short rows at the new defaults"
python3 benchmarks/serving_gpu.py run $R/models $R/res_short qwen2_1p5b_hybrid_bf16state qwen2_1p5b \
  --rows 1024:256:512,128:1024:512 --max-model-len 4096 --repeats 1 --model-timeout 300 > $R/run-short.log 2>&1
echo "rc=$?"
echo ALLDONE
