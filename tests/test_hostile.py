"""Hostile input: every argument and every weights file comes from a stranger.

The numbered sections are the cases found when zeronet was first attacked
(each a regression test now); before them, a fuzz test of every kernel and
layer, and a set of hostile weights files that must each be refused with
:class:`WeightsFileError`, never read another file, and never build
anything before they are checked.
"""
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

import zeronet
from zeronet import datasets, io, kernels, layers as L, models, reference, sdlm
from zeronet._validate import MAX_SIZE
from zeronet.io import WeightsFileError
from zeronet.network import Sequential
from test_io import edit
from test_reproduce import import_lenet

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHIPPED = sorted((REPO / "reproduce" / "weights").glob("*.h5"))
LENET5 = REPO / "reproduce" / "weights" / "lenet5.h5"      # what the lenet.py CLI tests load


def run_child(code, timeout=120):
    """Run Python ``code`` in a child process (a crash or a hang fails the
    test, not the whole run); returns its stdout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=TESTS)
    assert proc.returncode == 0, (f"the child process failed (exit {proc.returncode}):\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


# ------------------------------------------------------------------ fuzz ----

@pytest.mark.parametrize("seed", [0, 1])
def test_fuzz_every_kernel_and_layer(seed):
    # fuzz.py: 3,000 rounds, each a call of every kernel (compiled core and
    # NumPy reference) or a layer's forward and backward, with random and
    # hostile arguments. No crash, and every call either returns what the
    # reference returns or raises zeronet's own error.
    proc = subprocess.run([sys.executable, str(TESTS / "fuzz.py"), str(seed), "3000"],
                          capture_output=True, text=True, timeout=300, cwd=TESTS,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              [str(REPO), os.environ.get("PYTHONPATH", "")])})
    assert proc.returncode == 0, (f"fuzz seed {seed} (exit {proc.returncode}, negative: "
                                  f"killed by a signal):\n{proc.stdout[-4000:]}\n"
                                  f"{proc.stderr[-4000:]}")
    counts = json.loads(proc.stdout.splitlines()[-1])["counts"]
    exercised = {key.split(":")[0] for key, n in counts.items() if "ok" in key and n}
    kernel_names = {"im2col", "col2im", "maxpool_forward", "maxpool_backward", "conv_forward",
                    "conv_backward"}
    # zeronet's own layers: a test that defines a Layer subclass registers it
    # in this process too, where fuzz.py's process never sees it.
    layer_names = {name for name, cls in L.LAYERS.items() if cls.__module__.startswith("zeronet.")}
    expected = kernel_names | layer_names
    assert exercised >= expected, f"never ran through: {sorted(expected - exercised)}"
    refused = {key.split(":")[0] for key, n in counts.items() if "ok" not in key and n}
    assert refused >= kernel_names, f"no hostile call refused for {kernel_names - refused}"


# ------------------------------------------------------- hostile files ----

def tiny_net(rng=None):
    rng = rng if rng is not None else np.random.default_rng(0)
    return Sequential([("c1", L.Convolution(1, 2, 3, rng=rng)), ("act", L.ReLU()),
                       ("pool", L.MaxPooling(2)), ("flat", L.Flatten()),
                       ("fc", L.Affine(8, 3, rng=rng))])


@pytest.fixture
def tiny_file(tmp_path):
    net = tiny_net()
    path = tmp_path / "tiny.h5"
    io.save(net, path, metadata={"epochs": 3, "test_error": 0.25, "note": "ゼロから"})
    return net, path


def set_json(name, transform):
    """A change that rewrites the JSON attribute ``name`` through ``transform``."""
    def change(f):
        value = json.loads(f.attrs[name])
        f.attrs[name] = json.dumps(transform(value))
    return change


def set_layer(layer, **config):
    def transform(arch):
        for spec in arch["layers"]:
            if spec["name"] == layer:
                spec["config"].update(config)
        return arch
    return set_json("architecture", transform)


def assert_refused(path, match):
    with pytest.raises(WeightsFileError, match=match) as info:
        io.load(path)
    assert str(path) in str(info.value), f"the message should name the file: {info.value}"
    return str(info.value)


def test_external_storage_is_refused_without_reading_the_other_file(tiny_file, tmp_path):
    _, path = tiny_file
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:x:0:0:SECRET".ljust(12))      # 3 float32: fc/b's bytes

    def change(f):
        del f["fc/b"]
        f.create_dataset("fc/b", shape=(3,), dtype=np.float32, external=[(str(secret), 0, 12)])
    edit(path, change, reseal=False)
    message = assert_refused(path, "fc/b is stored outside the file")
    assert "SECRET" not in message


def other_file(folder):
    """Another HDF5 file, with a dataset ``x`` that would fit ``fc/b``."""
    other = folder / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.ones(3, np.float32)
    return other


def test_virtual_dataset_is_refused(tiny_file, tmp_path):
    _, path = tiny_file
    other = other_file(tmp_path)

    def change(f):
        del f["fc/b"]
        layout = h5py.VirtualLayout(shape=(3,), dtype=np.float32)
        layout[:] = h5py.VirtualSource(str(other), "x", shape=(3,))
        f.create_virtual_dataset("fc/b", layout)
    edit(path, change, reseal=False)
    assert_refused(path, "fc/b is a virtual dataset")


@pytest.mark.parametrize("link, match", [
    (lambda other: h5py.ExternalLink(str(other), "/x"), "fc/b is an external link"),
    (lambda other: h5py.SoftLink("/c1/b"), "fc/b is a SoftLink to /c1/b"),
], ids=["external", "soft"])
def test_links_are_refused(tiny_file, tmp_path, link, match):
    _, path = tiny_file
    other = other_file(tmp_path)

    def change(f):
        del f["fc/b"]
        f["fc/b"] = link(other)
    edit(path, change, reseal=False)
    assert_refused(path, match)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_nothing_outside_the_file_is_ever_opened(tiny_file, tmp_path):
    # Every way out of the file leads to a named pipe: opening one for
    # reading waits for a writer forever, so a load that tried would hang
    # (the child's timeout) instead of raising at once.
    _, path = tiny_file
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    variants = {
        "external_storage": lambda f: f.create_dataset("fc/b", shape=(3,), dtype=np.float32,
                                                       external=[(str(pipe), 0, 12)]),
        "external_link": lambda f: f.__setitem__("fc/b", h5py.ExternalLink(str(pipe), "/x")),
    }

    def virtual(f):
        layout = h5py.VirtualLayout(shape=(3,), dtype=np.float32)
        layout[:] = h5py.VirtualSource(str(pipe), "x", shape=(3,))
        f.create_virtual_dataset("fc/b", layout)
    variants["virtual"] = virtual
    paths = [str(pipe)]
    for name, add in variants.items():
        target = tmp_path / f"{name}.h5"
        target.write_bytes(path.read_bytes())
        edit(target, lambda f: (f.__delitem__("fc/b"), add(f)), reseal=False)
        paths.append(str(target))
    out = run_child(f"""
        from zeronet import io
        for path in {paths!r}:
            try:
                io.load(path)
                print("LOADED", path)
            except io.WeightsFileError as exc:
                print("REFUSED", exc)
        """, timeout=60)
    assert out.count("REFUSED") == len(paths) and "LOADED" not in out, out
    assert "named pipe" in out


def test_huge_claimed_layer_is_refused_before_anything_is_allocated(tiny_file):
    # Once, a 380 KB file claiming a 15000x15000 layer used 2.6 GB and 8.5 s
    # before it was refused.
    _, path = tiny_file
    edit(path, set_layer("fc", in_features=15000, out_features=15000))
    tracemalloc.start()
    began = time.perf_counter()
    try:
        assert_refused(path, r"fc/W is float32\(8, 3\) in the file but the network needs "
                             r"float32\(15000, 15000\)")
        seconds = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, f"{peak / 2**20:.0f} MiB allocated to refuse the file"
    assert seconds < 5, f"{seconds:.1f} s to refuse the file"


@pytest.mark.parametrize("config, match", [
    ({"in_features": 10**6, "out_features": 10**6}, r"asks for 1000001000020 parameter values"),
    ({"in_features": 10**12}, "in_features must be between 1 and 2147483647"),
    ({"in_features": 10**50}, "more than 40 digits"),
    ({"in_features": 0}, "in_features must be between 1"),
    ({"in_features": 8.5}, "in_features must be an int"),
    ({"in_features": "8"}, "in_features must be an int"),
])
def test_absurd_sizes_in_the_architecture_are_refused(tiny_file, config, match):
    _, path = tiny_file
    edit(path, set_layer("fc", **config))
    assert_refused(path, match)


def test_dataset_whose_bytes_are_not_in_the_file_is_refused(tiny_file):
    # A chunked dataset may leave chunks unwritten (HDF5 reads them as fill
    # values): it claims 900 MB here with 40 KB stored.
    _, path = tiny_file

    def change(f):
        del f["fc/W"]
        ds = f.create_dataset("fc/W", shape=(15000, 15000), dtype=np.float32,
                              chunks=(100, 100), fletcher32=True)
        ds[:100, :100] = 1
    edit(path, change, reseal=False)
    edit(path, set_layer("fc", in_features=15000, out_features=15000), reseal=False)
    assert_refused(path, r"fc/W needs 900000000 bytes .* but the file stores 40004")


def test_datasets_claiming_more_than_the_file_are_refused(tiny_file):
    _, path = tiny_file

    def change(f):
        f["extra"] = np.zeros(40000, np.float32)        # 160 KB, in a file of about that
        for i in range(3):
            f[f"alias{i}"] = f["extra"]                 # hard links: the same bytes again
    edit(path, change, reseal=False)
    assert_refused(path, r"its datasets claim \d+ bytes, more than the file's")


def compact_dataset(f, name, size):
    """A dataset stored in its own header (h5py's high-level API has no way to ask)."""
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_layout(h5py.h5d.COMPACT)
    h5py.h5d.create(f.id, name.encode(), h5py.h5t.IEEE_F32LE, h5py.h5s.create_simple((size,)),
                    dcpl=plist)


@pytest.mark.parametrize("store, match", [
    (lambda f: f.create_dataset("fc/b", data=np.zeros(3, np.float32), compression="gzip"),
     r"compressed or filtered \(HDF5 filters \[1\]\)"),
    (lambda f: f.create_dataset("fc/b", data=np.zeros(3, np.int32)), "holds int32"),
    (lambda f: f.create_dataset("fc/b", data=np.zeros(3, ">f4")), "holds >f4"),
    (lambda f: compact_dataset(f, "fc/b", 3), "storage layout"),
    (lambda f: f.create_dataset("fc/b", data=np.float32(0)), r"shape \(\)"),
], ids=["gzip", "int", "big-endian", "compact", "scalar"])
def test_datasets_zeronet_does_not_write_are_refused(tiny_file, store, match):
    _, path = tiny_file
    edit(path, lambda f: (f.__delitem__("fc/b"), store(f)))
    assert_refused(path, match)


def nested(depth):
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("name, text, match", [
    ("architecture", nested(100_000), "'architecture' is nested too deeply"),
    ("architecture", nested(100), "'architecture' is nested more than 64 deep"),
    ("metadata", '{"a": ' + nested(100) + "}", "'metadata' is nested more than 64 deep"),
    ("metadata", "[1, 2]", "the metadata must be a JSON object, found list"),
    ("metadata", "5", "the metadata must be a JSON object, found int"),
    ("metadata", "{not json", "'metadata' is not valid JSON"),
    ("architecture", "[]", "the architecture must be a JSON object with a list"),
    ("architecture", '{"layers": "c1"}', "the architecture must be a JSON object with a list"),
    ("architecture", '{"layers": [], "code": "import os"}', "the architecture must be a JSON"),
    ("architecture", '{"layers": [5]}', "layer 0 of the architecture must be an object"),
    ("architecture", '{"layers": [{"name": 5, "type": "ReLU", "config": {}}]}',
     "layer 0 of the architecture must be an object"),
    ("architecture", '{"layers": [{"name": "a", "type": "ReLU", "config": []}]}',
     "layer 0 of the architecture must be an object"),
    ("architecture", '{"layers": [{"name": "a", "type": "os.system", "config": {}}]}',
     "unknown layer type 'os.system'"),
    ("architecture", '{"layers": [{"name": "a", "type": "Sequential", "config": {}}]}',
     "unknown layer type 'Sequential'"),
    ("architecture", '{"layers": [], "loss": {"type": "eval", "config": {}}}',
     "the architecture's loss must be an object"),
], ids=["deep-recursion", "deep", "deep-metadata", "metadata-list", "metadata-int",
        "metadata-bad-json", "architecture-list", "layers-text", "extra-key", "layer-number",
        "name-number", "config-list", "layer-type-os.system", "layer-type-Sequential",
        "loss-eval"])
def test_bad_json_is_refused(tiny_file, name, text, match):
    _, path = tiny_file
    edit(path, lambda f: f.attrs.__setitem__(name, text))
    assert_refused(path, match)


@pytest.mark.parametrize("layer, config, match", [
    ("c1", {"kernel_size": "33"}, "kernel_size must be an int or a pair of ints, got '33'"),
    ("c1", {"kernel_size": [3, 3, 3]}, "kernel_size must be an int or a pair"),
    ("c1", {"dtype": "object"}, "dtype must be float32 or float64"),
    ("c1", {"dtype": "V100000000000"}, "dtype must be float32 or float64"),
    ("c1", {"rng": 5}, r"sets \['rng'\], which a file may not set"),
    ("c1", {"weight_init": {"type": "Gaussian", "std": 1e308}}, "which a file may not set"),
    ("c1", {"bogus": 1}, "does not fit Convolution"),
    ("c1", {"groups": True}, "groups must be an int"),
    ("c1", {"out_channels": 0}, "out_channels must be between 1"),
    ("pool", {"stride": [2**63 - 1, 1]}, "stride must be <= 2147483647"),
    ("pool", {"pad": -1}, "pad must be >= 0"),
    ("c1", {"table": "all"}, "table"),
], ids=["kernel-text", "kernel-triple", "dtype-object", "dtype-void", "rng", "weight_init",
        "unknown-argument", "groups-bool", "no-output-maps", "stride-2**63", "pad-negative",
        "table-text"])
def test_wrong_argument_types_are_refused(tiny_file, layer, config, match):
    _, path = tiny_file
    edit(path, set_layer(layer, **config))
    assert_refused(path, match)


@pytest.mark.parametrize("change, match", [
    (lambda f: f.attrs.__setitem__("metadata", np.arange(3)), "single texts and integers"),
    (lambda f: f.attrs.__setitem__("metadata", 5), "should hold JSON text, found an integer"),
    (lambda f: f.attrs.__setitem__("metadata", np.bytes_(b"{}")), "single texts and integers"),
    (lambda f: f["c1/W"].attrs.__setitem__("note", np.zeros((2, 2))), "c1/W@note"),
    (lambda f: f.attrs.__setitem__("format_version", "2"), "format_version '2'"),
    (lambda f: f.attrs.__setitem__("format_version", 3), "format_version 3; this zeronet reads 2"),
    (lambda f: f.attrs.__setitem__("architecture", json.dumps(
        {"layers": [{"name": "input", "type": "DigitInput",
                     "config": {"background": float("nan")}}]}).replace("NaN", "NaN")),
     "NaN is not a finite number"),
    (lambda f: f.create_group("fc/extra_group").attrs.__setitem__("x", 1),
     None),     # an empty group harms nothing: the file loads
], ids=["metadata-array", "metadata-int", "metadata-bytes", "attribute-on-dataset",
        "version-text", "version-3", "nan", "empty-group"])
def test_attributes_of_the_wrong_kind_are_refused(tiny_file, change, match):
    # (Attributes that are not texts or integers have no digest record: such
    # a file is refused before its digest is checked.)
    net, path = tiny_file
    edit(path, change, reseal=False)
    if not re.search("single texts|c1/W@", match or ""):
        edit(path, lambda f: None)
    if match is None:
        assert np.array_equal(io.load(path).parameters()[0].data, net.parameters()[0].data)
    else:
        assert_refused(path, match)


def test_missing_or_wrong_digest_is_refused(tiny_file):
    _, path = tiny_file
    edit(path, lambda f: f.attrs.__delitem__("digest"), reseal=False)
    assert_refused(path, "has no digest")
    edit(path, lambda f: f.attrs.__setitem__("digest", 12345), reseal=False)
    assert_refused(path, "does not match its digest")
    edit(path, lambda f: f.attrs.__setitem__("digest", "sha256:" + "0" * 64), reseal=False)
    assert_refused(path, "does not match its digest")


@pytest.mark.parametrize("attribute", ["architecture", "metadata"])
def test_one_digit_edits_in_the_json_are_caught(tmp_path, attribute):
    # Once, 25 of 25 one-digit edits of the architecture (RBF codes, the C3
    # table, the input scaling) loaded silently.
    net = models.lenet5(np.random.default_rng(0), output="rbf")
    path = tmp_path / "lenet5.h5"
    io.save(net, path, metadata={"epochs": 20, "test_error": 0.0093, "seconds": 6.5})
    with h5py.File(path, "r") as f:
        text = f.attrs[attribute]
    digits = [i for i, ch in enumerate(text) if ch.isdigit()]
    rng = np.random.default_rng(1)
    for i in rng.choice(digits, size=min(25, len(digits)), replace=False):
        edited = tmp_path / f"edited-{i}.h5"
        edited.write_bytes(path.read_bytes())
        new_text = text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1:]
        edit(edited, lambda f: f.attrs.__setitem__(attribute, new_text), reseal=False)
        assert_refused(edited, "does not match its digest")


