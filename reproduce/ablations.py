"""The paper's claims re-measured at CIFAR-10 scale, one mechanism at a time.

    python reproduce/alexnet.py --ablations                # run the grid, or what is left of it
    python reproduce/alexnet.py --ablate no-lrn --seed 1   # one run of it (any machine)
    python reproduce/alexnet.py --ablations --report-only  # table and figures from the records
    python reproduce/alexnet.py --ablations --estimate     # time a few steps of every arm
    python reproduce/alexnet.py --ablations --quick        # seconds: 2 arms, 1 seed, tiny budget

Krizhevsky et al. 2012 make a claim for each mechanism of their network.
Each *arm* below is alexnet.py's network with one of them changed; every
arm trains at the same reduced budget (BUDGET) with the same seeds, and its
test error is compared with the arm it changes (``Arm.against``), seed by
seed. ARMS lists them; CLAIMS says what each comparison measures and what
the paper says.

The Fig. 1 pair (§3.1) follows the paper's protocol instead: no
regularisation of any kind (no crops, flips or colour jitter, no dropout,
no weight decay, a constant learning rate), each activation at the rate
that trains it fastest. That rate is chosen by a short sweep (SWEEP) on
45,000 training images, the last 5,000 held out as the validation split
(the Fig. 1 runs themselves train on all 50,000): the rate whose running
training error reaches 25% in the fewest passes wins; if none does within
the sweep, the lowest training error at its end. No choice anywhere is made
on the test set: each run looks at it once, after its last pass.

Definitions (the report repeats them):

- *test error*: on the 10,000 test images, averaging the softmax over ten
  patches (§4.1) unless said otherwise; the centre patch alone is recorded
  too.
- *training error*: on a fixed probe of TRAIN_PROBE training images (the
  first of the canonical order), centre patch, dropout off, measured after
  every pass. It is the like-for-like partner of the centre-patch test
  error: *the train-test gap* is test error (centre) minus training error.
  Fig. 1's curves use the running error over each pass's minibatches (what
  a trainer prints, what cuda-convnet plots), which for those unregularised
  nets sees the same images.
- *epochs (seconds) to a level*: passes (training seconds) until the error
  first reaches the level, interpolated linearly between the ends of passes
  from chance (90% error) at pass 0; a run that never reaches it counts its
  whole budget, a lower bound, marked ">=".
- *epochs to converge* (dropout, §4.2: "roughly doubles the number of
  iterations required to converge"): epochs until the training error
  reaches the level that every run of both arms reaches by its end, the
  highest of their final training errors.

A run's record (its arm, seed, settings, errors, per-pass history) is kept
twice: in its folder ``<out>/ablations/<arm>-seed<S>/result.json`` beside
its checkpoint, and in ``reproduce/results/alexnet_ablations.json`` with
every other run. Re-running skips every run that has a record (in either
place; records found only in run folders are added to the JSON, so runs
made on other machines are collected by copying their folders or records
in) and resumes an interrupted one from its checkpoint. A record or a
checkpoint made with other settings than the grid now asks for stops the
grid with a message: it is never mixed in. Run one grid at a time per
folder: two writing the same JSON at once could drop a record from it (the
record stays in its run folder, and the next start collects it).
"""
import json
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

import zeronet  # before NumPy, which loads OpenBLAS: see zeronet/__init__.py

import numpy as np

import alexnet
import common
from zeronet import augment, datasets
from zeronet.optimizers import Momentum


class Budget(NamedTuple):
    width: float        # alexnet.py --width
    epochs: int         # passes through the training set
    crop: int           # alexnet.py --crop
    seeds: tuple        # every arm trains once with each
    arms: tuple         # names of the arms trained
    probe: int          # training images whose error is measured after every pass
    quick: bool         # alexnet.py --quick: the small fixed subsets


# The reduced budget: a quarter of alexnet.py's widths (conv 16, 48, 96, 64,
# 64; fc 96), 20 passes, its 24x24 crops: on two cores a run then costs
# minutes and the grid (10 arms x 3 seeds and the sweep) hours, within the
# issue's 20 minutes a run and 8 hours a grid (--estimate times a few steps
# of every arm on the machine at hand; the records keep every run's
# seconds). At 10 passes the baseline's training error was still falling steeply when the
# rate fell, and the claims about overfitting (crops, dropout) need nets
# that have had time to overfit. Half the widths would allow only 5 passes.
# Three seeds: one run's test error on 10,000 images moves by about 0.3
# points by chance alone, the size of some of the paper's effects.
BUDGET = Budget(width=0.25, epochs=20, crop=alexnet.CROP, seeds=(0, 1, 2),
                arms=("baseline", "no-lrn", "pool-2", "no-pca", "no-crops", "no-dropout",
                      "one-tower", "depth-4", "fig1-relu", "fig1-tanh"),
                probe=5000, quick=False)
# --quick, what CI runs: the bookkeeping and resumption, not the claims.
QUICK_BUDGET = Budget(width=0.125, epochs=2, crop=alexnet.CROP, seeds=(0,),
                      arms=("baseline", "no-lrn"), probe=256, quick=True)


class Sweep(NamedTuple):
    rates: tuple        # learning rates tried for each activation
    epochs: int         # passes of each try
    seed: int
    val: int            # training images held out (alexnet.py --val)


# Fig. 1's rates (§3.1: "chosen independently to make training as fast as
# possible"): half-decade steps around alexnet.py's LR; two passes each,
# enough to see which rate gets the training error down first.
SWEEP = Sweep(rates=(0.003, 0.01, 0.03, 0.1), epochs=2, seed=0, val=5000)
# Fig. 1: the training error both nets are timed to (§3.1).
TARGET_ERROR = 0.25
# Error at pass 0, before any training: chance over CIFAR-10's 10 classes.
CHANCE = 0.9
# --estimate: timed training steps per arm (after one to warm up), and
# images of the evaluation timed.
ESTIMATE_STEPS, ESTIMATE_IMAGES = 5, 500
# Test views per test image in a run's evaluation: the centre patch alone,
# then the ten patches of §4.1.
VIEWS_EVALUATED = 11


