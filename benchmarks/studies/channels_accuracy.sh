#!/usr/bin/env bash
# Does a ResNet-20 with half its FLOPs removed by channel pruning keep its accuracy?
# (issue 34's goal: within 1 point of dense on MNIST-5k after fine-tuning.)
#
# Written 2026-12-05 before its first run. Design: the main job's ResNet-20 (BatchNorm, width
# 16) on MNIST-5k, TF backend, the dense baseline's exact recipe (paper_recipe.sh step 6:
# SGD 0.1 with momentum 0.9, no Nesterov, cosine schedule, weight decay 5e-4, batch 64, 20
# epochs), `--method channels --sparsity 0.5`: dense for 10 epochs, then channels removed
# (L1, every layer alike) in 3 steps to 50% of the FLOPs, the 10 remaining epochs shared out
# as fine-tuning (4, 3, 3). Seeds 0-4, beta 0. Results: benchmarks/results/channels_resnet20.json.
#
# PRIMARY: final test accuracy of each seed minus the dense run of the same seed in
# paper_recipe_resnet20.json (20 epochs, same recipe); mean and 95% t-interval over seeds.
# Reading: "within 1 point" holds if the interval's lower end is above -1 point; below
# -1 entirely: it does not; otherwise not shown either way at this number of seeds.
# Computed by
#   python benchmarks/studies/channels_vs_dense.py benchmarks/results/paper_recipe_resnet20.json \
#     benchmarks/results/channels_resnet20.json --json benchmarks/results/channels_vs_dense.json
#
# What it cannot show: other data sets, CIFAR (where channels matter more), longer
# fine-tuning, or how the latency measured here compares with a phone's.
#
# Run from the repository root: bash benchmarks/studies/channels_accuracy.sh
set -euo pipefail
export KERAS_BACKEND=${KERAS_BACKEND:-tensorflow}
keras-cka-sr train --model resnet20 --method channels --sparsity 0.5 --prune-steps 3 \
  --cka-weight 0 --seeds ${SEEDS:-0 1 2 3 4} --lr 0.1 --recipe paper --no-nesterov \
  --lr-schedule cosine --batch-size 64 --epochs 20 --verbose 0 --resume \
  --output benchmarks/results/channels_resnet20.json