def test_flipped_bytes_are_caught_or_change_nothing(tmp_path):
    # Any byte of the file flipped: the load is refused, or what it gives is
    # exactly what was saved (a byte HDF5 never reads). In a child process:
    # a crash inside the HDF5 library would otherwise end the test run.
    path = tmp_path / "lenet5.h5"
    io.save(models.lenet5(np.random.default_rng(0)), path, metadata={"epochs": 1})
    out = run_child(f"""
        import json
        from pathlib import Path
        import numpy as np
        from zeronet import io
        path = Path({str(path)!r})
        original = io.load(path)
        data = path.read_bytes()
        rng = np.random.default_rng(3)
        flipped = Path({str(tmp_path / "flipped.h5")!r})
        refused = same = 0
        for position in rng.choice(len(data), size=150, replace=False):
            damaged = bytearray(data)
            damaged[position] ^= 1 << int(rng.integers(8))
            flipped.write_bytes(bytes(damaged))
            try:
                net = io.load(flipped)
            except io.WeightsFileError:
                refused += 1
                continue
            assert net.config() == original.config() and net.metadata == original.metadata
            for p, q in zip(net.parameters(), original.parameters()):
                assert p.data.tobytes() == q.data.tobytes(), (position, p.name)
            same += 1
        print(json.dumps({{"refused": refused, "same": same}}))
        """)
    counts = json.loads(out.splitlines()[-1])
    assert counts["refused"] > 100, counts
    print(counts)