class Arm(NamedTuple):
    name: str
    flags: tuple        # alexnet.py flags on top of the budget's
    against: str        # the arm it differs from in one setting ("" for none)
    swept: bool = False     # its learning rate comes from SWEEP (Fig. 1's protocol)


# Fig. 1's protocol (§3.1): "No regularization of any kind was employed",
# and the rate does not change.
NO_REGULARISATION = ("--no-crops", "--no-pca", "--dropout", "0", "--weight-decay", "0",
                     "--schedule", "constant")
ARMS = {arm.name: arm for arm in [
    Arm("baseline", (), ""),                  # alexnet.py's defaults at the budget
    Arm("no-lrn", ("--no-lrn",), "baseline"),                   # §3.3
    Arm("pool-2", ("--pool", "2"), "baseline"),                 # §3.4
    Arm("no-pca", ("--no-pca",), "baseline"),                   # §4.1
    Arm("no-crops", ("--no-crops",), "baseline"),               # §4.1
    Arm("no-dropout", ("--dropout", "0"), "baseline"),          # §4.2
    Arm("one-tower", ("--towers", "1"), "baseline"),            # §3.2
    Arm("depth-4", ("--depth", "4"), "baseline"),               # §7
    Arm("fig1-relu", NO_REGULARISATION, "", swept=True),        # §3.1, Fig. 1
    Arm("fig1-tanh", NO_REGULARISATION + ("--activation", "tanh"), "fig1-relu", swept=True),
]}


class Claim(NamedTuple):
    label: str          # a short name, for the figure
    mechanism: str      # the mechanism and the paper's section
    says: str           # what the paper says, with its number
    measure: str        # a key of MEASURES
    arms: tuple         # (arm, against): the claim compares arm with against, seed by seed;
                        # (arm,) for a comparison within each run of one arm
    paper: object       # the paper's value in the measure's terms, or None (a direction only)
    sign: int           # the direction the paper says: +1 or -1


# How each claim's per-seed value is computed from the records: its
# description and its unit ("points" of error, or a "ratio").
MEASURES = {
    "test": ("test error (10 patches), {0} - {1}", "points"),
    "gap": ("train-test gap (centre patch), {0} - {1}", "points"),
    "views": ("test error, 10 patches - centre patch, of {0}", "points"),
    "epochs": ("passes to 25% training error, {0} / {1}", "ratio"),
    "seconds": ("training seconds to 25% training error, {0} / {1}", "ratio"),
    "converge": ("epochs to converge, {0} / {1}", "ratio"),
}

CLAIMS = [
    Claim("tanh / ReLU, passes to 25%", "ReLU vs tanh (§3.1, Fig. 1)",
          "ReLU reaches 25% training error 6x faster (in epochs; each net at its fastest "
          "rate, no regularisation)", "epochs", ("fig1-tanh", "fig1-relu"), 6.0, +1),
    Claim("tanh / ReLU, seconds to 25%", "ReLU vs tanh (§3.1, Fig. 1)",
          "faster (the paper counts epochs, not seconds)", "seconds",
          ("fig1-tanh", "fig1-relu"), None, +1),
    Claim("no LRN - LRN, test error", "LRN (§3.3)",
          "-1.4 top-1 on ImageNet; on CIFAR-10 13% without, 11% with", "test",
          ("no-lrn", "baseline"), 2.0, +1),
    Claim("pool 2/2 - 3/2, test error", "overlapping pooling 3/2 vs 2/2 (§3.4)",
          "-0.4 top-1", "test", ("pool-2", "baseline"), 0.4, +1),
    Claim("pool 2/2 - 3/2, train-test gap", "overlapping pooling 3/2 vs 2/2 (§3.4)",
          "slightly harder to overfit", "gap", ("pool-2", "baseline"), None, +1),
    Claim("no jitter - jitter, test error", "PCA colour jitter (§4.1)",
          "lowers top-1 by over 1 point", "test", ("no-pca", "baseline"), 1.0, +1),
    Claim("no crops - crops, test error", "random crops and flips (§4.1)",
          "without them, substantial overfitting", "test", ("no-crops", "baseline"), None, +1),
    Claim("no crops - crops, train-test gap", "random crops and flips (§4.1)",
          "without them, substantial overfitting", "gap", ("no-crops", "baseline"), None, +1),
    Claim("10 patches - centre, test error", "10 patches vs the centre patch (§4.1)",
          "39.0% -> 37.5% top-1 (Table 1, footnote 5)", "views", ("baseline",), -1.5, -1),
    Claim("no dropout - dropout, test error", "dropout (§4.2)",
          "without it, substantial overfitting", "test", ("no-dropout", "baseline"), None, +1),
    Claim("no dropout - dropout, train-test gap", "dropout (§4.2)",
          "without it, substantial overfitting", "gap", ("no-dropout", "baseline"), None, +1),
    Claim("dropout / none, epochs to converge", "dropout (§4.2)",
          "roughly doubles the iterations required to converge", "converge",
          ("baseline", "no-dropout"), 2.0, +1),
    Claim("one tower - two, test error", "two towers vs one of half the kernels (§3.2)",
          "-1.7 top-1 for the two towers", "test", ("one-tower", "baseline"), 1.7, +1),
    Claim("4 conv - 5 conv, test error", "depth (§7)",
          "removing a middle layer costs about 2 points top-1", "test",
          ("depth-4", "baseline"), 2.0, +1),
]

