#!/usr/bin/env bash
# Run or resume sweeps/NAME.yaml (default scaling_gpu) inside one call of the lent GPU machine (10-minute limit).
#
#   bash experiments/scaling_gpu/device_run.sh [SECONDS] [NAME] [SWEEP OPTIONS]   (ends within SECONDS, default 540)
#
# e.g. `bash experiments/scaling_gpu/device_run.sh 540 scaling_gpu --parts fp16_low,large` (the spec's parts).
# Finished runs travel between calls as $OUT/NAME.tar.gz (without checkpoints); copy it over
# experiments/scaling_gpu/state/NAME.tar.gz and commit it, and the next call (or session) starts from it. A run the
# deadline interrupts resumes from its checkpoint when the next call finds the same machine still warm, and starts
# again otherwise (its checkpoints are too large to carry).
set -u
name=${2:-scaling_gpu}
deadline=$(( $(date +%s) + ${1:-540} ))
options=("${@:3}")
out=${OUT:-/tmp/$name}
mkdir -p "$out" runs
exec > >(tee "$out/log_${name}_$(date -u +%Y%m%dT%H%M%S).txt") 2>&1
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 BITNET_JAX_CACHE=$PWD/runs/cache
cli="python -m bitnet_jax.cli"
date -u; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [ -d runs/$name ]; then
  echo "warm machine: continuing runs/$name"
elif [ -f experiments/scaling_gpu/state/$name.tar.gz ]; then
  tar xzf experiments/scaling_gpu/state/$name.tar.gz
fi
start=$(date +%s)
$cli sweep sweeps/$name.yaml --out runs/$name "${options[@]}" --dry-run | sed -n '/jobs (executor/,$p'
left=$(( deadline - $(date +%s) - 40 )); [ $left -gt 10 ] || left=10
timeout --signal=INT --kill-after=20 $left $cli sweep sweeps/$name.yaml --out runs/$name "${options[@]}"
echo "sweep exit $? after $(( $(date +%s) - start )) s"
# finished runs travel (without checkpoints); the others stay behind
excludes=(--exclude="*/ckpt" --exclude="*/.lock")
for d in runs/$name/*/; do
  [ -f "$d/plan.yaml" ] && ! grep -q '"status": "finished"' "$d/summary.json" 2>/dev/null && excludes+=(--exclude="${d%/}")
done
tar czf "$out/$name.tar.gz" "${excludes[@]}" runs/$name
ls -la "$out"
$cli results runs/$name | tail -5
