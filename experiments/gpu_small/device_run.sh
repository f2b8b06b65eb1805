#!/usr/bin/env bash
# Run or resume sweeps/gpu_small.yaml inside one call of the lent GPU machine (10-minute limit per call).
#
#   bash experiments/gpu_small/device_run.sh [SECONDS]    (the whole script ends within SECONDS, default 540)
#
# State travels between calls as a tarball: the previous call's $OUT/gpu_small.tar is carried back as
# .gpu_state/gpu_small.tar. Finished runs travel without their checkpoints (the runner skips them by their
# summary.json); unfinished runs keep theirs and resume. Before the sweep, one timed `bitnet-jax train` of the
# smallest shape checks that the training loop runs at the speed of `bitnet-jax bench` for the same step.
set -u
deadline=$(( $(date +%s) + ${1:-540} ))
out=${OUT:-/tmp/gpu_small_out}
mkdir -p "$out" runs
exec > >(tee "$out/log.txt") 2>&1
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
cli="python -m bitnet_jax.cli"
nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv,noheader

if [ -f .gpu_state/gpu_small.tar ]; then
  tar xf .gpu_state/gpu_small.tar
else
  shape="model.d_model=128 model.n_layers=4 model.n_heads=4 model.d_ff=352 model.vocab_size=256"
  timeout 90 $cli bench --preset tiny --seq 256 --batch 64 --steps 30 $shape --recipes fp16,bitnet_b158 | tail -4
  timeout 120 $cli train recipe=fp16 $shape model.seq_len=256 train.batch_size=64 train.steps=600 train.log_every=100 \
      train.eval_every=600 data.source=python_stdlib tracking.progress=false --out /tmp/speed_check >/dev/null
  python - <<'EOF'
import json
s = json.load(open("/tmp/speed_check/summary.json"))
print('loop check:', s['status'], s['step'], 'steps,', s['tokens_per_sec'], 'tokens/s, wall', s['wall_s'], 's, val bpb', s['val_bits_per_byte'])
EOF
fi

start=$(date +%s)
left=$(( deadline - start - 40 )); [ $left -gt 10 ] || left=10
timeout --signal=INT --kill-after=15 $left $cli sweep sweeps/gpu_small.yaml --out runs/gpu_small
echo "sweep exit $? after $(( $(date +%s) - start )) s"

# finished runs travel without checkpoints
excludes=()
for s in runs/gpu_small/*/summary.json; do
  d=$(dirname "$s")
  grep -q '"status": "finished"' "$s" && excludes+=(--exclude="$d/ckpt")
done
tar cf "$out/gpu_small.tar" "${excludes[@]}" runs/gpu_small
ls -la "$out"
$cli results runs/gpu_small | tail -20