VERDICT_RULE = (
    "Each claim's value is computed seed by seed (the arm's run with seed S against the "
    "other arm's run with seed S). Its noise is the standard error of the mean over seeds, "
    "SE = max(sd, floor) / sqrt(n), where sd is the spread of the per-seed values and, for "
    "errors of two differently trained nets, the floor is the binomial standard deviation "
    "of that difference on these images (sqrt(p(1-p)/N) for each error measured), so that "
    "three seeds that agree by luck cannot make a difference smaller than the test set can "
    "resolve look certain. Ratios are compared on a log scale. Verdict: *reproduced* if the "
    "mean has the paper's sign and is more than 2 SE from zero (from 1 for a ratio); "
    "*reversed* if it has the opposite sign and is more than 2 SE away; otherwise *within "
    "the noise*. With three seeds this is a rough rule, not a significance test.")


# ------------------------------------------------------------ the grid ----

class Run(NamedTuple):
    name: str           # its folder and its record's name
    arm: str            # an arm of ARMS, or "sweep-<activation>"
    seed: int
    kind: str           # "arm" (evaluated on the test set) or "sweep" (on the validation split)
    flags: tuple        # alexnet.py's flags for it, the learning rate of a swept arm aside


def budget_flags(budget, epochs=None):
    # Fixed steps (lr_boundaries): every arm trains on all 50,000 images for
    # the same passes, which a schedule that ends at a plateau would not give.
    return ("--width", f"{budget.width:g}", "--epochs", str(epochs or budget.epochs),
            "--crop", str(budget.crop), "--schedule", "steps")


def arm_run(name, seed, budget):
    arm = ARMS[name]
    return Run(f"{name}-seed{seed}", name, seed, "arm",
               budget_flags(budget) + arm.flags + ("--seed", str(seed)))


def sweep_runs(activation, budget):
    """The runs of SWEEP for one activation, in the order of SWEEP.rates."""
    base = ARMS["fig1-relu"].flags + ("--activation", activation)
    return [Run(f"sweep-{activation}-lr{rate:g}", f"sweep-{activation}", SWEEP.seed, "sweep",
                budget_flags(budget, SWEEP.epochs) + base
                + ("--lr", f"{rate:g}", "--val", str(SWEEP.val), "--seed", str(SWEEP.seed)))
            for rate in SWEEP.rates]


def arm_settings(name, budget=BUDGET):
    """alexnet.py's settings for the arm ``name`` (before any sweep)."""
    return alexnet.settings(alexnet.build_parser().parse_args(list(arm_run(name, 0, budget).flags)))


# Fixed steps for every arm: the rate falls after 5/8, 5/6 and 15/16 of the
# passes (at 20 passes, at the starts of passes 13, 18 and 20), the shape
# of alexnet.py's fixed schedule when the grid began. Its own constants may
# move; the grid's records are only comparable if this does not.
LR_STEP_FRACTIONS = ((5, 8), (5, 6), (15, 16))


def lr_boundaries(epochs):
    """The 0-based epochs at which an arm of ``epochs`` passes divides its
    rate (LR_STEP_FRACTIONS; boundaries that would coincide or fall outside
    the training are dropped)."""
    scaled = []
    for numerator, denominator in LR_STEP_FRACTIONS:
        epoch = round(epochs * numerator / denominator)
        if 0 < epoch < epochs and (not scaled or epoch > scaled[-1]):
            scaled.append(epoch)
    return scaled


def run_order(budget):
    """Every arm run of the budget, seed by seed (a grid stopped half-way has
    all arms at the first seeds)."""
    return [arm_run(name, seed, budget) for seed in budget.seeds for name in budget.arms]


def crossing(history, key, level):
    """``(epochs, seconds, reached)``: passes and training seconds until
    ``history``'s ``key`` first falls to ``level``, interpolated linearly
    between the ends of passes, from CHANCE at pass 0. If it never does,
    the whole history's passes and seconds, and ``reached`` False."""
    epoch, seconds, value = 0.0, 0.0, CHANCE
    for record in history:
        now = seconds + record["seconds"]
        if record[key] <= level:
            drop = value - record[key]
            part = 1.0 if drop <= 0 else min(1.0, max(0.0, (value - level) / drop))
            return (epoch + part * (record["epoch"] - epoch), seconds + part * (now - seconds),
                    True)
        epoch, seconds, value = record["epoch"], now, record[key]
    return epoch, seconds, False


