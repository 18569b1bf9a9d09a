"""Bookkeeping shared by the reproduction scripts.

A run writes everything into its own folder::

    config.json        the resolved configuration (every default, every flag)
    environment.json   versions, compiled core yes/no, threads, CPU
    metrics.csv        one row per epoch (written as training goes)
    <model>.h5         the trained weights (zeronet.load reads them)
    checkpoint.h5      the last epoch's state, for --resume
(``<model>/`` subfolders hold the per-model files when a run trains several.)
    report.md          paper vs this run, for people
    report.json        the same, for programs
"""
import argparse
import csv
import datetime
import json
import os
import platform
import re
import sys
from pathlib import Path

import numpy as np

import zeronet

REPO = Path(__file__).resolve().parent.parent


def positive_int(text):
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def fraction(text):
    """argparse type: a float in [0, 1)."""
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, unless its help already explains it or
    there is none."""

    def _get_help_string(self, action):
        if "default" in (action.help or "") or action.default is None:
            return action.help
        return super()._get_help_string(action)


def base_parser(description, threads_default):
    """The flags every reproduction script shares."""
    ap = argparse.ArgumentParser(description=description, formatter_class=_HelpWithDefaults)
    ap.add_argument("--epochs", type=int, default=None,
                    help="training passes (default: the paper's, per model)")
    ap.add_argument("--seed", type=int, default=0, help="seed of every random generator")
    ap.add_argument("--data-dir", default=None,
                    help="dataset folder (default: $ZERONET_DATA, else the repository's data/)")
    ap.add_argument("--out", default=str(REPO / "runs"),
                    help="parent folder of the run folders")
    ap.add_argument("--quick", action="store_true",
                    help="seconds-long smoke run on a small subset (what CI runs)")
    ap.add_argument("--resume", nargs="?", const="latest", default=None, metavar="RUN_DIR",
                    help="continue an interrupted run from its last checkpoint "
                         "(default: the newest run folder of the same model)")
    ap.add_argument("--weights", default=None, metavar="FILE.h5",
                    help="skip training: evaluate these HDF5 weights on the test set")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--threads", type=positive_int, default=threads_default,
                    help="threads for zeronet's kernels and for BLAS")
    return ap


def set_threads(n):
    """Use ``n`` threads in zeronet's compiled loops and in BLAS."""
    zeronet.kernels.set_num_threads(n)
    zeronet.kernels.set_blas_threads(n)


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


def restore_config(args, parser, run_dir, keys, may_change=(), before_flag=None):
    """On --resume, take the interrupted run's settings from its config.json.

    A flag given now that contradicts the saved value is an error (it would
    silently make a different run), except for those in ``may_change``
    (e.g. ``epochs``, to train further). ``before_flag`` maps a setting to
    the value that runs made before its flag existed used, where that is
    not the flag's default. Returns the names of the settings the run's
    config.json holds.
    """
    saved = json.loads((Path(run_dir) / "config.json").read_text())
    recorded = set(saved)     # before the loop below fills in the missing ones
    before_flag = before_flag or {}
    for key in keys:
        now, default = getattr(args, key), parser.get_default(key)
        # A run made before the flag existed ran with its default, unless
        # before_flag says otherwise.
        saved.setdefault(key, before_flag.get(key, default))
        if key in may_change and now != default:
            continue
        if now != default and now != saved[key]:
            sys.exit(f"--resume: --{key.replace('_', '-')} {now} contradicts the run's "
                     f"{saved[key]} (in {run_dir}/config.json)")
        setattr(args, key, saved[key])
    return recorded


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


def percent(x):
    return "-" if x is None else f"{100 * x:.2f}%"


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def run_main(main):
    """Run a script's ``main()`` so that zeronet's documented errors end it
    with one line on stderr and exit status 1, not a traceback: a weights
    file refused by zeronet.io (``WeightsFileError``), a dataset missing or
    damaged (``DatasetError``), a file that cannot be read or written
    (``OSError``). Ctrl-C ends it with status 130. Any other exception is a
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
    except (WeightsFileError, DatasetError, OSError) as exc:
        if debug:
            raise
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
