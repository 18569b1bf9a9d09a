"""HDF5 weights: exact round trips, a layout plain h5py can read, clear
errors for every kind of bad file, and writes that never leave a half file."""
import json
import os
import stat

import h5py
import numpy as np
import pytest

import zeronet
from zeronet import io, models, optimizers
from zeronet import layers as L
from zeronet.io import WeightsFileError
from zeronet.network import Sequential


def float64_net(rng):
    return Sequential([
        ("conv1", L.Convolution(2, 4, (3, 2), stride=(1, 2), pad=1, groups=2, dtype="float64",
                                rng=rng)),
        ("act1", L.Tanh()),
        ("pool1", L.MaxPooling(3, 2, pad=1, ceil_mode=True)),
        ("lrn", L.LRN(n=3, alpha=0.01)),
        ("flat", L.Flatten()),
        ("drop", L.Dropout(0.25, rng=rng)),
        ("fc1", L.Affine(4 * 3 * 2, 5, dtype="float64", rng=rng, bias_init={"type": "Gaussian"})),
    ])


def assert_same_weights(a, b):
    pa, pb = a.parameters(), b.parameters()
    assert [p.name for p in pa] == [p.name for p in pb]
    for p, q in zip(pa, pb):
        assert p.data.dtype == q.data.dtype, f"{p.name}: {p.data.dtype} became {q.data.dtype}"
        assert np.array_equal(p.data, q.data), (
            f"{p.name} changed by up to {np.max(np.abs(p.data - q.data)):.3g}")


@pytest.fixture
def lenet_file(tmp_path):
    net = models.lenet5(np.random.default_rng(0))
    path = tmp_path / "lenet5.h5"
    zeronet.save(net, path, metadata={"epochs": 20, "test_error": 0.0095})
    return net, path


# ------------------------------------------------------------ round trip ----

def test_lenet5_round_trip_is_bit_exact(lenet_file):
    net, path = lenet_file
    loaded = zeronet.load(path)
    assert_same_weights(net, loaded)
    assert loaded.config() == net.config()
    x = np.random.default_rng(1).standard_normal((4, 1, 32, 32)).astype(np.float32)
    assert np.array_equal(net.predict(x), loaded.predict(x))


def test_rbf_lenet5_round_trip_keeps_codes_and_loss(tmp_path):
    net = models.lenet5(np.random.default_rng(3), output="rbf", rubbish_penalty=7.5)
    path = tmp_path / "lenet5_rbf.h5"
    zeronet.save(net, path)
    loaded = zeronet.load(path)
    assert_same_weights(net, loaded)
    assert loaded.config() == net.config()
    assert type(loaded.loss_layer).__name__ == "MAPLoss" and loaded.loss_layer.j == 7.5
    assert np.array_equal(loaded.layers["output"].codes, models.digit_codes())
    hadamard = models.lenet5(np.random.default_rng(3), output="rbf", codes="hadamard")
    zeronet.save(hadamard, tmp_path / "hadamard.h5")
    assert np.array_equal(zeronet.load(tmp_path / "hadamard.h5").layers["output"].codes,
                          models.hadamard_codes())
    digits = np.random.default_rng(4).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    t = np.arange(5)
    assert np.array_equal(net.predict(digits), loaded.predict(digits))
    assert net.loss(digits, t) == loaded.loss(digits, t)


def test_float64_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(2)
    net = float64_net(rng)
    path = tmp_path / "net64.h5"
    io.save(net, path)
    loaded = io.load(path)
    assert_same_weights(net, loaded)
    assert all(p.data.dtype == np.float64 for p in loaded.parameters())
    x = rng.standard_normal((3, 2, 5, 5))
    assert np.array_equal(net.predict(x), loaded.predict(x))


def test_file_opens_with_plain_h5py(lenet_file):
    net, path = lenet_file
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "zeronet-weights"
        assert f.attrs["format_version"] == io.FORMAT_VERSION
        assert f.attrs["zeronet_version"] == zeronet.__version__
        assert f.attrs["dtype"] == "float32"
        assert json.loads(f.attrs["architecture"]) == net.config()
        assert json.loads(f.attrs["metadata"]) == {"epochs": 20, "test_error": 0.0095}
        assert f["c1/W"].shape == (6, 1, 5, 5) and f["c1/W"].dtype == np.float32
        assert f["/c1/W"].compression is None
        assert np.array_equal(f["c3/W"][()], net.layers["c3"].params["W"].data)
        assert np.array_equal(f["s2/coeff"][()], net.layers["s2"].params["coeff"].data)
        datasets = []
        f.visititems(lambda name, obj: datasets.append(name)
                     if isinstance(obj, h5py.Dataset) else None)
    assert sorted(datasets) == sorted(p.name for p in net.parameters())


