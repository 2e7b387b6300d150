#!/usr/bin/env bash
# The job the fifteenth session left for the next one (through benchmarks/gpu_start.sh with the vLLM carry; put the
# fla wheels into part 2's whl/ too; ~20 min, in priority order; every step writes under /tmp/hsb). Its
# kernel half first (issue #7 is open), then the serving steps of the resolved #4 queued since the thirteenth session
# (the fourteenth's queue, tiles_serving.sh, ran its kernel half as lower_decode_bwd16.sh).
#  1. GLA forward + backward against fla, the backward's intra dQ, dK by columns (default) and by levels
#     (HYBRIDSERVE_GLA_BWD_INTRA=levels: 14.0 ms at 8 x 32K by Nsight Compute, the column kernel never timed);
#  2. Nsight Compute on our GLA backward with the column kernel, and on fla's at 4 x 8K (at 8 x 32K its 18 passes
#     over ~15 kernels ran past 100 s): kernel for kernel, as the fifteenth session did for GDN;
#  3. the serving layer at the defaults; 4. the align-mode cost; 5. the Qwen short rows (as tiles_serving.sh had them).
set -u
export PYTHONPATH=/tmp/site VLLM_USE_FLASHINFER_SAMPLER=0
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
python3 -c "import fla; print('fla', fla.__version__)" > $R/fla.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
step "GLA forward + backward vs fla, each backward intra"
timeout 240 python3 benchmarks/kernels_bwd.py --sections gla --no-ref --budget-s 200 --out $R/kern/gla-fwdbwd \
  > $R/kern/gla-fwdbwd.log 2>&1; echo "rc=$?"
NCU="ncu --clock-control none --profile-from-start off --section SpeedOfLight --section Occupancy \
  --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis"
step "ncu: our GLA backward, intra by columns, 8x32K"
timeout 120 $NCU python3 benchmarks/ncu_kernels_gpu.py --what gla_bwd --shape 8x32768 \
  > $R/kern/ncu-gla_bwd-ours-columns.txt 2>&1; echo "rc=$?"
for impl in fla ours; do
  step "ncu: GLA backward, $impl, 4x8K"
  timeout 240 $NCU python3 benchmarks/ncu_kernels_gpu.py --what gla_bwd --impl $impl --shape 4x8192 \
    > $R/kern/ncu-gla_bwd-$impl-4x8K.txt 2>&1; echo "rc=$?"
done
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
