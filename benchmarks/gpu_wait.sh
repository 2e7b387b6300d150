#!/usr/bin/env bash
# Wait up to SECONDS (default 540) for the job gpu_start.sh started (until its log says ALLDONE), then bring back
# everything under /tmp/hsb but models/ as $OUT/hsb.tgz, with the job's log. Every call collects, so a machine lost
# later still leaves what was finished.   bash benchmarks/gpu_wait.sh [SECONDS]
secs=${1:-540}; end=$((SECONDS + secs))
while [ $SECONDS -lt $end ] && ! grep -q ALLDONE /tmp/vjob.log 2>/dev/null; do sleep 5; done
echo "--- job log"; cat /tmp/vjob.log
mkdir -p "$OUT" && tar -czf "$OUT/hsb.tgz" -C /tmp/hsb --exclude=./models . && cp /tmp/vjob.log "$OUT/"
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader
