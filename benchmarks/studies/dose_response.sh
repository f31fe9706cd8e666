#!/usr/bin/env bash
# Does CKA-SR act on the network, at which beta, and does it help? BatchNorm ResNet-20 (width
# 16), RST at 99% sparsity, MNIST-5k, the official code's recipe (`--recipe paper`: Nesterov SGD
# 0.1, weight decay 5e-4, batch 128, x0.1 after epochs 10 and 15), 20 epochs, TF backend.
#
# Fixed before the runs:
#   PRIMARY TEST: test accuracy of beta 1e-4 minus beta 0, paired by seed, on the 10 fresh
#   seeds 10-19 (seeds 0-4 produced the hypothesis: paper_recipe_resnet20.json), two-sided
#   paired t-test at 0.05, the final model (not the best-validation checkpoint).
#   Secondary, Holm-corrected together: beta 1e-3, 1e-2, 1e-1 vs 0 at the reference knobs
#   (8 samples, every 5th batch), and the paper's "original" CKA-SR (all 128 samples, every
#   batch) at beta 1e-4 and at the smallest beta whose within-stage CKA fell (BETA_MOVED).
#   The manipulation check: the paired difference of the final mean within-stage CKA (probe
#   of 256 validation images, inference mode) and its per-epoch trajectory (history.cka_mean).
#
# Each finished run is written to the JSON and skipped on the next call (--resume), so the
# study spans sessions: about 160 s per run on a 2-core CPU, 70 runs.
# Run from the repository root: bash benchmarks/studies/dose_response.sh [primary|dose|original]
# Tables: python benchmarks/studies/summarize.py benchmarks/results/dose_response_resnet20.json \
#   --by method sparsity --treatment cka_samples cka_every --paired --metric test_accuracy
set -euo pipefail
export KERAS_BACKEND=${KERAS_BACKEND:-tensorflow}
OUT=benchmarks/results/dose_response_resnet20.json
SEEDS=(10 11 12 13 14 15 16 17 18 19)
common=(--model resnet20 --method rst --sparsity 0.99 --recipe paper --epochs 20
  --seeds "${SEEDS[@]}" --verbose 0 --resume --output "$OUT")
step=${1:-all}

if [[ $step == all || $step == primary ]]; then
  keras-cka-sr train --cka-weight 1e-4 --compare "${common[@]}"
fi
if [[ $step == all || $step == dose ]]; then
  keras-cka-sr train --cka-weight 1e-1 1e-2 1e-3 "${common[@]}"
fi
if [[ $step == all || $step == original ]]; then
  keras-cka-sr train --cka-weight 1e-4 ${BETA_MOVED:+"$BETA_MOVED"} --cka-samples 128 \
    --cka-every 1 "${common[@]}"
fi
