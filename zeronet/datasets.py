"""Datasets: find them on disk, download them if missing, check them, load them.

Today this module loads MNIST; CIFAR-10 will join it (see the end of the file)
and reuse everything in the "shared" section.

Where the data lives (:func:`resolve_data_dir`), in this order:

1. the ``data_dir`` argument,
2. the ``ZERONET_DATA`` environment variable,
3. the ``data/`` folder at the top of the zeronet repository (git-ignored).

Each dataset has its own subfolder, e.g. ``<data_dir>/mnist/``.

Nothing is trusted blindly. Every file is checked for its structure (an IDX
header that matches the file's length) and for its SHA-256, so a truncated
download or a wrong file raises :class:`DatasetError` instead of quietly
training a network on garbage. The SHA-256 is taken over the *decompressed*
content, because the same MNIST data is distributed in differently compressed
``.gz`` files. Checking costs little next to decompressing (about 0.03 s of
hashing against 0.25 s of gunzip for the 47 MB training images), so it is done
on every load and nothing is ever written next to the data to remember it:
the data folder may be read-only.

Example
-------
>>> from zeronet.datasets import load_mnist, train_val_split
>>> mnist = load_mnist()                      # downloads once, if needed
>>> (x_train, y_train), (x_val, y_val) = train_val_split(
...     mnist.x_train, mnist.y_train, n_val=10_000)
>>> x_train.shape, x_val.shape
((50000, 28, 28), (10000, 28, 28))
"""
import gzip
import hashlib
import http.client
import math
import os
import socket
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

__all__ = [
    "DatasetError", "Dataset", "resolve_data_dir", "read_idx", "download_file",
    "download_mnist", "load_mnist", "train_val_split", "MNIST_FILES", "MNIST_MIRRORS",
    "MNIST_PARTS",
]

# --------------------------------------------------------------------------
# Shared by every dataset
# --------------------------------------------------------------------------

# The repository's own data folder: zeronet/datasets.py -> zeronet/ -> repo/.
DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / "data"

DATA_DIR_ENV = "ZERONET_DATA"

# Some servers turn away urllib's default "Python-urllib/3.x" agent.
USER_AGENT = "zeronet-datasets/0.1 (Python urllib)"

CHUNK_BYTES = 1 << 16


class DatasetError(ValueError):
    """A dataset file is missing, damaged, the wrong file, or cannot be downloaded.

    The message always names the file (or URL) and says what is wrong with it.
    """


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays with == is ambiguous
class Dataset:
    """The images and labels of one dataset, split the way its authors published it.

    Attributes
    ----------
    name : str
        ``"mnist"`` (later also ``"cifar10"``).
    x_train : numpy.ndarray of uint8
        Training images, pixels 0..255. MNIST: ``(60000, 28, 28)``.
    y_train : numpy.ndarray of uint8
        Training labels ``(N,)``, class indices ``0 .. len(classes) - 1``.
        (The book calls the labels ``t``, for "teacher"; here they are ``y``.)
    x_test, y_test : numpy.ndarray of uint8
        The test set, same layout. MNIST: ``(10000, 28, 28)`` and ``(10000,)``.
        Keep it for the final reported numbers; choose hyperparameters on a
        split of the training set (:func:`train_val_split`).
    classes : tuple of str
        ``classes[k]`` names label ``k``.

    A part that was not loaded (``load_mnist(parts=("test",))``) has None
    for its two arrays.

    Notes
    -----
    The arrays are raw bytes, as stored. A network wants floats and a channel
    axis, e.g. ``x = mnist.x_train[:, None].astype(np.float32) / 255`` gives
    ``(N, 1, 28, 28)`` float32 in ``[0, 1]``.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple

    def __repr__(self):
        # The default repr would print four large arrays; shapes say enough.
        def describe(a):
            return f"{a.dtype}{a.shape}"
        return (f"Dataset(name={self.name!r}, x_train={describe(self.x_train)}, "
                f"y_train={describe(self.y_train)}, x_test={describe(self.x_test)}, "
                f"y_test={describe(self.y_test)}, classes={len(self.classes)})")


def resolve_data_dir(data_dir=None):
    """Return the folder that holds the datasets (it need not exist yet).

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Used as given when not None.

    Returns
    -------
    pathlib.Path
        ``data_dir`` if given, else ``$ZERONET_DATA`` if set and not empty,
        else the repository's ``data/`` folder. ``~`` is expanded; a relative
        path is relative to the current working directory.

    Notes
    -----
    The last fallback assumes zeronet runs from its source tree (``pip install
    -e .``). An installed copy has no repository around it: set
    ``ZERONET_DATA`` there.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV, "")
    if from_env:
        return Path(from_env).expanduser()
    return DEFAULT_DATA_DIR


