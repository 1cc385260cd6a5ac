#!/usr/bin/env bash
# A fresh drafter/verifier pair trained from scratch on an accelerator, then
# scored, in one command for a lent device session (one command may run 10
# minutes; the step limits below add up to 9).
#
# Same shapes as the bundled pair (configs/models/demo_verifier.gin,
# demo_drafter.gin) and the same recipes (configs/train/demo_verifier.gin,
# demo_drafter.gin: Adafactor, warmup-stable-decay, packed rows of 64 + 64
# slots, placeholder positions weighted 3x for the verifier, token-level
# distillation from the verifier for the drafter), with bindings that start
# from random weights instead of the recipes' git-history models (init_from,
# init_sha256 None), read the data stream from its start (data_offset_steps
# 0), re-size the schedule for the run's steps, and use accelerator settings:
# bfloat16 activations and 8x larger batches (400 rows).
#
#   run (device tool), carry [".wheels"]:  bash benchmarks/device_train.sh
#   SMOKE=1 bash benchmarks/device_train.sh   # a few steps: a check on any machine
#
# Knobs (environment): VERIFIER_STEPS (3000), DRAFTER_STEPS (2000), ROWS (400),
# EVAL_EXAMPLES (2000 per split, spread over it; 0 = whole splits, slower).
#
# Models land in $OUT/demo-verifier and $OUT/demo-drafter (our format,
# bfloat16 weights, recipe.json beside them), their quality in
# $OUT/quality.json (benchmarks/quality.py); training checkpoints stay in
# $WORK (not brought back).
#
# The device has jax, flax and optax but not sentencepiece, gin-config or
# sacrebleu, and no network: they come from the carried .wheels directory
#   pip download --only-binary=:all: --python-version 3.12 --platform
#     manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d .wheels
#     sentencepiece gin-config sacrebleu polib absl-py tqdm   (then drop numpy)
set -u
OUT=${OUT:-device_out}
WORK=${WORK:-/tmp/scj_device_train}
mkdir -p "$OUT" "$WORK"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import sentencepiece, gin, sacrebleu" 2>/dev/null \
  || pip install -q --no-index --find-links .wheels sentencepiece gin-config sacrebleu polib \
  || echo "could not install sentencepiece/gin-config/sacrebleu from .wheels"

if [[ "${SMOKE:-0}" == 1 ]]; then
  VERIFIER_STEPS=${VERIFIER_STEPS:-3}; DRAFTER_STEPS=${DRAFTER_STEPS:-3}; ROWS=${ROWS:-4}
  EVAL_EXAMPLES=${EVAL_EXAMPLES:-16}; BLEU_EXAMPLES=8
else
  VERIFIER_STEPS=${VERIFIER_STEPS:-3000}; DRAFTER_STEPS=${DRAFTER_STEPS:-2000}
  ROWS=${ROWS:-400}; EVAL_EXAMPLES=${EVAL_EXAMPLES:-2000}; BLEU_EXAMPLES=500
fi

STEP_TAIL=12
source "$(dirname "$0")/device_steps.sh"

# From scratch: the shared schedule of the pair's first stages (peak lr 1e-2,
# warmup, the peak held, a linear decay over the last 20%).
scratch() {  # scratch STEPS WARMUP_STEPS
  local steps=$1 warmup=$2
  echo "--gin_bindings=recipes.train_gettext.init_from = None"
  echo "--gin_bindings=recipes.train_gettext.init_sha256 = None"
  echo "--gin_bindings=trainer.TrainConfig.data_offset_steps = 0"
  echo "--gin_bindings=TRAIN_STEPS = $steps"
  echo "--gin_bindings=trainer.TrainConfig.learning_rate = 1e-2"
  echo "--gin_bindings=trainer.TrainConfig.warmup_steps = $(( warmup > 0 ? warmup : 1 ))"
  echo "--gin_bindings=trainer.TrainConfig.decay_fraction = 0.2"
  echo "--gin_bindings=trainer.TrainConfig.eval_every = $((steps / 3 + 1))"
}
common=(
  --gin_bindings="trainer.TrainConfig.tokens_per_batch = $((ROWS * 64))"
  --gin_bindings="trainer.TrainConfig.checkpoint_every = 500"
  --gin_bindings="trainer.TrainConfig.log_every = 100"
  --gin_bindings="recipes.train_gettext.bleu_examples = $BLEU_EXAMPLES"
  --gin_bindings="t5.T5Config.dtype = 'bfloat16'"
)
mapfile -t verifier_schedule < <(scratch "$VERIFIER_STEPS" $((VERIFIER_STEPS / 5)))
mapfile -t drafter_schedule < <(scratch "$DRAFTER_STEPS" $((DRAFTER_STEPS / 10)))

step train_verifier 270 python -m spec_cascade_jax.main \
  --gin_file=configs/train/demo_verifier.gin "${common[@]}" "${verifier_schedule[@]}" \
  --gin_bindings="MODEL_DIR = '$OUT/demo-verifier'" \
  --gin_bindings="WORKDIR = '$WORK/verifier'"
step train_drafter 180 python -m spec_cascade_jax.main \
  --gin_file=configs/train/demo_drafter.gin "${common[@]}" "${drafter_schedule[@]}" \
  --gin_bindings="MODEL_DIR = '$OUT/demo-drafter'" \
  --gin_bindings="WORKDIR = '$WORK/drafter'" \
  --gin_bindings="TEACHER = '$OUT/demo-verifier'"
step quality 90 python benchmarks/quality.py \
  --models "$OUT/demo-drafter,$OUT/demo-verifier" --vocabulary gettext \
  --corpus gettext_en_de --examples "$EVAL_EXAMPLES" --json "$OUT/quality.json"
