"""reproduce/ablations.py (``alexnet.py --ablations``): the grid's definition,
the statistics and the verdict rule, the table and figures from synthetic
records, the flags, and the quick grid end to end with an interruption.

Only the last needs CIFAR-10 (and is marked slow); the rest runs on records
made up here, in well under a second each.
"""
import importlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import zeronet
from conftest import real_data_dir
from zeronet import models

REPO = Path(__file__).resolve().parent.parent
REPRODUCE = str(REPO / "reproduce")

# The scripts import their neighbours (common, figures) by name: import them
# all while reproduce/ is on the path, so that those names resolve later.
sys.path.insert(0, REPRODUCE)
alexnet = importlib.import_module("alexnet")
ablations = importlib.import_module("ablations")
common = importlib.import_module("common")
importlib.import_module("figures")
sys.path.remove(REPRODUCE)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------- the definition ----

def differences(a, b):
    return {key for key in a if a[key] != b[key]}


def test_every_arm_differs_from_the_arm_it_is_compared_with_in_one_setting():
    for name, arm in ablations.ARMS.items():
        if arm.against:
            changed = differences(ablations.arm_settings(name),
                                  ablations.arm_settings(arm.against))
            assert len(changed) == 1, f"{name} differs from {arm.against} in {sorted(changed)}"
    # Fig. 1's reference net is the baseline without regularisation (§3.1).
    assert differences(ablations.arm_settings("fig1-relu"), ablations.arm_settings("baseline")) \
        == {"crops", "pca", "dropout", "weight_decay", "schedule"}
    # Every arm of the grid is the only one changing its setting, so no two
    # arms measure the same mechanism twice.
    changed = [frozenset(differences(ablations.arm_settings(name),
                                     ablations.arm_settings(arm.against)))
               for name, arm in ablations.ARMS.items() if arm.against]
    assert len(set(changed)) == len(changed)


def test_the_baseline_is_alexnet_defaults_at_the_budget():
    defaults = alexnet.settings(alexnet.build_parser().parse_args([]))
    for budget in (ablations.BUDGET, ablations.QUICK_BUDGET):
        baseline = ablations.arm_settings("baseline", budget)
        # The schedule too: fixed steps on all 50,000 images, the same for every arm.
        assert differences(baseline, defaults) <= {"width", "crop", "schedule"}
        assert baseline["width"] == budget.width and baseline["crop"] == budget.crop
        assert baseline["schedule"] == "steps"


def test_every_arm_has_the_same_budget_and_seeds_and_the_grid_is_complete():
    for budget in (ablations.BUDGET, ablations.QUICK_BUDGET):
        assert budget.arms[0] == "baseline" and set(budget.arms) <= set(ablations.ARMS)
        runs = ablations.run_order(budget)
        assert len(runs) == len(budget.arms) * len(budget.seeds)
        assert len({run.name for run in runs}) == len(runs)
        for run in runs:
            settings = ablations.arm_settings(run.arm, budget)
            assert (settings["width"], settings["crop"]) == (budget.width, budget.crop)
            args = alexnet.build_parser().parse_args(list(run.flags))
            assert args.epochs == budget.epochs and args.seed == run.seed
    assert len(ablations.BUDGET.seeds) >= 3
    for claim in ablations.CLAIMS:
        assert set(claim.arms) <= set(ablations.BUDGET.arms), claim.mechanism
        assert claim.measure in ablations.MEASURES and claim.sign in (-1, 1)
        if claim.paper is not None:
            reference = 1.0 if ablations.is_ratio(claim) else 0.0
            assert math.copysign(1, claim.paper - reference) == claim.sign, claim.mechanism


def test_the_sweep_differs_from_fig1_only_in_rate_passes_and_held_out_images():
    for activation in ("relu", "tanh"):
        runs = ablations.sweep_runs(activation, ablations.BUDGET)
        assert len(runs) == len(ablations.SWEEP.rates)
        arm = "fig1-relu" if activation == "relu" else "fig1-tanh"
        fig1 = ablations.arm_settings(arm)
        for run, rate in zip(runs, ablations.SWEEP.rates):
            args = alexnet.build_parser().parse_args(list(run.flags))
            assert differences(alexnet.settings(args), fig1) <= {"lr"}
            assert args.lr == rate and args.val == ablations.SWEEP.val
            assert args.epochs == ablations.SWEEP.epochs


