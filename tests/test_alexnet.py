"""reproduce/alexnet.py: the quick run end to end, --resume, --weights, the
report and the flags.

The runs need the real CIFAR-10: zeronet.datasets.load_cifar10 verifies the
records' content against CIFAR-10's, so a made-up folder cannot stand in
for it. They look for it where zeronet does (tests/conftest.py), are
skipped without it and fail without it under CI; they are marked slow.
"""
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zeronet
from conftest import real_data_dir

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "reproduce" / "alexnet.py"

sys.path.insert(0, str(SCRIPT.parent))      # alexnet.py imports common.py beside it
alexnet = importlib.import_module("alexnet")
sys.path.remove(str(SCRIPT.parent))


def cifar_dir():
    """The data folder holding the real CIFAR-10."""
    return real_data_dir("cifar-10-batches-bin")


def run(*args, expect=0):
    cmd = [sys.executable, str(SCRIPT), "--no-progress", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == expect, f"{' '.join(cmd)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One uninterrupted quick run: ``(run folder, stdout)``."""
    out = tmp_path_factory.mktemp("alexnet")
    proc = run("--quick", "--data-dir", str(cifar_dir()), "--out", str(out))
    (run_dir,) = out.glob("alexnet-quick-*")
    return run_dir, proc.stdout


@pytest.mark.slow
def test_the_quick_run_trains_saves_and_reports(quick_run):
    run_dir, stdout = quick_run
    model_dir = run_dir / "alexnet"
    for name in ("config.json", "environment.json", "report.md", "report.json",
                 "alexnet/metrics.csv", "alexnet/checkpoint.h5", "alexnet/alexnet.h5",
                 "alexnet/result.json"):
        assert (run_dir / name).exists(), f"{name} missing from {run_dir}"
    pytest.importorskip("matplotlib")
    for figure in ("learning_curves", "conv1_kernels", "nearest_neighbours", "pca_jitter",
                   "crops_and_flips"):
        assert (model_dir / f"{figure}.png").exists(), f"{figure}.png missing"

    network = zeronet.load(model_dir / "alexnet.h5")
    meta = network.metadata
    n_train, n_test = alexnet.QUICK_SIZES
    # The plateau schedule watches the last QUICK_HOLDOUT images, not trained on.
    assert meta["held_out"] == alexnet.QUICK_HOLDOUT
    assert meta["test_size"] == n_test and meta["training_images"] == n_train - meta["held_out"]
    assert meta["epochs"] == alexnet.QUICK_EPOCHS == len(meta["history"])
    assert meta["parameters"] == network.num_parameters()
    assert len(meta["classes"]) == 10 and meta["classes"][0] == "airplane"
    for views in ("centre", "ten"):
        assert meta[f"test_errors_{views}"] == round(meta[f"test_error_{views}"] * n_test)
    # The PCA of the training images' colours, recorded with the weights.
    vectors = np.array(meta["pca"]["eigenvectors"])
    assert np.allclose(vectors.T @ vectors, np.eye(3), atol=1e-6)
    assert meta["pca"]["eigenvalues"] == sorted(meta["pca"]["eigenvalues"], reverse=True)
    # The final run never looks at the test set while training.
    assert not any(k.startswith("test_") for k in meta["history"][0])
    assert all("val_error" in h for h in meta["history"])

    report = " ".join((run_dir / "report.md").read_text().split())
    for row in alexnet.PUBLISHED:
        assert f"| {row.source} | {row.network} | {row.views} | {row.error} |" in report
    assert "Where this run departs from the paper" in report
    assert "alpha_i sqrt(lambda_i)" in report and "| p1 |" in report
    assert "(QUICK smoke run on a subset: not comparable)" in report
    assert "| this run |" in stdout and "39.0% / 37.5%" in stdout


def damaged_cifar(folder):
    """A data folder whose CIFAR-10 archive is damaged: loading it fails at
    once, and nothing is downloaded."""
    folder.mkdir()
    (folder / zeronet.datasets.CIFAR10_ARCHIVE).write_bytes(b"not the archive")
    return folder


def contents(folder):
    """Every file under ``folder``: its path -> its bytes."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(quick_run, tmp_path):
    data = str(cifar_dir())
    run("--quick", "--epochs", "1", "--data-dir", data, "--out", str(tmp_path))
    proc = run("--quick", "--epochs", "2", "--resume", "--data-dir", data,
               "--out", str(tmp_path))
    assert "resumed from" in proc.stdout
    (resumed,) = tmp_path.glob("alexnet-quick-*/alexnet/alexnet.h5")
    uninterrupted = quick_run[0] / "alexnet" / "alexnet.h5"
    a, b = zeronet.load(resumed), zeronet.load(uninterrupted)
    for p, q in zip(a.parameters(), b.parameters()):
        assert np.array_equal(p.data, q.data), f"{p.name} differs after --resume"
    assert a.metadata["test_errors_ten"] == b.metadata["test_errors_ten"]

    # Fewer passes than it has trained: refused, the run left as it was.
    run_dir = resumed.parent.parent
    kept = contents(run_dir)
    proc = run("--quick", "--epochs", "1", "--resume", "--data-dir", data,
               "--out", str(tmp_path), expect=1)
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert f"alexnet in {run_dir} has trained 2 passes already" in message, message
    # A resumed run whose data cannot be loaded: its folder is never removed.
    proc = run("--quick", "--resume", "--data-dir", str(damaged_cifar(tmp_path / "bad-data")),
               "--out", str(tmp_path), expect=1)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert contents(run_dir) == kept
    assert json.loads((run_dir / "config.json").read_text())["epochs"] == 2


def test_a_run_whose_data_cannot_be_loaded_leaves_no_run_folder(tmp_path):
    proc = run("--quick", "--data-dir", str(damaged_cifar(tmp_path / "data")),
               "--out", str(tmp_path / "runs"), expect=1)
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1 and "MD5 mismatch" in message, message
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_weights_reproduce_the_recorded_errors(quick_run, tmp_path):
    weights = quick_run[0] / "alexnet" / "alexnet.h5"
    proc = run("--weights", str(weights), "--quick", "--data-dir", str(cifar_dir()),
               "--out", str(tmp_path))
    meta = zeronet.load(weights).metadata
    counts = re.search(r"\((\d+) and (\d+) of 256\)", proc.stdout)
    assert counts, proc.stdout
    assert [int(c) for c in counts.groups()] == [meta["test_errors_centre"],
                                                 meta["test_errors_ten"]]
    assert "| these weights |" in proc.stdout
    (run_dir,) = tmp_path.glob("alexnet-eval-alexnet-*")
    result = json.loads((run_dir / "report.json").read_text())["results"]["alexnet"]
    assert result["test_error_ten"] == result["recorded_test_error_ten"]


SHIPPED = REPO / "reproduce" / "weights" / "alexnet-cifar.h5"


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped AlexNet weights")
def test_the_shipped_weights_reproduce_their_reported_test_errors(tmp_path):
    # The whole test set with both views: the README's numbers, exactly.
    proc = run("--weights", str(SHIPPED), "--data-dir", str(cifar_dir()), "--out", str(tmp_path))
    meta = zeronet.load(SHIPPED).metadata
    assert meta["evaluated_on"] == "test set" and meta["test_size"] == 10_000
    counts = re.search(r"\((\d+) and (\d+) of 10,000\)", proc.stdout)
    assert counts, proc.stdout
    assert [int(c) for c in counts.groups()] == [meta["test_errors_centre"],
                                                 meta["test_errors_ten"]]


def result_with(**changed):
    """A result as a run records it, with the paper's settings but ``changed``."""
    settings = {"crop": 24, "schedule": "steps", **alexnet.PAPER_SETTINGS, **changed}
    return {"settings": settings, "widths": [64, 192, 384, 256, 256], "hidden": 384,
            "parameters": 2_597_194, "epochs": 18, "training_images": 50_000,
            "evaluated_on": "test set", "lr_boundaries": [10, 13, 15],
            "pca": {"weighting": "sqrt"} if settings["pca"] else None}


def test_the_report_lists_every_mechanism_changed_from_the_paper():
    paper = " ".join(alexnet.departures(result_with()).split())
    assert "alpha_i sqrt(lambda_i)" in paper
    assert "at the start of passes 11, 14, 16" in paper
    # A run that ends before a division does not claim it.
    short = " ".join(alexnet.departures({**result_with(), "epochs": 12}).split())
    assert "at the start of passes 11 (LR_BOUNDARIES)" in short
    quick = " ".join(alexnet.departures({**result_with(), "epochs": 2}).split())
    assert "never falls: the run ends before the first division" in quick
    assert "passes 11" not in quick
    for key, text in alexnet.CHANGED.items():
        assert " ".join(text.format(**alexnet.PAPER_SETTINGS).split()) not in paper, key
    changed = {"crops": False, "pca": False, "lrn": False, "pool": 2, "towers": 1, "depth": 4,
               "dropout": 0.0, "activation": "tanh", "init": "he", "lr": 0.02,
               "batch_size": 64, "weight_decay": 0.0}
    every = " ".join(alexnet.departures(result_with(**changed)).split())
    for key, text in alexnet.CHANGED.items():
        assert " ".join(text.format(**{**alexnet.PAPER_SETTINGS, **changed}).split()) in every
    assert "PCA colour jitter (§4.1) with" not in every
    # The text follows the run's network: its patches, its maps, its towers.
    assert "24x24 patches give maps of 12, 6 and 3" in every and "two towers (§3.2) are" in paper
    assert "cuda-convnet's CIFAR-10 choice;" in every
    assert "The two towers (§3.2) are convolution groups" not in every
    small = " ".join(alexnet.departures(result_with(crop=8, pool=2)).split())
    assert "8x8 patches give maps of 4, 2 and 1" in small
    assert "8x8 of the 32x32 images (--crop; cuda-convnet's CIFAR-10 choice is 24x24" in small
    plateau = " ".join(alexnet.departures({**result_with(schedule="plateau"),
                                           "plateau_patience": 2}).split())
    assert "held-out training images has not improved for 2 passes" in plateau


@pytest.mark.parametrize("flags, named", [
    (["--crop", "40"], "--crop"),
    (["--pool", "4"], "--pool"),
    (["--dropout", "1.5"], "--dropout"),
    (["--lr", "-0.01"], "--lr"),
    (["--towers", "3"], "--towers"),
    (["--weights", "x.h5", "--resume"], "--resume"),
    (["--seed", "-1"], "--seed"),
    (["--weights", "x.h5", "--no-lrn"], "--no-lrn: --weights evaluates the saved network"),
    (["--weights", "x.h5", "--epochs", "3"], "--epochs"),
    (["--threads", "1000"], "--threads"),
    (["--crop", "11"], "--crop 11 is too small"),
    (["--crop", "9", "--pool", "3"], "at least 12"),
    (["--data-dir", ""], "--data-dir: must name a folder"),
])
def test_bad_flags_get_a_one_line_error(tmp_path, flags, named):
    proc = run(*flags, "--quick", "--out", str(tmp_path), expect=2)
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1 and named in message, message
    assert not list(tmp_path.iterdir())      # refused before any run folder


@pytest.mark.parametrize("metadata, says", [
    ({"model": "lenet5"}, "names no model of this script"),
    ({"model": "alexnet", "test_error_ten": "low"}, "not a record that reproduce/alexnet.py"),
])
def test_weights_not_written_by_this_script_get_a_one_line_error(tmp_path, metadata, says):
    path = tmp_path / "other.h5"
    zeronet.save(zeronet.models.mlp(np.random.default_rng(0), (4,)), path, metadata=metadata)
    proc = run("--weights", str(path), "--out", str(tmp_path / "runs"), expect=1)
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1 and says in message, message


def test_every_crop_the_flags_allow_builds_the_network_or_is_refused():
    # check_crop's promise: a crop it lets through builds, and it gives the smallest that does.
    for pool in (2, 3):
        builds = []
        for crop in range(8, 33):
            try:
                alexnet.models.alexnet_pooled_sides(crop, (pool, 2))
                builds.append(crop)
            except ValueError:
                pass
        assert builds == list(range(builds[0], 33)), pool
        assert builds[0] == {2: 8, 3: 12}[pool]
    assert alexnet.models.alexnet_pooled_sides(24) == (12, 6, 3)
    assert alexnet.models.alexnet_pooled_sides(8, (2, 2)) == (4, 2, 1)
    mean = np.zeros((3, 32, 32), dtype=np.float32)
    net = alexnet.models.alexnet_cifar(np.random.default_rng(0), mean, crop=12,
                                       widths=(4, 4, 4, 4, 4), hidden=4)
    assert net.predict(np.zeros((1, 3, 32, 32), dtype=np.uint8)).shape == (1, 10)


def resumable(tmp_path, **edited):
    """A run folder as alexnet.py starts one, its config.json edited."""
    args = alexnet.build_parser().parse_args(["--quick"])
    config = {**vars(args), **edited}
    run_dir = tmp_path / "alexnet-quick-20260101-000000"
    (run_dir / "alexnet").mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(config))
    return run_dir


