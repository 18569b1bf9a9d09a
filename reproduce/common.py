"""The harness shared by the reproduction scripts.

A script (``lenet.py``, ``alexnet.py``) holds its paper: its models, its
data, its defaults with their citations. Everything else lives here, in the
order a run uses it:

- the flags every script takes (:func:`base_parser`);
- the run folder: an interrupted one to resume with the settings it was
  started with (:func:`resume_run`), or a new one made once the data has
  loaded (:func:`new_run_dir`); then its bookkeeping (:func:`record_run`);
- the data's validation split and quick subset (:func:`select_data`);
- the learning-rate schedule (:func:`lr_schedule`);
- training one model with checkpoints, metrics and learning curves
  (:func:`train`, :func:`train_models`, :func:`save_model`);
- evaluating saved weights instead of training (:func:`load_weights`,
  :func:`weights_run`), and checking that a record read back from a file
  holds what the script reads (:func:`check_record`, :func:`need`);
- the "paper vs this run" report (:func:`write_report`).

A run writes everything into its own folder::

    config.json        the resolved configuration (every default, every flag)
    environment.json   versions, compiled core yes/no, threads, CPU
    report.md          paper vs this run, for people
    report.json        the same, for programs
    <model>/           one folder per model the run trains:
        metrics.csv        one row per epoch (written as training goes)
        checkpoint.h5      the last epoch's state, for --resume
        <model>.h5         the trained weights (zeronet.load reads them)
        result.json        the model's numbers (also in the weights' metadata)
        *.png              the figures
"""
import argparse
import csv
import datetime
import json
import math
import os
import platform
import re
import sys
import textwrap
from pathlib import Path

import numpy as np

import zeronet
from zeronet import datasets
from zeronet.optimizers import PiecewiseConstant, ReduceOnPlateau
from zeronet.trainer import Trainer

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ flags ----

def positive_int(text):
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def count(text):
    """argparse type: an int >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text):
    """argparse type: a finite float > 0."""
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def nonnegative_float(text):
    """argparse type: a finite float >= 0."""
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def thread_count(text):
    """argparse type: an int from 1 to zeronet.kernels.MAX_THREADS."""
    value = int(text)
    if not 1 <= value <= zeronet.kernels.MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {zeronet.kernels.MAX_THREADS}, "
                                         f"got {value}")
    return value


def folder_path(text):
    """argparse type: a folder's path, never empty (an empty path would
    silently mean the current folder)."""
    if not text:
        raise argparse.ArgumentTypeError("must name a folder, got an empty string")
    return text


def fraction(text):
    """argparse type: a float in [0, 1)."""
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: the message, not the
    whole usage (``--help`` shows that)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, unless its help already explains it or
    there is none."""

    def _get_help_string(self, action):
        if "default" in (action.help or "") or action.default is None:
            return action.help
        return super()._get_help_string(action)


def base_parser(description, *, threads, training_set, out_note=""):
    """The flags every reproduction script shares.

    ``threads``: the script's default thread count; ``training_set``: the
    size of the whole training set, for ``--val``'s help (e.g. "60,000");
    ``out_note``: what ``--out``'s help adds for this script.
    """
    ap = _Parser(description=description, formatter_class=_HelpWithDefaults)
    ap.add_argument("--epochs", type=positive_int, default=None,
                    help="training passes (default: the paper's, per model)")
    # count: numpy.random.default_rng refuses negative seeds.
    ap.add_argument("--seed", type=count, default=0, help="seed of every random generator")
    ap.add_argument("--data-dir", type=folder_path, default=None,
                    help="dataset folder (default: $ZERONET_DATA, else the repository's data/)")
    ap.add_argument("--out", type=folder_path, default=str(REPO / "runs"),
                    help="parent folder of the run folders" + out_note)
    ap.add_argument("--quick", action="store_true",
                    help="seconds-long smoke run on a small subset (what CI runs)")
    ap.add_argument("--resume", nargs="?", const="latest", default=None, metavar="RUN_DIR",
                    help="continue an interrupted run from its last checkpoint "
                         "(default: the newest run folder of the same model)")
    ap.add_argument("--weights", default=None, metavar="FILE.h5",
                    help="skip training: evaluate these HDF5 weights on the test set")
    ap.add_argument("--val", type=count, default=0, metavar="N",
                    help="tuning run: hold out the last N training images and report the error "
                         f"on them instead of the test set (the final runs use all "
                         f"{training_set})")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--threads", type=thread_count, default=threads,
                    help="threads for zeronet's kernels and for BLAS")
    return ap