def test_metadata_round_trip(tmp_path):
    net = models.mlp(np.random.default_rng(3), (4,), in_features=3, num_classes=2)
    meta = {"dataset": "mnist", "epochs": 3, "errors": [0.1, 0.05], "nested": {"ok": True},
            "unicode": "ゼロから"}
    io.save(net, tmp_path / "m.h5", metadata=meta)
    assert io.load(tmp_path / "m.h5").metadata == meta
    io.save(net, tmp_path / "empty.h5")
    assert io.load(tmp_path / "empty.h5").metadata == {}


def test_save_overwrites_an_existing_file(lenet_file, tmp_path):
    _, path = lenet_file
    other = models.lenet5(np.random.default_rng(4))
    io.save(other, path)
    assert_same_weights(other, io.load(path))
    assert sorted(os.listdir(tmp_path)) == ["lenet5.h5"]


# ------------------------------------------------------------- bad files ----

def edit(path, change, reseal=True):
    """Apply ``change`` to the file; then, with ``reseal``, give it a digest
    that fits again, as whoever edits a file on purpose can."""
    with h5py.File(path, "r+") as f:
        change(f)
        if reseal:
            f.attrs["digest"] = io._digest(f)


def replace_dataset(name, data):
    def change(f):
        del f[name]
        f.create_dataset(name, data=data)
    return change


@pytest.mark.parametrize("change, message", [
    (lambda f: f.__delitem__("c3/b"), r"missing parameters \['c3/b'\]"),
    (lambda f: f.create_dataset("c3/extra", data=np.zeros(3)), r"unexpected datasets \['c3/extra'\]"),
    (lambda f: f.create_dataset("stray", data=np.zeros(3)), r"unexpected datasets \['stray'\]"),
    (replace_dataset("c1/W", np.zeros((6, 1, 5, 4), np.float32)), r"c1/W .*\(6, 1, 5, 4\)"),
    (replace_dataset("c1/b", np.zeros(6, np.float64)), r"c1/b is float64"),
    (replace_dataset("f6/W", np.full((120, 84), np.nan, np.float32)), "NaN"),
    (lambda f: f.attrs.__delitem__("architecture"), "architecture"),
    (lambda f: f.attrs.__setitem__("architecture", "{not json"), "architecture"),
    (lambda f: f.attrs.__setitem__("architecture", json.dumps(
        {"layers": [{"name": "a", "type": "Bogus", "config": {}}]})), "architecture"),
], ids=["missing", "extra_in_layer", "extra_top", "misshaped", "wrong_dtype", "nan",
        "no_architecture", "bad_json", "unknown_layer"])
def test_inconsistent_file_raises(lenet_file, change, message):
    _, path = lenet_file
    edit(path, change)
    with pytest.raises(WeightsFileError, match=message) as info:
        io.load(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value), f"the message should name the file: {info.value}"


def test_non_zeronet_hdf5_file_raises(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("conv1/W", data=np.zeros((2, 2)))
        f.attrs["format"] = "keras"
    with pytest.raises(WeightsFileError, match="not a zeronet weights file"):
        io.load(path)


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.5, 0.99])
def test_truncated_file_raises(lenet_file, fraction):
    _, path = lenet_file
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(WeightsFileError, match="truncated or corrupt"):
        io.load(path)


