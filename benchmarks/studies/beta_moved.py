"""The smallest beta whose within-stage CKA fell in a dose-response study: the upper end of
the 95% interval of the paired final-CKA difference (beta minus 0, same seeds) below 0, among
the runs at the reference knobs (8 samples, every 5th batch). Prints it, or nothing when no
beta moved CKA. dose_response.sh uses it to choose the second beta of its all-samples arms.

    python benchmarks/studies/beta_moved.py benchmarks/results/dose_response_resnet20.json
"""

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import summarize  # noqa: E402


def beta_moved(runs, samples=8, every=5):
    """The smallest beta > 0 at (`samples`, `every`) whose paired ΔCKA interval lies below 0,
    or None."""
    rows = summarize.table(runs, [], "cka_mean", True, ("cka_samples", "cka_every"))
    moved = [
        row["variant"][0]
        for row in rows
        if row["variant"][1:] == (samples, every)
        and row["cka"] is not None
        and math.isfinite(row["cka"].half_width)
        and row["cka"].mean + row["cka"].half_width < 0
    ]
    return min(moved, default=None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    beta = beta_moved(summarize.load_runs([parser.parse_args(argv).path]))
    if beta is not None:
        print(f"{beta:g}")


if __name__ == "__main__":
    main()