def set_threads(n):
    """Use ``n`` threads in zeronet's compiled loops and in BLAS."""
    zeronet.kernels.set_num_threads(n)
    zeronet.kernels.set_blas_threads(n)


# ------------------------------------------------------------- run folder ----

def new_run_dir(out, name):
    """A fresh folder ``<out>/<name>-<timestamp>``."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    Path(out).mkdir(parents=True, exist_ok=True)
    for suffix in range(1000):
        path = Path(out) / (f"{name}-{stamp}" + (f"-{suffix}" if suffix else ""))
        try:
            path.mkdir()        # atomic: two runs started in the same second get two folders
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run folder for {name} in {out}")


def find_resume_dir(out, name, resume):
    """The run folder to resume: the one named, or the newest for ``name``."""
    def has_checkpoint(run):
        return any(run.glob("*/checkpoint.h5"))
    if resume != "latest":
        path = Path(resume)
        if not has_checkpoint(path):
            sys.exit(f"--resume: no <model>/checkpoint.h5 in {path}")
        return path
    # Exactly <name>-<date>-<time>[-n]: "lenet-lenet5" must not match
    # "lenet-lenet5-quick-..." or "lenet-lenet5-distortions-...".
    own = re.compile(re.escape(name) + r"-\d{8}-\d{6}(-\d+)?")
    candidates = sorted((p for p in Path(out).glob(f"{name}-*")
                         if own.fullmatch(p.name) and has_checkpoint(p)),
                        key=lambda p: p.stat().st_mtime)
    if not candidates:
        sys.exit(f"--resume: no run of {name} with a checkpoint under {out}")
    return candidates[-1]


def saved_flag(parser, key, value):
    """``value``, read from a config.json, if the flag that sets ``args.key``
    could have given it (its type, its choices); else a ValueError or
    TypeError. config.json is a file like any other: it may have been
    edited, and a value no flag can give would fail later, far from here."""
    action = next(a for a in parser._actions if a.dest == key)
    if value is None and action.default is None:
        return None
    if action.nargs == 0:           # store_true: the flag given or not
        if not isinstance(value, bool):
            raise TypeError(f"{value!r} is not true or false")
        return value
    many = action.nargs in ("+", "*")
    if many and not (isinstance(value, list) and value):
        raise TypeError(f"{value!r} is not a list of values")
    for item in value if many else [value]:
        if isinstance(item, (bool, list, dict)) or item is None:
            raise TypeError(f"{item!r} is not a value of the flag")
        # The flag's own check of the text; and the value must come back
        # equal, so the string "24" is refused where an int is meant.
        if (action.type or str)(str(item)) != item:
            raise ValueError(f"{item!r} is not what the flag gives")
        if action.choices is not None and item not in action.choices:
            raise ValueError(f"{item!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def restore_config(args, parser, run_dir, keys, may_change=()):
    """On --resume, take the interrupted run's settings ``keys`` from its
    config.json.

    A flag given now that contradicts the saved value is an error (it would
    silently make a different run), except for those in ``may_change``
    (e.g. ``epochs``, to train further). So is a saved value that its flag
    could not have given (:func:`saved_flag`).
    """
    path = Path(run_dir) / "config.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        sys.exit(f"--resume: cannot read {path}: {exc}")
    if not isinstance(saved, dict):
        sys.exit(f"--resume: {path} holds no settings (a JSON {type(saved).__name__}); "
                 "was it written by this script?")
    missing = [key for key in keys if key not in saved]
    if missing:
        sys.exit(f"--resume: {path} does not record {', '.join(missing)}; "
                 "was it written by this script?")
    for key in keys:
        try:
            saved_flag(parser, key, saved[key])
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            sys.exit(f"--resume: {path} records {key} = {saved[key]!r}, which "
                     f"--{key.replace('_', '-')} cannot give ({exc})")
    for key in keys:
        now, default = getattr(args, key), parser.get_default(key)
        if key in may_change and now != default:
            continue
        if now != default and now != saved[key]:
            was = "default" if saved[key] is None else saved[key]
            sys.exit(f"--resume: --{key.replace('_', '-')} {now} contradicts the run's "
                     f"{was} (in {path})")
        setattr(args, key, saved[key])


def passes_trained(run_dir):
    """``(passes, model)``: the most passes that a model of the run in
    ``run_dir`` has trained, as its checkpoint records, and that model;
    ``(0, None)`` without checkpoints. A damaged checkpoint raises
    :class:`~zeronet.io.WeightsFileError`."""
    most = (0, None)
    for checkpoint in sorted(Path(run_dir).glob("*/checkpoint.h5")):
        passes = zeronet.io.checkpoint_epoch(checkpoint) + 1
        if passes > most[0]:
            most = (passes, checkpoint.parent.name)
    return most


def resume_run(args, parser, tag, settings, epochs):
    """With ``--resume``, the interrupted run's folder, whose ``settings``
    (flag names) ``args`` then takes from its config.json; else None: the
    new run's folder is made (:func:`new_run_dir`) once its data has
    loaded, so that a run that cannot start leaves no folder behind.

    ``--epochs`` may differ, to train further, but ``epochs(args)``, the
    passes the run is to train, may not be fewer than a model of it has
    trained already: config.json would then record fewer passes than its
    results hold.
    """
    if args.resume is None:
        return None
    run_dir = find_resume_dir(args.out, tag, args.resume)
    restore_config(args, parser, run_dir, settings, may_change=("epochs",))
    trained, model = passes_trained(run_dir)
    if epochs(args) < trained:
        sys.exit(f"--resume: {model} in {run_dir} has trained {trained} passes already, more "
                 f"than the {epochs(args)} asked for; give --epochs {trained} or more")
    return run_dir


def record_run(run_dir, args, **config):
    """Start the run's bookkeeping: threads as ``args`` says, config.json
    (every flag and the resolved ``config``), environment.json."""
    set_threads(args.threads)     # after --resume has restored the run's own
    print(f"run folder: {run_dir}  (zeronet {zeronet.__version__}, {zeronet.backend()} kernels)",
          flush=True)
    write_json(run_dir / "config.json", {**vars(args), **config})
    write_json(run_dir / "environment.json", environment())


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment():
    """What the numbers were measured on."""
    import h5py
    import scipy
    return {
        "zeronet": zeronet.__version__, "backend": zeronet.backend(),
        "openmp": bool(zeronet.kernels.HAS_OPENMP), "threads": zeronet.kernels.get_num_threads(),
        "blas_threads": zeronet.kernels.get_blas_threads(),
        "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
        "h5py": h5py.__version__, "cpu": cpu_name(), "cores": os.cpu_count(),
        "platform": platform.platform(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def write_json(path, obj):
    tmp = Path(path).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def write_metrics(path, history):
    """One CSV row per epoch; columns are the union of the records' keys."""
    keys = list(dict.fromkeys(k for record in history for k in record))
    tmp = Path(path).with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, path)


