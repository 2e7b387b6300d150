#!/usr/bin/env bash
# Second GPU job of the fourteenth session (through benchmarks/gpu_start.sh; ~15 min of device time, in priority
# order; every step writes under /tmp/hsb, so a job cut short still brings back what finished).
#  1. the serving layer at the defaults (the after of the thirteenth session's two layer runs);
#  2. what prefix caching's align mode costs the Qwen hybrid without hits: 1K and 8K rows, on and off;
#  3. the Qwen short rows (1K/256, 128/1024) hybrid vs teacher at the defaults, one repeat.
set -u
export PYTHONPATH=/tmp/site VLLM_USE_FLASHINFER_SAMPLER=0
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
python3 -c "import fla; print('fla', fla.__version__)" > $R/fla.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
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