def test_load_executes_nothing_and_knows_only_its_layers():
    # There is no pickle: a file names layer types, looked up in this table.
    assert all(isinstance(cls, type) and issubclass(cls, L.Layer) for cls in L.LAYERS.values())
    assert set(io.LOSSES) == {"SoftmaxWithLoss", "MAPLoss"}


# ------------------------------------------------- digest and upgrading ----

def check_as_documented(path):
    """Run the check of a digest that zeronet.io's docstring gives (with
    h5py and hashlib alone, not zeronet) on ``path``."""
    doc = io.__doc__
    start = doc.index("with h5py and hashlib alone::") + len("with h5py and hashlib alone::")
    block = re.match(r"\n\n((?:    .*\n|\n)+)", doc[start:])[1]
    code = textwrap.dedent(block).replace('"lenet5.h5"', repr(str(path)))
    exec(compile(code, "zeronet.io docstring", "exec"), {})     # asserts the digest


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_weights_carry_the_documented_digest(path):
    check_as_documented(path)
    meta = zeronet.load(path).metadata
    # Each file's record, as the README reports it.
    if path.name.startswith("lenet"):
        assert meta["test_errors_count"] in (93, 69)
    else:
        assert (meta["test_errors_centre"], meta["test_errors_ten"]) == (1446, 1241)