def train_val_split(x, y, n_val):
    """Split off the *last* ``n_val`` examples of a training set for validation.

    A fixed split (not a random one) means every run, and every reader of the
    book, validates on the same examples. For MNIST the usual choice is the
    last 10,000 training images; for CIFAR-10 the last 5,000.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, ...)
    y : numpy.ndarray, shape (N,)
    n_val : int
        Number of validation examples, ``0 < n_val < N``.

    Returns
    -------
    (x_train, y_train), (x_val, y_val)
        Shapes ``(N - n_val, ...)``, ``(N - n_val,)``, ``(n_val, ...)``,
        ``(n_val,)``. These are views of ``x`` and ``y`` (no copy): writing
        into them writes into the originals.
    """
    n = len(x)
    if len(y) != n:
        raise ValueError(f"x and y must have the same length, got {n} and {len(y)}")
    if isinstance(n_val, bool) or not isinstance(n_val, (int, np.integer)):
        raise TypeError(f"n_val must be an int, got {n_val!r}")
    if not 0 < n_val < n:
        raise ValueError(f"n_val must be between 1 and {n - 1} (N={n}), got {n_val}")
    cut = n - n_val
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _umask():
    """The process's umask. os.umask is the only portable way to read it, and
    it can only read it by setting it, so the old value is put straight back
    (0o022 in between, the common default, in case another thread creates a
    file at that moment)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _make_readable(path):
    """Give ``path`` the permissions an ordinary new file gets: ``0o666`` less
    the umask (rw-r--r-- usually). mkstemp creates files as ``0o600``, which
    would hide a shared data folder's downloads from other users."""
    try:
        os.chmod(path, 0o666 & ~_umask())
    except OSError:
        pass  # some file systems (FAT, network shares) keep no such bits: harmless


def _describe_failure(exc, timeout, tmp):
    """One short line saying why a download attempt failed (``tmp``: the temporary file)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        if isinstance(exc.reason, (socket.timeout, TimeoutError)):
            return f"no answer within {timeout} s"
        return f"cannot connect ({exc.reason})"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no data within {timeout} s"
    if isinstance(exc, DatasetError):
        # The check names the temporary file, which is deleted by now; the
        # URL in front of this line says where the bad data came from.
        return str(exc).replace(f"{tmp}: ", "")
    return f"{type(exc).__name__}: {exc}"


def _fetch(url, out, *, timeout, progress, desc):
    """Stream ``url`` into the open binary file ``out``, with a progress bar."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=desc, disable=not progress) as bar:
            while True:
                chunk = response.read(CHUNK_BYTES)
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    # http.client reports a connection that closes early as a plain end of
    # data, so compare with the announced length ourselves.
    if total is not None and received != total:
        raise DatasetError(
            f"connection closed after {received} of {total} bytes (incomplete download)")


def download_file(urls, dest, verify, *, timeout=30.0, progress=True):
    """Download one file, trying ``urls`` in turn, and keep it only if it checks out.

    Each attempt streams into a temporary file in ``dest``'s folder (the
    name starts with ``.part-`` and ends with ``dest``'s name, so its suffix
    is the same), runs ``verify`` on it, and only then renames it to ``dest``
    with ``os.replace``, which is atomic: ``dest`` either does not exist or is
    complete and checked. The data is flushed to disk before the rename, so
    a crash cannot leave ``dest`` in place but empty, and ``dest`` gets the
    permissions of any new file (``0o666`` less the umask), not the private
    ``0o600`` of a temporary one. The temporary file is removed whatever
    happens.

    Parameters
    ----------
    urls : sequence of str
        Where to get the file from, tried in order until one succeeds.
    dest : str or os.PathLike
        The final path. Its folder is created if needed.
    verify : callable
        ``verify(path)`` raises :class:`DatasetError` if the downloaded file
        at ``path`` is not the expected one; that counts as a failed mirror.
    timeout : float
        Seconds to wait for a connection or for the next piece of data (not
        for the whole download).
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    DatasetError
        If every URL failed: the message lists each URL with the reason, and
        says where to put a copy downloaded by hand.
    """
    dest = Path(dest)
    urls = list(urls)
    if not urls:
        raise DatasetError(f"no URLs to download {dest.name} from")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create the folder {dest.parent} to download "
                           f"{dest.name} into: {exc}") from exc

    failures = []
    for url in urls:
        try:
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".part-",
                                            suffix="-" + dest.name)
        except OSError as exc:
            # Not the mirror's fault: no other mirror will do better.
            raise DatasetError(f"cannot write into {dest.parent}: {exc}") from exc
        tmp = Path(tmp_name)
        try:
            try:
                with os.fdopen(fd, "wb") as out:
                    _fetch(url, out, timeout=timeout, progress=progress, desc=dest.name)
                    # Without this the rename below can reach the disk before
                    # the data does, and a crash leaves an empty dest behind.
                    out.flush()
                    os.fsync(out.fileno())
                verify(tmp)
            except (OSError, http.client.HTTPException, DatasetError) as exc:
                # OSError covers refused connections, timeouts and HTTP errors
                # (urllib's URLError is an OSError).
                failures.append(f"  - {url}: {_describe_failure(exc, timeout, tmp)}")
                continue
            _make_readable(tmp)
            os.replace(tmp, dest)
            return dest
        finally:
            tmp.unlink(missing_ok=True)  # already gone after a successful os.replace

    raise DatasetError(
        f"could not download {dest.name}; every URL failed:\n" + "\n".join(failures)
        + f"\nDownload the file by hand (from one of the URLs above or another "
          f"mirror) and save it as\n  {dest}")


