#!/usr/bin/env bash
# Where does the paper's mechanism live or die? The middle of the dose range (issue 38 item 3).
#
# PRE-REGISTERED 2026-12-04, before any run of this script (written and committed first).
#
# Why: in dose_response.sh (dose_response_resnet20.json) CKA-SR did not lower within-stage CKA
# at beta 1e-4 (either knob setting), lowered it slightly at 1e-1 with 8 samples every 5th
# batch, and strongly at 1e-1 with all samples every batch, where accuracy fell by 3.5 points.
# Between "does not act" and "acts and hurts" lie betas where CKA could fall modestly without
# breaking the network: if lower similarity helps sparse networks (the paper's mechanism), it
# should show there.
#
# Design: BatchNorm ResNet-20 (width 16), RST at 99% sparsity, MNIST-5k, `--recipe paper`
# (Nesterov SGD 0.1, weight decay 5e-4, batch 128, x0.1 after epochs 10 and 15), 20 epochs,
# TF backend, the paper's "original" CKA-SR: all samples of a batch, every batch
# (`--cka-samples 128 --cka-every 1`). Arms: beta 1e-3, 3e-3, 1e-2, 3e-2 and a fresh beta 0
# (trained with the same knobs, its own runs), seeds 10-14 (25 runs). Results:
# benchmarks/results/middle_range_resnet20.json.
#
# PRIMARY: across all arms with beta > 0 of both studies (this one and dose_response_resnet20.json:
# beta 1e-4, 1e-3, 1e-2, 1e-1 at 8 samples / every 5th batch, and 1e-4, 1e-1 at all samples
# every batch), each arm paired by seed with its own study's beta 0, one point per (arm, seed):
# x = paired ΔCKA (final mean within-stage CKA, beta minus 0), y = paired accuracy gain (final
# model's test accuracy, beta minus 0). Ordinary least-squares slope of y on x; its 95% interval
# by a bootstrap over seeds (a resampled seed brings all its points from both studies; 10,000
# resamples, percentile interval, NumPy seed 0). Reading, fixed now:
#   - interval entirely below 0 (less similarity, more accuracy): the paper's mechanism
#     survives at this scale;
#   - interval entirely above 0 (less similarity, less accuracy): the mechanism is refuted at
#     this scale (ResNet-20, MNIST-5k, 20 epochs, RST 99%);
#   - interval containing 0: not shown either way; the slope and interval are reported.
# Computed by `python benchmarks/studies/mechanism_slope.py` (written with this header).
# SECONDARY (Holm over these 4): each new arm's accuracy gain and ΔCKA against the fresh beta 0
# (paired t, 95% intervals), from
#   python benchmarks/studies/summarize.py benchmarks/results/middle_range_resnet20.json --paired
# The manipulation check comes first: an arm whose ΔCKA interval does not lie below 0 did not
# act, and its gain is not read as an effect of lower similarity.
#
# What it cannot show: other data sets, widths, longer training or other sparse methods; a
# slope across arms mixes the dose's other effects (the penalty's gradient also moves weights
# in ways CKA does not measure: Davari et al., ICLR 2023) with the similarity it lowers.
#
# Each finished run is written to the JSON and skipped on the next call (--resume), so the
# study spans sessions (a run took 400-900 s on this 2-core machine in dose_response.sh's
# all-samples arms).
#
# Run from the repository root: bash benchmarks/studies/middle_range.sh
set -euo pipefail
export KERAS_BACKEND=${KERAS_BACKEND:-tensorflow}
keras-cka-sr train --model resnet20 --method rst --sparsity 0.99 --recipe paper --epochs 20 \
  --cka-samples 128 --cka-every 1 --cka-weight 1e-3 3e-3 1e-2 3e-2 --compare \
  --seeds 10 11 12 13 14 --verbose 0 --resume \
  --output benchmarks/results/middle_range_resnet20.json
