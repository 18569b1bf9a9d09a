"""Tests for zeronet.datasets: the IDX reader, the checks, the downloader.

No test touches the internet. Downloads are tested for real over HTTP, against
a server on 127.0.0.1 that serves tiny synthetic IDX files; the checksum table
is monkeypatched to those files' hashes. The one test on the real MNIST finds
it as zeronet does (tests/conftest.py).
"""
import gzip
import hashlib
import http.server
import os
import socket
import stat
import struct
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from conftest import real_data_dir
from zeronet import datasets
from zeronet.datasets import (Dataset, DatasetError, IdxFile, download_file, download_mnist,
                              load_mnist, read_idx, resolve_data_dir, train_val_split)

REPO_ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- helpers

def idx_bytes(array, type_code=0x08):
    """Encode a uint8 array as IDX: 00 00 <type> <ndim>, big-endian dims, data."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path, content):
    """Write IDX bytes to ``path``, gzip-compressed if the name ends in .gz."""
    path = Path(path)
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
    return path


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def tiny_images(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3, 2), dtype=np.uint8)  # non-square on purpose


def tiny_labels(n, seed):
    return np.random.default_rng(seed).integers(0, 10, size=n, dtype=np.uint8)


@pytest.fixture
def tiny_mnist(monkeypatch):
    """Replace MNIST's file table by four tiny files; return their arrays and IDX bytes."""
    arrays = {"x_train": tiny_images(6, 1), "y_train": tiny_labels(6, 2),
              "x_test": tiny_images(4, 3), "y_test": tiny_labels(4, 4)}
    contents = {}
    for key, array in arrays.items():
        spec = datasets.MNIST_FILES[key]
        contents[spec.name] = idx_bytes(array)
        monkeypatch.setitem(datasets.MNIST_FILES, key,
                            IdxFile(spec.name, array.shape, sha256(contents[spec.name])))
    return arrays, contents


def assert_mentions(excinfo, *words):
    message = str(excinfo.value)
    for word in words:
        assert word in message, f"{word!r} not in the error message:\n{message}"


# ---------------------------------------------------------------- read_idx

@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("array", [tiny_labels(7, 0), tiny_images(5, 0),
                                   np.arange(24, dtype=np.uint8).reshape(2, 3, 4)],
                         ids=["labels", "images", "3d"])
def test_read_idx_round_trips(tmp_path, suffix, array):
    path = write_idx(tmp_path / f"file-idx{suffix}", idx_bytes(array))
    got = read_idx(path)
    assert got.dtype == np.uint8
    assert got.shape == array.shape
    np.testing.assert_array_equal(got, array)
    assert got.flags.writeable  # an ordinary array, not a read-only view of the bytes


def test_read_idx_checks_shape_and_sha256(tmp_path):
    content = idx_bytes(tiny_labels(5, 0))
    path = write_idx(tmp_path / "labels.gz", content)
    read_idx(str(path), shape=(5,), sha256=sha256(content).upper())  # str paths, any case

    with pytest.raises(DatasetError) as excinfo:
        read_idx(path, shape=(5, 28, 28))
    assert_mentions(excinfo, "labels.gz", "(5,)", "(5, 28, 28)")

    wrong = "0" * 64
    with pytest.raises(DatasetError) as excinfo:
        read_idx(path, sha256=wrong)
    assert_mentions(excinfo, "labels.gz", wrong, sha256(content))


def damaged(content, how):
    if how == "truncated data":
        return content[:-3]
    if how == "truncated header":
        return content[:9]  # magic + 1 of 3 dims
    if how == "empty":
        return b""
    if how == "trailing bytes":
        return content + b"\x00\x00"
    if how == "wrong magic":
        return b"\x89PNG" + content[4:]
    if how == "float32 type byte":
        return content[:2] + b"\x0d" + content[3:]
    if how == "zero dimensions":
        return content[:3] + b"\x00"
    raise AssertionError(how)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("how, words", [
    ("truncated data", ["truncated", "(4, 3, 2)"]),
    ("truncated header", ["truncated", "header"]),
    ("empty", ["too short"]),
    ("trailing bytes", ["2 unexpected bytes"]),
    ("wrong magic", ["not an IDX file", "0x89504E47"]),
    ("float32 type byte", ["float32", "0x0D"]),
    ("zero dimensions", ["0 dimensions"]),
])
def test_read_idx_rejects_damaged_files(tmp_path, suffix, how, words):
    content = damaged(idx_bytes(tiny_images(4, 0)), how)
    path = write_idx(tmp_path / f"bad-idx3-ubyte{suffix}", content)
    with pytest.raises(DatasetError) as excinfo:
        read_idx(path)
    assert_mentions(excinfo, path.name, *words)