def test_checkpoint_digest_follows_the_documented_rule(tmp_path):
    from zeronet import optimizers
    rng = np.random.default_rng(5)
    net = tiny_net(rng)
    path = tmp_path / "ck.h5"
    io.save_checkpoint(path, net, optimizers.Momentum(), None, epoch=2, rng=rng,
                       history=[{"epoch": 1, "loss": float("nan")}])
    check_as_documented(path)
    edit(path, lambda f: f[io.CHECKPOINT].attrs.__setitem__("epoch", 3), reseal=False)
    assert_refused(path, "does not match its digest")


def make_version_1(path):
    """What zeronet wrote before the digest existed."""
    edit(path, lambda f: (f.attrs.__setitem__("format_version", 1),
                          f.attrs.__delitem__("digest")), reseal=False)


def test_files_without_digest_are_refused_until_upgraded(tiny_file, tmp_path):
    net, path = tiny_file
    with h5py.File(path, "r") as f:
        before = {k: f.attrs[k] for k in f.attrs if k not in ("digest", "format_version")}
    make_version_1(path)
    message = assert_refused(path, "written before zeronet files carried a digest")
    assert "zeronet.io.upgrade(" in message
    upgraded = tmp_path / "upgraded.h5"
    assert io.upgrade(path, upgraded) == upgraded
    assert_refused(path, "written before")          # out= leaves the original as it was
    io.upgrade(path)                                # in place
    for candidate in (path, upgraded):
        loaded = io.load(candidate)
        for p, q in zip(net.parameters(), loaded.parameters()):
            assert p.data.tobytes() == q.data.tobytes() and p.data.dtype == q.data.dtype
        with h5py.File(candidate, "r") as f:
            assert {k: f.attrs[k] for k in before} == before        # texts exactly as written
            assert f.attrs["format_version"] == 2
    unchanged = path.read_bytes()
    assert io.upgrade(path) == path and path.read_bytes() == unchanged      # already has one