def test_resume_takes_the_settings_the_run_recorded(tmp_path):
    run_dir = resumable(tmp_path, crop=16, lr=0.003, no_pca=True, epochs=None)
    parser = alexnet.build_parser()
    args = parser.parse_args(["--quick", "--resume", str(run_dir)])
    alexnet.common.restore_config(args, parser, run_dir, alexnet.RUN_SETTINGS)
    assert (args.crop, args.lr, args.no_pca, args.epochs) == (16, 0.003, True, None)


def test_resume_refuses_fewer_passes_than_the_run_has_trained(tmp_path):
    # config.json would record fewer passes than the results hold.
    run_dir = resumable(tmp_path)
    network = zeronet.models.mlp(np.random.default_rng(0), (4,))
    zeronet.io.save_checkpoint(run_dir / "alexnet" / "checkpoint.h5", network,
                               alexnet.Momentum(lr=0.01), None, epoch=2,
                               rng=np.random.default_rng(0), history=[{}, {}, {}])
    parser = alexnet.build_parser()
    for epochs in ("3", "4"):
        args = parser.parse_args(["--quick", "--epochs", epochs, "--resume", str(run_dir)])
        assert alexnet.common.resume_run(args, parser, "alexnet-quick", alexnet.RUN_SETTINGS,
                                         alexnet.resolved_epochs) == run_dir
    for flags in (["--epochs", "2"], []):       # --quick's own 2 passes too
        args = parser.parse_args(["--quick", *flags, "--resume", str(run_dir)])
        with pytest.raises(SystemExit) as stop:
            alexnet.common.resume_run(args, parser, "alexnet-quick", alexnet.RUN_SETTINGS,
                                      alexnet.resolved_epochs)
        message = str(stop.value.code)
        assert len(message.splitlines()) == 1, message
        assert message == (f"--resume: alexnet in {run_dir} has trained 3 passes already, more "
                           f"than the 2 asked for; give --epochs 3 or more")