def test_read_idx_rejects_bad_gzip(tmp_path):
    content = idx_bytes(tiny_images(50, 0))
    compressed = gzip.compress(content)

    not_gzip = tmp_path / "raw-named.gz"
    not_gzip.write_bytes(content)
    with pytest.raises(DatasetError) as excinfo:
        read_idx(not_gzip)
    assert_mentions(excinfo, "raw-named.gz", "not gzip")

    cut = tmp_path / "cut.gz"
    cut.write_bytes(compressed[:len(compressed) // 2])
    with pytest.raises(DatasetError) as excinfo:
        read_idx(cut)
    assert_mentions(excinfo, "cut.gz", "damaged or truncated")

    flipped = bytearray(compressed)
    flipped[len(flipped) // 2] ^= 0xFF  # inside the deflate stream: zlib or CRC error
    corrupt = tmp_path / "corrupt.gz"
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(DatasetError) as excinfo:
        read_idx(corrupt)
    assert_mentions(excinfo, "corrupt.gz")

    gzip_without_suffix = tmp_path / "train-images-idx3-ubyte"
    gzip_without_suffix.write_bytes(compressed)
    with pytest.raises(DatasetError) as excinfo:
        read_idx(gzip_without_suffix)
    assert_mentions(excinfo, "train-images-idx3-ubyte", "gzip-compressed")


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DatasetError) as excinfo:
        read_idx(tmp_path / "nowhere.gz")
    assert_mentions(excinfo, "nowhere.gz", "cannot read")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_read_idx_refuses_a_named_pipe(tmp_path):
    # Reading a pipe would wait for a writer forever. Should that regress, the
    # timer plays the writer and closes at once, so the test fails, not hangs.
    fifo = tmp_path / "t10k-labels-idx1-ubyte"
    os.mkfifo(fifo)

    def release():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # fails if no reader: fine
        os.close(fd)

    timer = threading.Timer(5.0, release)
    timer.start()
    try:
        with pytest.raises(DatasetError) as excinfo:
            read_idx(fifo)
    finally:
        timer.cancel()
    assert_mentions(excinfo, str(fifo), "not a regular file")


# ---------------------------------------------------------------- gzip bombs

def gzip_bomb(head, zero_megabytes):
    """``head`` gzipped, followed by ``zero_megabytes`` MiB of zeros in further gzip
    members (a valid multi-member gzip file). 8 MiB of zeros compress to 8 KB, so
    the file stays small and quick to build however far it inflates."""
    zeros = gzip.compress(bytes(8 << 20))
    return gzip.compress(head) + zeros * (zero_megabytes // 8)


def peak_memory_of(function, *args, **kwargs):
    """Call ``function``; return (what it raised, the peak of Python's allocations)."""
    tracemalloc.start()
    try:
        try:
            function(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the caller checks it
            raised = exc
        else:
            raised = None
        return raised, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_gzip_bomb_is_not_inflated(tmp_path):
    # A valid header announcing 10 images of 28x28, then 320 MiB of zeros.
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    bomb.write_bytes(gzip_bomb(idx_bytes(np.zeros((10, 28, 28), np.uint8)), 320))
    assert bomb.stat().st_size < 1 << 20
    raised, peak = peak_memory_of(read_idx, bomb)
    assert isinstance(raised, DatasetError), raised
    assert str(bomb) in str(raised) and "past the 7856 bytes its IDX header" in str(raised)
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MiB allocated: the bomb was inflated"

    # The expected shape is compared with the header before any data is read.
    raised, peak = peak_memory_of(read_idx, bomb, shape=(60000, 28, 28))
    assert isinstance(raised, DatasetError) and "(60000, 28, 28)" in str(raised), raised
    assert peak < 8 << 20


def test_header_may_not_announce_more_than_max_bytes(tmp_path):
    # A header announcing 2**40 bytes is refused without reading further.
    head = bytes([0, 0, 8, 3]) + struct.pack(">3I", 1 << 20, 1 << 10, 1 << 10)
    path = tmp_path / "huge-idx3-ubyte.gz"
    path.write_bytes(gzip_bomb(head, 64))
    raised, peak = peak_memory_of(read_idx, path)
    assert isinstance(raised, DatasetError), raised
    assert "more than the 1073741824 this reader accepts" in str(raised)
    assert peak < 8 << 20

    # A smaller limit of the caller's own.
    small = write_idx(tmp_path / "labels.gz", idx_bytes(tiny_labels(200, 0)))
    with pytest.raises(DatasetError, match="more than the 100 this reader accepts"):
        read_idx(small, max_bytes=100)
    assert read_idx(small, max_bytes=208).shape == (200,)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_content_past_the_declared_size_stops_the_reader(tmp_path, suffix):
    # More than one chunk too much: the reader stops instead of counting it all.
    content = idx_bytes(tiny_images(4, 0)) + bytes(3 << 20)
    path = write_idx(tmp_path / f"long-idx3-ubyte{suffix}", content)
    with pytest.raises(DatasetError) as excinfo:
        read_idx(path)
    assert_mentions(excinfo, path.name, "past the 40 bytes", "stopped reading")


# ---------------------------------------------------------------- where the data lives

def test_resolve_data_dir_order(monkeypatch, tmp_path):
    monkeypatch.delenv("ZERONET_DATA", raising=False)
    assert resolve_data_dir() == REPO_ROOT / "data"
    monkeypatch.setenv("ZERONET_DATA", "")  # empty counts as unset
    assert resolve_data_dir() == REPO_ROOT / "data"
    monkeypatch.setenv("ZERONET_DATA", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert isinstance(resolve_data_dir(str(tmp_path)), Path)


# ---------------------------------------------------------------- train_val_split

def test_train_val_split_takes_the_last_examples():
    x = np.arange(10 * 2).reshape(10, 2)
    y = np.arange(10)
    (x_tr, y_tr), (x_val, y_val) = train_val_split(x, y, 3)
    np.testing.assert_array_equal(y_tr, np.arange(7))
    np.testing.assert_array_equal(y_val, [7, 8, 9])
    np.testing.assert_array_equal(x_val, x[7:])
    assert x_tr.shape == (7, 2)


@pytest.mark.parametrize("n_val, error", [(0, ValueError), (10, ValueError), (-1, ValueError),
                                          (2.5, TypeError), (True, TypeError)])
def test_train_val_split_rejects_bad_sizes(n_val, error):
    with pytest.raises(error):
        train_val_split(np.zeros((10, 2)), np.zeros(10), n_val)


def test_train_val_split_rejects_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        train_val_split(np.zeros((10, 2)), np.zeros(9), 2)


# ---------------------------------------------------------------- load_mnist from disk

def test_load_mnist_from_disk_gz_and_raw(tmp_path, tiny_mnist):
    arrays, contents = tiny_mnist
    folder = tmp_path / "mnist"
    folder.mkdir()
    for i, (name, content) in enumerate(contents.items()):
        write_idx(folder / (name + (".gz" if i % 2 else "")), content)  # both spellings
    mnist = load_mnist(tmp_path, download=False)
    assert isinstance(mnist, Dataset)
    for key, array in arrays.items():
        np.testing.assert_array_equal(getattr(mnist, key), array)
    assert mnist.classes == tuple("0123456789")
    assert "x_train=uint8(6, 3, 2)" in repr(mnist)


def test_load_mnist_missing_files_without_download(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the network must not be used when download=False")
    monkeypatch.setattr(datasets.urllib.request, "urlopen", no_network)
    with pytest.raises(DatasetError) as excinfo:
        load_mnist(tmp_path, download=False)
    assert_mentions(excinfo, str(tmp_path / "mnist"), "train-images-idx3-ubyte.gz",
                    "t10k-labels-idx1-ubyte.gz", "ZERONET_DATA")
    assert not (tmp_path / "mnist").exists()  # nothing created


def test_load_mnist_rejects_wrong_counts_and_labels(tmp_path, tiny_mnist, monkeypatch):
    arrays, contents = tiny_mnist
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name, content in contents.items():
        write_idx(folder / (name + ".gz"), content)

    # The real table expects 60,000 training images: the tiny file is refused.
    spec = datasets.MNIST_FILES["x_train"]
    monkeypatch.setitem(datasets.MNIST_FILES, "x_train",
                        IdxFile(spec.name, (60000, 28, 28), spec.sha256))
    with pytest.raises(DatasetError) as excinfo:
        load_mnist(tmp_path, download=False)
    assert_mentions(excinfo, "train-images-idx3-ubyte.gz", "(60000, 28, 28)")
    monkeypatch.setitem(datasets.MNIST_FILES, "x_train", spec)

    # A label of 10 (with a checksum table that agrees) is still refused.
    bad = arrays["y_test"].copy()
    bad[0] = 10
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", idx_bytes(bad))
    spec = datasets.MNIST_FILES["y_test"]
    monkeypatch.setitem(datasets.MNIST_FILES, "y_test",
                        IdxFile(spec.name, spec.shape, sha256(idx_bytes(bad))))
    with pytest.raises(DatasetError) as excinfo:
        load_mnist(tmp_path, download=False)
    assert_mentions(excinfo, "t10k-labels-idx1-ubyte.gz", "0..9", "10")


def test_gzip_bomb_in_the_data_folder(tmp_path, tiny_mnist):
    # Through load_mnist: the shape its table expects bounds the decompression.
    _, contents = tiny_mnist
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name, content in contents.items():
        write_idx(folder / (name + ".gz"), content)
    bomb = folder / "train-images-idx3-ubyte.gz"
    bomb.write_bytes(gzip_bomb(contents["train-images-idx3-ubyte"], 320))
    raised, peak = peak_memory_of(load_mnist, tmp_path, download=False)
    assert isinstance(raised, DatasetError), raised
    assert str(bomb) in str(raised) and "gzip bomb" in str(raised) and "Delete" in str(raised)
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MiB allocated: the bomb was inflated"


@pytest.mark.parametrize("download, advice", [(True, "next load_mnist() downloads it again"),
                                               (False, "download=True")])
def test_bad_local_file_error_says_to_delete_it(tmp_path, tiny_mnist, monkeypatch,
                                                download, advice):
    # A file on disk is never downloaded again, so the message must say how
    # to get a good copy: delete the bad one.
    _, contents = tiny_mnist
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name, content in contents.items():
        write_idx(folder / (name + ".gz"), content)
    bad = write_idx(folder / "t10k-images-idx3-ubyte.gz",
                    flip_last_bit(contents["t10k-images-idx3-ubyte"]))

    def no_network(*args, **kwargs):
        raise AssertionError("the files are all there: nothing should be downloaded")
    monkeypatch.setattr(datasets.urllib.request, "urlopen", no_network)
    with pytest.raises(DatasetError) as excinfo:
        load_mnist(tmp_path, download=download, progress=False)
    assert_mentions(excinfo, "SHA-256 mismatch", f"Delete {bad}", advice)


# ---------------------------------------------------------------- downloads, over local HTTP

class Handler(http.server.BaseHTTPRequestHandler):
    """Serve ``server.routes[path] = (behaviour, body)``; anything else is a 404.

    Behaviours: "ok" sends the body; "drop" announces the full length, sends
    half of the body and closes the connection.
    """

    def do_GET(self):
        self.server.requests.append(self.path)
        behaviour, body = self.server.routes.get(self.path, ("404", b""))
        if behaviour == "404":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if behaviour == "ok":
            self.wfile.write(body)
        elif behaviour == "drop":
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:
            raise AssertionError(behaviour)

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def server(monkeypatch):
    # A proxy configured in the environment must not see requests to 127.0.0.1.
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.routes = {}
    httpd.requests = []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    # A short poll interval so that shutdown() returns quickly.
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def serve(server, mirror, contents, behaviour="ok", transform=gzip.compress):
    for name, content in contents.items():
        server.routes[f"/{mirror}/{name}.gz"] = (behaviour, transform(content))


def flip_last_bit(content):
    """Same length, still valid IDX, different content: only the checksum can tell."""
    return content[:-1] + bytes([content[-1] ^ 1])


def files_in(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def test_download_then_load(tmp_path, server, tiny_mnist):
    arrays, contents = tiny_mnist
    serve(server, "m1", contents)
    mnist = load_mnist(tmp_path, mirrors=[f"{server.url}/m1/"], timeout=5)
    for key, array in arrays.items():
        np.testing.assert_array_equal(getattr(mnist, key), array)
    assert files_in(tmp_path / "mnist") == sorted(f"{name}.gz" for name in contents)

    # Everything present now: loading again downloads nothing.
    server.requests.clear()
    load_mnist(tmp_path, mirrors=[f"{server.url}/m1/"], timeout=5, progress=False)
    assert server.requests == []


def test_download_and_load_the_test_set_alone(tmp_path, server, tiny_mnist):
    arrays, contents = tiny_mnist
    serve(server, "m1", contents)
    mnist = load_mnist(tmp_path, mirrors=[f"{server.url}/m1/"], timeout=5, progress=False,
                       parts=("test",))
    np.testing.assert_array_equal(mnist.x_test, arrays["x_test"])
    np.testing.assert_array_equal(mnist.y_test, arrays["y_test"])
    assert mnist.x_train is None and mnist.y_train is None
    assert files_in(tmp_path / "mnist") == ["t10k-images-idx3-ubyte.gz",
                                            "t10k-labels-idx1-ubyte.gz"]


@pytest.mark.parametrize("parts", [(), ("validation",), "test"])
def test_load_mnist_rejects_unknown_parts(tmp_path, parts):
    with pytest.raises(ValueError, match="parts"):
        load_mnist(tmp_path, download=False, parts=parts)


def test_module_mirror_list_is_used_by_default(tmp_path, server, tiny_mnist, monkeypatch):
    _, contents = tiny_mnist
    serve(server, "m1", contents)
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", [f"{server.url}/m1"])  # no trailing /
    download_mnist(tmp_path, timeout=5, progress=False)
    assert len(files_in(tmp_path / "mnist")) == 4


def test_404_then_next_mirror(tmp_path, server, tiny_mnist):
    _, contents = tiny_mnist
    serve(server, "m2", contents)  # nothing on m1
    download_mnist(tmp_path, mirrors=[f"{server.url}/m1/", f"{server.url}/m2/"],
                   timeout=5, progress=False)
    assert len(files_in(tmp_path / "mnist")) == 4
    assert f"/m1/{next(iter(contents))}.gz" in server.requests


def test_corrupt_file_falls_back_to_next_mirror(tmp_path, server, tiny_mnist):
    _, contents = tiny_mnist
    # m1 serves well-formed IDX files with the wrong content (checksum mismatch).
    serve(server, "m1", contents, transform=lambda c: gzip.compress(flip_last_bit(c)))
    serve(server, "m2", contents)
    download_mnist(tmp_path, mirrors=[f"{server.url}/m1/", f"{server.url}/m2/"],
                   timeout=5, progress=False)
    folder = tmp_path / "mnist"
    assert files_in(folder) == sorted(f"{name}.gz" for name in contents)
    for name, content in contents.items():
        assert gzip.decompress((folder / f"{name}.gz").read_bytes()) == content


def test_all_mirrors_fail(tmp_path, server, tiny_mnist):
    _, contents = tiny_mnist
    serve(server, "corrupt", contents, transform=lambda c: gzip.compress(flip_last_bit(c)))
    serve(server, "notgzip", contents, transform=lambda c: b"<html>moved</html>")
    refused = closed_port_url()
    mirrors = [f"{server.url}/corrupt/", f"{server.url}/missing/", f"{server.url}/notgzip/",
               refused]
    with pytest.raises(DatasetError) as excinfo:
        download_mnist(tmp_path, mirrors=mirrors, timeout=5, progress=False)
    first = "train-images-idx3-ubyte.gz"
    assert_mentions(excinfo, first, f"{server.url}/corrupt/{first}", "SHA-256 mismatch",
                    f"{server.url}/missing/{first}", "HTTP 404",
                    f"{server.url}/notgzip/{first}", "not gzip",
                    f"{refused}{first}", "cannot connect",
                    str(tmp_path / "mnist" / first), "by hand", "ZERONET_DATA")
    assert ".part-" not in str(excinfo.value)  # reasons name the URL, not the temporary file
    assert files_in(tmp_path / "mnist") == []  # no partial or temporary files


def test_dropped_connection_is_a_failure(tmp_path, server, tiny_mnist):
    _, contents = tiny_mnist
    serve(server, "drop", contents, behaviour="drop")
    with pytest.raises(DatasetError) as excinfo:
        download_mnist(tmp_path, mirrors=[f"{server.url}/drop/"], timeout=5, progress=False)
    assert_mentions(excinfo, f"{server.url}/drop/train-images-idx3-ubyte.gz",
                    "incomplete download")
    assert files_in(tmp_path / "mnist") == []

    serve(server, "good", contents)
    download_mnist(tmp_path, mirrors=[f"{server.url}/drop/", f"{server.url}/good/"],
                   timeout=5, progress=False)
    assert len(files_in(tmp_path / "mnist")) == 4


def test_download_file_is_generic_and_atomic(tmp_path, server):
    """download_file knows nothing of IDX: the verify callback decides."""
    server.routes["/a.bin"] = ("ok", b"hello")
    dest = tmp_path / "sub" / "a.bin"
    seen = []

    def verify(path):
        seen.append(path)
        assert not dest.exists()  # the final name appears only after verification
        assert path.parent == dest.parent and path.name.endswith("a.bin")
        if path.read_bytes() != b"hello":
            raise DatasetError(f"{path}: unexpected content")

    assert download_file([f"{server.url}/a.bin"], dest, verify, timeout=5) == dest
    assert dest.read_bytes() == b"hello"
    assert files_in(dest.parent) == ["a.bin"] and not seen[0].exists()

    with pytest.raises(DatasetError, match="no URLs"):
        download_file([], tmp_path / "b.bin", verify)


def test_download_is_on_disk_before_the_rename(tmp_path, server, monkeypatch):
    server.routes["/a.bin"] = ("ok", b"hello")
    dest = tmp_path / "a.bin"
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append((os.fstat(fd).st_size, dest.exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    download_file([f"{server.url}/a.bin"], dest, lambda path: None, timeout=5,
                  progress=False)
    assert synced == [(5, False)], "the complete file must be fsynced before the rename"


@pytest.mark.skipif(os.name != "posix", reason="permission bits are POSIX")
@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["022", "027"])
def test_download_gets_ordinary_permissions(tmp_path, server, umask):
    # mkstemp makes 0o600 files; a shared data folder needs others to read them.
    server.routes["/a.bin"] = ("ok", b"hello")
    old = os.umask(umask)
    try:
        download_file([f"{server.url}/a.bin"], tmp_path / "a.bin", lambda path: None,
                      timeout=5, progress=False)
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.bin").stat().st_mode)
    assert mode == 0o666 & ~umask, f"mode {mode:o}, expected {0o666 & ~umask:o}"


# ---------------------------------------------------------------- the real MNIST

def test_real_data_is_found_where_zeronet_looks_and_fails_under_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("ZERONET_DATA", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="README"):
        real_data_dir("mnist")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        real_data_dir("mnist")
    (tmp_path / "mnist").mkdir()
    assert real_data_dir("mnist") == tmp_path
    # Without ZERONET_DATA: the repository's data/, as load_mnist's default.
    monkeypatch.delenv("ZERONET_DATA")
    with pytest.raises(pytest.fail.Exception, match=str(REPO_ROOT / "data" / "nowhere")):
        real_data_dir("nowhere")


def test_real_mnist(mnist_dir):
    mnist = load_mnist(mnist_dir, download=False)
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.y_train.shape == (60000,) and mnist.y_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 28, 28) and mnist.x_test.dtype == np.uint8
    assert mnist.y_test.shape == (10000,) and mnist.y_test.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(mnist.y_train, minlength=10),
                                  [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    np.testing.assert_array_equal(np.bincount(mnist.y_test, minlength=10),
                                  [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    mean = mnist.x_train.mean() / 255
    assert abs(mean - 0.1307) < 5e-5, f"train pixel mean {mean:.5f}, expected 0.1307"

    (x_tr, y_tr), (x_val, y_val) = train_val_split(mnist.x_train, mnist.y_train, 10_000)
    assert x_tr.shape == (50000, 28, 28) and x_val.shape == (10000, 28, 28)
    assert y_val.shape == (10000,) and np.shares_memory(x_val, mnist.x_train)