# --------------------------------------------------------------------------
# IDX files (the format MNIST is published in)
# --------------------------------------------------------------------------

# The IDX header: 2 zero bytes, 1 byte for the element type, 1 byte for the
# number of dimensions, then each dimension as a big-endian uint32.
# MNIST's labels start 00 00 08 01 (ubyte, 1-D), its images 00 00 08 03.
IDX_UBYTE = 0x08
IDX_TYPE_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16",
                  0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}
GZIP_MAGIC = b"\x1f\x8b"


def _read_content(path):
    """The file's bytes, gunzipped if its name ends in ``.gz``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the file ({exc})") from exc
    if path.suffix != ".gz":
        if raw[:2] == GZIP_MAGIC:
            raise DatasetError(f"{path}: the content is gzip-compressed but the name does "
                               "not end in .gz; rename it to end in .gz")
        return raw
    if raw[:2] != GZIP_MAGIC:
        raise DatasetError(f"{path}: the name ends in .gz but the file is not gzip "
                           f"(it starts with {raw[:4].hex(' ') or 'nothing: it is empty'})")
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        # EOFError: the compressed stream stops early (truncated download);
        # OSError (BadGzipFile) and zlib.error: damaged data or CRC mismatch.
        raise DatasetError(f"{path}: the gzip data is damaged or truncated "
                           f"({type(exc).__name__}: {exc})") from exc


def _parse_idx(content, path):
    """Check an IDX header against the content's length; return the array."""
    where = "decompressed content" if path.suffix == ".gz" else "file"
    if len(content) < 4:
        raise DatasetError(f"{path}: the {where} has {len(content)} bytes, too short "
                           "for the 4-byte IDX magic number (truncated or empty)")
    zero0, zero1, type_code, ndim = content[:4]
    magic = int.from_bytes(content[:4], "big")
    if zero0 != 0 or zero1 != 0:
        raise DatasetError(f"{path}: not an IDX file: magic number 0x{magic:08X}, expected "
                           "0x00000801 (labels) or 0x00000803 (images)")
    if type_code != IDX_UBYTE:
        kind = IDX_TYPE_NAMES.get(type_code, "an unknown type")
        raise DatasetError(f"{path}: magic number 0x{magic:08X} says the elements are "
                           f"{kind} (type byte 0x{type_code:02X}); only unsigned bytes "
                           "(0x08) are supported")
    if ndim == 0:
        raise DatasetError(f"{path}: magic number 0x{magic:08X} declares 0 dimensions")
    header_bytes = 4 + 4 * ndim
    if len(content) < header_bytes:
        raise DatasetError(f"{path}: truncated inside the header: {ndim} dimensions need "
                           f"{header_bytes} header bytes, the {where} has {len(content)}")
    dims = struct.unpack(f">{ndim}I", content[4:header_bytes])
    count = math.prod(dims)
    expected = header_bytes + count
    if len(content) < expected:
        raise DatasetError(f"{path}: truncated: the header declares shape {dims}, which "
                           f"needs {expected} bytes, but the {where} has only {len(content)}")
    if len(content) > expected:
        raise DatasetError(f"{path}: {len(content) - expected} unexpected bytes after the "
                           f"data: the header declares shape {dims} ({expected} bytes), the "
                           f"{where} has {len(content)}")
    # frombuffer would give a read-only view of `content`; copy so the caller
    # owns an ordinary, writable array.
    return np.frombuffer(content, dtype=np.uint8, count=count,
                         offset=header_bytes).reshape(dims).copy()