class Grid:
    """The grid's runs: their folders, their records, their data.

    ``args``: alexnet.py's parsed flags (``--out``, ``--data-dir``,
    ``--threads``, ``--no-progress``); ``records`` (name -> record) start
    as those found in ``json_path`` and in the run folders.
    """

    def __init__(self, args, budget, runs_dir, json_path):
        self.args, self.budget = args, budget
        self.runs_dir, self.json_path = Path(runs_dir), Path(json_path)
        self.records = collect_records(self.json_path, self.runs_dir)
        self._cifar = None
        self.trained = 0

    def cifar(self):
        if self._cifar is None:
            self._cifar = datasets.load_cifar10(self.args.data_dir,
                                                progress=not self.args.no_progress)
        return self._cifar

    def run_args(self, run, lr=None):
        """alexnet.py's parsed flags for ``run`` (at the rate ``lr``, if given)."""
        argv = list(run.flags) + (["--lr", f"{lr!r}"] if lr is not None else [])
        argv += ["--threads", str(self.args.threads), "--out", str(self.runs_dir)]
        argv += (["--no-progress"] if self.args.no_progress else [])
        argv += (["--quick"] if self.budget.quick else [])
        return alexnet.build_parser().parse_args(argv)

    def identity(self, run, args):
        """What a stored record or checkpoint of ``run`` must have been made
        with to stand for it now."""
        return {"run": run.name, "arm": run.arm, "seed": run.seed, "kind": run.kind,
                "settings": alexnet.settings(args), "epochs": args.epochs,
                "lr_boundaries": [] if args.schedule == "constant"
                else lr_boundaries(args.epochs),
                "val": args.val, "probe": self.budget.probe, "quick": self.budget.quick}

    def check(self, stored, expected, where):
        """Exit with one message if ``stored`` was made otherwise than ``expected``."""
        differ = {key: (stored.get(key), value) for key, value in expected.items()
                  if stored.get(key) != value}
        if not differ:
            return
        lines = "; ".join(f"{key}: {was!r} there, {now!r} now" for key, (was, now) in
                          differ.items())
        sys.exit(f"{where} was made with other settings than the grid now asks for ({lines}). "
                 f"Move it away (or delete its record from {self.json_path}) to redo the run, "
                 f"or restore the settings it was made with.")

    def run(self, run, lr=None):
        """``run``'s record: the stored one, or trained now (resumed from its
        checkpoint if it was interrupted)."""
        args = self.run_args(run, lr)
        expected = self.identity(run, args)
        if run.name in self.records:
            self.check(self.records[run.name], expected, f"the record of {run.name}")
            return self.records[run.name]
        run_dir = self.runs_dir / run.name
        resume = (run_dir / alexnet.MODEL / "checkpoint.h5").exists()
        if resume:
            config = run_dir / "config.json"
            try:
                saved = json.loads(config.read_text()).get("identity", {})
            except (OSError, ValueError, AttributeError):
                saved = {}          # unreadable: not a run this grid made
            self.check(saved, expected, f"the interrupted run {run_dir}")
        self.cifar()        # first: a run whose data cannot be loaded leaves no folder behind
        run_dir.mkdir(parents=True, exist_ok=True)
        common.record_run(run_dir, args, identity=expected)
        record = self.train(run, args, expected, run_dir, resume)
        common.write_json(run_dir / "result.json", record)
        self.records[run.name] = record
        save_records(self.json_path, self.records)
        self.trained += 1
        return record

    def train(self, run, args, identity, run_dir, resume):
        cifar = self.cifar()
        data = common.select_data(cifar, args, alexnet.QUICK_SIZES)
        x_train, y_train = data[0], data[1]
        probe = {"train_clean": (x_train[:self.budget.probe], y_train[:self.budget.probe])}
        prefix = "val" if args.val else "test"
        record = {**identity, "flags": list(run.flags), "lr": args.lr, "diverged": None,
                  "training_images": len(x_train), "evaluated_on": prefix,
                  f"{prefix}_size": len(data[2]), "probe_size": len(probe["train_clean"][0]),
                  "environment": {key: value for key, value in common.environment().items()
                                  if key in ("cpu", "cores", "threads", "backend", "zeronet")}}
        try:
            result, history = alexnet.train_alexnet(
                args, data, cifar.classes, run_dir, resume,
                boundaries=identity["lr_boundaries"], eval_sets=probe, figures=False)
        except FloatingPointError as exc:       # a sweep's too-high rate, most likely
            print(f"[ablations] {run.name} diverged: {exc}", flush=True)
            return {**record, "diverged": str(exc), "history": []}
        record.update({
            "widths": result["widths"], "hidden": result["hidden"],
            "parameters": result["parameters"],
            **{f"{prefix}_{key[len('test_'):]}": result[key] for key in result
               if key.startswith("test_error")},
            "train_error": history[-1]["train_error"],
            "train_error_clean": history[-1]["train_clean_error"],
            "epochs": len(history), "seconds": sum(h["seconds"] for h in history),
            "evaluation_seconds": result["evaluation_seconds"],
            "history": [{key: h[key] for key in ("epoch", "lr", "seconds", "train_loss",
                                                 "train_error", "train_clean_error")}
                        for h in history]})
        print(f"[ablations] {run.name}: {describe(record)}", flush=True)
        return record

    def chosen_rate(self, activation):
        """Fig. 1's rate for ``activation``: the sweep's runs (trained now if
        missing), the fastest to TARGET_ERROR."""
        return choose_rate([self.run(run) for run in sweep_runs(activation, self.budget)])

    def run_arm(self, name, seed):
        arm = ARMS[name]
        lr = None
        if arm.swept:
            lr = self.chosen_rate(arm_settings(name, self.budget)["activation"])
        return self.run(arm_run(name, seed, self.budget), lr)


def describe(record):
    """One line on a finished run: its errors, and that it saw the test set once."""
    if record["diverged"]:
        return f"diverged ({record['diverged']})"
    prefix = record["evaluated_on"]
    where = ("the test set: looked at once, after the last pass" if prefix == "test"
             else "the validation split (the test set unseen)")
    return (f"{common.percent(record[f'{prefix}_error_centre'])} (centre patch), "
            f"{common.percent(record[f'{prefix}_error_ten'])} (10 patches) on {where}; "
            f"training error {common.percent(record['train_error_clean'])} "
            f"({record['probe_size']:,} training images); {record['epochs']} passes in "
            f"{duration(record['seconds'])}")


def duration(seconds):
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def choose_rate(records):
    """The rate of the sweep run (``records``) whose running training error
    reaches TARGET_ERROR in the fewest passes; if none does, the one with
    the lowest training error at its end; diverged runs last."""
    def speed(record):
        if record["diverged"]:
            return (2, 0.0, record["lr"])
        epochs, _, reached = crossing(record["history"], "train_error", TARGET_ERROR)
        return (0, epochs, record["lr"]) if reached else (1, record["train_error"], record["lr"])
    return min(records, key=speed)["lr"]


# ------------------------------------------------------------- records ----

def grid_position(name):
    """Sort key: sweep runs first, then arms in ARMS order, seed by seed."""
    if name.startswith("sweep-"):
        return (0, name, 0)
    arm, _, seed = name.rpartition("-seed")
    return (1, list(ARMS).index(arm) if arm in ARMS else len(ARMS), int(seed or 0))


def collect_records(json_path, runs_dir):
    """name -> record: those in ``json_path``, and those of the run folders
    under ``runs_dir`` (a folder's record replaces the JSON's: it sits
    beside the run's checkpoint). Any found only in folders are written
    into ``json_path``."""
    records = {}
    if Path(json_path).exists():
        stored = common.check_record(
            json_path, "not a record of ablation runs: move it away to start a new one",
            lambda: [checked_run(r) for r in json.loads(Path(json_path).read_text())["runs"]])
        records = {record["run"]: record for record in stored}
    added = False
    for path in sorted(Path(runs_dir).glob("*/result.json")):
        record = common.check_record(path, "not a record of an ablation run",
                                     lambda: checked_run(json.loads(path.read_text())))
        added |= records.get(record["run"]) != record
        records[record["run"]] = record
    if added:
        save_records(json_path, records)
    return records