def test_lr_boundaries_are_the_grids_own():
    # The committed records were trained with these; alexnet.py's own
    # schedule may change without touching them.
    assert ablations.lr_boundaries(20) == [12, 17, 19]
    assert ablations.lr_boundaries(48) == [30, 40, 45]
    for epochs in (1, 2, 3, 10, 40):
        b = ablations.lr_boundaries(epochs)
        assert b == sorted(set(b)) and all(0 < e < epochs for e in b), (epochs, b)
    assert ablations.lr_boundaries(1) == []


# ----------------------------------------------------------------- width ----

def test_width_one_is_the_model_default():
    mean = np.zeros((3, 32, 32), np.float32)
    s = alexnet.settings(alexnet.build_parser().parse_args([]))
    ours = alexnet.build_network(np.random.default_rng(0), mean, s)
    theirs = models.alexnet_cifar(np.random.default_rng(0), mean)
    assert [p.data.shape for p in ours.parameters()] == [p.data.shape for p in theirs.parameters()]


@pytest.mark.parametrize("factor", [0.01, 0.13, 0.25, 0.3, 0.77])
def test_any_width_builds_every_arm(factor):
    widths, hidden = alexnet.scaled_widths(factor)
    assert all(w % 2 == 0 and w >= 2 for w in widths) and hidden >= 2
    mean = np.zeros((3, 32, 32), np.float32)
    x = np.random.default_rng(1).integers(0, 256, size=(2, 3, 32, 32), dtype=np.uint8)
    for flags in (["--towers", "1"], ["--depth", "4"], []):
        s = alexnet.settings(alexnet.build_parser().parse_args(["--width", str(factor), *flags]))
        network = alexnet.build_network(np.random.default_rng(0), mean, s)
        assert network.predict(x).shape == (2, 10)
        assert alexnet.conv_widths(network)[-1] == widths[-1]


def test_the_report_of_a_run_names_its_width_and_constant_rate():
    settings = {**alexnet.PAPER_SETTINGS, "crop": 24, "schedule": "constant", "width": 0.25}
    run = {"settings": settings, "widths": [16, 48, 96, 64, 64], "hidden": 96,
           "parameters": 164_314, "epochs": 10, "training_images": 50_000,
           "evaluated_on": "test set", "lr_boundaries": [], "pca": None}
    text = " ".join(alexnet.departures(run).split())
    assert "default widths times --width 0.25" in text
    assert "stays constant (--schedule constant)" in text
    assert "--width" not in " ".join(alexnet.departures({**run, "settings": {
        **settings, "width": 1.0}}).split())


@pytest.mark.parametrize("value", ["0", "-1", "5", "nan"])
def test_a_width_out_of_range_is_refused(value, capsys):
    with pytest.raises(SystemExit):
        alexnet.build_parser().parse_args(["--width", value])
    assert "--width" in capsys.readouterr().err


# ------------------------------------------------------------ statistics ----

def history(errors, seconds=10.0, clean=None):
    clean = errors if clean is None else clean
    return [{"epoch": i + 1, "lr": 0.01, "seconds": seconds, "train_loss": 1.0,
             "train_error": e, "train_clean_error": c}
            for i, (e, c) in enumerate(zip(errors, clean))]


def test_crossing_interpolates_from_chance_and_reports_a_miss():
    h = history([0.5, 0.2], seconds=10.0)
    epochs, seconds, reached = ablations.crossing(h, "train_error", 0.25)
    assert reached and epochs == pytest.approx(1 + 0.25 / 0.3)
    assert seconds == pytest.approx(10 + 10 * 0.25 / 0.3)
    epochs, _, reached = ablations.crossing(history([0.2]), "train_error", 0.25)
    assert reached and epochs == pytest.approx((0.9 - 0.25) / 0.7)
    assert ablations.crossing(h, "train_error", 0.1) == (2, 20.0, False)


