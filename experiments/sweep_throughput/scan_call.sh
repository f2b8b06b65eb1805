#!/usr/bin/env bash
# One device call: compilation time and tokens/s with the transformer blocks unrolled and scanned
# (train.scan_layers), small shapes through the training loop (probe.py scan) and the 125M bench shape.
#   bash experiments/sweep_throughput/scan_call.sh      (about 8 minutes on an H200)
set -u
out=${OUT:-/tmp/scan_call}
mkdir -p "$out"
exec > >(tee "$out/log_scan.txt") 2>&1
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
find /opt/torch/.venv/lib/python3.12/site-packages -name '*.py' -printf '%s\n' |
  awk '{s+=$1} END {print "site-packages .py files:", NR, "bytes:", s}'
OUT=$out python experiments/sweep_throughput/probe.py ${1:-330} scan
for scan in true false; do
  timeout 150 python -m bitnet_jax.cli bench --preset 125m --recipes bitnet_b158 --steps 20 \
    train.scan_layers=$scan --json "$out/bench_125m_scan_$scan.json"
done
