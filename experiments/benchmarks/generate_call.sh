#!/usr/bin/env bash
# Device calls for issue 13's decode item: whole generation steps of the b1.58 paper's shapes in this project
# (`bitnet-jax bench generate`: bf16, int8 codes, 2-bit packed with and without fused siblings), then transformers'
# bf16 `generate` at the same shapes, everything teed into $OUT. Two parts, one 10-minute call each:
#
#   bash experiments/benchmarks/generate_call.sh 1   # 3B batch 1: every model; transformers plain and compiled
#   bash experiments/benchmarks/generate_call.sh 2   # 3B batch 4 and 700M batch 1; transformers plain
#   bash experiments/benchmarks/generate_call.sh 3   # what 2026-12-03 left: 3B bf16 vs packed (activations quantised
#                                                    # in the kernel) vs packed_xla_quant; a profile of the packed step;
#                                                    # 700M bf16 vs packed; transformers static + compiled at 3B
# (building a 3B packed model packs 2.8G codes on the host: about 30 s each)
set -u
out=${OUT:-/tmp/generate_call}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
exec > >(tee -a "$out/log_part${1:-1}.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
bench="python -m bitnet_jax.cli bench generate"
peer="python experiments/benchmarks/torch_generate.py"
if [ "${1:-1}" = 1 ]; then
  timeout 330 $bench --shape 3b --batch 1 --json "$out/generate_3b_b1.json"
  timeout 60 $peer --shape 3b --batch 1 --json "$out/torch_3b_b1.json"
  timeout 150 $peer --shape 3b --batch 1 --static --json "$out/torch_3b_b1_static.json"
elif [ "$1" = 3 ]; then
  timeout 200 $bench --shape 3b --batch 1 --variants bf16,packed,packed_xla_quant --json "$out/generate_3b_b1.json"
  timeout 90 $bench --shape 700m --batch 1 --variants bf16,packed --json "$out/generate_700m_b1.json"
  OUT=$out timeout 120 python experiments/benchmarks/decode_profile.py 3b:1:packed
  timeout 150 $peer --shape 3b --batch 1 --static --json "$out/torch_3b_b1_static.json"
else
  timeout 220 $bench --shape 3b --batch 4 --variants bf16,int8,packed --json "$out/generate_3b_b4.json"
  timeout 200 $bench --shape 700m --batch 1 --json "$out/generate_700m_b1.json"
  timeout 60 $peer --shape 3b --batch 4 --json "$out/torch_3b_b4.json"
  timeout 60 $peer --shape 700m --batch 1 --json "$out/torch_700m_b1.json"
fi
