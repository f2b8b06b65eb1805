#!/usr/bin/env bash
# One device call for issue 13's training-step measurements, everything teed into $OUT:
#   with a small shape (0.8m, 4.3m): step_profile.py's kernel breakdown first, then quant_cost.py's variants;
#   with 110m: quant_cost.py's 110m variants, then the PyTorch peer at the same shape.
#
#   mkdir -p build/peer && cp ../shared/bench/torch_peer.py build/peer/    # on the CPU host, then carry build/peer
#   bash experiments/benchmarks/speed_call.sh SECONDS SHAPE [SHAPE ...]      # on the GPU host
# SECONDS: no new quant_cost variant starts after it (one variant takes 10-40 s more).
set -u
out=${OUT:-/tmp/speed_call}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OUT=$out
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
shapes=" ${*:2} "
if [[ $shapes == *" 0.8m "* || $shapes == *" 4.3m "* ]]; then
  python experiments/benchmarks/step_profile.py 2>&1 | tee "$out/step_profile_log.txt"
fi
python experiments/benchmarks/quant_cost.py "$1" "${@:2}" 2>&1 | tee "$out/quant_cost_log.txt"
if [[ $shapes == *" 110m "* ]]; then
  if [ -f build/peer/torch_peer.py ]; then
    timeout 150 python build/peer/torch_peer.py fp b158 2>&1 | tee "$out/torch_peer.txt"
  else
    echo "build/peer/torch_peer.py missing: copy ../shared/bench/torch_peer.py there and carry build/peer"
  fi
fi