def record(arm, seed, *, test=0.20, train=0.10, errors=(0.6, 0.4, 0.3, 0.2), kind="arm",
           lr=0.01, diverged=None, clean=None):
    """A record as the grid stores one, with made-up numbers."""
    prefix = "val" if kind == "sweep" else "test"
    name = arm if kind == "sweep" else f"{arm}-seed{seed}"
    h = [] if diverged else history(list(errors), clean=clean)
    return {"run": name, "arm": arm, "seed": seed, "kind": kind, "lr": lr, "diverged": diverged,
            "evaluated_on": prefix, f"{prefix}_size": 10_000, "probe_size": 5000,
            f"{prefix}_error_centre": test + 0.01, f"{prefix}_error_ten": test,
            "train_error": errors[-1], "train_error_clean": train, "epochs": len(h),
            "seconds": 10.0 * len(h), "evaluation_seconds": 5.0, "history": h,
            "environment": {"cpu": "a test CPU", "cores": 2, "threads": 2,
                            "backend": "compiled", "zeronet": zeronet.__version__}}


def records_of(*records):
    return {r["run"]: r for r in records}


LRN = next(c for c in ablations.CLAIMS if c.arms == ("no-lrn", "baseline"))


def lrn_records(differences_in_points, base=0.2):
    out = []
    for seed, d in enumerate(differences_in_points):
        out += [record("baseline", seed, test=base), record("no-lrn", seed, test=base + d / 100)]
    return records_of(*out)


def test_the_verdict_rule():
    assert ablations.verdict(1.0, 0.4, +1, 3) == "reproduced"
    assert ablations.verdict(-1.0, 0.4, +1, 3) == "reversed"
    assert ablations.verdict(1.0, 0.5, +1, 3) == "within the noise"
    assert ablations.verdict(-1.0, 0.4, -1, 3) == "reproduced"
    assert ablations.verdict(0.0, 0.0, +1, 3) == "within the noise"
    assert ablations.verdict(5.0, 0.1, +1, 1) == "too few runs"


@pytest.mark.parametrize("points, verdict", [
    ([2.0, 2.5, 1.8], "reproduced"),
    ([-2.0, -2.5, -1.8], "reversed"),
    ([1.0, -0.8, 0.3], "within the noise"),
    # Three seeds that agree exactly: sd 0, but a difference of 0.2 points is
    # below what 10,000 test images resolve (the binomial floor).
    ([0.2, 0.2, 0.2], "within the noise"),
    ([3.0], "too few runs"),
])
def test_summaries_of_synthetic_records_get_the_rules_verdict(points, verdict):
    s = ablations.summarise(LRN, lrn_records(points))
    assert s.verdict == verdict
    assert s.mean == pytest.approx(np.mean(points))
    assert [seed for seed, _, _ in s.values] == list(range(len(points)))


def test_the_noise_floor_is_the_binomial_spread_of_two_errors():
    s = ablations.summarise(LRN, lrn_records([0.2, 0.2, 0.2]))
    p, q = 0.2, 0.202
    floor = 100 * math.sqrt(p * (1 - p) / 10_000 + q * (1 - q) / 10_000)
    assert s.se == pytest.approx(floor / math.sqrt(3))


def test_a_diverged_or_missing_run_leaves_its_seed_out():
    records = lrn_records([2.0, 2.5, 1.8])
    records["no-lrn-seed1"] = record("no-lrn", 1, diverged="loss became nan")
    del records["baseline-seed2"]
    assert [seed for seed, _, _ in ablations.claim_values(LRN, records)] == [0]


def test_ratios_are_compared_on_a_log_scale_and_a_miss_is_a_bound():
    speed = next(c for c in ablations.CLAIMS if c.measure == "epochs")
    records = records_of(record("fig1-relu", 0, errors=(0.5, 0.2)),
                         record("fig1-tanh", 0, errors=(0.8, 0.7, 0.6, 0.5)))
    ((seed, value, censored),) = ablations.claim_values(speed, records)
    relu = 1 + 0.25 / 0.3
    assert censored and value == pytest.approx(math.log(4 / relu))
    assert ablations.shown(speed, value, censored).startswith(">=")


