#!/usr/bin/env bash
# The accelerator measurements in one command, for a lent device session
# (about 15 minutes in all, machine start included; one command may run 10).
# Every step writes under $OUT as it goes, has its own time limit, and a
# failing step does not stop the next one. Most important first.
#
#   run (device tool), carry [".wheels"]:  bash benchmarks/device_run.sh
#   SMOKE=1 bash benchmarks/device_run.sh  # tiny shapes: a check on any machine
#
# The device machine has jax, flax, optax, torch and transformers but neither
# seqio nor sentencepiece, and no network: the gettext examples need
# sentencepiece, installed here from a wheel directory carried along
# (pip download sentencepiece --only-binary=:all: --python-version 3.12 -d .wheels).
set -u
OUT=${OUT:-device_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import sentencepiece" 2>/dev/null \
  || pip install -q --no-index --find-links .wheels sentencepiece \
  || echo "sentencepiece unavailable: speed.py and round_profile.py --pair demo will fail"

source "$(dirname "$0")/device_steps.sh"

if [[ "${SMOKE:-0}" == 1 ]]; then
  step gpu 300 python benchmarks/gpu.py --smoke --batches 1,2 --sections steps,ours \
    "--xla-variants=--xla_cpu_enable_fast_math=false" --out "$OUT/gpu"
  step speed 300 python benchmarks/speed.py --examples 2 --repeats 1 --batches 2 \
    --temperatures 0 --num-draft-tokens 3 --cascade token_v1=0.2 --json "$OUT/speed.json"
  step round_profile 300 python benchmarks/round_profile.py --pair demo --examples 2 \
    --max-new-tokens 8 --repeats 1 --json "$OUT/round_profile.json"
  exit 0
fi

# 1. The verifier step against its floor at batch 1, 2 (= batch 1 padded to two
#    rows: does a one-row projection off XLA's reduction path get the 6-row
#    chunk's speed?) and 8; generate with and without pad_single_row; the
#    speculative round's overhead; the batch-1 steps under XLA settings that
#    keep one-row dots as GEMMs.
step gpu 330 python benchmarks/gpu.py --repeats 3 --inner 32 --budget-s 240 --batches 1,2,8 \
  --sections steps,ours \
  "--xla-variants=--xla_gpu_enable_dot_strength_reduction=false;--xla_gpu_enable_triton_gemm=false" \
  --variant-timeout-s 60 --out "$OUT/gpu"
# 2. Every decoding method of the bundled pair on gettext inputs, side by side,
#    greedy, batch 1 and 8: the CPU targets' ratios on an accelerator.
step speed 150 python benchmarks/speed.py --examples 16 --repeats 3 --batches 8 \
  --temperatures 0 --num-draft-tokens 3,5 --lookup-num-draft-tokens 7 --cascade token_v1=0.2 \
  --cascade diff=0.1 --json "$OUT/speed.json"
# 3. Where a speculative round's time goes at T5 shapes, by phase.
step round_profile 90 python benchmarks/round_profile.py --pair t5 --num-draft-tokens 5 \
  --examples 4 --max-new-tokens 128 --json "$OUT/round_profile_t5.json"
