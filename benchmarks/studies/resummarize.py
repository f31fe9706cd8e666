"""Rewrites the `summary` block of results files from their runs (after a change to how the
main job summarizes). The runs are kept as they are, except that each run that predates
recording its data set and backend gets the file's.

    python benchmarks/studies/resummarize.py benchmarks/results/*.json
"""

import json
import sys

from keras_cka_sr.app import report, study


def main(paths):
    for path in paths:
        with open(path) as handle:
            payload = json.load(handle)
        if not isinstance(payload, dict) or "runs" not in payload or "summary" not in payload:
            print(f"{path}: not a results file of keras-cka-sr train, skipped")
            continue
        runs = list(study.finished_runs(path).values())
        if len(runs) != len(payload["runs"]):
            raise SystemExit(f"{path}: {len(payload['runs'])} runs but {len(runs)} run keys")
        study.write_results(path, runs)
        print(f"{path}: {len(runs)} runs, {len(report.summarize(runs))} summary rows")


if __name__ == "__main__":
    main(sys.argv[1:])