def test_epochs_to_converge_use_the_level_every_run_reaches():
    converge = next(c for c in ablations.CLAIMS if c.measure == "converge")
    records = records_of(record("baseline", 0, train=0.3, clean=(0.7, 0.5, 0.4, 0.3)),
                         record("no-dropout", 0, train=0.1, clean=(0.3, 0.1, 0.1, 0.1)))
    ((_, value, censored),) = ablations.claim_values(converge, records)
    # Level 0.3: the baseline reaches it at pass 4, no dropout at pass 1.
    assert not censored and value == pytest.approx(math.log(4 / 1))


def test_the_sweep_chooses_the_fastest_rate():
    def sweep(rate, errors, diverged=None):
        return record(f"sweep-relu-lr{rate:g}", 0, kind="sweep", lr=rate, errors=errors,
                      diverged=diverged)
    slow, fast = sweep(0.003, (0.6, 0.3)), sweep(0.01, (0.4, 0.2))
    faster, crashed = sweep(0.03, (0.2, 0.1)), sweep(0.1, (0.9,), diverged="nan")
    assert ablations.choose_rate([slow, fast, faster, crashed]) == 0.03
    # None reaches 25%: the lowest final training error.
    assert ablations.choose_rate([slow, sweep(0.01, (0.5, 0.28)), crashed]) == 0.01


# ------------------------------------------------- report and figures ----

# Made-up effects (points of test error, arm - baseline) and the verdicts
# they must get: 10,000 test images resolve about 0.6 points (2 SE).
EFFECTS = {"no-lrn": (1.5, "reproduced"), "pool-2": (0.1, "within the noise"),
           "no-pca": (-1.5, "reversed"), "no-crops": (6.0, "reproduced"),
           "no-dropout": (1.5, "reproduced"), "one-tower": (0.3, "within the noise"),
           "depth-4": (2.0, "reproduced")}


def synthetic_grid():
    """Records of a whole grid: every arm and seed, and the sweep."""
    out = []
    for seed, jitter in zip(ablations.BUDGET.seeds, (-0.1, 0.0, 0.1)):
        out.append(record("baseline", seed, test=0.25, train=0.2))
        for arm, (effect, _) in EFFECTS.items():
            out.append(record(arm, seed, test=0.25 + (effect + jitter) / 100,
                              train=0.05 if arm in ("no-crops", "no-dropout") else 0.2))
        out.append(record("fig1-relu", seed, lr=0.03, errors=(0.5, 0.3, 0.2, 0.15)))
        out.append(record("fig1-tanh", seed, lr=0.01, errors=(0.7, 0.5, 0.4, 0.3)))
    for activation in ("relu", "tanh"):
        for rate in ablations.SWEEP.rates:
            out.append(record(f"sweep-{activation}-lr{rate:g}", 0, kind="sweep", lr=rate,
                              errors=(0.5, 0.3) if rate == 0.03 else (0.6, 0.4)))
    return records_of(*out)


def assert_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path} is not a PNG"


def test_the_table_and_figures_come_from_the_records_alone(tmp_path):
    pytest.importorskip("matplotlib")
    records = synthetic_grid()
    ablations.save_records(tmp_path / "alexnet_ablations.json", records)
    again = ablations.collect_records(tmp_path / "alexnet_ablations.json", tmp_path / "none")
    assert again == records
    path = ablations.write_report(again, ablations.BUDGET, tmp_path, "the command")
    text = path.read_text()
    for claim in ablations.CLAIMS:
        assert f"| {claim.mechanism} | {claim.says} |" in text, claim.mechanism
    rows = {line.split(" | ")[2]: line.split(" | ")[-1].rstrip(" |")
            for line in text.splitlines() if line.startswith("| ")}
    for arm, (_, verdict) in EFFECTS.items():
        assert rows[f"test error (10 patches), {arm} - baseline"] == verdict, arm
    assert rows["passes to 25% training error, fig1-tanh / fig1-relu"] == "reproduced"
    assert "The test set was looked at 30 times" in text
    assert "| relu | 0.03 |" in text and "chosen" in text
    assert f"seeds {', '.join(map(str, ablations.BUDGET.seeds))}" in text
    # The grid's own schedule, not a claim about alexnet.py's (whose constants move).
    assert "divided by 10 after 5/8, 5/6, 15/16 of the passes (at the starts of passes 13, " \
           "18, 20)" in " ".join(text.split())
    assert "the command" in text
    for png in ("alexnet_ablations.png", "alexnet_ablations_fig1.png"):
        assert_png(tmp_path / png)
        assert f"]({png})" in text


