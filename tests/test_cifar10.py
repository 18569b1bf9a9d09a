"""Tests for CIFAR-10 in zeronet.datasets: the reader and its checks, the
canonical order, the download and the safe extraction of the archive.

No test touches the internet: archives are served by test_datasets' HTTP
server on 127.0.0.1. A tiny CIFAR-style set (60 records of the real format)
stands in for the real one: the table of expected digests and counts, and the
archive's MD5, are monkeypatched to it. The test on the real CIFAR-10 runs
where the data is (and fails in CI without it).
"""
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from zeronet import datasets
from zeronet.datasets import (DatasetError, RecordSet, download_cifar10, load_cifar10,
                              train_val_split)

from conftest import real_data_dir
from test_datasets import assert_mentions, closed_port_url
from test_datasets import server  # noqa: F401 - a fixture, used by name

FOLDER = "cifar-10-batches-bin"
ARCHIVE = "cifar-10-binary.tar.gz"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
RECORD_BYTES = 3073
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
META = ("\n".join(CLASSES) + "\n\n").encode()  # as in the archive: a blank line at the end
REAL_PARTS = dict(datasets.CIFAR10_PARTS)


# ---------------------------------------------------------------- a tiny CIFAR-10

def make_records(n_files, seed):
    """``(10 * n_files, 3073)`` uint8 records; each file's ten hold labels 0..9 once."""
    rng = np.random.default_rng(seed)
    records = rng.integers(0, 256, size=(10 * n_files, RECORD_BYTES), dtype=np.uint8)
    records[:, 0] = np.concatenate([rng.permutation(10) for _ in range(n_files)])
    return records


def record_digests(records):
    return [hashlib.sha256(record.tobytes()).digest() for record in records]


def set_digest(records):
    """SHA-256 over the sorted SHA-256 digests of the records (the published definition)."""
    return hashlib.sha256(b"".join(sorted(record_digests(records)))).hexdigest()


def canonical(records):
    """The records sorted by their SHA-256 digests."""
    digests = record_digests(records)
    return records[sorted(range(len(records)), key=digests.__getitem__)]


