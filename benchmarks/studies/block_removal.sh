#!/usr/bin/env bash
# Which residual blocks can go? CKA ranking against angular distance, branch L1 and random
# blocks at equal FLOPs removed (issue 35).
#
# PRE-REGISTERED 2026-12-05, before any run of this script (written and committed first).
#
# Design: the main job's ResNet-20 and ResNet-32 (BatchNorm, width 16) on MNIST-5k, TF
# backend, the dense baseline's recipe (paper_recipe.sh step 6: SGD 0.1, momentum 0.9, no
# Nesterov, cosine, weight decay 5e-4, batch 64), 20 epochs, `--method blocks --sparsity 0.25`
# (a quarter of the FLOPs) in 1 step: dense for 10 epochs, blocks removed by each criterion
# (cka, angular, l1, random), 10 epochs of fine-tuning. Seeds 0-2 (each criterion's run of a
# seed re-runs the same seeded dense training; the criterion acts only after epoch 10).
# Results: benchmarks/results/block_removal_resnet{20,32}.json.
#
# PRIMARY: per model, the paired (by seed) difference in final test accuracy, cka minus
# random, and cka minus l1, mean and 95% t-interval, Holm over the 4 comparisons. SECONDARY:
# the same before fine-tuning (validation accuracy right after removal:
# structure.block_steps[0].val_accuracy_removed), and angular minus random. Reading: an
# interval above 0 after Holm says CKA ranking keeps more accuracy at this FLOPs share; one
# containing 0 shows no difference at 3 seeds (state the MDE).
# FOLLOW-UP (a second pre-registration before it runs): the same at beta where CKA-SR
# measurably acts (dose_response.sh: 1e-1 with all samples every batch) against beta 0.
#
# What it cannot show: other data sets, more removal, other block types (no transformers
# here), or latency (benchmarks/structured_inference.py measures that).
#
# Run from the repository root: bash benchmarks/studies/block_removal.sh
set -euo pipefail
export KERAS_BACKEND=${KERAS_BACKEND:-tensorflow}
for model in resnet20 resnet32; do
  keras-cka-sr train --model $model --method blocks --sparsity 0.25 --prune-steps 1 \
    --block-criterion cka angular l1 random --cka-weight 0 --seeds 0 1 2 --lr 0.1 \
    --recipe paper --no-nesterov --lr-schedule cosine --batch-size 64 --epochs 20 \
    --verbose 0 --resume --output benchmarks/results/block_removal_$model.json
done

# ADDED 2026-12-05 after the ResNet-20 arm, before any ResNet-32 dense run: the goal
# ("no more than 0.5 points after fine-tuning") needs dense runs of ResNet-32 with the same
# recipe and seeds (ResNet-20's are in paper_recipe_resnet20.json). Read with
# `block_removal.py ... --dense benchmarks/results/dense_resnet32.json`: cka minus dense.
keras-cka-sr train --model resnet32 --method dense --cka-weight 0 --seeds 0 1 2 --lr 0.1 \
  --recipe paper --no-nesterov --lr-schedule cosine --batch-size 64 --epochs 20 \
  --verbose 0 --resume --output benchmarks/results/dense_resnet32.json