def test_report_only_rebuilds_the_quick_report_without_data(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    folder = tmp_path / "ablations-quick"
    ablations.save_records(folder / "alexnet_ablations.json",
                           records_of(record("baseline", 0), record("no-lrn", 0, test=0.3)))
    alexnet.main(["--ablations", "--quick", "--report-only", "--out", str(tmp_path),
                  "--data-dir", str(tmp_path / "no-data-here")])
    out = capsys.readouterr().out
    assert "+10.00 (n=1)" in out and "too few runs" in out
    assert_png(folder / "alexnet_ablations.png")
    assert not (folder / "alexnet_ablations_fig1.png").exists()     # no Fig. 1 runs in it


def test_report_only_without_records_says_so(tmp_path):
    with pytest.raises(SystemExit, match="no records"):
        alexnet.main(["--ablations", "--quick", "--report-only", "--out", str(tmp_path)])


def test_a_record_made_with_other_settings_stops_the_grid(tmp_path):
    run_dir = tmp_path / "ablations-quick" / "baseline-seed0"
    run_dir.mkdir(parents=True)
    stale = {**record("baseline", 0), "settings": {"width": 0.5}}
    (run_dir / "result.json").write_text(json.dumps(stale))
    with pytest.raises(SystemExit, match="other settings than the grid now asks for"):
        alexnet.main(["--ablate", "baseline", "--quick", "--out", str(tmp_path),
                      "--data-dir", str(tmp_path / "no-data-here")])


def test_an_interrupted_run_of_other_settings_is_not_resumed(tmp_path):
    run_dir = tmp_path / "ablations-quick" / "no-lrn-seed0"
    (run_dir / "alexnet").mkdir(parents=True)
    (run_dir / "alexnet" / "checkpoint.h5").write_bytes(b"not resumed")
    (run_dir / "config.json").write_text(json.dumps({"identity": {"epochs": 99}}))
    with pytest.raises(SystemExit, match="interrupted run .* other settings"):
        alexnet.main(["--ablate", "no-lrn", "--quick", "--out", str(tmp_path)])


def test_a_run_whose_data_cannot_be_loaded_leaves_no_folder(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    # A damaged archive: loading fails at once, and nothing is downloaded.
    (data / zeronet.datasets.CIFAR10_ARCHIVE).write_bytes(b"not the archive")
    with pytest.raises(zeronet.datasets.DatasetError, match="MD5 mismatch"):
        alexnet.main(["--ablate", "baseline", "--quick", "--no-progress",
                      "--out", str(tmp_path / "runs"), "--data-dir", str(data)])
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, says", [
    ("[1, 2]", "must be a JSON object"),
    ("{not json", "JSONDecodeError"),
    (json.dumps({**record("baseline", 0), "test_error_ten": 3.0}), "not an error rate"),
    (json.dumps({**record("baseline", 0), "seed": "0"}), "'seed'"),
    (json.dumps({**record("baseline", 0), "kind": "other"}), "kind must be"),
    (json.dumps({**record("baseline", 0), "history": [{"epoch": 1}]}), "KeyError"),
])
def test_a_damaged_record_gets_a_message_naming_its_file(tmp_path, text, says):
    run_dir = tmp_path / "ablations-quick" / "baseline-seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "result.json").write_text(text)
    with pytest.raises(SystemExit) as stop:
        alexnet.main(["--ablations", "--quick", "--report-only", "--out", str(tmp_path)])
    assert str(run_dir / "result.json") in str(stop.value) and says in str(stop.value)