def checked_run(record):
    """``record`` if it holds what the table and figures read, with the
    right types; else a ValueError (or KeyError, TypeError) saying what
    is wrong (see common.check_record)."""
    need = common.need
    if not isinstance(record, dict):
        raise TypeError(f"a record must be a JSON object, got {type(record).__name__}")
    for key in ("run", "arm", "kind"):
        need(record, key, str)
    need(record, "seed", int)
    need(record, "lr", (int, float))
    need(record, "environment", dict)
    if record["kind"] not in ("arm", "sweep"):
        raise ValueError(f"kind must be 'arm' or 'sweep', got {record['kind']!r}")
    if record["diverged"] is not None:
        need(record, "diverged", str)
        return record
    prefix = "test" if record["kind"] == "arm" else "val"
    for key in (f"{prefix}_size", "probe_size", "epochs"):
        if need(record, key, int) < 1:
            raise ValueError(f"the record's {key!r} is {record[key]!r}")
    for key in (f"{prefix}_error_centre", f"{prefix}_error_ten", "train_error",
                "train_error_clean"):
        if not 0 <= need(record, key, (int, float)) <= 1:
            raise ValueError(f"the record's {key!r} is {record[key]!r}, not an error rate")
    for key in ("seconds", "evaluation_seconds"):
        need(record, key, (int, float))
    for i, h in enumerate(need(record, "history", list)):
        if not isinstance(h, dict):
            raise TypeError(f"history[{i}] is {h!r}")
        for key in ("epoch", "seconds", "train_error", "train_clean_error"):
            need(h, key, (int, float), f"history[{i}]")
    if len(record["history"]) != record["epochs"]:
        raise ValueError(f"{record['epochs']} epochs but {len(record['history'])} in its history")
    return record


def save_records(json_path, records):
    ordered = [records[name] for name in sorted(records, key=grid_position)]
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    common.write_json(json_path, {
        "about": "Krizhevsky et al. 2012's claims at CIFAR-10 scale: every run of "
                 "python reproduce/alexnet.py --ablations (see reproduce/ablations.py)",
        "runs": ordered})


# ---------------------------------------------------------- statistics ----

def claim_values(claim, records):
    """``[(seed, value, censored)]``: the claim's value for every seed with
    finished runs of its arms. Differences are in points; ratios are their
    natural logarithm. ``censored``: a level not reached within the budget
    (the ratio is then a bound)."""
    runs = {}
    for record in records.values():
        if record["kind"] == "arm" and not record["diverged"]:
            runs.setdefault(record["arm"], {})[record["seed"]] = record
    first = runs.get(claim.arms[0], {})
    other = runs.get(claim.arms[-1], {})
    seeds = sorted(set(first) & set(other))
    values = []
    if claim.measure == "converge":
        level = max((runs[arm][seed]["train_error_clean"] for arm in claim.arms
                     for seed in seeds), default=0.0)
    for seed in seeds:
        a, b = first[seed], other[seed]
        if claim.measure == "test":
            values.append((seed, 100 * (a["test_error_ten"] - b["test_error_ten"]), False))
        elif claim.measure == "gap":
            values.append((seed, 100 * (gap(a) - gap(b)), False))
        elif claim.measure == "views":
            values.append((seed, 100 * (a["test_error_ten"] - a["test_error_centre"]), False))
        else:
            key, target = (("train_clean_error", level) if claim.measure == "converge"
                           else ("train_error", TARGET_ERROR))
            which = 1 if claim.measure == "seconds" else 0
            ta, tb = crossing(a["history"], key, target), crossing(b["history"], key, target)
            censored = not (ta[2] and tb[2])
            values.append((seed, math.log(max(ta[which], 1e-9) / max(tb[which], 1e-9)),
                           censored))
    return values


def gap(record):
    return record["test_error_centre"] - record["train_error_clean"]


def noise_floor(claim, records, seed):
    """The binomial standard deviation (points) of the claim's per-seed
    difference for ``seed``: the least chance variation of a difference
    between two trained nets' errors measured on these images. 0 for a
    comparison within one net or of training speed."""
    if claim.measure not in ("test", "gap"):
        return 0.0
    variance = 0.0
    for arm in claim.arms:
        record = records[f"{arm}-seed{seed}"]
        measured = [("test_error_ten" if claim.measure == "test" else "test_error_centre",
                     record["test_size"])]
        if claim.measure == "gap":
            measured.append(("train_error_clean", record["probe_size"]))
        for key, size in measured:
            p = record[key]
            variance += p * (1 - p) / size
    return 100 * math.sqrt(variance)


class Summary(NamedTuple):
    claim: Claim
    values: list        # [(seed, value, censored)]
    mean: float
    sd: float
    se: float
    verdict: str


def verdict(mean, se, sign, n):
    """The rule of VERDICT_RULE for a mean over ``n`` seeds with standard
    error ``se``, the paper's direction being ``sign``."""
    if n < 2:
        return "too few runs"
    if abs(mean) <= 2 * se:
        return "within the noise"
    return "reproduced" if math.copysign(1, mean) == sign else "reversed"


def summarise(claim, records):
    values = claim_values(claim, records)
    n = len(values)
    if n == 0:
        return Summary(claim, values, math.nan, math.nan, math.nan, "not run yet")
    numbers = np.array([v for _, v, _ in values])
    sd = float(numbers.std(ddof=1)) if n > 1 else math.nan
    floor = max(noise_floor(claim, records, seed) for seed, _, _ in values)
    se = max(sd if n > 1 else 0.0, floor) / math.sqrt(n)
    return Summary(claim, values, float(numbers.mean()), sd, se,
                   verdict(float(numbers.mean()), se, claim.sign, n))


