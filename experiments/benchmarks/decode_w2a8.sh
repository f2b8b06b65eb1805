#!/usr/bin/env bash
# W2A8 packed-ternary decode GEMV vs bf16 at the BitNet b1.58 paper's 3B and 700M shapes: the one command for the GPU.
#
#   bash experiments/benchmarks/decode_w2a8.sh        (ends within about 9 minutes: give the call timeout_s=600)
#
# Writes $OUT/decode_3b_b1.json, decode_700m_b1.json, decode_3b_b4.json, torch_bf16_b1.json and log.txt. Each run
# first checks every kernel configuration against the XLA reference on the benchmark shapes (exit 2 on a mismatch); a configuration
# that fails to compile is reported and skipped (exit 1 at the end). The script exits with the worst status.
set -u -o pipefail
out=${OUT:-/tmp/decode_w2a8}
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
export PYTHONUNBUFFERED=1
py=python3
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,driver_version --format=csv,noheader
$py -c "import jax; print('jax', jax.__version__, jax.devices())" || exit 3
worst=0
bench() {  # NAME SECONDS ARGS...
  local name=$1 limit=$2; shift 2
  echo "== $name: $*"
  timeout --kill-after=10 "$limit" $py experiments/benchmarks/run_decode.py --json "$out/$name.json" "$@"
  local rc=$?
  echo "== $name exit $rc"
  [ $rc -gt $worst ] && worst=$rc
}
bench decode_3b_b1 250 --shape 3b --batch 1 --tune --tune-budget 35
bench decode_700m_b1 160 --shape 700m --batch 1 --tune --tune-budget 20
bench decode_3b_b4 80 --shape 3b --batch 4 --variants dp4a,dp4a_rows,f32
echo "== torch cuBLAS bf16 baseline (informational; its failure does not change the exit status)"
timeout 40 $py experiments/benchmarks/torch_bf16_gemv.py --json "$out/torch_bf16_b1.json"
echo "== exit $worst"
exit $worst
