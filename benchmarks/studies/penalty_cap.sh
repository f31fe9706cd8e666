#!/usr/bin/env bash
# The opt-in gradient cap on the collapse case (docs/safety.md): RST LeNet-5 on MNIST-5k at
# 98% and 99% with the unscaled initialization (--no-rescale) and Adam 1e-3, where CKA-SR
# drove 0.1.0 to chance. beta 0 and beta 1e-4 uncapped (--compare), then beta 1e-4 with
# --cka-grad-cap 0.1, on the same 3 seeds. Resumable: each finished run is written.
# Run from the repository root: bash benchmarks/studies/penalty_cap.sh
set -euo pipefail
export KERAS_BACKEND=${KERAS_BACKEND:-jax}
R=benchmarks/results
common=(--method rst --sparsity 0.98 0.99 --no-rescale --seeds 0 1 2 --verbose 0 --resume)
keras-cka-sr train "${common[@]}" --cka-weight 1e-4 --compare --output $R/penalty_cap_lenet.json
keras-cka-sr train "${common[@]}" --cka-weight 1e-4 --cka-grad-cap 0.1 \
  --output $R/penalty_cap_lenet_capped.json