@pytest.mark.parametrize("flags, says", [
    (["--ablations", "--no-lrn"], "--no-lrn"),
    (["--ablations", "--epochs", "3"], "--epochs"),
    (["--ablations", "--seed", "1"], "--seed"),
    (["--ablate", "nonsense"], "no arm 'nonsense'"),
    (["--ablate", "baseline", "--seed", "7"], "--seed"),
    (["--ablate", "baseline", "--report-only"], "one of"),
])
def test_flags_the_grid_cannot_take_get_a_one_line_error(flags, says, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        alexnet.main([*flags, "--out", str(tmp_path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1, err


def test_the_out_flags_help_says_where_the_grids_records_go():
    # --out places the grid's runs, not its records: the help must not let
    # a user think a grid started elsewhere leaves the repository alone.
    # The action's own text: --help wraps it, and may break it at hyphens.
    text = next(a.help for a in alexnet.build_parser()._actions if a.dest == "out")
    assert ("with --ablations, the grid's runs go to OUT/ablations but its records, table and "
            "figures to the repository's reproduce/results/ whatever --out says (with --quick, "
            "all to OUT/ablations-quick)") in text, text


# ------------------------------------------------------ the quick grid ----

@pytest.fixture
def threads_kept():
    """The grid sets zeronet's thread counts as its runs say; put them back."""
    kept = zeronet.kernels.get_num_threads(), zeronet.kernels.get_blas_threads()
    yield
    zeronet.kernels.set_num_threads(kept[0])
    zeronet.kernels.set_blas_threads(kept[1])


def quick_grid(out, *flags):
    alexnet.main(["--ablations", "--quick", "--no-progress", "--out", str(out),
                  "--data-dir", str(real_data_dir("cifar-10-batches-bin")), *flags])
    return json.loads((out / "ablations-quick" / "alexnet_ablations.json").read_text())["runs"]


def without_times(r):
    return {k: v for k, v in r.items() if "seconds" not in k and k not in ("history",
                                                                            "environment")}


@pytest.mark.slow
def test_the_quick_grid_runs_resumes_and_skips(tmp_path, monkeypatch, capsys, threads_kept):
    names = [f"{arm}-seed0" for arm in ablations.QUICK_BUDGET.arms]
    whole = quick_grid(tmp_path / "whole")
    assert [r["run"] for r in whole] == names
    folder = tmp_path / "whole" / "ablations-quick"
    for name in names:
        assert (folder / name / "result.json").exists()
        assert (folder / name / "alexnet" / "checkpoint.h5").exists()
    assert (folder / "alexnet_ablations.md").exists()
    assert "looked at 2 times in all" in capsys.readouterr().out

    # Interrupted after the first pass of the first run (its checkpoint written).
    def interrupt(path, history):
        raise KeyboardInterrupt
    monkeypatch.setattr(common, "write_metrics", interrupt)
    with pytest.raises(KeyboardInterrupt):
        quick_grid(tmp_path / "cut")
    monkeypatch.undo()
    cut = tmp_path / "cut" / "ablations-quick"
    assert (cut / names[0] / "alexnet" / "checkpoint.h5").exists()
    assert not (cut / names[0] / "result.json").exists()
    capsys.readouterr()

    resumed = quick_grid(tmp_path / "cut")
    out = capsys.readouterr().out
    assert "resumed from" in out and "0 already recorded" in out
    assert [without_times(r) for r in resumed] == [without_times(r) for r in whole]

    before = (cut / "alexnet_ablations.json").read_text()
    assert quick_grid(tmp_path / "cut") == resumed
    out = capsys.readouterr().out
    assert "2 already recorded" in out and "trained 0 runs now" in out
    quick_grid(tmp_path / "cut", "--ablate", "no-lrn", "--seed", "0")
    assert "trained 0 runs now" in capsys.readouterr().out
    assert (cut / "alexnet_ablations.json").read_text() == before