def test_garbage_file_raises(tmp_path):
    path = tmp_path / "garbage.h5"
    path.write_bytes(np.random.default_rng(5).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(WeightsFileError, match="not a readable HDF5 file"):
        io.load(path)
    text = tmp_path / "weights.txt"
    text.write_text("W = [1, 2, 3]\n")
    with pytest.raises(WeightsFileError):
        io.load(text)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.h5"):
        io.load(tmp_path / "nowhere.h5")
    with pytest.raises(FileNotFoundError):
        io.load_checkpoint(tmp_path / "nowhere.h5", None, None, None, None)


def test_weights_file_is_not_a_checkpoint(lenet_file):
    net, path = lenet_file
    with pytest.raises(WeightsFileError, match="no training checkpoint"):
        io.load_checkpoint(path, net, optimizers.SGD(), None, np.random.default_rng(0))


def test_checkpoint_for_another_optimizer_or_architecture_raises(tmp_path):
    rng = np.random.default_rng(6)
    net = models.mlp(rng, (4,), in_features=3, num_classes=2)
    path = tmp_path / "ck.h5"
    io.save_checkpoint(path, net, optimizers.Momentum(), None, epoch=0, rng=rng, history=[])
    with pytest.raises(WeightsFileError, match="Momentum state, not Adam"):
        io.load_checkpoint(path, net, optimizers.Adam(), None, rng)
    other = models.mlp(rng, (5,), in_features=3, num_classes=2)
    with pytest.raises(WeightsFileError, match="different architecture"):
        io.load_checkpoint(path, other, optimizers.Momentum(), None, rng)


def test_checkpoint_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    net = float64_net(rng)
    opt = optimizers.Momentum(lr=0.05)
    x, t = rng.standard_normal((3, 2, 5, 5)), np.array([0, 1, 4])
    net.loss(x, t)
    net.backward()
    opt.update(net.parameters())
    schedule = optimizers.ReduceOnPlateau(0.05, patience=2)
    schedule.observe(0, 0.3)
    schedule.observe(1, 0.4)
    trainer_rng = np.random.default_rng(8)
    trainer_rng.random(3)
    history = [{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.25}]
    path = tmp_path / "ck.h5"
    io.save_checkpoint(path, net, opt, schedule, epoch=1, rng=trainer_rng, history=history)

    net2, opt2 = float64_net(np.random.default_rng(99)), optimizers.Momentum(lr=1.0)
    schedule2, rng2 = optimizers.ReduceOnPlateau(1.0), np.random.default_rng(99)
    epoch, history2 = io.load_checkpoint(path, net2, opt2, schedule2, rng2)
    assert epoch == 1 and history2 == history
    assert_same_weights(net, net2)
    assert (opt2.lr, opt2.t) == (opt.lr, opt.t)
    assert set(opt2.slots) == set(opt.slots)
    for key in opt.slots:
        assert np.array_equal(opt2.slots[key], opt.slots[key]) and \
            opt2.slots[key].dtype == opt.slots[key].dtype, key
    assert schedule2.state_dict() == schedule.state_dict()
    assert rng2.random() == trainer_rng.random()
    assert np.array_equal(net2.layers["drop"].rng.random(5), net.layers["drop"].rng.random(5))
    # A checkpoint is also a weights file.
    assert_same_weights(net, io.load(path))


def set_attr(name, value):
    return lambda f: f[io.CHECKPOINT].attrs.__setitem__(name, value)


def drop_attr(name):
    return lambda f: f[io.CHECKPOINT].attrs.__delitem__(name)


@pytest.mark.parametrize("optimizer, change, message", [
    (optimizers.Adam, None, "Momentum state, not Adam"),
    (optimizers.Momentum, set_attr("layer_rngs", "{}"), r"generator states for \[\]"),
    (optimizers.Momentum, set_attr("layer_rngs", json.dumps(
        {"drop/rng": np.random.default_rng(0).bit_generator.state, "fc9/rng": {}})),
     "fc9/rng"),
    (optimizers.Momentum, set_attr("layer_rngs", json.dumps(
        {"drop/rng": {"bit_generator": "MT19937"}})), "generator drop/rng"),
    (optimizers.Momentum, set_attr("rng", json.dumps({"bit_generator": "PCG64"})),
     "trainer's generator"),
    (optimizers.Momentum, replace_dataset(f"{io.CHECKPOINT}/optimizer/v/fc1/W",
                                          np.zeros((5, 3))), "optimizer slot v/fc1/W"),
    (optimizers.Momentum, set_attr("schedule", "{}"), "schedule state"),
    (optimizers.Momentum, set_attr("history", "[not json"), "'history' is not valid JSON"),
    (optimizers.Momentum, drop_attr("epoch"), "damaged"),
], ids=["other_optimizer", "missing_generator", "extra_generator", "bad_generator_state",
        "bad_rng_state", "misshaped_slot", "bad_schedule", "bad_history", "no_epoch"])
def test_failed_checkpoint_load_changes_nothing(tmp_path, optimizer, change, message):
    rng = np.random.default_rng(12)
    net = float64_net(rng)
    x, t = rng.standard_normal((3, 2, 5, 5)), np.array([0, 1, 4])

    def one_step(net, opt):
        net.loss(x, t)
        net.backward()
        opt.update(net.parameters())

    opt = optimizers.Momentum()
    one_step(net, opt)
    path = tmp_path / "ck.h5"
    io.save_checkpoint(path, net, opt, optimizers.ReduceOnPlateau(0.1),
                       epoch=3, rng=rng, history=[])
    if change is not None:
        edit(path, change)

    # What the file is loaded into: trained a step itself, so it has state to lose.
    net2, opt2 = float64_net(np.random.default_rng(13)), optimizer(lr=0.5)
    one_step(net2, opt2)
    schedule2, rng2 = optimizers.ReduceOnPlateau(0.5, patience=3), np.random.default_rng(14)
    schedule2.observe(0, 0.2)
    weights = {p.name: p.data.copy() for p in net2.parameters()}
    slots = {k: v.copy() for k, v in opt2.slots.items()}
    lr_and_t, schedule_state = (opt2.lr, opt2.t), schedule2.state_dict()
    rng_states = [g.bit_generator.state for g in (rng2, *net2.generators().values())]

    with pytest.raises(WeightsFileError, match=message) as info:
        io.load_checkpoint(path, net2, opt2, schedule2, rng2)
    assert str(path) in str(info.value)
    for p in net2.parameters():
        assert np.array_equal(p.data, weights[p.name]), f"{p.name} was changed"
    assert (opt2.lr, opt2.t) == lr_and_t and opt2.slots.keys() == slots.keys()
    for key, value in slots.items():
        assert np.array_equal(opt2.slots[key], value), f"optimizer slot {key} was changed"
    assert schedule2.state_dict() == schedule_state
    assert [g.bit_generator.state for g in (rng2, *net2.generators().values())] == rng_states


@pytest.mark.parametrize("bug", [KeyError, RuntimeError, TypeError])
def test_programming_errors_are_not_reported_as_damaged_files(lenet_file, monkeypatch, bug):
    # Only errors from reading the file mean "damaged file"; the same types
    # raised by zeronet's own code are bugs and must show as such.
    _, path = lenet_file

    def buggy(*args):
        raise bug("a bug in zeronet")

    monkeypatch.setattr(io, "_dataset_names", buggy)
    with pytest.raises(bug, match="a bug in zeronet"):
        io.load(path)


# -------------------------------------------------------- atomic writes ----

@pytest.mark.parametrize("exception", [RuntimeError, KeyboardInterrupt])
def test_failed_save_leaves_the_old_file_and_no_temporary(lenet_file, tmp_path, monkeypatch,
                                                          exception):
    _, path = lenet_file
    before = path.read_bytes()
    real_write = io._write_network

    def write_then_fail(f, network, metadata):
        real_write(f, network, metadata)      # the file is all but complete...
        f.flush()
        raise exception("disk full")          # ...when the write fails

    monkeypatch.setattr(io, "_write_network", write_then_fail)
    with pytest.raises(exception, match="disk full"):
        io.save(models.lenet5(np.random.default_rng(9)), path)
    assert path.read_bytes() == before, "the existing file was changed by a failed save"
    assert sorted(os.listdir(tmp_path)) == ["lenet5.h5"], "a temporary file was left behind"
    monkeypatch.undo()
    io.load(path)


def test_failing_parameter_leaves_no_file(tmp_path):
    net = models.mlp(np.random.default_rng(10), (4,), in_features=3, num_classes=2)

    class Unwritable:
        shape, dtype = (4,), np.dtype(np.float32)

        def __array__(self, *args, **kwargs):
            raise RuntimeError("cannot read parameter")

    net.layers["output"].params["b"].data = Unwritable()
    with pytest.raises(RuntimeError, match="cannot read parameter"):
        io.save(net, tmp_path / "new.h5")
    assert os.listdir(tmp_path) == [], "a failed first save left a file behind"


def test_failed_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    rng = np.random.default_rng(11)
    net = models.mlp(rng, (4,), in_features=3, num_classes=2)
    path = tmp_path / "ck.h5"
    io.save_checkpoint(path, net, optimizers.SGD(), None, epoch=0, rng=rng, history=[])
    before = path.read_bytes()
    monkeypatch.setattr(io, "_write_network", lambda *a: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError, match="boom"):
        io.save_checkpoint(path, net, optimizers.SGD(), None, epoch=1, rng=rng, history=[])
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ck.h5"]


def test_save_flushes_the_folder_after_the_rename(tmp_path, monkeypatch):
    # The rename is recorded in the folder; only an fsync of the folder
    # itself makes it survive a power cut.
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file",
                       os.path.exists(tmp_path / "m.h5")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    io.save(models.mlp(np.random.default_rng(15), (4,), in_features=3, num_classes=2),
            tmp_path / "m.h5")
    assert synced == [("file", False), ("folder", True)], synced


def test_save_works_where_a_folder_cannot_be_opened(tmp_path, monkeypatch):
    # Windows refuses os.open on a folder; the save must still succeed.
    real_open = os.open

    def no_folders(path, flags, *args, **kwargs):
        if os.path.isdir(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_folders)
    net = models.mlp(np.random.default_rng(16), (4,), in_features=3, num_classes=2)
    io.save(net, tmp_path / "m.h5")
    monkeypatch.undo()
    assert_same_weights(net, io.load(tmp_path / "m.h5"))
