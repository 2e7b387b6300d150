#!/usr/bin/env bash
# The GPU job the eleventh and twelfth sessions left for the next one (run through benchmarks/gpu_start.sh; ~30 min
# of device time, in priority order; every step writes under /tmp/hsb, so a job cut short still brings back what
# finished). The kernel steps come first with tight budgets, so that the Llama 32K pair (#4's last unmeasured
# target) starts by ~13 min in the worst case.
#  1. the short conv kernels (kernels/short_conv/) on the GPU: serving layer rows with --check (Triton conv);
#  2. the sequential chunk passes with pipelined loads (state_pass_gpu.py: checked, the ops at 1-3 stages, sweeps);
#  3. the one-launch chunk kernel for short prefills (short_prefill_gpu.py: checked, sizes, serving op, configs);
#  4. run 9's 32K decode row on the Llama-3B shape (the >= 3x target's second shape, never measured directly);
#  5. the serving layer again with both switched on (HYBRIDSERVE_GDN_FUSED_MAX_TOKENS, HYBRIDSERVE_STATE_STAGES);
#  6. the decode kernels against a copy of the same bytes (decode_sweep_gpu.py: the ceiling at B = 64, ~20 us);
#  7. serving correctness in vLLM with the conv kernels (serve_check_gpu.py, the conv variant: margins vs
#     transformers);
#  8. the GDN chunk forward timed kernel by kernel at 1x4K, 8x32K, 1x32K (kernels.py --sections);
#  9. the serving layer rows with the PyTorch conv (the before of step 1);
# 10. the 32K row on the Qwen shape again (a second run of run 9's 3.34x; these hybrids have no short conv);
# 11. what prefix caching's align mode costs the Qwen hybrid without hits: 1K and 8K rows, on and off.
set -u
export PYTHONPATH=/tmp/site VLLM_USE_FLASHINFER_SAMPLER=0
R=/tmp/hsb; mkdir -p $R/kern
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
step() { echo "== $1 $(date +%T)"; }
PREFILL=1x128,1x1024,1x4096,8x1024,256+15x1024
step "serve layer, Triton conv"
timeout 150 python3 benchmarks/serve_layer_gpu.py --out $R/kern/layer-triton --check --conv-only --decode 64,512 \
  --prefill $PREFILL > $R/kern/layer-triton.log 2>&1; echo "rc=$?"
step "sequential chunk passes, pipelined (HYBRIDSERVE_STATE_STAGES)"
timeout 340 python3 benchmarks/state_pass_gpu.py --out $R/kern/state-pass --budget-s 280 > $R/kern/state-pass.log 2>&1
echo "rc=$?"
step "short prefill: one launch vs three (HYBRIDSERVE_GDN_FUSED_MAX_TOKENS)"
timeout 240 python3 benchmarks/short_prefill_gpu.py --out $R/kern/short-prefill --budget-s 190 \
  > $R/kern/short-prefill.log 2>&1; echo "rc=$?"
step "build llama"
python3 benchmarks/serving_gpu.py build $R/models llama_3b > $R/build-llama.log 2>&1; echo "rc=$?"
step "32K decode, Llama shape"
python3 benchmarks/serving_gpu.py run $R/models $R/res_llama llama_3b_hybrid_bf16state llama_3b \
  --rows 32768:2048:max --max-model-len 34816 --repeats 1 --model-timeout 600 > $R/run-llama.log 2>&1; echo "rc=$?"
step "serve layer, Triton conv, one-launch short prefill + pipelined state pass (the after of step 1)"
HYBRIDSERVE_GDN_FUSED_MAX_TOKENS=2048 HYBRIDSERVE_STATE_STAGES=2 timeout 150 python3 benchmarks/serve_layer_gpu.py \
  --out $R/kern/layer-fused --check --conv-only --decode 64 --prefill $PREFILL > $R/kern/layer-fused.log 2>&1
echo "rc=$?"
step "decode vs a copy of the same bytes"
timeout 150 python3 benchmarks/decode_sweep_gpu.py --quick --stages-grid --out $R/kern/decode-sweep \
  > $R/kern/decode-sweep.log 2>&1; echo "rc=$?"
step "serve check"
timeout 240 python3 benchmarks/serve_check_gpu.py --out $R/check --variants llama_gdn_conv > $R/check.log 2>&1
echo "rc=$?"
step "chunk forward, kernel by kernel (the 0.77x-fla miss's breakdown)"
timeout 200 python3 benchmarks/kernels.py --sections ceilings,chunk_phases --out $R/kern/phases \
  > $R/kern/phases.log 2>&1; echo "rc=$?"
step "serve layer, PyTorch conv"
timeout 150 python3 benchmarks/serve_layer_gpu.py --out $R/kern/layer-pytorch --pytorch-conv --conv-only \
  --decode 64,512 --prefill $PREFILL > $R/kern/layer-pytorch.log 2>&1; echo "rc=$?"
step "build qwen"
python3 benchmarks/serving_gpu.py build $R/models qwen2_1p5b > $R/build-qwen.log 2>&1; echo "rc=$?"
step "32K decode, Qwen shape"
python3 benchmarks/serving_gpu.py run $R/models $R/res qwen2_1p5b_hybrid_bf16state qwen2_1p5b \
  --rows 32768:2048:max --max-model-len 34816 --repeats 1 --model-timeout 600 > $R/run-long.log 2>&1; echo "rc=$?"
step "align mode cost, Qwen hybrid"
for pc in off on; do
  python3 benchmarks/serving_gpu.py run $R/models $R/res_align_$pc qwen2_1p5b_hybrid_bf16state \
    --rows 1024:256:512,8192:256:128 --repeats 1 --model-timeout 300 $([ $pc = on ] && echo --prefix-caching) \
    > $R/run-align-$pc.log 2>&1; echo "rc=$?"
done
echo ALLDONE
