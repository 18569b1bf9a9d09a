"""Smoke runs of the reproduction scripts (what CI runs of them)."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zeronet
from conftest import real_data_dir
from zeronet import models
from zeronet.network import Sequential

REPO = Path(__file__).resolve().parent.parent


def mnist_dir():
    """The data folder holding the real MNIST, found as zeronet finds it."""
    return real_data_dir("mnist")


def import_lenet():
    """The script reproduce/lenet.py as a module, for its functions and defaults."""
    sys.path.insert(0, str(REPO / "reproduce"))
    try:
        import lenet
    finally:
        sys.path.remove(str(REPO / "reproduce"))
    return lenet


def run_lenet(*args):
    cmd = [sys.executable, str(REPO / "reproduce" / "lenet.py"), "--no-progress", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.slow
def test_lenet_quick_trains_saves_reports_and_reloads(tmp_path):
    data = mnist_dir()
    out = run_lenet("--quick", "--data-dir", str(data), "--out", str(tmp_path))
    (run_dir,) = tmp_path.glob("lenet-lenet5-quick-*")
    for name in ("config.json", "environment.json", "report.md", "report.json",
                 "lenet5/metrics.csv", "lenet5/lenet5.h5", "lenet5/checkpoint.h5"):
        assert (run_dir / name).exists(), f"{name} missing from {run_dir}"
    report = json.loads((run_dir / "report.json").read_text())
    result = report["results"]["lenet5"]
    # Three passes over 5,000 digits already beat chance by far.
    assert result["test_error"] < 0.5, result
    # The paper's RBF output layer: exactly its 60,000 parameters.
    assert result["epochs"] == 3 and result["parameters"] == 60000 and result["output"] == "rbf"
    assert "0.95%" in out and "LeNet-5" in out

    # The saved weights give the recorded test error on the same subset.
    net = zeronet.load(run_dir / "lenet5" / "lenet5.h5")
    from zeronet import datasets
    mnist = datasets.load_mnist(data, download=False, progress=False)
    x = mnist.x_test[:1000]    # raw uint8 28x28 digits: predict takes them as they come
    error = np.mean(net.predict_batched(x).argmax(axis=1) != mnist.y_test[:1000])
    assert error == pytest.approx(result["test_error"], abs=0)


def resume_after_one_pass(tmp_path, model, *flags):
    """Train ``model`` for one quick pass, then resume to a second one;
    returns the stdout and the row's result."""
    data = mnist_dir()
    run_lenet("--quick", "--model", model, "--epochs", "1", *flags, "--data-dir", str(data),
              "--out", str(tmp_path))
    out = run_lenet("--quick", "--model", model, "--epochs", "2", "--resume",
                    "--data-dir", str(data), "--out", str(tmp_path))
    return out, json.loads(next(tmp_path.glob(f"lenet-{model}-quick-*/report.json")).read_text())[
        "results"][model]


