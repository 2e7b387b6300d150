#!/usr/bin/env bash
# One long GPU job across several device calls (benchmarks/README.md, "Habits"). Run in the call right after the one
# that stashed part 1 of the vLLM carry (../shared/gpu/stash.sh), with part 2 carried:
#   bash benchmarks/gpu_start.sh PART2_DIR JOB.sh [SECONDS]
# Installs vLLM (PART2_DIR/install.sh) and hybridserve into /tmp/site (a PART2_DIR without install.sh: only its
# whl/*.whl, e.g. fla for a kernels-only job, which then needs no part 1 and no stash call), copies this checkout to /tmp/hsrepo (later
# calls replace the working copy, not that one), starts JOB.sh there in its own session (it outlives the call; it
# should write under /tmp/hsb and print ALLDONE last), then waits up to SECONDS (default 540) like gpu_wait.sh.
# Chain the next calls with no pause: an idle machine goes back after 30 s, and everything on it with it.
set -u
part2=$(cd "$1" && pwd); job=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); secs=${3:-540}
here=$(cd "$(dirname "$0")" && pwd)
if [ -f "$part2/install.sh" ]; then
  bash "$part2/install.sh" || exit 1
  if [ -f "$part2/patch_qwen3next_dense.py" ]; then python3 "$part2/patch_qwen3next_dense.py" /tmp/site || exit 1; fi
else
  python3 -m pip install -q --no-index --no-deps --target /tmp/site "$part2"/whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site VLLM_USE_FLASHINFER_SAMPLER=0
rm -rf /tmp/hsrepo && mkdir -p /tmp/hsrepo /tmp/hsb
tar -cf - --exclude=./.git --exclude="./$(basename "$(dirname "$part2")")" . | tar -xf - -C /tmp/hsrepo
# pip --target keeps a package already there (a second job on a warm machine ran the first one's code): drop it first
rm -rf /tmp/site/hybridserve /tmp/site/hybridserve-*.dist-info
(cd /tmp/hsrepo && python3 -m pip install -q --no-deps --no-build-isolation --no-index --target /tmp/site .) \
  > /tmp/hsinst.log 2>&1 || { echo "hybridserve install failed"; cat /tmp/hsinst.log; exit 1; }
cp "$job" /tmp/hsjob.sh
(cd /tmp/hsrepo && setsid nohup bash /tmp/hsjob.sh > /tmp/vjob.log 2>&1 < /dev/null &)
echo "job started $(date +%T)"
bash "$here/gpu_wait.sh" "$secs"