def test_upgrade_checks_everything_but_the_digest(tiny_file, tmp_path):
    _, path = tiny_file
    secret = tmp_path / "secret"
    secret.write_bytes(bytes(12))
    edit(path, lambda f: (f.__delitem__("fc/b"), f.create_dataset(
        "fc/b", shape=(3,), dtype=np.float32, external=[(str(secret), 0, 12)])), reseal=False)
    make_version_1(path)
    with pytest.raises(WeightsFileError, match="stored outside the file"):
        io.upgrade(path)
    make_bad = tmp_path / "bad.h5"
    io.save(tiny_net(), make_bad)
    edit(make_bad, set_layer("fc", in_features=15000), reseal=False)
    make_version_1(make_bad)
    with pytest.raises(WeightsFileError, match="needs float32"):
        io.upgrade(make_bad)


def test_metadata_that_no_load_could_read_is_refused_at_save(tmp_path):
    deep = {}
    for _ in range(70):
        deep = {"a": deep}
    with pytest.raises(ValueError, match="nested more than 64"):
        io.save(tiny_net(), tmp_path / "m.h5", metadata=deep)
    with pytest.raises(TypeError, match="metadata must be a dict"):
        io.save(tiny_net(), tmp_path / "m.h5", metadata=[1, 2])
    assert os.listdir(tmp_path) == []


# -------------------------------------- layers declare what files hold ----

LAYER_EXAMPLES = {
    "DigitInput": {"side": 28}, "Convolution": {"in_channels": 4, "out_channels": 6,
                                                "kernel_size": (3, 2), "groups": 2},
    "MaxPooling": {"kernel_size": 2}, "AvgPooling": {"kernel_size": 3},
    "Subsampling": {"channels": 5}, "Affine": {"in_features": 7, "out_features": 3},
    "RBF": {"codes": np.ones((3, 4)).tolist()}, "Flatten": {}, "ReLU": {}, "Sigmoid": {},
    "Tanh": {}, "ScaledTanh": {}, "LRN": {}, "Dropout": {},
    "ImageInput": {"mean": np.full((3, 8, 8), 120.0).tolist(), "crop": 6},
}
INPUT_LAYERS = {"DigitInput": (0, 28, 28), "ImageInput": (0, 3, 8, 8)}     # uint8 in, no dx


@pytest.mark.parametrize("kind", sorted(L.LAYERS))
def test_parameter_shapes_match_the_built_layer(kind):
    # zeronet.io checks a file against parameter_shapes before it builds
    # anything: it must say exactly what the constructor makes.
    assert kind in LAYER_EXAMPLES, f"add an example of {kind} to LAYER_EXAMPLES"
    import inspect
    config = LAYER_EXAMPLES[kind]
    layer = L.LAYERS[kind](**config)
    args = inspect.signature(L.LAYERS[kind]).bind(**config)
    args.apply_defaults()
    declared = L.LAYERS[kind].parameter_shapes(dict(args.arguments))
    assert declared == {name: p.data.shape for name, p in layer.params.items()}


# ------------------------ 1. out-of-bounds write in compiled max pooling ----

X16 = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)


def test_1_stride_near_2_63_is_refused_by_both_kernels():
    for impl in (kernels, reference):
        with pytest.raises(ValueError, match="stride must be <= 2147483647"):
            impl.maxpool_forward(X16, 3, 2**63 - 1, 2)
    with pytest.raises(ValueError, match="stride must be <= 2147483647"):
        L.MaxPooling(3, 2**63 - 1, 2)


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_1_strides_and_pads_at_the_limits_match_the_reference(ceil_mode):
    # The sweep that found it: 16 of 140 stride/pad settings aborted.
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 7)).astype(np.float32)
    for stride in [1, 2, 3, 2**30, 2**30 + 1, MAX_SIZE - 1, MAX_SIZE]:
        for pad in range(3):
            for kernel in [3, (3, 4)]:
                got = kernels.maxpool_forward(x, kernel, stride, pad, ceil_mode)
                expected = reference.maxpool_forward(x, kernel, stride, pad, ceil_mode)
                assert all(np.array_equal(a, b) for a, b in zip(got, expected)), (stride, pad)
                dout = np.ones_like(got[0])
                dx = kernels.maxpool_backward(dout, got[1], x.shape, kernel, stride, pad)
                assert np.array_equal(dx, reference.maxpool_backward(
                    dout, expected[1], x.shape, kernel, stride, pad)), (stride, pad)


def test_1_a_file_with_such_a_stride_is_refused(tiny_file):
    _, path = tiny_file
    edit(path, set_layer("pool", stride=2**63 - 1, pad=1, kernel_size=3))
    assert_refused(path, "stride must be <= 2147483647")