# ------------------------------------------------------------------- data ----

def select_data(data, args, quick_sizes):
    """``(x_train, y_train, x_eval, y_eval)`` from a :class:`~zeronet.datasets.Dataset`.

    With ``--val N`` the last N training images take the test set's place
    everywhere, so the test set is never looked at while choosing
    hyperparameters. With ``--quick``, the first ``quick_sizes = (train,
    eval)`` of each: a small, fixed subset, seconds rather than minutes.
    """
    x_train, y_train, x_eval, y_eval = data.x_train, data.y_train, data.x_test, data.y_test
    if args.val >= len(x_train):
        sys.exit(f"--val {args.val:,}: must be less than the {len(x_train):,} training images")
    if args.val:
        (x_train, y_train), (x_eval, y_eval) = datasets.train_val_split(x_train, y_train, args.val)
    if args.quick:
        n_train, n_eval = quick_sizes
        x_train, y_train, x_eval, y_eval = (x_train[:n_train], y_train[:n_train],
                                            x_eval[:n_eval], y_eval[:n_eval])
    return x_train, y_train, x_eval, y_eval


def eval_name(args):
    """What the run reports its error on: ``"val"`` or ``"test"``."""
    return "val" if args.val else "test"


# --------------------------------------------------------------- training ----

def lr_schedule(kind, base_lr, boundaries=(), ratios=(1.0,), patience=1):
    """The learning rate over the epochs.

    ``"steps"``: ``base_lr * ratios[i]`` from epoch ``boundaries[i - 1]``
    (0-based; 0 for i = 0) to ``boundaries[i]``. ``"plateau"``: ``base_lr``
    divided by 10 whenever the validation error has not improved for
    ``patience`` epochs, and at the latest at ``boundaries``; after
    ``len(boundaries)`` reductions the next plateau ends training
    (Krizhevsky et al. 2012 §5).
    """
    if kind == "steps":
        return PiecewiseConstant(boundaries, [base_lr * r for r in ratios])
    if kind == "plateau":
        return ReduceOnPlateau(base_lr, factor=0.1, patience=patience, latest=boundaries,
                               max_reductions=len(boundaries))
    raise ValueError(f"schedule must be 'steps' or 'plateau', got {kind!r}")