# -------------------------------------------------------------- report ----

def is_ratio(claim):
    return MEASURES[claim.measure][1] == "ratio"


def shown(claim, value, censored=False):
    """A claim's value as the table shows it (a log ratio as a ratio)."""
    if is_ratio(claim):
        return f"{'>=' if censored else ''}{math.exp(value):.2f}x"
    return f"{value:+.2f}"


def claim_row(s):
    c = s.claim
    measured = MEASURES[c.measure][0].format(*c.arms)
    if not s.values:
        return [c.mechanism, c.says, measured, "-", "-", "-", s.verdict]
    n = len(s.values)
    censored = any(flag for _, _, flag in s.values)
    if is_ratio(c):
        ours = (f"{'>=' if censored else ''}{math.exp(s.mean):.2f}x"
                + (f" x/÷ {math.exp(s.sd):.2f}" if n > 1 else "") + f" (n={n})")
        noise = f"x/÷ {math.exp(2 * s.se):.2f}"
    else:
        ours = f"{s.mean:+.2f}" + (f" ± {s.sd:.2f}" if n > 1 else "") + f" (n={n})"
        noise = f"± {2 * s.se:.2f}"
    seeds = ", ".join(shown(c, v, flag) for _, v, flag in s.values)
    return [c.mechanism, c.says, measured, ours, seeds, noise, s.verdict]


def mean_sd(values, scale=100.0, digits=2):
    values = [scale * v for v in values]
    if not values:
        return "-"
    text = f"{np.mean(values):.{digits}f}"
    return text + (f" ± {np.std(values, ddof=1):.{digits}f}" if len(values) > 1 else "")


def changed_settings(name, budget):
    """What the arm ``name`` changes in the arm it is compared with,
    read from the two arms' settings."""
    arm = ARMS[name]
    if not arm.against:
        if name == "baseline":
            return "alexnet.py's defaults at the budget"
        ours, base = arm_settings(name, budget), arm_settings("baseline", budget)
        return "against baseline: " + ", ".join(f"{k} {ours[k]}" for k in ours
                                                if ours[k] != base[k]) + ", the swept rate"
    ours, base = arm_settings(name, budget), arm_settings(arm.against, budget)
    return ", ".join(f"{k} {base[k]} -> {ours[k]}" for k in ours if ours[k] != base[k])


def arm_rows(records, budget):
    rows = []
    for name in budget.arms:
        runs = [r for r in records.values() if r["kind"] == "arm" and r["arm"] == name]
        done = [r for r in runs if not r["diverged"]]
        rate = sorted({f"{r['lr']:g}" for r in runs}) or ["-"]
        rows.append([name, changed_settings(name, budget), ", ".join(rate),
                     f"{len(done)}" + (f" (+{len(runs) - len(done)} diverged)"
                                       if len(runs) > len(done) else ""),
                     mean_sd([r["test_error_centre"] for r in done]),
                     mean_sd([r["test_error_ten"] for r in done]),
                     mean_sd([r["train_error_clean"] for r in done]),
                     mean_sd([gap(r) for r in done]),
                     mean_sd([(r["seconds"] + r["evaluation_seconds"]) / 60 for r in done],
                             scale=1.0, digits=1)])
    return common.markdown_table(
        ["arm", "changes", "rate", "runs", "test error, centre (%)", "10 patches (%)",
         "training error (%)", "gap (points)", "minutes per run"], rows)


def sweep_rows(records):
    rows = []
    for activation in ("relu", "tanh"):
        runs = [records.get(run.name) for run in sweep_runs(activation, BUDGET)]
        runs = [r for r in runs if r is not None]
        if not runs:
            continue
        best = choose_rate(runs) if len(runs) == len(SWEEP.rates) else None
        for r in runs:
            if r["diverged"]:
                rows.append([activation, f"{r['lr']:g}", "diverged", "-", "-", ""])
                continue
            epochs, _, reached = crossing(r["history"], "train_error", TARGET_ERROR)
            rows.append([activation, f"{r['lr']:g}",
                         f"{epochs:.2f}" if reached else f"not in {r['epochs']}",
                         common.percent(r["train_error"]), common.percent(r["val_error_centre"]),
                         "chosen" if r["lr"] == best else ""])
    if not rows:
        return ""
    return common.markdown_table(["activation", "rate", "passes to 25% training error",
                                  "final training error (running)",
                                  "validation error (centre)", ""], rows)