# ------------------------------------------- 5. a named pipe as the path ----

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_5_a_named_pipe_is_refused_at_once(tmp_path):
    pipe = tmp_path / "weights.h5"
    os.mkfifo(pipe)
    out = run_child(f"""
        from zeronet import io
        try:
            io.load({str(pipe)!r})
        except io.WeightsFileError as exc:
            print(exc)
        """, timeout=60)
    assert "is a named pipe, not a regular file" in out
    with pytest.raises(WeightsFileError, match="is a folder"):
        io.load(tmp_path)


# ----------------------------------------------------------- 6. saving ----

def temporaries(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


def test_6_temporary_names_cannot_be_guessed(tmp_path, monkeypatch):
    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renamed.append(Path(a).name),
                                                     real_replace(a, b)))
    for _ in range(2):
        io.save(tiny_net(), tmp_path / "m.h5")
    assert len(set(renamed)) == 2, renamed
    for name in renamed:
        assert re.fullmatch(rf"\.m\.h5\.{os.getpid()}\.[0-9a-f]{{16}}\.tmp", name), name


def test_6_a_planted_symlink_is_never_followed(tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    monkeypatch.setattr(io.secrets, "token_hex", lambda n: "0" * (2 * n))
    planted = tmp_path / f".m.h5.{os.getpid()}.{'0' * 16}.tmp"
    planted.symlink_to(victim)
    with pytest.raises(FileExistsError):
        io.save(tiny_net(), tmp_path / "m.h5")
    assert victim.read_text() == "precious"
    assert not (tmp_path / "m.h5").exists() and planted.is_symlink()


def dead_pid():
    for pid in range(2**22 - 1, 2**21, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    pytest.skip("no unused process id found")


@pytest.mark.skipif(os.name != "posix", reason="process ids are checked on POSIX only")
def test_6_stale_temporaries_are_removed_by_the_next_save(tmp_path):
    pid = dead_pid()
    stale = [f".m.h5.{pid}.tmp",                             # older zeronet's name
             f".m.h5.{pid}.0123456789abcdef.tmp",
             f".m.h5.{os.getpid()}.fedcba9876543210.tmp"]     # ours, but two days old
    kept = [f".m.h5.{os.getpid()}.00112233445566aa.tmp",      # ours and fresh: in progress
            f".other.h5.{pid}.tmp", f".m.h5.{pid}.tmp.bak", "m.h5.1.tmp"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"half a file")
    old = time.time() - 2 * 24 * 3600
    os.utime(tmp_path / stale[2], (old, old))
    io.save(tiny_net(), tmp_path / "m.h5")
    assert temporaries(tmp_path) == sorted(name for name in kept if name.endswith(".tmp"))
    assert (tmp_path / f".m.h5.{pid}.tmp.bak").exists()


@pytest.mark.skipif(os.name != "posix", reason="process ids are checked on POSIX only")
def test_6_a_stale_temporary_that_cannot_be_removed_is_reported(tmp_path, monkeypatch):
    name = f".m.h5.{dead_pid()}.tmp"
    (tmp_path / name).write_bytes(b"half a file")
    real_unlink = os.unlink

    def refuse(path, *args, **kwargs):
        if Path(path).name == name:
            raise PermissionError(13, "Permission denied", str(path))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", refuse)
    with pytest.warns(RuntimeWarning, match="left over from an interrupted save"):
        io.save(tiny_net(), tmp_path / "m.h5")
    assert io.load(tmp_path / "m.h5")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_6_a_killed_save_leaves_nothing_the_next_save_keeps(tmp_path):
    # The save is killed for real (SIGKILL: no cleanup runs) while writing.
    target = tmp_path / "m.h5"
    run_child(f"""
        import os, signal
        import zeronet
        from zeronet import io
        from test_hostile import tiny_net
        real = io._write_network
        def write_then_die(f, network, metadata):
            real(f, network, metadata)
            os.kill(os.getpid(), signal.SIGKILL)
        io._write_network = write_then_die
        pid = os.fork()
        if pid == 0:
            io.save(tiny_net(), {str(target)!r})
        os.waitpid(pid, 0)
        """)
    assert len(temporaries(tmp_path)) == 1 and not target.exists()
    io.save(tiny_net(), target)
    assert temporaries(tmp_path) == [] and io.load(target)


# ------------------------------------- 8. layers accept wrong input ----

def test_8_activations_refuse_integers():
    for layer in (L.Sigmoid(), L.Tanh(), L.ReLU(), L.ScaledTanh(), L.Dropout(), L.Flatten(),
                  L.AvgPooling(2), L.LRN()):
        with pytest.raises(TypeError, match="expects float32 or float64 input, got int64"):
            layer.forward(np.arange(16).reshape(1, 1, 4, 4))


def test_8_subsampling_refuses_other_channel_counts():
    with pytest.raises(ValueError, match="Subsampling expects 2 channels"):
        L.Subsampling(2).forward(np.ones((1, 1, 4, 4), np.float32))


@pytest.mark.parametrize("batch", [1, 64], ids=["classic", "chunked"])
def test_8_convolution_refuses_dout_with_oh_and_ow_swapped(batch):
    conv = L.Convolution(3, 4, (3, 2), rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((batch, 3, 40, 30)).astype(np.float32)
    y = conv.forward(x)
    assert y.shape[2:] == (38, 29)
    swapped = np.ascontiguousarray(np.swapaxes(y, 2, 3))
    with pytest.raises(ValueError, match=r"expects dout of shape \(%d, 4, 38, 29\)" % batch):
        conv.backward(swapped)
    with pytest.raises(ValueError, match="expects dout of shape"):
        sdlm.layer_curvature(conv, swapped)


@pytest.mark.parametrize("layer, shape", [
    (L.ReLU(), (2, 3)), (L.Sigmoid(), (2, 3)), (L.Tanh(), (2, 3)), (L.ScaledTanh(), (2, 3)),
    (L.Dropout(), (2, 3)), (L.LRN(), (2, 3, 2, 2)), (L.MaxPooling(2), (2, 3, 4, 4)),
    (L.AvgPooling(2), (2, 3, 4, 4)), (L.Flatten(), (2, 3, 2)), (L.Subsampling(3), (2, 3, 4, 4)),
    (L.Affine(3, 4), (2, 3)), (L.RBF(np.ones((5, 3))), (2, 3)),
], ids=lambda v: type(v).__name__ if isinstance(v, L.Layer) else "")
def test_8_dout_must_be_what_forward_returned(layer, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y = layer.forward(x)
    for wrong in (np.ones(y.shape[:-1] + (1,), np.float32),     # would broadcast
                  np.ones((1,) + y.shape[1:], np.float32),
                  np.ones(y.shape[1:], np.float32)):
        with pytest.raises(ValueError, match="like its output"):
            layer.backward(wrong)
    with pytest.raises(TypeError, match="expects dout of float32 like its output, got float64"):
        layer.backward(np.ones(y.shape))
    with pytest.raises(TypeError, match="dout as a numpy.ndarray"):
        layer.backward(y.tolist())
    dout = np.ones_like(y)
    dx = layer.backward(dout)
    assert dx.shape == x.shape and dx.dtype == x.dtype
    assert np.array_equal(dout, np.ones_like(y)), "backward changed dout"


def test_8_backward_before_forward_says_so():
    with pytest.raises(RuntimeError, match="ReLU.backward was called before ReLU.forward"):
        L.ReLU().backward(np.ones(3, np.float32))


# ------------------------------------------------- 9. empty batches ----

@pytest.mark.parametrize("kind", sorted(L.LAYERS))
@pytest.mark.parametrize("input_grad", [True, False])
def test_9_an_empty_batch_goes_through_every_layer(kind, input_grad):
    config = dict(LAYER_EXAMPLES[kind])
    shape = {**INPUT_LAYERS, "Convolution": (0, 4, 5, 6), "Affine": (0, 7), "RBF": (0, 4),
             "Subsampling": (0, 5, 4, 4)}.get(kind, (0, 3, 6, 6))
    layer = L.LAYERS[kind](**config)
    if hasattr(layer, "input_grad"):
        layer.input_grad = input_grad
    x = np.zeros(shape, np.uint8 if kind in INPUT_LAYERS else np.float32)
    y = layer.forward(x, train=True)
    assert y.shape[0] == 0
    dx = layer.backward(np.zeros_like(y))
    if kind not in INPUT_LAYERS and (input_grad or not hasattr(layer, "input_grad")):
        assert dx.shape == x.shape


def test_9_an_empty_batch_costs_the_convolution_no_memory():
    # The compiled convolution once set up a padded image per thread even
    # for no image at all: 48 MB each here, gigabytes with a larger pad.
    x, W = np.zeros((0, 3, 5, 5), np.float32), np.ones((4, 3, 3, 3), np.float32)
    tracemalloc.start()
    try:
        y = kernels.conv_forward(x, W, np.zeros(4, np.float32), 1, 1000)
        dx, dW = kernels.conv_backward(x, W, y, 1, 1000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert y.shape == (0, 4, 2003, 2003) and dx.shape == x.shape and not dW.any()
    assert peak < 1 << 20, f"{peak / 2**20:.0f} MiB for an empty batch"


def test_9_an_empty_batch_through_lenet5():
    net = models.lenet5(np.random.default_rng(0))
    assert net.predict(np.zeros((0, 28, 28), np.uint8)).shape == (0, 10)
    with pytest.raises(ValueError, match=r"an empty batch \(N = 0\) has no mean loss"):
        net.loss(np.zeros((0, 28, 28), np.uint8), np.zeros(0, int))


# ------------------------------------------------------- 10. messages ----

@pytest.mark.parametrize("call, error, match", [
    (lambda: L.Convolution(1, 0, 3), ValueError, "out_channels must be between 1 and"),
    (lambda: L.Affine(0, 3), ValueError, "in_features must be between 1 and"),
    (lambda: kernels.conv_forward(X16, np.zeros((0, 1, 3, 3), np.float32),
                                  np.zeros(0, np.float32)),
     ValueError, r"W must have at least one output map"),
    (lambda: kernels.col2im(np.zeros((16, 1), np.float32), "1144", 1), TypeError,
     "x_shape must be a tuple"),
    (lambda: kernels.col2im(np.zeros((16, 1), np.float32), (1, 1, 4, 4.0), 1), TypeError,
     "x_shape must be a tuple of 4 ints"),
    (lambda: kernels.maxpool_backward(np.zeros((1, 1, 2, 2), np.float32),
                                      np.zeros((1, 1, 2, 2), np.int32), "abcd", 2, 2),
     TypeError, "x_shape must be a tuple"),
    (lambda: kernels.im2col(X16, 2**63), ValueError, "kernel_size must be <= 2147483647"),
    (lambda: kernels.im2col(X16, 1, 2**64), ValueError, "stride must be <= 2147483647"),
    (lambda: kernels.im2col(X16, 1, 1, np.uint64(2**63)), ValueError, "pad must be <="),
    (lambda: kernels.im2col(X16, 1, 1, (0, MAX_SIZE)), ValueError,
     "output width .* is more than 2147483647"),
    (lambda: kernels.col2im(np.zeros((1, 1), np.float32), (1, 1, MAX_SIZE, MAX_SIZE), 1),
     ValueError, "x_shape would hold"),
    (lambda: kernels.conv_forward(X16, np.zeros((1, 1, 3, 3), np.float32),
                                  np.zeros(1, np.float32), 2**31 - 1, 2**20),
     ValueError, "the padded input would hold"),
    (lambda: L.MaxPooling(2, stride=2**70), ValueError, "stride must be <= 2147483647"),
    (lambda: L.DigitInput(side=10**9), ValueError, "side must be between 1 and 1024"),
    (lambda: L.Convolution(1, 2, 3, dtype="int32"), TypeError, "dtype must be float32"),
    (lambda: L.Affine(2**31 - 1, 2**31 - 1), ValueError, "W would hold"),
    (lambda: kernels.set_num_threads(2**63), ValueError, "number of threads must be between"),
    (lambda: kernels.set_num_threads(2.0), TypeError, "number of threads must be an int"),
    (lambda: kernels.set_blas_threads(2**70), ValueError, "BLAS threads must be between"),
], ids=["conv-zero-maps", "affine-zero", "kernel-zero-maps", "x_shape-text", "x_shape-float",
        "pool-x_shape-text", "kernel-2**63", "stride-2**64", "pad-uint64", "output-too-wide",
        "x_shape-huge", "padded-huge", "layer-stride-2**70", "digit-side", "int-dtype",
        "affine-huge", "threads-2**63", "threads-float", "blas-threads-2**70"])
def test_10_messages_are_zeronets_own(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --------------------------------------------------------- 11. the CLI ----

def run_cli(monkeypatch, capsys, *args):
    """``reproduce/lenet.py ARGS`` as its ``__main__`` block runs it; returns
    (exit status, stdout, stderr)."""
    lenet = import_lenet()
    monkeypatch.setattr(sys, "argv", ["lenet.py", *args])
    with pytest.raises(SystemExit) as info:
        lenet.common.run_main(lenet.main)
        raise SystemExit(0)
    out, err = capsys.readouterr()
    code = info.value.code
    if isinstance(code, str):       # sys.exit("message"): Python prints it, status 1
        code, err = 1, err + code + "\n"
    return code, out, err


def flip_a_weight(path):
    """Flip one bit inside the stored values of c5/W."""
    with h5py.File(path, "r") as f:
        offset = f["c5/W"].id.get_chunk_info(0).byte_offset
    data = bytearray(path.read_bytes())
    data[offset + 100] ^= 0x10
    path.write_bytes(bytes(data))


DAMAGES = {
    "truncated": lambda path: path.write_bytes(path.read_bytes()[:5000]),
    "flipped": lambda path: flip_a_weight(path),
    "metadata-list": lambda path: edit(path, lambda f: f.attrs.__setitem__("metadata", "[1]")),
    "metadata-number": lambda path: edit(path, set_json("metadata", lambda m: {
        **m, "epochs": "many"})),
    "model-list": lambda path: edit(path, set_json("metadata", lambda m: {**m, "model": [1]})),
    "missing-dataset": lambda path: edit(path, lambda f: f.__delitem__("c3/b")),
    "no-digest": lambda path: edit(path, lambda f: f.attrs.__delitem__("digest"), reseal=False),
    "external": lambda path: edit(path, lambda f: (f.__delitem__("c1/b"), f.create_dataset(
        "c1/b", shape=(6,), dtype=np.float32, external=[("/etc/passwd", 0, 24)])), reseal=False),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_11_the_cli_reports_a_damaged_weights_file_in_one_line(tmp_path, monkeypatch, capsys,
                                                              damage):
    path = tmp_path / "lenet5.h5"
    path.write_bytes(LENET5.read_bytes())
    DAMAGES[damage](path)
    code, out, err = run_cli(monkeypatch, capsys, "--weights", str(path), "--out",
                             str(tmp_path / "runs"), "--no-progress")
    assert code not in (0, None), (code, out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert str(path) in err, err


def damaged_mnist(folder):
    """A data folder whose four MNIST files are there but damaged: loading
    them fails, and nothing is downloaded."""
    (folder / "mnist").mkdir(parents=True)
    for spec in datasets.MNIST_FILES.values():
        (folder / "mnist" / spec.name).write_bytes(b"\x00\x00\x08\x03 not an idx file")
    return folder


def test_11_the_cli_reports_a_damaged_dataset_in_one_line(tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "--weights", str(LENET5), "--data-dir",
                             str(damaged_mnist(tmp_path / "data")), "--out",
                             str(tmp_path / "runs"), "--no-progress")
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "t10k" in err


def test_11_a_training_whose_data_cannot_be_loaded_leaves_no_run_folder(tmp_path, monkeypatch,
                                                                        capsys):
    code, out, err = run_cli(monkeypatch, capsys, "--quick", "--data-dir",
                             str(damaged_mnist(tmp_path / "data")), "--out",
                             str(tmp_path / "runs"), "--no-progress")
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "idx" in err, err
    assert not (tmp_path / "runs").exists()


def test_11_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    path = tmp_path / "none.h5"
    with pytest.raises(FileNotFoundError, match="no weights file"):
        run_cli(monkeypatch, capsys, "--weights", str(path), "--debug")
    code, _, err = run_cli(monkeypatch, capsys, "--weights", str(path))
    assert code == 1 and err.strip() == f"lenet.py: error: no weights file at {path}"