def train(name, network, optimizer, schedule, x, t, args, model_dir, *, rng, epochs,
          resume, label, augment=None, eval_sets=None):
    """Train ``network`` on ``x (N, ...)``, ``t (N,)`` for ``epochs`` passes.

    After every pass: a checkpoint ``model_dir/checkpoint.h5`` (with
    ``resume``, training continues from it, ending with the same weights as
    an uninterrupted run) and ``model_dir/metrics.csv``. ``eval_sets`` (name
    -> (x, t)) are evaluated after every pass. Returns the history, one dict
    per epoch.
    """
    model_dir.mkdir(exist_ok=True)
    trainer = Trainer(network, optimizer, epochs=epochs, batch_size=args.batch_size, rng=rng,
                      schedule=schedule, augment=augment, checkpoint=model_dir / "checkpoint.h5",
                      eval_sets=eval_sets, progress=not args.no_progress,
                      log=lambda line: print(f"[{name}] {line}", flush=True),
                      on_epoch_end=lambda h: write_metrics(model_dir / "metrics.csv", h))
    print(f"[{name}] {label}: {network.num_parameters():,} parameters, {epochs} passes over "
          f"{len(x):,} images", flush=True)
    return trainer.fit(x, t, resume=resume)


def train_models(names, run_dir, resume, epochs, train_one, check=None):
    """``name -> result`` for every model in ``names``, from
    ``train_one(name)``; on ``resume``, a model that had finished all
    ``epochs`` before the interruption keeps its result (its result.json,
    which ``check(result)``, if given, reads as the report will: see
    :func:`check_record`)."""
    def finished_result(path):
        result = json.loads(path.read_text())
        need(result, "epochs", int)
        if check is not None:
            check(result)
        return result

    results = {}
    for name in names:
        done = run_dir / name / "result.json"
        if resume and done.exists():
            finished = check_record(done, "not a result this script writes (move it away to "
                                    "train the model again)", lambda: finished_result(done))
            if finished["epochs"] >= epochs:
                results[name] = finished
                continue
        results[name] = train_one(name)
    return results


def run_record(name, label, network, history, args, eval_size):
    """What every trained model's result holds (scripts add their own)."""
    seconds = [h["seconds"] for h in history]
    return {"model": name, "label": label, "test_size": eval_size,
            "evaluated_on": "validation split" if args.val else "test set",
            "train_error": history[-1]["train_error"], "epochs": len(history),
            "parameters": network.num_parameters(), "seconds_per_epoch": float(np.mean(seconds)),
            "quick": bool(args.quick), "batch_size": args.batch_size}


def save_model(network, model_dir, name, result, history, title):
    """``<name>.h5`` (the weights, with ``result`` and ``history`` as
    metadata), ``result.json`` and the learning-curves figure."""
    zeronet.save(network, model_dir / f"{name}.h5", metadata={**result, "history": history})
    write_json(model_dir / "result.json", result)
    import figures          # beside this file; imports matplotlib, so only when drawing
    figures.learning_curves(history, model_dir / "learning_curves.png", title)


# ------------------------------------------------ saved weights, records ----

def load_weights(path, models):
    """``(network, name)`` from an HDF5 file whose metadata names one of
    ``models``; exits with a one-line message otherwise."""
    network = zeronet.load(path)
    name = network.metadata.get("model") if isinstance(network.metadata, dict) else None
    if not isinstance(name, str) or name not in models:
        sys.exit(f"{path}: its metadata names no model of this script (model={name!r}; "
                 f"expected one of {', '.join(models)})")
    return network, name