def write_report(records, budget, results_dir, command):
    """``alexnet_ablations.md`` and its two figures in ``results_dir``, from
    ``records`` alone (no training); returns the markdown's path."""
    import figures
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    summaries = [summarise(claim, records) for claim in CLAIMS
                 if all(arm in budget.arms for arm in claim.arms)]
    arm_records = [r for r in records.values() if r["kind"] == "arm"]
    looks = sum(1 for r in arm_records if not r["diverged"])
    planned = len(budget.arms) * len(budget.seeds)
    minutes = sum(r.get("seconds", 0) + r.get("evaluation_seconds", 0)
                  for r in records.values()) / 60
    machines = sorted({f"{r['environment']['cpu']}, {r['environment']['cores']} cores"
                       for r in records.values()})
    widths, hidden = alexnet.scaled_widths(budget.width)
    summary_png = figures.ablation_summary(summary_panels(summaries),
                                           results_dir / "alexnet_ablations.png",
                                           "Krizhevsky et al. 2012's claims at CIFAR-10 scale: "
                                           "each dot one seed, diamonds the paper")
    fig1_png = figures.training_error_curves(fig1_curves(records),
                                             results_dir / "alexnet_ablations_fig1.png",
                                             level=TARGET_ERROR,
                                             title="Fig. 1 at CIFAR-10 scale: ReLU (solid) "
                                                   "and tanh (dashed), no regularisation")
    sweep = sweep_rows(records)
    text = "\n".join([
        "# Krizhevsky et al. 2012, one mechanism at a time, at CIFAR-10 scale", "",
        f"Made by `{command}` (it resumes where it stopped; `--report-only` rebuilds this page "
        f"and its figures from `alexnet_ablations.json` without training).", "",
        f"Budget{' (QUICK smoke run: not comparable)' if budget.quick else ''}: alexnet.py's "
        f"network at --width {budget.width:g} (conv {', '.join(map(str, widths))}; fc "
        f"{hidden}), {budget.epochs} passes, {budget.crop}x{budget.crop} patches, its learning "
        f"rate divided by 10 after "
        f"{', '.join(f'{a}/{b}' for a, b in LR_STEP_FRACTIONS)} of the passes (at the starts "
        f"of passes {', '.join(str(e + 1) for e in lr_boundaries(budget.epochs))}); seeds "
        f"{', '.join(map(str, budget.seeds))} for every arm. {len(arm_records)} of {planned} "
        f"runs recorded; {minutes:.0f} minutes of training and evaluation in all (sweep "
        f"included), on {'; '.join(machines) or '-'}.", "",
        f"The test set was looked at {looks} times: once by each finished run, after its last "
        f"pass. Nothing was chosen on it: the settings are alexnet.py's"
        + (f", and Fig. 1's rates were chosen on the training error of {SWEEP.epochs}-pass runs "
           f"on 45,000 training images." if any(ARMS[a].swept for a in budget.arms) else "."),
        "",
        common.markdown_table(["mechanism", "the paper", "measured as", "ours: mean ± sd",
                               "per seed", "noise (2 SE)", "verdict"],
                              [claim_row(s) for s in summaries]), "",
        f"Verdict rule. {VERDICT_RULE}", "",
        *([f"![summary]({summary_png.name})", ""] if summary_png else []),
        "## The arms", "",
        arm_rows(records, budget), "",
        "Training error: on the first "
        f"{budget.probe:,} training images, centre patch, dropout off. Gap: test error (centre "
        f"patch) minus training error.", "",
        *(["## Fig. 1's learning rates", "", sweep, "",
           f"Each rate trained {SWEEP.epochs} passes on 45,000 images (the last {SWEEP.val:,} "
           f"held out), seed {SWEEP.seed}; the fastest to {TARGET_ERROR:.0%} running training "
           f"error was chosen.", ""] if sweep else []),
        *([f"![Fig. 1]({fig1_png.name})", ""] if fig1_png else []),
        "## Definitions", "",
        common.bullets([
            f"Epochs (seconds) to a level: passes (training seconds) until the error first "
            f"reaches it, interpolated linearly between the ends of passes from chance "
            f"({CHANCE:.0%}) at pass 0. A run that never reaches it counts its whole budget, a "
            f"bound, shown with >=.",
            "Epochs to converge (dropout): epochs until the training error reaches the level "
            "that every run of both arms reaches by its end (the highest of their final "
            "training errors).",
            "Fig. 1's pair trains without crops, flips, colour jitter, dropout or weight "
            "decay, at a constant rate, each activation at its swept rate; the paper's "
            "Fig. 1 net is a four-layer CNN of cuda-convnet's, ours is the scaled AlexNet. "
            "Its curves are the running training error of each pass.",
            "The paper's numbers are ImageNet top-1 differences unless CIFAR-10 is named; "
            "the diamonds in the figure put them beside ours in the same terms."]),
    ])
    path = results_dir / "alexnet_ablations.md"
    path.write_text(text)
    return path


def summary_panels(summaries):
    """The summary figure's two panels: differences in points, and ratios."""
    def rows(kind):
        return [(s.claim.label + ("" if s.claim.paper is not None else
                                  f" (paper: {'>' if s.claim.sign > 0 else '<'} "
                                  f"{'1x' if kind == 'ratio' else '0'})"),
                 [math.exp(v) if kind == "ratio" else v for _, v, _ in s.values],
                 s.claim.paper) for s in summaries if MEASURES[s.claim.measure][1] == kind]
    return [{"xlabel": "difference (points of error)", "log": False, "reference": 0.0,
             "rows": rows("points")},
            {"xlabel": "ratio (log scale)", "log": True, "reference": 1.0, "rows": rows("ratio")}]


def fig1_curves(records):
    """Fig. 1's curves: each seed's running training error per pass, ReLU
    solid and tanh dashed."""
    groups = []
    for name, label, style in (("fig1-relu", "ReLU", "-"), ("fig1-tanh", "tanh", "--")):
        runs = sorted((r for r in records.values() if r["arm"] == name and r["history"]),
                      key=lambda r: r["seed"])
        if runs:
            groups.append((f"{label} (rate {runs[0]['lr']:g})", style,
                           [([h["epoch"] for h in r["history"]],
                             [h["train_error"] for h in r["history"]]) for r in runs]))
    return groups


# ------------------------------------------------------------ estimate ----

