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
# Amended 2026-12-01, after the primary runs and one secondary run (beta 1e-3, seed 10), before
# any other secondary run: the secondary arms use seeds 10-14 (SECONDARY_SEEDS). A run takes
# ~230 s on a quiet 2-core CPU (400-900 s when shared), not the 160 s planned, and the
# all-samples arms take longer: 10 seeds per arm would be ~5 h beyond the primary, over the
# study's 3-hour budget. 5 seeds measure the manipulation check (CKA's paired SD is ~0.004)
# and detect accuracy effects of ~2.2 points (paired SD 1.3 points, 80% power). The primary
# test is unchanged.
#
# Made precise 2026-12-01, while the dose arm's last 3 runs (seed 14) trained (seeds 10-13
# had been read) and before any all-samples run: "the smallest
# beta whose CKA fell" is the smallest beta at the reference knobs whose paired ΔCKA interval
# lies below 0 (benchmarks/studies/beta_moved.py prints it; BETA_MOVED overrides), and the LeNet
# grid takes it from its own dose arms. When no beta moved CKA, the all-samples arm runs 1e-4
# only.
#
# Each finished run is written to the JSON and skipped on the next call (--resume), so the
# study spans sessions: 20 primary runs + 15 dose + 10 original (all finished 2026-12-01).
# The same grid on LeNet-5, GMP at 98% (issue 21 item 5; exploratory, Holm-corrected within
# its table): beta 0, 1e-4, 1e-3, 1e-2, 1e-1 at the reference knobs and the original CKA-SR at
# 1e-4 and BETA_MOVED, seeds 10-14, lr 0.05 (LeNet-5 has no BatchNorm; 0.05 was chosen on
# validation accuracy in paper_recipe.sh's step lr), the rest as above:
# dose_response_lenet5.json (steps lenet, lenet-original).
#
# Rerun 2026-12-04 (issue 38 item 2): the LeNet grid's best-validation checkpoints had been
# taken while GMP still ramped (epochs 1-10 of a schedule ending in epoch 15); after the fix
# the file was moved away and both LeNet steps run again, same commands (the final-model
# figures are new runs, not copies).
#
# Run from the repository root:
#   bash benchmarks/studies/dose_response.sh [primary|dose|original|lenet|lenet-original]
# Tables: python benchmarks/studies/summarize.py benchmarks/results/dose_response_resnet20.json \
#   --treatment cka_samples cka_every --paired --primary 1e-4 --primary-treatment 8 5 \
#   --also small_weight_share cka_grad_ratio_max   (add --metric cka_mean or test_accuracy_best_val)
set -euo pipefail
export KERAS_BACKEND=${KERAS_BACKEND:-tensorflow}
OUT=benchmarks/results/dose_response_resnet20.json
SEEDS=(10 11 12 13 14 15 16 17 18 19)
SECONDARY_SEEDS=(10 11 12 13 14)
knobs=(--model resnet20 --method rst --sparsity 0.99 --recipe paper --epochs 20
  --verbose 0 --resume --output "$OUT")
common=("${knobs[@]}" --seeds "${SEEDS[@]}")
secondary=("${knobs[@]}" --seeds "${SECONDARY_SEEDS[@]}")
lenet=(--model lenet5 --method gmp --sparsity 0.98 --recipe paper --lr 0.05 --epochs 20
  --verbose 0 --resume --output benchmarks/results/dose_response_lenet5.json
  --seeds "${SECONDARY_SEEDS[@]}")
step=${1:-all}

if [[ $step == all || $step == primary ]]; then
  keras-cka-sr train --cka-weight 1e-4 --compare "${common[@]}"
fi
if [[ $step == all || $step == dose ]]; then
  keras-cka-sr train --cka-weight 1e-1 1e-2 1e-3 "${secondary[@]}"
fi
# The paper's all-samples, every-batch CKA-SR at 1e-4 and at the smallest beta that moved CKA
# in the dose arms of the results file $1; the rest of the arguments go to the main job.
all_samples_arm() {
  local file=$1 beta
  shift
  beta=${BETA_MOVED-$(TF_CPP_MIN_LOG_LEVEL=3 python benchmarks/studies/beta_moved.py "$file")}
  [[ $beta == 0.0001 ]] && beta=""
  echo "all-samples arm: beta 1e-4 ${beta:+and $beta (the smallest beta that moved CKA)}"
  keras-cka-sr train --cka-weight 1e-4 ${beta:+"$beta"} --cka-samples 128 --cka-every 1 "$@"
}
if [[ $step == all || $step == original ]]; then
  all_samples_arm "$OUT" "${secondary[@]}"
fi
if [[ $step == all || $step == lenet ]]; then
  keras-cka-sr train --cka-weight 1e-4 1e-3 1e-2 1e-1 --compare "${lenet[@]}"
fi
if [[ $step == all || $step == lenet-original ]]; then
  all_samples_arm benchmarks/results/dose_response_lenet5.json "${lenet[@]}"
fi