def test_resume_refuses_a_checkpoint_without_its_epoch(tmp_path):
    run_dir = resumable(tmp_path)
    path = run_dir / "alexnet" / "checkpoint.h5"
    zeronet.save(zeronet.models.mlp(np.random.default_rng(0), (4,)), path)
    parser = alexnet.build_parser()
    args = parser.parse_args(["--quick", "--resume", str(run_dir)])
    with pytest.raises(zeronet.io.WeightsFileError, match="no training checkpoint's epoch"):
        alexnet.common.resume_run(args, parser, "alexnet-quick", alexnet.RUN_SETTINGS,
                                  alexnet.resolved_epochs)


@pytest.mark.parametrize("key, value, says", [
    ("crop", 1000, "--crop cannot give"),
    ("crop", "24", "--crop cannot give"),
    ("crop", 24.0, "--crop cannot give"),
    ("width", "abc", "--width cannot give"),
    ("threads", 0, "--threads cannot give"),
    ("seed", -3, "--seed cannot give"),
    ("quick", "yes", "not true or false"),
    ("schedule", "bogus", "not one of plateau"),
    ("pool", None, "--pool cannot give"),
    ("dropout", [0.5], "--dropout cannot give"),
])
def test_resume_refuses_a_config_its_flags_could_not_have_written(tmp_path, key, value, says):
    # config.json is a file like any other: an edited value must not reach the
    # network builder, where it would end in a traceback far from its cause.
    run_dir = resumable(tmp_path, **{key: value})
    parser = alexnet.build_parser()
    args = parser.parse_args(["--quick", "--resume", str(run_dir)])
    with pytest.raises(SystemExit) as stop:
        alexnet.common.restore_config(args, parser, run_dir, alexnet.RUN_SETTINGS)
    message = str(stop.value.code)
    assert len(message.splitlines()) == 1 and says in message and key in message, message


