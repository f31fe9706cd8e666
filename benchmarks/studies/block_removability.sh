#!/usr/bin/env bash
# Are the blocks of a CKA-SR-trained network more or less removable than those of a beta-0
# one? (issue 35, the follow-up of block_removal.sh)
#
# PRE-REGISTERED 2026-12-05, before any run of this script (written and committed first).
#
# Design: ResNet-20 on MNIST-5k, TF backend, block_removal.sh's recipe and removal (20 epochs,
# SGD 0.1 momentum 0.9, cosine, weight decay 5e-4, batch 64; `--method blocks --sparsity 0.25
# --prune-steps 1 --block-criterion cka`: dense for 10 epochs, blocks removed by CKA ranking,
# 10 epochs of fine-tuning), CKA-SR on during all 20 epochs. Arms: beta 1e-1 with all 128
# samples every batch (the one setting measured to move CKA far: -0.387 in
# middle_range_resnet20.json / dose_response) - PRIMARY; beta 3e-2 at the default sampling
# (CKA fell -0.029 [-0.057, -0.002]) - secondary. Seeds 0-2. The beta-0 arm is the cka
# criterion's runs of block_removal_resnet20.json (same recipe and seeds; the penalty's
# sampling fields do nothing at beta 0), not re-run.
# Results: benchmarks/results/block_removability_resnet20.json.
#
# PRIMARY: removal cost = validation accuracy at the end of the dense phase (history epoch 10)
# minus validation accuracy right after removal (structure.block_steps[0].val_accuracy_removed),
# in points; paired (by seed) difference, beta 1e-1 minus beta 0, 95% t-interval. Below 0:
# CKA-SR's blocks are more removable. SECONDARY (Holm over the three): the same for 3e-2; the
# final test accuracy difference for both arms; reported too: the mean block CKA score at
# removal and which blocks were removed.
# Reading: an interval below 0 says CKA-SR made blocks cheaper to remove at this scale; above
# 0, dearer; containing 0: not shown at 3 seeds (state the MDE). Either way it is not accuracy
# per FLOP against a network trained without CKA-SR and pruned by another method.
#
# Run from the repository root: bash benchmarks/studies/block_removability.sh
set -euo pipefail
export KERAS_BACKEND=${KERAS_BACKEND:-tensorflow}
common=(--model resnet20 --method blocks --sparsity 0.25 --prune-steps 1 --block-criterion cka
  --seeds 0 1 2 --lr 0.1 --recipe paper --no-nesterov --lr-schedule cosine --batch-size 64
  --epochs 20 --verbose 0 --resume --output benchmarks/results/block_removability_resnet20.json)
keras-cka-sr train --cka-weight 1e-1 --cka-samples 128 --cka-every 1 "${common[@]}"
keras-cka-sr train --cka-weight 3e-2 "${common[@]}"