def use_records(monkeypatch, train, test):
    """Make the loader's table describe these records (10 a file)."""
    monkeypatch.setitem(datasets.CIFAR10_PARTS, "train",
                        RecordSet(TRAIN_FILES, 10, len(train) // 10, set_digest(train)))
    monkeypatch.setitem(datasets.CIFAR10_PARTS, "test",
                        RecordSet(("test_batch.bin",), 10, len(test) // 10, set_digest(test)))


@pytest.fixture
def tiny(monkeypatch):
    """50 training and 10 test records, and a table that expects them."""
    records = {"train": make_records(5, 1), "test": make_records(1, 2)}
    use_records(monkeypatch, records["train"], records["test"])
    return records


def batch_files(train, test):
    """``{name: content}`` of the seven files, 10 records a batch, in the given order."""
    files = {name: train[10 * k:10 * (k + 1)].tobytes() for k, name in enumerate(TRAIN_FILES)}
    files["test_batch.bin"] = test.tobytes()
    files["batches.meta.txt"] = META
    return files


def write_folder(root, files):
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


def tree(root):
    """Every path under ``root`` (hidden ones too), relative, sorted."""
    return sorted(str(path.relative_to(root)) for path in Path(root).rglob("*"))


def assert_same_dataset(a, b):
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)


# ---------------------------------------------------------------- archives

def regular(name, content):
    info = tarfile.TarInfo(name)
    info.size = len(content)
    return info, content


def special(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3  # /dev/null's numbers
    return info, b""


def archive_members(files):
    """The members of the published archive (its order): the folder, the data
    files, and a readme that the extractor skips."""
    members = [special(FOLDER, tarfile.DIRTYPE)]
    members += [regular(f"{FOLDER}/{name}", content) for name, content in files.items()]
    members.append(regular(f"{FOLDER}/readme.html", b"<meta HTTP-EQUIV=REFRESH>"))
    return members


def tar_gz(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, content in members:
            tar.addfile(info, io.BytesIO(content) if info.isreg() else None)
    return buffer.getvalue()


def trust_archive(monkeypatch, data):
    """Make ``data`` the archive whose MD5 the loader expects; return it."""
    monkeypatch.setattr(datasets, "CIFAR10_ARCHIVE_MD5", hashlib.md5(data).hexdigest())
    return data


def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the network must not be used here")
    monkeypatch.setattr(datasets.urllib.request, "urlopen", refuse)


# ---------------------------------------------------------------- reading a folder

def test_reads_a_folder_in_canonical_order(tmp_path, tiny):
    write_folder(tmp_path, batch_files(tiny["train"], tiny["test"]))
    data = load_cifar10(tmp_path, download=False)
    assert data.name == "cifar10" and data.classes == CLASSES
    for part, n in (("train", 50), ("test", 10)):
        x, y = getattr(data, f"x_{part}"), getattr(data, f"y_{part}")
        assert x.shape == (n, 3, 32, 32) and x.dtype == np.uint8 and x.flags.c_contiguous
        assert y.shape == (n,) and y.dtype == np.uint8
        expected = canonical(tiny[part])
        np.testing.assert_array_equal(y, expected[:, 0])
        np.testing.assert_array_equal(x.reshape(n, -1), expected[:, 1:])
    assert "x_train=uint8(50, 3, 32, 32)" in repr(data)


def test_record_layout_is_label_then_red_green_blue_rows(tmp_path, tiny, monkeypatch):
    # Krizhevsky's layout: a label byte, then 1024 red, 1024 green, 1024 blue
    # bytes, each channel row by row from the top: x[n, channel, row, column].
    train = tiny["train"].copy()
    marked = np.flatnonzero(train[:10, 0] == 7)[0]
    pixels = np.repeat(np.array([10, 20, 30], np.uint8), 1024)
    pixels[0 * 1024 + 1 * 32 + 2] = 99    # red, row 1, column 2
    pixels[2 * 1024 + 31 * 32 + 0] = 77   # blue, row 31, column 0
    train[marked, 1:] = pixels
    use_records(monkeypatch, train, tiny["test"])
    write_folder(tmp_path, batch_files(train, tiny["test"]))
    data = load_cifar10(tmp_path, download=False)
    found = np.flatnonzero((data.y_train == 7) & (data.x_train[:, 1] == 20).all(axis=(1, 2)))
    assert len(found) == 1
    image = data.x_train[found[0]].astype(int)
    assert image[0, 1, 2] == 99 and image[2, 31, 0] == 77
    assert image[0].sum() == 10 * 1023 + 99 and (image[1] == 20).all()
    assert image[2].sum() == 30 * 1023 + 77


def test_order_of_the_source_does_not_matter(tmp_path, tiny):
    # The same records, moved within and across files: the same arrays, so the
    # same validation split (and shuffling, and trained weights).
    rng = np.random.default_rng(5)
    write_folder(tmp_path / "official", batch_files(tiny["train"], tiny["test"]))
    write_folder(tmp_path / "reordered",
                 batch_files(tiny["train"][rng.permutation(50)], tiny["test"][::-1]))
    first = load_cifar10(tmp_path / "official", download=False)
    second = load_cifar10(tmp_path / "reordered", download=False)
    assert_same_dataset(first, second)
    (_, _), (x_val1, y_val1) = train_val_split(first.x_train, first.y_train, 5)
    (_, _), (x_val2, y_val2) = train_val_split(second.x_train, second.y_train, 5)
    np.testing.assert_array_equal(x_val1, x_val2)
    np.testing.assert_array_equal(y_val1, y_val2)


def change_byte(path, offset, new):
    content = bytearray(path.read_bytes())
    content[offset] = new(content[offset])
    path.write_bytes(bytes(content))


@pytest.mark.parametrize("name, offset, new, words", [
    ("data_batch_3.bin", 4 * RECORD_BYTES + 1 + 2000, lambda b: b ^ 1,
     ["train batches", "data_batch_1.bin, data_batch_2.bin", "sorted record digests"]),
    ("test_batch.bin", 10 * RECORD_BYTES - 1, lambda b: b ^ 0x80,
     ["test batches", "test_batch.bin", "sorted record digests"]),
    ("data_batch_1.bin", 0, lambda b: (b + 1) % 10, ["train batches", "images of class"]),
    ("data_batch_5.bin", 3 * RECORD_BYTES, lambda b: 0xFF,
     ["data_batch_5.bin", "labels above 9", "record 3", "255"]),
], ids=["pixel", "last byte", "label", "label 255"])
def test_one_changed_byte_fails(tmp_path, tiny, name, offset, new, words):
    folder = write_folder(tmp_path, batch_files(tiny["train"], tiny["test"]))
    change_byte(folder / name, offset, new)
    with pytest.raises(DatasetError) as excinfo:
        load_cifar10(tmp_path, download=False)
    assert_mentions(excinfo, str(folder), *words, f"Delete {folder}", "download=True")


def test_swapped_labels_are_caught_by_the_digest(tmp_path, tiny):
    # The class counts stay right; only the digest can tell.
    folder = write_folder(tmp_path, batch_files(tiny["train"], tiny["test"]))
    path = folder / "data_batch_2.bin"
    content = bytearray(path.read_bytes())
    content[0], content[RECORD_BYTES] = content[RECORD_BYTES], content[0]
    assert content[0] != content[RECORD_BYTES]
    path.write_bytes(bytes(content))
    with pytest.raises(DatasetError) as excinfo:
        load_cifar10(tmp_path, download=True, progress=False)  # present: no download
    assert_mentions(excinfo, "train batches", "sorted record digests",
                    f"Delete {folder}", "next load_cifar10() extracts it again")


@pytest.mark.parametrize("size, words", [
    (10 * RECORD_BYTES - 100, ["not a whole number of records", "truncated"]),
    (9 * RECORD_BYTES, ["(9 records)", "truncated"]),
    (11 * RECORD_BYTES, ["(11 records)", "too long"]),
    (0, ["0 bytes", "truncated"]),
])
def test_wrong_file_size_names_the_file(tmp_path, tiny, size, words):
    files = batch_files(tiny["train"], tiny["test"])
    files["data_batch_2.bin"] = (files["data_batch_2.bin"] + bytes(RECORD_BYTES))[:size]
    folder = write_folder(tmp_path, files)
    with pytest.raises(DatasetError) as excinfo:
        load_cifar10(tmp_path, download=False)
    assert_mentions(excinfo, str(folder / "data_batch_2.bin"), f"{size} bytes",
                    "expected 30730", *words)


def test_missing_files_without_download(tmp_path, tiny, monkeypatch):
    no_network(monkeypatch)
    folder = write_folder(tmp_path, batch_files(tiny["train"], tiny["test"]))
    (folder / "data_batch_4.bin").unlink()
    (folder / "batches.meta.txt").unlink()
    before = tree(tmp_path)
    with pytest.raises(DatasetError) as excinfo:
        load_cifar10(tmp_path, download=False)
    assert_mentions(excinfo, str(folder), "data_batch_4.bin", "batches.meta.txt",
                    "download=True", f"https://www.cs.toronto.edu/~kriz/{ARCHIVE}",
                    "ZERONET_DATA")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("meta, words", [
    (META.replace(b"cat", b"kat"), ["names the classes", "'kat'"]),
    (META[:-20], ["names the classes"]),
    (b"\xff\xfe" + META, ["not ASCII"]),
    (META * 30, ["more than 1024 bytes"]),
])
def test_class_names_are_checked(tmp_path, tiny, meta, words):
    files = batch_files(tiny["train"], tiny["test"])
    files["batches.meta.txt"] = meta
    folder = write_folder(tmp_path, files)
    with pytest.raises(DatasetError) as excinfo:
        load_cifar10(tmp_path, download=False)
    assert_mentions(excinfo, str(folder / "batches.meta.txt"), *words)


def test_the_real_table_refuses_the_tiny_set(tmp_path, tiny, monkeypatch):
    # Without the test's table the loader checks against CIFAR-10's own.
    monkeypatch.setattr(datasets, "CIFAR10_PARTS", REAL_PARTS)
    write_folder(tmp_path, batch_files(tiny["train"], tiny["test"]))
    with pytest.raises(DatasetError) as excinfo:
        load_cifar10(tmp_path, download=False)
    assert_mentions(excinfo, "data_batch_1.bin", "expected 30730000", "(10 records)")


def test_canonical_order_is_a_sort_by_record_digest():
    records = make_records(3, 9)
    order, digest = datasets._canonical_order(records)
    np.testing.assert_array_equal(records[order], canonical(records))
    assert digest == set_digest(records)
    shuffled = records[np.random.default_rng(0).permutation(len(records))]
    reorder, redigest = datasets._canonical_order(shuffled)
    np.testing.assert_array_equal(shuffled[reorder], records[order])
    assert redigest == digest


# ---------------------------------------------------------------- download and extraction

@pytest.fixture
def archive(tiny, monkeypatch):
    """The tiny set as a trusted cifar-10-binary.tar.gz; returns (bytes, files)."""
    files = batch_files(tiny["train"], tiny["test"])
    return trust_archive(monkeypatch, tar_gz(archive_members(files))), files


def expected_tree():
    return sorted([ARCHIVE, FOLDER] + [f"{FOLDER}/{name}" for name in
                                       (*TRAIN_FILES, "test_batch.bin", "batches.meta.txt")])


def test_download_extract_and_load(tmp_path, server, archive, monkeypatch):
    data, files = archive
    server.routes[f"/kriz/{ARCHIVE}"] = ("ok", data)
    monkeypatch.setattr(datasets, "CIFAR10_MIRRORS", [f"{server.url}/kriz/"])
    loaded = load_cifar10(tmp_path, timeout=5, progress=False)
    assert tree(tmp_path) == expected_tree()  # no readme.html, no temporaries
    for name, content in files.items():
        assert (tmp_path / FOLDER / name).read_bytes() == content
    write_folder(tmp_path / "direct", files)
    assert_same_dataset(loaded, load_cifar10(tmp_path / "direct", download=False))

    # Everything is there now: nothing is downloaded again.
    server.requests.clear()
    load_cifar10(tmp_path, mirrors=[f"{server.url}/kriz/"], timeout=5, progress=False)
    assert server.requests == []


def test_an_archive_in_place_is_extracted_without_network(tmp_path, archive, monkeypatch):
    no_network(monkeypatch)
    (tmp_path / ARCHIVE).write_bytes(archive[0])
    assert download_cifar10(tmp_path, progress=False) == tmp_path / FOLDER
    assert tree(tmp_path) == expected_tree()
    load_cifar10(tmp_path, progress=False)


def test_an_incomplete_folder_is_extracted_again_whole(tmp_path, tiny, archive, monkeypatch):
    # A partial copy may order its records differently from the archive, so
    # the archive's seven files replace all of it.
    no_network(monkeypatch)
    data, files = archive
    rng = np.random.default_rng(3)
    folder = write_folder(tmp_path, batch_files(tiny["train"][rng.permutation(50)],
                                                tiny["test"]))
    (folder / "data_batch_2.bin").unlink()
    (tmp_path / ARCHIVE).write_bytes(data)
    load_cifar10(tmp_path, progress=False)
    for name, content in files.items():
        assert (folder / name).read_bytes() == content
    assert tree(tmp_path) == expected_tree()


def test_corrupt_download_is_refused_then_the_next_mirror_used(tmp_path, server, archive):
    data, _ = archive
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 1
    server.routes[f"/bad/{ARCHIVE}"] = ("ok", bytes(flipped))
    server.routes[f"/good/{ARCHIVE}"] = ("ok", data)
    with pytest.raises(DatasetError) as excinfo:
        load_cifar10(tmp_path, mirrors=[f"{server.url}/bad/"], timeout=5, progress=False)
    assert_mentions(excinfo, f"{server.url}/bad/{ARCHIVE}", "MD5 mismatch", "by hand",
                    str(tmp_path / ARCHIVE), "ZERONET_DATA")
    assert tree(tmp_path) == []

    load_cifar10(tmp_path, mirrors=[f"{server.url}/bad/", f"{server.url}/good/"],
                 timeout=5, progress=False)
    assert tree(tmp_path) == expected_tree()


def test_a_corrupt_archive_in_place_is_refused(tmp_path, archive, monkeypatch):
    no_network(monkeypatch)
    (tmp_path / ARCHIVE).write_bytes(archive[0][:-10])
    with pytest.raises(DatasetError) as excinfo:
        load_cifar10(tmp_path, progress=False)
    assert_mentions(excinfo, str(tmp_path / ARCHIVE), "MD5 mismatch",
                    f"Delete {tmp_path / ARCHIVE}")
    assert tree(tmp_path) == [ARCHIVE]


def test_a_download_larger_than_cifar10_is_refused(tmp_path, server, archive):
    limit = 6 * 10 * RECORD_BYTES + 1024 + (1 << 20)
    server.routes[f"/big/{ARCHIVE}"] = ("ok", bytes(limit + 1))
    with pytest.raises(DatasetError) as excinfo:
        load_cifar10(tmp_path, mirrors=[f"{server.url}/big/"], timeout=5, progress=False)
    assert_mentions(excinfo, f"announces {limit + 1} bytes, more than the {limit}")
    assert tree(tmp_path) == []


def hostile_member(kind, files, outside):
    """One member an extractor must refuse, with words its error must contain."""
    batch = files["data_batch_1.bin"]
    if kind == "absolute path":
        return [regular(str(outside / "data_batch_1.bin"), batch)], ["absolute path"]
    if kind == "dot-dot":
        return [regular(f"{FOLDER}/../../outside/data_batch_1.bin", batch)], ["'..'"]
    if kind == "dot-dot at the top":
        return [regular("../outside/readme.html", b"hello")], ["'..'"]
    if kind == "symlink":
        return ([special(f"{FOLDER}/data_batch_3.bin", tarfile.SYMTYPE, "/etc/passwd")],
                ["symbolic link", "/etc/passwd"])
    if kind == "hardlink":
        return ([special(f"{FOLDER}/data_batch_3.bin", tarfile.LNKTYPE, "/etc/passwd")],
                ["hard link", "/etc/passwd"])
    if kind == "character device":
        return [special(f"{FOLDER}/test_batch.bin", tarfile.CHRTYPE)], ["is a device"]
    if kind == "block device":
        return [special(f"{FOLDER}/sda", tarfile.BLKTYPE)], ["is a device"]
    if kind == "fifo":
        return [special(f"{FOLDER}/data_batch_4.bin", tarfile.FIFOTYPE)], ["named pipe"]
    if kind == "oversize":
        return ([regular(f"{FOLDER}/readme.html", bytes(len(batch) + 1))],
                [f"{len(batch) + 1} bytes, more than the largest file"])
    if kind == "short batch":
        return ([regular(f"{FOLDER}/data_batch_5.bin", batch[:-RECORD_BYTES])],
                [f"has {len(batch) - RECORD_BYTES} bytes, expected {len(batch)}"])
    if kind == "oversize class names":
        return ([regular(f"{FOLDER}/batches.meta.txt", META * 30)],
                ["batches.meta.txt has", "expected at most 1024"])
    if kind == "duplicate":
        return [regular(f"./{FOLDER}/data_batch_1.bin", batch)], ["appears twice"]
    if kind == "too many members":
        return ([regular(f"{FOLDER}/extra{i}.txt", b"x") for i in range(40)],
                ["more than 32 members"])
    raise AssertionError(kind)


HOSTILE = ["absolute path", "dot-dot", "dot-dot at the top", "symlink", "hardlink",
           "character device", "block device", "fifo", "oversize", "short batch",
           "oversize class names", "duplicate", "too many members"]


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_archive_is_refused_and_nothing_written(tmp_path, server, tiny, monkeypatch,
                                                        kind):
    files = batch_files(tiny["train"], tiny["test"])
    root, outside = tmp_path / "data", tmp_path / "outside"
    members = archive_members(files)
    extra, words = hostile_member(kind, files, outside)
    # After two good data files, so that their temporaries exist when it is refused.
    members[3:3] = extra
    data = trust_archive(monkeypatch, tar_gz(members))
    server.routes[f"/evil/{ARCHIVE}"] = ("ok", data)
    with pytest.raises(DatasetError) as excinfo:
        load_cifar10(root, mirrors=[f"{server.url}/evil/"], timeout=5, progress=False)
    assert_mentions(excinfo, str(root / ARCHIVE), "refused", *words)
    # Nothing but the downloaded archive: no data folder, no temporary, nothing outside.
    assert tree(tmp_path) == ["data", f"data/{ARCHIVE}"]


@pytest.mark.parametrize("damage, words", [
    (lambda data: data[:len(data) // 2], ["damaged or truncated"]),
    (lambda data: b"not a tar.gz at all", ["damaged or truncated"]),
])
def test_damaged_archive_with_a_matching_md5(tmp_path, archive, monkeypatch, damage, words):
    # Beyond the MD5 (which any damage fails first): tarfile's own errors.
    no_network(monkeypatch)
    data = trust_archive(monkeypatch, damage(archive[0]))
    (tmp_path / ARCHIVE).write_bytes(data)
    with pytest.raises(DatasetError) as excinfo:
        load_cifar10(tmp_path, progress=False)
    assert_mentions(excinfo, str(tmp_path / ARCHIVE), *words)
    assert tree(tmp_path) == [ARCHIVE]


def test_an_archive_lacking_a_file_is_refused(tmp_path, archive, monkeypatch):
    no_network(monkeypatch)
    files = dict(archive[1])
    del files["test_batch.bin"]
    (tmp_path / ARCHIVE).write_bytes(trust_archive(monkeypatch, tar_gz(archive_members(files))))
    with pytest.raises(DatasetError) as excinfo:
        load_cifar10(tmp_path, progress=False)
    assert_mentions(excinfo, "lacks", f"{FOLDER}/test_batch.bin")
    assert tree(tmp_path) == [ARCHIVE]


# ---------------------------------------------------------------- the real CIFAR-10

def channel_mean_std(images):
    """Per-channel mean and standard deviation of uint8 ``(N, 3, H, W)`` images,
    exactly, from histograms (no float copy of the images)."""
    values = np.arange(256, dtype=np.float64)
    stats = []
    for channel in range(images.shape[1]):
        counts = np.bincount(images[:, channel].ravel(), minlength=256)
        mean = counts @ values / counts.sum()
        stats.append((mean, np.sqrt(counts @ (values - mean) ** 2 / counts.sum())))
    return np.array(stats).T


def test_real_cifar10():
    root = real_data_dir(FOLDER)
    data = load_cifar10(root, download=False)
    assert data.name == "cifar10" and data.classes == CLASSES
    assert data.x_train.shape == (50000, 3, 32, 32) and data.x_train.dtype == np.uint8
    assert data.y_train.shape == (50000,) and data.y_train.dtype == np.uint8
    assert data.x_test.shape == (10000, 3, 32, 32) and data.x_test.dtype == np.uint8
    assert data.y_test.shape == (10000,) and data.y_test.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(data.y_train, minlength=10), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(data.y_test, minlength=10), [1000] * 10)

    # The published statistics (pixels scaled to [0, 1], rounded to 4 places).
    mean, std = channel_mean_std(data.x_train) / 255
    np.testing.assert_allclose(mean, [0.4914, 0.4822, 0.4465], atol=6e-5)
    np.testing.assert_allclose(std, [0.2470, 0.2435, 0.2616], atol=6e-5)
    test_mean, _ = channel_mean_std(data.x_test) / 255
    np.testing.assert_allclose(test_mean, [0.4942, 0.4851, 0.4504], atol=6e-5)

    # The canonical order is part of what results depend on: pinned.
    assert hashlib.sha256(data.y_train.tobytes()).hexdigest() == \
        "00df8d9a5221ae5cc0da3a3ea1bc694f794fb8c2b049a62fda892a609161411a"
    (x_tr, _), (x_val, y_val) = train_val_split(data.x_train, data.y_train, 5000)
    assert x_tr.shape == (45000, 3, 32, 32) and x_val.shape == (5000, 3, 32, 32)
    assert hashlib.sha256(x_val.tobytes()).hexdigest() == \
        "c4a9ce5905146d8884b15bd8c613057d4bb70eb62a1323447f2b07cfdcaf0608"

    again = load_cifar10(root, download=False)
    assert_same_dataset(data, again)
