#!/usr/bin/env bash
# One device call for issue 13's training-step measurements: quant_cost.py (its variants at the given shapes), then
# the PyTorch peer at the 110M shape, everything teed into $OUT.
#
#   mkdir -p build/peer && cp ../shared/bench/torch_peer.py build/peer/    # on the CPU host, then carry build/peer
#   bash experiments/benchmarks/speed_call.sh [SECONDS] [SHAPE ...]          # on the GPU host; default 330 s of variants
set -u
out=${OUT:-/tmp/speed_call}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OUT=$out
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python experiments/benchmarks/quant_cost.py "${1:-330}" "${@:2}" 2>&1 | tee "$out/quant_cost_log.txt"
if [ -f build/peer/torch_peer.py ]; then
  timeout 150 python build/peer/torch_peer.py fp b158 2>&1 | tee "$out/torch_peer.txt"
else
  echo "build/peer/torch_peer.py missing: copy ../shared/bench/torch_peer.py there and carry build/peer"
fi