def read_idx(path, *, shape=None, sha256=None):
    """Read an IDX file of unsigned bytes, plain or gzip-compressed.

    Whether the file is gunzipped is decided by its name: ``*.gz`` must be
    gzip, anything else must be raw IDX.

    Parameters
    ----------
    path : str or os.PathLike
    shape : tuple of int, optional
        If given, the array must have exactly this shape (catches e.g. a
        labels file given where images were expected).
    sha256 : str, optional
        If given, the SHA-256 hex digest the (decompressed) IDX content must have.

    Returns
    -------
    numpy.ndarray of uint8
        Shape as declared in the header: ``(N,)`` for labels, ``(N, H, W)``
        for images. A fresh, writable array.

    Raises
    ------
    DatasetError
        The file cannot be read, is not (valid) gzip, is not IDX of unsigned
        bytes, is shorter or longer than its header says, has another shape
        than ``shape``, or another checksum than ``sha256``. The message names
        the file.
    """
    path = Path(path)
    content = _read_content(path)
    array = _parse_idx(content, path)
    if shape is not None and array.shape != tuple(shape):
        raise DatasetError(f"{path}: the file holds an array of shape {array.shape}, expected "
                           f"{tuple(shape)}; is it the right file?")
    if sha256 is not None:
        actual = _sha256(content)
        if actual != sha256.lower():
            raise DatasetError(f"{path}: SHA-256 mismatch of the "
                               f"{'decompressed ' if path.suffix == '.gz' else ''}content: "
                               f"expected {sha256}, got {actual}; the file is damaged or "
                               "not the expected one")
    return array


# --------------------------------------------------------------------------
# MNIST: 60,000 training and 10,000 test images of handwritten digits, 28x28
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class IdxFile:
    """One published IDX file: its name without ``.gz``, shape and checksum."""

    name: str
    shape: tuple
    sha256: str  # of the decompressed IDX content