@pytest.mark.slow
def test_lenet_resume_continues_from_checkpoint(tmp_path):
    out, result = resume_after_one_pass(tmp_path, "mlp300")
    assert "resumed from" in out
    assert result["epochs"] == 2
    # Fewer passes than it has trained: refused in one line, config.json kept.
    (run_dir,) = tmp_path.glob("lenet-mlp300-quick-*")
    config = (run_dir / "config.json").read_text()
    cmd = [sys.executable, str(REPO / "reproduce" / "lenet.py"), "--quick", "--model", "mlp300",
           "--epochs", "1", "--resume", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert f"mlp300 in {run_dir} has trained 2 passes already" in proc.stderr, proc.stderr
    assert (run_dir / "config.json").read_text() == config


@pytest.mark.slow
def test_a_lenet5_run_resumes_with_the_output_it_was_started_with(tmp_path):
    # softmax is not LeNet-5's default: resuming must not switch to RBF.
    out, result = resume_after_one_pass(tmp_path, "lenet5", "--output", "softmax")
    assert "resumed from" in out
    assert result["epochs"] == 2 and result["output"] == "softmax"


@pytest.mark.slow
def test_lenet5_resumes_with_the_codes_it_was_started_with(tmp_path):
    out, result = resume_after_one_pass(tmp_path, "lenet5", "--codes", "bitmaps")
    assert "resumed from" in out
    assert result["codes"] == "bitmaps"
    (weights,) = tmp_path.glob("lenet-lenet5-quick-*/lenet5/lenet5.h5")
    assert np.array_equal(zeronet.load(weights).layers["output"].codes, models.digit_codes())


@pytest.mark.slow
def test_lenet5_with_the_papers_optimizer_resumes_with_it(tmp_path):
    out, result = resume_after_one_pass(tmp_path, "lenet5", "--optimizer", "sdlm", "--lr", "1e-4")
    assert "resumed from" in out
    assert result["optimizer"] == "sdlm" and result["base_lr"] == 1e-4
    assert result["test_error"] < 0.5         # it learns: chance is 0.9
    (run_dir,) = tmp_path.glob("lenet-lenet5-quick-*")
    report = " ".join((run_dir / "report.md").read_text().split())
    assert "LeNet-5: the paper's optimizer, SDLM" in report
    assert "running average with weight 0.02" in report       # lenet.SDLM_RUNNING


@pytest.mark.slow
def test_resume_refuses_a_flag_that_contradicts_the_run(tmp_path):
    data = mnist_dir()
    run_lenet("--quick", "--model", "mlp300", "--epochs", "1", "--data-dir", str(data),
              "--out", str(tmp_path))
    cmd = [sys.executable, str(REPO / "reproduce" / "lenet.py"), "--quick", "--model", "mlp300",
           "--resume", "--seed", "3", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]     # one line
    assert "--seed 3 contradicts the run's 0" in proc.stderr


@pytest.mark.slow
def test_lenet5_with_adam_resumes_with_it_and_says_so(tmp_path):
    out, result = resume_after_one_pass(tmp_path, "lenet5", "--optimizer", "adam")
    assert "resumed from" in out
    assert result["optimizer"] == "adam" and result["base_lr"] == 0.003     # lenet.ADAM_LR
    assert result["test_error"] < 0.5
    (run_dir,) = tmp_path.glob("lenet-lenet5-quick-*")
    report = " ".join((run_dir / "report.md").read_text().split())
    assert "LeNet-5: the optimizer is Adam" in report


@pytest.mark.parametrize("flags, named", [
    (["--optimizer", "sdlm", "--weight-decay", "0.001"], "--weight-decay"),
    (["--optimizer", "adam", "--weight-decay", "0.001"], "--weight-decay"),
    (["--optimizer", "adam", "--momentum", "0.5"], "--momentum"),
    (["--running-curvature", "0.1"], "--running-curvature"),
])
def test_flags_of_the_other_optimizer_are_refused(tmp_path, flags, named):
    # Silently dropping a flag the chosen optimizer has no use for would mislead.
    cmd = [sys.executable, str(REPO / "reproduce" / "lenet.py"), *flags, "--quick",
           "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and named in proc.stderr
    assert not list(tmp_path.iterdir())       # refused before any run folder


@pytest.mark.parametrize("script", ["lenet.py", "alexnet.py"])
@pytest.mark.parametrize("flag", ["--data-dir", "--out"])
def test_an_empty_folder_flag_is_refused_in_one_line(tmp_path, script, flag):
    # An empty path would silently mean the current folder (and download or
    # write run folders there).
    folders = {"--data-dir": str(tmp_path), "--out": str(tmp_path), flag: ""}
    cmd = [sys.executable, str(REPO / "reproduce" / script), "--quick",
           *(part for item in folders.items() for part in item)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert f"{flag}: must name a folder, got an empty string" in proc.stderr, proc.stderr
    assert not list(tmp_path.iterdir())       # refused before any run folder


@pytest.mark.slow
def test_lenet_weights_mode_evaluates_shipped_weights(tmp_path):
    data = mnist_dir()
    weights = REPO / "reproduce" / "weights" / "lenet5.h5"
    if not weights.exists():
        pytest.skip("no shipped weights yet")
    out = run_lenet("--weights", str(weights), "--data-dir", str(data), "--out", str(tmp_path))
    recorded = zeronet.load(weights).metadata["test_error"]
    match = re.search(r"test error (\d+\.\d+)%", out)
    assert match, f"no test error in the output:\n{out}"
    # float32 BLAS kernels differ across CPUs (vector width, summation order),
    # which can flip a digit that sits on a decision boundary: allow 2 of the
    # 10,000 test digits. More than that is a real change.
    measured = float(match.group(1)) / 100
    assert abs(measured - recorded) <= 2 / 10_000 + 1e-9, (
        f"test error {100 * measured:.2f}%, recorded {100 * recorded:.2f}%: "
        f"{round(abs(measured - recorded) * 10_000)} digits apart")


# What reproduce/lenet.py records for a row, in the shape of its results.
A_RECORD = {"model": "mlp300", "label": "28x28-300-10", "parameters": 10, "epochs": 1,
            "seconds_per_epoch": 0.5, "test_error": 0.25, "base_lr": 0.01, "batch_size": 16,
            "optimizer": "momentum", "momentum": 0.9}
NOT_OURS = "not weights that reproduce/lenet.py writes"


def lenet_refusal(path, tmp_path):
    """What ``lenet.py --weights path`` says on refusing the file: one line,
    exit status 1, before the test set is read (no MNIST needed, none
    downloaded) and before any run folder is made."""
    cmd = [sys.executable, str(REPO / "reproduce" / "lenet.py"), "--weights", str(path),
           "--data-dir", str(tmp_path / "no-data"), "--out", str(tmp_path / "runs")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    message = proc.stderr.strip()
    assert proc.returncode == 1 and len(message.splitlines()) == 1, message
    assert not (tmp_path / "runs").exists() and not (tmp_path / "no-data").exists()
    return message


@pytest.mark.parametrize("metadata, says", [
    ({"model": "alexnet"}, "names no model of this script"),
    ({"model": "mlp300", "parameters": 10}, "KeyError: 'epochs'"),
    ({k: v for k, v in A_RECORD.items() if k != "optimizer"}, "KeyError: 'optimizer'"),
    ({**A_RECORD, "optimizer": "rmsprop"}, "KeyError: 'rmsprop'"),
    ({**A_RECORD, "epochs": "many"}, "the record's 'epochs' is 'many'"),
    ({**A_RECORD, "parameters": True}, "the record's 'parameters' is True"),
    ({**A_RECORD, "batch_size": 16.0}, "the record's 'batch_size' is 16.0"),
    ({**A_RECORD, "test_error": "low"}, "the record's 'test_error' is 'low'"),
    ({**A_RECORD, "momentum": "0.9"}, "the record's 'momentum' is '0.9'"),
], ids=["other-model", "no-epochs", "no-optimizer", "unknown-optimizer", "epochs-text",
        "parameters-bool", "batch-float", "error-text", "momentum-text"])
def test_lenet_refuses_weights_it_did_not_write_in_one_line(tmp_path, metadata, says):
    path = tmp_path / "other.h5"
    zeronet.save(models.mlp(np.random.default_rng(0), (4,)), path, metadata=metadata)
    message = lenet_refusal(path, tmp_path)
    assert str(path) in message and says in message, message
    if says.startswith(("KeyError", "the record")):
        assert NOT_OURS in message, message


def test_lenet_refuses_rbf_outputs_without_the_map_loss_in_one_line(tmp_path):
    lenet5 = models.lenet5(np.random.default_rng(0), output="rbf")
    path = tmp_path / "rbf-softmax.h5"
    zeronet.save(Sequential(list(lenet5.layers.items())), path, metadata=A_RECORD)
    message = lenet_refusal(path, tmp_path)
    assert f"{path}: {NOT_OURS}" in message and "not with SoftmaxWithLoss" in message, message


def test_lenet_takes_the_records_it_writes():
    # The other side of the refusals above: the check passes what lenet.py
    # writes, the shipped weights' records and the sample one alike.
    lenet = import_lenet()
    records = [lenet.recorded_result(zeronet.load(path))
               for path in sorted((REPO / "reproduce" / "weights").glob("lenet*.h5"))]
    assert records, "no shipped LeNet weights"
    for record in records + [{**A_RECORD, "output": "softmax"}]:
        lenet.check_result(record)


def test_run_folders_started_in_the_same_second_do_not_collide(tmp_path, monkeypatch):
    import importlib.util
    spec = importlib.util.spec_from_file_location("common", REPO / "reproduce" / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    # Freeze the clock: every call sees the same second.
    frozen = common.datetime.datetime(2026, 1, 2, 3, 4, 5)
    monkeypatch.setattr(common.datetime, "datetime", type("D", (), {"now": staticmethod(lambda: frozen)}))
    folders = {common.new_run_dir(tmp_path, "lenet-lenet5") for _ in range(3)}
    assert len(folders) == 3 and all(f.is_dir() for f in folders)


def test_lenet_rows_take_their_validated_output_unless_told():
    lenet = import_lenet()
    defaults = lenet.build_parser().parse_args([])
    assert lenet.row_output(lenet.ROWS["lenet5"], defaults) == "rbf"
    assert lenet.row_output(lenet.ROWS["lenet5-distortions"], defaults) == "softmax"
    forced = lenet.build_parser().parse_args(["--output", "rbf"])
    assert lenet.row_output(lenet.ROWS["lenet5-distortions"], forced) == "rbf"
    assert lenet.row_output(lenet.ROWS["mlp300"], forced) == "softmax"   # no RBF version
    momentum = {"optimizer": "momentum", "momentum": 0.9, "batch_size": 16}
    text = lenet.departures({"lenet5": {"output": "rbf", "rubbish_penalty": 5.0,
                                        "codes": "bitmaps", "base_lr": 0.0005, **momentum},
                             "mlp300": {"output": "softmax", "base_lr": 0.01, **momentum}})
    assert "LeNet-5: the paper's output layer" in text
    assert "digits drawn for zeronet" in text
    assert "we use j = 5 (--rubbish-penalty)" in " ".join(text.split())
    hadamard = lenet.departures({"lenet5": {"output": "rbf", "rubbish_penalty": 5.0,
                                            "codes": "hadamard", "base_lr": 0.0005, **momentum}})
    assert "Hadamard matrix of order 84" in " ".join(hadamard.split())
    assert lenet.codes_name(models.hadamard_codes()) == "hadamard"
    assert lenet.codes_name(models.digit_codes()) == "bitmaps"
    assert "28x28-300-10: an affine output layer" in text
    assert "Every row: the optimizer is minibatch SGD" in text
    text = lenet.departures({"lenet5": {"output": "softmax", "optimizer": "sdlm", "base_lr": 0.0002,
                                        "momentum": 0.9, "batch_size": 16},
                             "mlp300": {"output": "softmax", "base_lr": 0.01, **momentum}})
    assert "LeNet-5: the paper's optimizer, SDLM" in text
    assert "base rate of 0.0002 (the paper: 0.0005) with momentum 0.9 (the paper: none)" in (
        " ".join(text.split()))
    assert "28x28-300-10: the optimizer is minibatch SGD (batch 16, momentum 0.9)" in text


@pytest.mark.parametrize("flags", [[], ["--model", "lenet1", "mlp300"], ["--all"],
                                   ["--optimizer", "adam", "--lr", "0.001"],
                                   ["--output", "rbf", "--codes", "hadamard", "--val", "10000"]])
def test_lenet_resume_takes_back_every_config_it_writes(tmp_path, flags):
    # restore_config refuses values that no flag could give; never the script's own.
    lenet = import_lenet()
    parser = lenet.build_parser()
    written = json.loads(json.dumps(vars(parser.parse_args(flags))))
    (tmp_path / "config.json").write_text(json.dumps(written))
    args = parser.parse_args(["--resume", str(tmp_path)])
    lenet.common.restore_config(args, parser, tmp_path, lenet.RUN_SETTINGS)
    assert {key: getattr(args, key) for key in lenet.RUN_SETTINGS} == \
        {key: written[key] for key in lenet.RUN_SETTINGS}