def estimate(budget, threads):
    """Time ESTIMATE_STEPS training steps and an evaluation of every arm's
    network on random images (the same arithmetic as CIFAR-10's) and print
    what one run and the whole grid take at ``budget``."""
    common.set_threads(threads)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(max(ESTIMATE_IMAGES, 2 * alexnet.BATCH_SIZE), 3, 32, 32),
                          dtype=np.uint8)
    labels = rng.integers(0, 10, size=len(images))
    mean = images.mean(axis=0, dtype=np.float64).astype(np.float32)
    pca = augment.ColourPCA.fit(images)
    n_train, n_test = (alexnet.QUICK_SIZES if budget.quick else (50_000, 10_000))
    per_run, rows = {}, []
    for name in budget.arms:
        s = arm_settings(name, budget)
        network = alexnet.build_network(rng, mean, s)
        transform = augment.CifarAugment(network.layers["input"], crop=s["crops"],
                                         flip=s["crops"], pca=pca if s["pca"] else None,
                                         std=alexnet.PCA_STD)
        optimizer = Momentum(lr=s["lr"], momentum=alexnet.MOMENTUM,
                             weight_decay=s["weight_decay"])
        params = network.parameters()
        times = []
        for step in range(ESTIMATE_STEPS + 1):
            pick = rng.choice(len(images), size=s["batch_size"], replace=False)
            began = time.perf_counter()
            network.loss(transform(images[pick], rng), labels[pick], train=True)
            network.backward()
            optimizer.update(params)
            times.append(time.perf_counter() - began)
        step_seconds = float(np.median(times[1:]))       # the first warms the caches up
        began = time.perf_counter()
        augment.predict_views(network, images[:ESTIMATE_IMAGES], views="centre")
        per_image = (time.perf_counter() - began) / ESTIMATE_IMAGES
        steps = math.ceil(n_train / s["batch_size"])
        seconds = budget.epochs * (steps * step_seconds + min(budget.probe, n_train) * per_image)
        seconds += VIEWS_EVALUATED * n_test * per_image
        per_run[name] = (seconds, step_seconds, per_image, steps)
        rows.append([name, f"{network.num_parameters():,}", f"{1000 * step_seconds:.0f}",
                     f"{1000 * min(times[1:]):.0f}", f"{1000 * per_image:.2f}",
                     f"{seconds / 60:.1f}"])
    sweep_seconds = 0.0
    for name in budget.arms:
        if ARMS[name].swept:
            _, step_seconds, per_image, steps = per_run[name]
            sweep_steps = math.ceil(steps * (n_train - SWEEP.val) / n_train)
            sweep_seconds += len(SWEEP.rates) * (
                SWEEP.epochs * (sweep_steps * step_seconds + budget.probe * per_image)
                + VIEWS_EVALUATED * SWEEP.val * per_image)
    total = sum(seconds for seconds, *_ in per_run.values()) * len(budget.seeds) + sweep_seconds
    print(common.markdown_table(["arm", "parameters", "ms per step (median)", "(min)",
                                 "ms per test image and view", "minutes per run"], rows))
    print(f"\nBudget: --width {budget.width:g}, {budget.epochs} passes, crop {budget.crop}, "
          f"{len(budget.seeds)} seeds, {threads} threads. Steps timed: {ESTIMATE_STEPS} per arm "
          f"(median, after one to warm up), batch {alexnet.BATCH_SIZE}. The sweep: "
          f"{sweep_seconds / 60:.0f} min. The whole grid: {total / 3600:.1f} hours; the "
          f"slowest run {max(s for s, *_ in per_run.values()) / 60:.1f} min.")
    return total


# ---------------------------------------------------------------- main ----

# alexnet.py flags that the grid sets for each run itself.
GRID_SETS = ["epochs", "val", "resume", "weights", "lr", "batch_size", "weight_decay", "schedule",
             "width", "crop", "no_crops", "no_pca", "no_lrn", "pool", "towers", "depth",
             "dropout", "activation", "init"]


def main(args, parser):
    """``alexnet.py --ablations`` and its companions (``args``: alexnet.py's flags)."""
    given = [key for key in GRID_SETS if getattr(args, key) != parser.get_default(key)]
    if given:
        parser.error(f"--{given[0].replace('_', '-')}: the ablation grid sets every run's "
                     f"settings itself (change the budget in reproduce/ablations.py)")
    if args.report_only + args.estimate + (args.ablate is not None) > 1:
        parser.error("give one of --ablate, --report-only and --estimate")
    if args.seed != parser.get_default("seed") and args.ablate is None:
        parser.error("--seed picks the run of --ablate ARM; the grid runs every seed of its "
                     "budget")
    budget = QUICK_BUDGET if args.quick else BUDGET
    if args.ablate is not None and args.ablate not in budget.arms:
        parser.error(f"--ablate: no arm {args.ablate!r} in the "
                     f"{'quick ' if args.quick else ''}grid (arms: {', '.join(budget.arms)})")
    if args.ablate is not None and args.seed not in budget.seeds:
        parser.error(f"--seed: the grid's seeds are {', '.join(map(str, budget.seeds))}, "
                     f"the same for every arm; got {args.seed}")
    if args.estimate:
        estimate(budget, args.threads)
        return
    runs_dir = Path(args.out) / ("ablations-quick" if args.quick else "ablations")
    # The quick grid keeps its results with its runs, away from the repository's.
    results_dir = runs_dir if args.quick else common.REPO / "reproduce" / "results"
    grid = Grid(args, budget, runs_dir, results_dir / "alexnet_ablations.json")
    command = "python reproduce/alexnet.py --ablations" + (" --quick" if args.quick else "")
    if args.report_only:
        if not grid.records:
            sys.exit(f"--report-only: no records in {grid.json_path} or {runs_dir}: run the "
                     f"grid first")
    else:
        plan = ([(args.ablate, args.seed)] if args.ablate is not None
                else [(run.arm, run.seed) for run in run_order(budget)])
        done = sum(f"{arm}-seed{seed}" in grid.records for arm, seed in plan)
        print(f"[ablations] {len(plan)} run{'s' * (len(plan) != 1)} asked for, {done} already "
              f"recorded; runs in {runs_dir}, records in {grid.json_path}", flush=True)
        for arm, seed in plan:
            trained = grid.trained
            grid.run_arm(arm, seed)
            if grid.trained > trained:      # the table stays current while the grid runs
                write_report(grid.records, budget, results_dir, command)
    path = write_report(grid.records, budget, results_dir, command)
    looks = sum(1 for r in grid.records.values() if r["kind"] == "arm" and not r["diverged"])
    print(f"[ablations] trained {grid.trained} run{'s' * (grid.trained != 1)} now; the test "
          f"set has been looked at {looks} times in all, once by each finished run after its "
          f"last pass", flush=True)
    summaries = [summarise(c, grid.records) for c in CLAIMS
                 if all(arm in budget.arms for arm in c.arms)]
    print("\n" + common.markdown_table(["mechanism", "measured as", "ours", "verdict"],
                                       [[row[0], row[2], row[3], row[6]] for row in
                                        map(claim_row, summaries)]) + "\n")
    print(f"report: {path}")