# Keys are the Dataset attributes the arrays become. The checksums are those
# of the canonical files (and of every faithful mirror, however compressed).
MNIST_FILES = {
    "x_train": IdxFile("train-images-idx3-ubyte", (60000, 28, 28),
                       "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "y_train": IdxFile("train-labels-idx1-ubyte", (60000,),
                       "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "x_test": IdxFile("t10k-images-idx3-ubyte", (10000, 28, 28),
                      "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "y_test": IdxFile("t10k-labels-idx1-ubyte", (10000,),
                      "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}

# Tried in this order; each serves the four files as <mirror><name>.gz.
# The original site comes last: it has been refusing automated downloads.
MNIST_MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]

MNIST_CLASSES = tuple(str(digit) for digit in range(10))


MNIST_PARTS = ("train", "test")


def _mnist_files(parts):
    """The entries of MNIST_FILES for ``parts``, a sequence of "train"/"test"."""
    parts = tuple(parts)
    if not parts or any(part not in MNIST_PARTS for part in parts):
        raise ValueError(f"parts must be one or both of {MNIST_PARTS}, got {parts!r}")
    return {key: spec for key, spec in MNIST_FILES.items() if key.split("_")[1] in parts}


def _mnist_folder(data_dir):
    return resolve_data_dir(data_dir) / "mnist"


def _find_idx(folder, name):
    """The file for ``name`` in ``folder``: uncompressed first, else ``.gz``; or None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def download_mnist(data_dir=None, *, mirrors=None, timeout=30.0, progress=True,
                   parts=MNIST_PARTS):
    """Download whichever of the MNIST files of ``parts`` are missing.

    Files already present (``.gz`` or uncompressed) are left alone, so this
    writes nothing when the data is complete; the folder may then be
    read-only. Each download is verified (structure and SHA-256) before it
    is kept; see :func:`download_file`.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        See :func:`resolve_data_dir`; the files go into ``<data_dir>/mnist/``.
    mirrors : sequence of str, optional
        Base URLs, each ending in ``/``, tried in order. Default:
        :data:`MNIST_MIRRORS` (read when called, so it can be changed).
    timeout : float
        Seconds to wait for a connection or for the next piece of data.
    progress : bool
        Show a progress bar per file.
    parts : sequence of str
        ``("train", "test")`` (all four files), or one of them.

    Returns
    -------
    pathlib.Path
        The MNIST folder.
    """
    files = _mnist_files(parts)
    folder = _mnist_folder(data_dir)
    mirrors = MNIST_MIRRORS if mirrors is None else mirrors
    for spec in files.values():
        if _find_idx(folder, spec.name) is not None:
            continue
        filename = f"{spec.name}.gz"

        def verify(path, spec=spec):
            read_idx(path, shape=spec.shape, sha256=spec.sha256)

        try:
            download_file([mirror.rstrip("/") + "/" + filename for mirror in mirrors],
                          folder / filename, verify, timeout=timeout, progress=progress)
        except DatasetError as exc:
            raise DatasetError(
                f"{exc}\nOr, if you have MNIST elsewhere, set ${DATA_DIR_ENV} (or pass "
                "data_dir=) to a folder whose mnist/ subfolder holds the four files."
            ) from None  # the message above already says everything
    return folder


def load_mnist(data_dir=None, download=True, *, mirrors=None, timeout=30.0, progress=True,
               parts=MNIST_PARTS):
    """Load MNIST, checking every file, downloading missing ones if allowed.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        See :func:`resolve_data_dir`. The files are looked for in
        ``<data_dir>/mnist/`` under their canonical names
        (``train-images-idx3-ubyte.gz`` ...), compressed or not.
    download : bool
        Download missing files (see :func:`download_mnist`). If False, a
        missing file is an error and the network is never used.
    mirrors, timeout, progress
        Passed to :func:`download_mnist`.
    parts : sequence of str
        ``("train", "test")``, or only one: ``parts=("test",)`` reads (and
        downloads) just the two test files, e.g. to evaluate trained weights.

    Returns
    -------
    Dataset
        ``x_train (60000, 28, 28)``, ``y_train (60000,)``,
        ``x_test (10000, 28, 28)``, ``y_test (10000,)``, all uint8; pixels
        0..255 (0 is the background), labels 0..9; ``classes`` ``"0".."9"``.
        The arrays of a part not asked for are None.

    Raises
    ------
    DatasetError
        A file is missing (and ``download`` is False), cannot be downloaded,
        or fails a check: IDX structure, shape, SHA-256, labels in 0..9.
    """
    files = _mnist_files(parts)
    folder = _mnist_folder(data_dir)
    if download:
        download_mnist(data_dir, mirrors=mirrors, timeout=timeout, progress=progress,
                       parts=parts)

    paths = {key: _find_idx(folder, spec.name) for key, spec in files.items()}
    missing = [files[key].name for key, path in paths.items() if path is None]
    if missing:
        mirror = (MNIST_MIRRORS or ["<an MNIST mirror>/"])[0]
        raise DatasetError(
            f"MNIST files missing from {folder}: "
            + ", ".join(f"{name}.gz" for name in missing)
            + " (uncompressed copies without .gz would do too). Call "
              "load_mnist(download=True), or download them by hand, e.g. from "
            + f"{mirror.rstrip('/')}/{missing[0]}.gz, into that folder, or set "
              f"${DATA_DIR_ENV} to a folder that has mnist/ in it.")

    arrays = dict.fromkeys(MNIST_FILES)
    for key, spec in files.items():
        try:
            arrays[key] = read_idx(paths[key], shape=spec.shape, sha256=spec.sha256)
            # The checksums already pin the content down; this guards against a
            # checksum table edited by hand, and documents what labels look like.
            if key.startswith("y_") and arrays[key].size \
                    and arrays[key].max() >= len(MNIST_CLASSES):
                raise DatasetError(f"{paths[key]}: labels must be 0..9, found "
                                   f"{int(arrays[key].max())}")
        except DatasetError as exc:
            # A file already on disk is never downloaded again (see
            # download_mnist), so say how to get rid of a bad one.
            raise DatasetError(f"{exc}\n{_redownload_hint(paths[key], download)}") from None
    return Dataset(name="mnist", classes=MNIST_CLASSES, **arrays)


def _redownload_hint(path, download):
    """What to do about a local file that failed its checks."""
    if download:
        return f"Delete {path} and the next load_mnist() downloads it again."
    return (f"Delete {path} and load with download=True to download it again, "
            "or replace it with a good copy.")


# --------------------------------------------------------------------------
# CIFAR-10: to be added here, as load_cifar10(data_dir=None, download=True).
# It will read the binary batches from <data_dir>/cifar-10-batches-bin/ and
# reuse resolve_data_dir, download_file, DatasetError, Dataset and
# train_val_split from the shared section above.
# --------------------------------------------------------------------------