@pytest.mark.parametrize("text, says", [
    ("garbage", "JSONDecodeError"),
    ("[2]", "TypeError"),
    ('{"epochs": "2"}', "'epochs'"),
    ('{"epochs": 2}', "KeyError"),          # a count, but nothing the report reads
])
def test_a_damaged_result_of_a_finished_model_gets_one_line(tmp_path, text, says):
    run_dir = resumable(tmp_path)
    (run_dir / "alexnet" / "result.json").write_text(text)
    args = alexnet.build_parser().parse_args(["--quick"])

    def must_not_train(name):
        raise AssertionError("trained instead of reading the finished result")
    with pytest.raises(SystemExit) as stop:
        alexnet.common.train_models(["alexnet"], run_dir, True, 2, must_not_train,
                                    check=lambda result: alexnet.report_parts(result, args))
    message = str(stop.value.code)
    assert "result.json" in message and says in message, message


def test_val_as_large_as_the_training_set_is_refused_in_one_line():
    images = np.zeros((10, 3, 32, 32), dtype=np.uint8)
    labels = np.zeros(10, dtype=np.uint8)
    data = zeronet.datasets.Dataset(name="tiny", x_train=images, y_train=labels,
                                    x_test=images, y_test=labels, classes=("a",))
    for val in (10, 11):
        args = alexnet.build_parser().parse_args(["--val", str(val)])
        with pytest.raises(SystemExit) as stop:
            alexnet.common.select_data(data, args, alexnet.QUICK_SIZES)
        assert f"--val {val}: must be less than the 10 training images" == stop.value.code
    args = alexnet.build_parser().parse_args(["--val", "9"])
    assert len(alexnet.common.select_data(data, args, alexnet.QUICK_SIZES)[0]) == 1


def test_a_diverged_training_ends_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["alexnet.py"])

    def diverges():
        raise FloatingPointError("loss became nan at epoch 1, batch 3: training diverged")
    with pytest.raises(SystemExit) as stop:
        alexnet.common.run_main(diverges)
    assert stop.value.code == 1
    assert capsys.readouterr().err == ("alexnet.py: error: loss became nan at epoch 1, batch 3: "
                                       "training diverged\n")


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped AlexNet weights")
def test_another_network_under_this_scripts_metadata_gets_one_line(tmp_path):
    path = tmp_path / "impostor.h5"
    metadata = zeronet.load(SHIPPED).metadata
    zeronet.save(zeronet.models.mlp(np.random.default_rng(0), (4,)), path, metadata=metadata)
    proc = run("--weights", str(path), "--out", str(tmp_path / "runs"), expect=1)
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1 and "not a network for CIFAR-10's images" in message, \
        message
