#!/usr/bin/env bash
# Every GPU measurement the open issues ask for, in one run on a CUDA machine (prints JSON and
# pytest-benchmark tables; writes them under ${OUT:-bench-out}). Nothing here needs the network.
#   bash benchmarks/device_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
# the device machine has torch, timm, pluggy, click, pandas, tabulate and pytest-benchmark but no
# network: install gaitbench itself without dependencies (its entry points register the methods)
pip install -q --no-deps --no-build-isolation -e . || echo "WARNING: editable install failed"
python -c "import torch; print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
# evaluation engine at OU-MVLP and CASIA-B size (issue: protocols and the evaluation engine)
python benchmarks/eval_gpu.py --repeat 3 > "$OUT/eval_gpu.json"; cat "$OUT/eval_gpu.json"
# re-ranking at Gait3D size and GREW with 100k distractors (issue: post-processing stages)
python benchmarks/stages_gpu.py > "$OUT/stages_gpu.json"; cat "$OUT/stages_gpu.json"
# every method's registered throughput cases (issue: throughput)
python -m pytest -q -p no:cacheprovider tests/test_throughput.py tests/test_step_sync.py -m gpu --benchmark-json "$OUT/throughput.json" \
    --benchmark-columns=min,median,rounds 2>&1 | tail -40
# the training-step / inference / evaluator comparison with the reference, when its source was
# carried along (OPENGAIT: OpenGait's source folder, kept outside git, e.g. build/opengait-ref)
OPENGAIT=${OPENGAIT:-build/opengait-ref}
if [ -d "$OPENGAIT/modeling" ]; then
    python benchmarks/reference_speed.py --opengait "$OPENGAIT" --device cuda --amp bf16 --channels-last --eval \
        > "$OUT/reference_speed.json"; cat "$OUT/reference_speed.json"
else
    echo "reference_speed: skipped, no OpenGait source at $OPENGAIT"
fi
for m in gaitset gaitpart gaitgl; do
    gaitbench bench --method "$m" --device cuda --amp bf16 --channels-last --json "$OUT/bench-$m.json" | tail -3
done