def need(record, key, kinds, where="the record"):
    """``record[key]`` if it is one of ``kinds`` (never a bool, which Python
    counts as an int) and, if a float, finite; else a KeyError, TypeError or
    ValueError naming it, for :func:`check_record` to report. For the
    fields a report only prints, where ``True`` or ``"many"`` would pass."""
    value = record[key]
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise TypeError(f"{where}'s {key!r} is {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}'s {key!r} is {value!r}")
    return value


def check_record(path, what, check):
    """``check()``, which reads a record from ``path`` as a script wrote it
    (a weights file's metadata, a JSON file of results) and raises if it is
    no such record: a missing key, a value of the wrong type or out of
    range, text that is not JSON. Then the run ends with one line: ``path``,
    ``what`` it is not, and what is wrong. Returns ``check()``'s value."""
    try:
        return check()
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        sys.exit(f"{path}: {what} ({type(exc).__name__}: {exc})")


def weights_run(args, tag, evaluate):
    """``--weights``: no training. ``evaluate(args) -> (name, result)``
    measures the saved weights; the run folder ``<tag>-eval-<name>`` then
    records the evaluation. Returns ``(run_dir, {name: result})``."""
    set_threads(args.threads)
    name, result = evaluate(args)
    run_dir = new_run_dir(args.out, f"{tag}-eval-{name}")
    write_json(run_dir / "config.json", vars(args))
    write_json(run_dir / "environment.json", environment())
    return run_dir, {name: result}


# ----------------------------------------------------------------- report ----

def percent(x):
    return "-" if x is None else f"{100 * x:.2f}%"


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def bullets(items):
    """Markdown bullets, each refilled to 76 columns."""
    return "".join(textwrap.fill(" ".join(item.split()), 76, initial_indent="- ",
                                 subsequent_indent="  ", break_on_hyphens=False) + "\n"
                   for item in items)


def write_report(run_dir, args, results, *, title, paper, table, departures, notes=""):
    """Print ``table`` and write report.md (``title``, the ``paper`` cited,
    the table, what it was measured on, ``notes``, the ``departures`` from
    the paper) and report.json (``results``, the environment)."""
    env = environment()
    # Summed from the recorded passes, so a resumed run counts all of them.
    train_minutes = sum(r["seconds_per_epoch"] * r["epochs"] for r in results.values()) / 60
    first = next(iter(results.values()))
    text = (f"# {title}\n\nPaper: {paper}.\n\n{table}\n\n"
            f"{'Validation split (tuning run)' if args.val else 'Test set'}: "
            f"{first['test_size']:,} images"
            f"{' (QUICK smoke run on a subset: not comparable)' if args.quick else ''}. "
            f"Machine: {env['cpu']}, {env['cores']} cores, zeronet {env['zeronet']} "
            f"({env['backend']} kernels); {train_minutes:.1f} min of training in all. "
            f"s/pass is the wall-clock time of one training pass as measured in this run, "
            f"whatever else the machine was doing (see environment.json).\n\n"
            f"{notes + chr(10) if notes else ''}"
            f"Where this run departs from the paper:\n\n{departures}")
    (run_dir / "report.md").write_text(text)
    write_json(run_dir / "report.json", {"paper": paper, "results": results,
                                         "environment": env, "quick": bool(args.quick)})
    print("\n" + table + "\n")
    print(f"report: {run_dir / 'report.md'}")


def run_main(main):
    """Run a script's ``main()`` so that zeronet's documented errors end it
    with one line on stderr and exit status 1, not a traceback: a weights
    file refused by zeronet.io (``WeightsFileError``), a dataset missing or
    damaged (``DatasetError``), a file that cannot be read or written
    (``OSError``), a training that diverged (the trainer's
    ``FloatingPointError``, which names the rate). Ctrl-C ends it with
    status 130. Any other exception is a
    bug and keeps its traceback. ``--debug`` among the arguments (taken out
    of ``sys.argv`` here) shows the traceback of the documented errors too.
    """
    from zeronet.datasets import DatasetError
    from zeronet.io import WeightsFileError

    debug = "--debug" in sys.argv[1:]
    if debug:
        sys.argv.remove("--debug")
    prog = Path(sys.argv[0]).name
    try:
        main()
    except (WeightsFileError, DatasetError, OSError, FloatingPointError) as exc:
        if debug:
            raise
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
