#!/usr/bin/env bash
# One device call for issue 13's decode item: whole generation steps of the b1.58 paper's 3B and 700M shapes,
# bf16 vs int8 codes vs 2-bit packed weights in this project (`bitnet-jax bench generate`), then transformers' bf16
# `generate` at the same shapes (plain, then static cache + torch.compile), everything teed into $OUT.
#
#   bash experiments/benchmarks/generate_call.sh        (give the call timeout_s=600; each step has its own limit)
set -u
out=${OUT:-/tmp/generate_call}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
exec > >(tee "$out/log.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
cli="python -m bitnet_jax.cli"
timeout 150 $cli bench generate --shape 3b --batch 1 --json "$out/generate_3b_b1.json"
timeout 120 $cli bench generate --shape 3b --batch 4 --json "$out/generate_3b_b4.json"
timeout 90 $cli bench generate --shape 700m --batch 1 --json "$out/generate_700m_b1.json"
for args in "--shape 3b --batch 1" "--shape 3b --batch 4" "--shape 700m --batch 1"; do
  timeout 45 python experiments/benchmarks/torch_generate.py $args
done | tee "$out/torch_generate.jsonl"
timeout 120 python experiments/benchmarks/torch_generate.py --shape 3b --batch 1 --static | tee -a "$out/torch_generate.jsonl"
