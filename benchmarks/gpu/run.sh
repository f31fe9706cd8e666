#!/usr/bin/env bash
# The prepared GPU run: CKA-SR and pruning on the device machine's JAX (and torch), in
# about 8 minutes, each part under its own time limit so that one failure cannot eat the
# budget. Writes gpu.json (every part's figures, exit status and seconds) and log.txt to
# the output folder ($OUT on the device machine). See benchmarks/gpu/README.md.
#
#   bash benchmarks/gpu/run.sh [--cpu-smoke] [OUTPUT_FOLDER]
#
# --cpu-smoke: the same parts at tiny sizes on this machine's CPU (JAX_PLATFORMS=cpu), no
# wheels needed; CI runs it (tests/benchmarks/test_gpu_script.py) so the script cannot rot.
set -uo pipefail
cd "$(dirname "$0")/../.."

smoke=0
if [ "${1:-}" = "--cpu-smoke" ]; then
    smoke=1
    shift
fi
out="${1:-${OUT:-}}"
if [ -z "$out" ]; then
    echo "run.sh: name an output folder (or set OUT)" >&2
    exit 2
fi
mkdir -p "$out"
parts="$(mktemp -d)"
log="$out/log.txt"
say() { echo "[gpu $(date -u +%H:%M:%S)] $*" | tee -a "$log"; }

if [ "$smoke" = 1 ]; then
    export JAX_PLATFORMS=cpu
else
    if [ -d .whl ]; then
        say "installing the carried wheels: $(ls .whl | tr '\n' ' ')"
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl >>"$log" 2>&1 || { say "wheel install FAILED"; exit 3; }
        export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" # the project, from the working tree
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 KERAS_BACKEND=jax # each part names its own

python3 - "$smoke" >>"$log" 2>&1 <<'PY'
import sys

import jax
import keras

devices = jax.devices()
print("jax", jax.__version__, "keras", keras.__version__, "devices", devices)
if sys.argv[1] == "0" and devices[0].platform != "gpu":
    sys.exit(f"expected a GPU, JAX sees {devices}: is this the device machine?")
PY
if [ $? -ne 0 ]; then
    say "FAILED: JAX shows no GPU, or keras does not import (see above)"
    tail -5 "$log" >&2
    exit 3
fi
say "devices: $(grep -m1 '^jax ' "$log")"

# part NAME SECONDS COMMAND...: runs COMMAND --json PARTS/NAME.json under a time limit.
part() {
    local name="$1" limit="$2"
    shift 2
    say "part $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" --json "$parts/$name.json" >>"$log" 2>&1
    local rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" >>"$parts/status.tsv"
    say "part $name: exit $rc after $((SECONDS - start))s"
}

if [ "$smoke" = 1 ]; then
    overhead=(--depth 14 --steps 5 --warmup 1 --rounds 1)
    part overhead_b128 240 python3 benchmarks/cka_overhead.py --backend jax "${overhead[@]}" \
        --batch-size 8 --settings 8:5 --prune 0.9
    part host_sync 120 python3 benchmarks/gpu/host_sync.py --backend jax --depth 14 \
        --batch-size 8 --steps 5 --warmup 1 --rounds 1
    part cka_kernel 120 python3 benchmarks/cka_kernel.py --backend jax --n 8 --blocks-per-stage 2 \
        --dtypes float32,bfloat16 --steps 2 --warmup 1
    part train_jax 180 python3 benchmarks/gpu/train_mnist.py --backend jax --epochs 1 \
        --width 16 --train-samples 128 --no-baseline
    part train_torch 180 python3 benchmarks/gpu/train_mnist.py --backend torch --epochs 1 \
        --width 16 --train-samples 128 --no-baseline
    part channel_latency 120 python3 benchmarks/gpu/channel_latency.py --backend jax \
        --models resnet20 --batch-sizes 2 --fractions 0.5 --steps 2 --warmup 1 --rounds 1
else
    overhead=(--depth 32 --steps 10 --warmup 3 --rounds 3)
    part overhead_b128 80 python3 benchmarks/cka_overhead.py --backend jax "${overhead[@]}" \
        --batch-size 128 --settings 8:5,all:1 --prune 0.9
    part host_sync 45 python3 benchmarks/gpu/host_sync.py --backend jax --depth 32 \
        --batch-size 128 --steps 20 --rounds 3
    part cka_kernel 45 python3 benchmarks/cka_kernel.py --backend jax --n 128,512,2048 \
        --dtypes float32,bfloat16 --steps 20
    part train_jax 70 python3 benchmarks/gpu/train_mnist.py --backend jax --epochs 10
    part overhead_b512 80 python3 benchmarks/cka_overhead.py --backend jax "${overhead[@]}" \
        --batch-size 512 --settings 8:5,all:1 --prune 0.9
    part train_torch 70 python3 benchmarks/gpu/train_mnist.py --backend torch --epochs 10
    part channel_latency 60 python3 benchmarks/gpu/channel_latency.py --backend jax
fi

python3 benchmarks/gpu/merge.py "$parts" "$out/gpu.json" "$smoke" 2>&1 | tee -a "$log"
