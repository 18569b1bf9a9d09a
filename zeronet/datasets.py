"""Datasets: find them on disk, download them if missing, check them, load them.

MNIST (:func:`load_mnist`) and CIFAR-10 (:func:`load_cifar10`), both as
uint8 arrays in a :class:`Dataset`, sharing what is in the "shared" section.

Where the data lives (:func:`resolve_data_dir`), in this order:

1. the ``data_dir`` argument,
2. the ``ZERONET_DATA`` environment variable,
3. the ``data/`` folder at the top of the zeronet repository (git-ignored).

Each dataset has its own subfolder: ``<data_dir>/mnist/``,
``<data_dir>/cifar-10-batches-bin/``.

Nothing is trusted blindly: every file is checked on every load, so a
truncated download or a wrong file raises :class:`DatasetError` instead of
quietly training a network on garbage, and nothing is ever written next to
the data to remember a check (the data folder may be read-only). The checks
hold for every faithful copy, however it is packed:

- MNIST: the IDX structure, and the SHA-256 of the *decompressed* content
  (the same data is distributed in differently compressed ``.gz`` files).
  Decompression stops where the IDX header says the data ends, so a gzip
  bomb costs nothing.
- CIFAR-10: file sizes, labels, per-class counts, and a digest over the
  *sorted* digests of the records (copies differ in the order of the
  records). The records are then put in a canonical order, so that results
  do not depend on which copy was loaded.

Downloads are written to a temporary file and renamed once complete and
checked; CIFAR-10's archive is extracted without trusting its member names.

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
import stat
import struct
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

__all__ = [
    "DatasetError", "Dataset", "resolve_data_dir", "read_idx", "IDX_MAX_BYTES", "download_file",
    "download_mnist", "load_mnist", "train_val_split", "MNIST_FILES", "MNIST_MIRRORS",
    "MNIST_PARTS", "download_cifar10", "load_cifar10", "RecordSet", "CIFAR10_PARTS",
    "CIFAR10_CLASSES", "CIFAR10_MIRRORS",
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
        ``"mnist"`` or ``"cifar10"``.
    x_train : numpy.ndarray of uint8
        Training images, pixels 0..255. MNIST: ``(60000, 28, 28)``;
        CIFAR-10: ``(50000, 3, 32, 32)``, i.e. ``(N, C, H, W)`` with the
        channels red, green, blue.
    y_train : numpy.ndarray of uint8
        Training labels ``(N,)``, class indices ``0 .. len(classes) - 1``.
        (The book calls the labels ``t``, for "teacher"; here they are ``y``.)
    x_test, y_test : numpy.ndarray of uint8
        The test set, same layout. MNIST: ``(10000, 28, 28)`` and ``(10000,)``;
        CIFAR-10: ``(10000, 3, 32, 32)`` and ``(10000,)``.
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
    ``(N, 1, 28, 28)`` float32 in ``[0, 1]``. Convert a batch at a time where
    the set is large: CIFAR-10's training images take 150 MB as bytes, 600 MB
    as float32.
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


def _open_regular(path):
    """Open ``path`` for binary reading if it is a regular file.

    Anything else is refused before a byte is read: reading a named pipe
    blocks until some other process writes to it, and a device can be
    endless. The file is opened without blocking (a pipe's open would wait
    for a writer) and checked with fstat, so the check and the read concern
    the same file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the file ({exc})") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DatasetError(f"{path}: not a regular file (a folder, pipe or device?)")
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


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


def _temporary_for(dest):
    """A new, empty temporary file next to ``dest``, for writing ``dest``'s
    content before it is complete: ``(file descriptor, path)``.

    The name starts with ``.part-`` and ends with ``dest``'s name (so its
    suffix is the same); mkstemp creates it exclusively with an unpredictable
    name, so no file or link planted there is followed.
    """
    try:
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=".part-", suffix="-" + dest.name)
    except OSError as exc:
        raise DatasetError(f"cannot write into {dest.parent}: {exc}") from exc
    return fd, Path(name)


def _publish(tmp, dest):
    """Give the complete temporary ``tmp`` its final name ``dest``, atomically
    (``dest`` is either absent, the old file, or the complete new one)."""
    _make_readable(tmp)
    os.replace(tmp, dest)


def _mirror_urls(mirrors, filename):
    """``<mirror>/<filename>`` for each base URL (with or without its final ``/``)."""
    return [mirror.rstrip("/") + "/" + filename for mirror in mirrors]


def _elsewhere_hint(dataset, subfolder, what):
    """The last line of a failed download's message: how to use a copy the user has."""
    return (f"Or, if you have {dataset} elsewhere, set ${DATA_DIR_ENV} (or pass data_dir=) "
            f"to a folder whose {subfolder}/ subfolder holds {what}.")


def _redownload_hint(path, download, loader, how="downloads it again"):
    """What to do about a local file (or folder) that failed its checks: files
    on disk are never downloaded again, so the bad one must go first."""
    if download:
        return f"Delete {path} and the next {loader}() {how}."
    return (f"Delete {path} and load with download=True to download it again, "
            "or replace it with a good copy.")


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


def _fetch(url, out, *, timeout, progress, desc, max_bytes):
    """Stream ``url`` into the open binary file ``out``, with a progress bar.

    More than ``max_bytes`` (if not None) is refused, announced or received.
    """
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if max_bytes is not None and total is not None and total > max_bytes:
            raise DatasetError(f"the server announces {total} bytes, more than the "
                               f"{max_bytes} the file can have")
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
                if max_bytes is not None and received > max_bytes:
                    raise DatasetError(f"more than the {max_bytes} bytes the file can "
                                       "have; stopped")
    # http.client reports a connection that closes early as a plain end of
    # data, so compare with the announced length ourselves.
    if total is not None and received != total:
        raise DatasetError(
            f"connection closed after {received} of {total} bytes (incomplete download)")


def download_file(urls, dest, verify, *, timeout=30.0, progress=True, max_bytes=None):
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
    max_bytes : int, optional
        The largest file accepted: a server that announces or sends more
        counts as a failed mirror (the disk is not filled by an endless
        answer).

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
        # A failure here is not the mirror's fault: no other mirror would do better.
        fd, tmp = _temporary_for(dest)
        try:
            try:
                with os.fdopen(fd, "wb") as out:
                    _fetch(url, out, timeout=timeout, progress=progress, desc=dest.name,
                           max_bytes=max_bytes)
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
            _publish(tmp, dest)
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

# The largest IDX content read_idx accepts unless told otherwise: well above
# any IDX dataset in use (MNIST's largest file has 47 MB), and a bound on the
# memory a header can make the reader ask for.
IDX_MAX_BYTES = 1 << 30


def _read_idx_content(path, *, shape, max_bytes):
    """The file's IDX content (gunzipped if its name ends in ``.gz``), read no
    further than its header declares.

    A gzip bomb (a small ``.gz`` that inflates to gigabytes) or an endless
    file is refused after at most one chunk more than the header announces,
    instead of being inflated into memory before anything is checked; and the
    header itself may announce no more than ``shape`` (when given) or
    ``max_bytes``. Returns a bytearray; :func:`_parse_idx` checks the rest.
    """
    with _open_regular(path) as raw:
        try:
            start = raw.read(4)
            raw.seek(0)
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read the file ({exc})") from exc
        if path.suffix != ".gz":
            if start[:2] == GZIP_MAGIC:
                raise DatasetError(f"{path}: the content is gzip-compressed but the name "
                                   "does not end in .gz; rename it to end in .gz")
            try:
                return _read_declared(raw, path, "file", shape, max_bytes)
            except OSError as exc:
                raise DatasetError(f"{path}: cannot read the file ({exc})") from exc
        if start[:2] != GZIP_MAGIC:
            raise DatasetError(f"{path}: the name ends in .gz but the file is not gzip (it "
                               f"starts with {start.hex(' ') or 'nothing: it is empty'})")
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read_declared(stream, path, "decompressed content", shape, max_bytes)
        except (OSError, EOFError, zlib.error) as exc:
            # EOFError: the compressed stream stops early (truncated download);
            # OSError (BadGzipFile) and zlib.error: damaged data or CRC mismatch.
            raise DatasetError(f"{path}: the gzip data is damaged or truncated "
                               f"({type(exc).__name__}: {exc})") from exc


def _read_declared(stream, path, where, shape, max_bytes):
    """Read ``stream`` until its end or until it passes the size its IDX header declares."""
    content = bytearray()
    declared = None  # header + data bytes, once the header has been read
    while True:
        chunk = stream.read(CHUNK_BYTES)
        if not chunk:
            return content  # the whole stream: _parse_idx compares it with the header
        content += chunk
        if declared is None:
            header = _idx_header(content, path, where)
            if header is None:
                continue  # the header is not complete yet
            header_bytes, dims = header
            if shape is not None and dims != tuple(shape):
                raise DatasetError(f"{path}: the header declares an array of shape {dims}, "
                                   f"expected {tuple(shape)}; is it the right file?")
            declared = header_bytes + math.prod(dims)
            if declared > max_bytes:
                raise DatasetError(f"{path}: the header declares shape {dims}, {declared} "
                                   f"bytes, more than the {max_bytes} this reader accepts")
        if len(content) > declared:
            if stream.read(1):
                raise DatasetError(
                    f"{path}: the {where} goes on past the {declared} bytes its IDX header "
                    f"declares (shape {dims}); stopped reading after {len(content) + 1} "
                    "bytes (a damaged file, or a gzip bomb)")
            return content  # a few bytes too many: _parse_idx says how many


def _idx_header(content, path, where):
    """``(header_bytes, dims)`` of the IDX header at the start of ``content``, or
    None while ``content`` is too short to hold it. Raises DatasetError for a
    header that cannot be IDX of unsigned bytes."""
    if len(content) < 4:
        return None
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
        return None
    return header_bytes, struct.unpack(f">{ndim}I", content[4:header_bytes])


def _parse_idx(content, path):
    """Check an IDX header against the content's length; return the array."""
    where = "decompressed content" if path.suffix == ".gz" else "file"
    if len(content) < 4:
        raise DatasetError(f"{path}: the {where} has {len(content)} bytes, too short "
                           "for the 4-byte IDX magic number (truncated or empty)")
    header = _idx_header(content, path, where)
    if header is None:
        ndim = content[3]
        raise DatasetError(f"{path}: truncated inside the header: {ndim} dimensions need "
                           f"{4 + 4 * ndim} header bytes, the {where} has {len(content)}")
    header_bytes, dims = header
    count = math.prod(dims)
    expected = header_bytes + count
    if len(content) < expected:
        raise DatasetError(f"{path}: truncated: the header declares shape {dims}, which "
                           f"needs {expected} bytes, but the {where} has only {len(content)}")
    if len(content) > expected:
        raise DatasetError(f"{path}: {len(content) - expected} unexpected bytes after the "
                           f"data: the header declares shape {dims} ({expected} bytes), the "
                           f"{where} has {len(content)}")
    # frombuffer would give a view of `content`; copy so the caller owns an
    # ordinary array and `content` can be freed.
    return np.frombuffer(content, dtype=np.uint8, count=count,
                         offset=header_bytes).reshape(dims).copy()


def read_idx(path, *, shape=None, sha256=None, max_bytes=IDX_MAX_BYTES):
    """Read an IDX file of unsigned bytes, plain or gzip-compressed.

    Whether the file is gunzipped is decided by its name: ``*.gz`` must be
    gzip, anything else must be raw IDX. Reading stops as soon as the content
    passes the size its header declares, so a gzip bomb is refused without
    being inflated.

    Parameters
    ----------
    path : str or os.PathLike
    shape : tuple of int, optional
        If given, the array must have exactly this shape (catches e.g. a
        labels file given where images were expected). It is compared with
        the header before the data is read.
    sha256 : str, optional
        If given, the SHA-256 hex digest the (decompressed) IDX content must have.
    max_bytes : int
        The largest (decompressed) content accepted, header included; a
        header that declares more is refused before the data is read.

    Returns
    -------
    numpy.ndarray of uint8
        Shape as declared in the header: ``(N,)`` for labels, ``(N, H, W)``
        for images. A fresh, writable array.

    Raises
    ------
    DatasetError
        The file cannot be read or is not a regular file, is not (valid)
        gzip, is not IDX of unsigned bytes, is shorter or longer than its
        header says, has another shape than ``shape``, declares more than
        ``max_bytes``, or has another checksum than ``sha256``. The message
        names the file.
    """
    path = Path(path)
    content = _read_idx_content(path, shape=shape, max_bytes=max_bytes)
    array = _parse_idx(content, path)
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
            download_file(_mirror_urls(mirrors, filename), folder / filename, verify,
                          timeout=timeout, progress=progress)
        except DatasetError as exc:
            # The message above already says everything: no chained traceback.
            raise DatasetError(
                f"{exc}\n{_elsewhere_hint('MNIST', 'mnist', 'the four files')}") from None
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
            hint = _redownload_hint(paths[key], download, "load_mnist")
            raise DatasetError(f"{exc}\n{hint}") from None
    return Dataset(name="mnist", classes=MNIST_CLASSES, **arrays)


# --------------------------------------------------------------------------
# CIFAR-10: 50,000 training and 10,000 test colour images, 32x32, 10 classes
# (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny Images",
# ch. 3; the binary version's layout is described at
# https://www.cs.toronto.edu/~kriz/cifar.html)
# --------------------------------------------------------------------------

CIFAR10_FOLDER = "cifar-10-batches-bin"
CIFAR10_META = "batches.meta.txt"  # the class names, one a line, in label order

# A record is one label byte (0..9), then the image as 1024 red, 1024 green
# and 1024 blue bytes, each channel 32 rows of 32 pixels, top row first:
# exactly the (C, H, W) layout of a uint8 array of shape (3, 32, 32).
CIFAR10_IMAGE_SHAPE = (3, 32, 32)
CIFAR10_RECORD_BYTES = 1 + math.prod(CIFAR10_IMAGE_SHAPE)  # 3073

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")

# batches.meta.txt has 61 bytes; anything much longer is not it.
CIFAR10_META_MAX_BYTES = 1024


@dataclass(frozen=True)
class RecordSet:
    """One part of CIFAR-10 as published (the training or the test set).

    Attributes
    ----------
    files : tuple of str
        Its batch files in ``cifar-10-batches-bin/``, read in this order.
    records_per_file : int
    per_class : int
        How many records each of the 10 labels has in the whole part.
    digest : str
        SHA-256 (hex) over the SHA-256 digests of its 3,073-byte records,
        sorted and concatenated: it identifies the set of records, whatever
        their order and whichever file holds which record.
    """

    files: tuple
    records_per_file: int
    per_class: int
    digest: str


# Computed from a copy whose records are exactly CIFAR-10's in another order,
# so they hold for the official archive too (that is the point of them).
CIFAR10_PARTS = {
    "train": RecordSet(tuple(f"data_batch_{i}.bin" for i in range(1, 6)), 10_000, 5_000,
                       "55a61f79a40ece2ceda9fb5f9f7078f6ea2fc4952489cef56682bcf92cfcc260"),
    "test": RecordSet(("test_batch.bin",), 10_000, 1_000,
                      "325704b01eb92e1e2a6215ae6a916bb7db7de054af0c496be1c7be2e0fcfbf5f"),
}

# The binary version, as its authors publish it, with the MD5 they publish.
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_MIRRORS = ["https://www.cs.toronto.edu/~kriz/"]

# The archive has 9 members (a folder, 7 data files, readme.html).
CIFAR10_MAX_MEMBERS = 32


def _cifar10_sizes():
    """``{name: bytes}`` for each file load_cifar10 reads: a batch's exact
    size, the class names' largest."""
    sizes = {name: spec.records_per_file * CIFAR10_RECORD_BYTES
             for spec in CIFAR10_PARTS.values() for name in spec.files}
    sizes[CIFAR10_META] = CIFAR10_META_MAX_BYTES
    return sizes


def _cifar10_missing(folder):
    """The names of the files load_cifar10 reads that ``folder`` lacks."""
    return [name for name in _cifar10_sizes() if not (folder / name).is_file()]


def _check_cifar10_archive(path):
    """Raise DatasetError unless ``path`` has the published archive's MD5."""
    # MD5 is what the authors publish. Checked before the archive is opened,
    # it means that only their archive's bytes ever reach tarfile.
    digest = hashlib.md5(usedforsecurity=False)
    with _open_regular(path) as f:
        try:
            for chunk in iter(lambda: f.read(16 * CHUNK_BYTES), b""):
                digest.update(chunk)
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read the file ({exc})") from exc
    if digest.hexdigest() != CIFAR10_ARCHIVE_MD5.lower():
        raise DatasetError(f"{path}: MD5 mismatch: expected {CIFAR10_ARCHIVE_MD5}, got "
                           f"{digest.hexdigest()}; the archive is damaged or not "
                           f"{CIFAR10_ARCHIVE}")


def _archive_member_path(member, archive):
    """The member's path inside the archive, as ``"folder/name"``; refuses
    absolute paths and ``..``, which an extractor that trusts names would
    write outside its folder."""
    name = member.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DatasetError(f"{archive}: refused: the member {name!r} has an absolute path")
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if ".." in parts:
        raise DatasetError(f"{archive}: refused: the member {name!r} has '..' in its path")
    return "/".join(parts)


def _member_problem(member, largest):
    """Why a member is refused whatever its name, or None: anything but a
    folder or a regular file of at most ``largest`` bytes."""
    if member.issym() or member.islnk():
        kind = "symbolic" if member.issym() else "hard"
        return f"is a {kind} link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "is a device"
    if member.isfifo():
        return "is a named pipe (FIFO)"
    if not (member.isreg() or member.isdir()):
        return f"has the unexpected type {member.type!r}"
    if member.isreg() and member.size > largest:
        return f"has {member.size} bytes, more than the largest file CIFAR-10 has ({largest})"
    return None


def _wanted_member(member, archive, sizes, extracted):
    """The name of the file of ``sizes`` that ``member`` holds, or None if it
    is to be skipped; DatasetError if it is refused (``extracted``: the names
    met so far)."""
    path = _archive_member_path(member, archive)
    problem = _member_problem(member, max(sizes.values()))
    if problem is not None:
        raise DatasetError(f"{archive}: refused: the member {member.name!r} {problem}")
    folder, _, name = path.rpartition("/")
    if member.isdir() or folder != CIFAR10_FOLDER or name not in sizes:
        return None
    if name in extracted:
        raise DatasetError(f"{archive}: refused: {path} appears twice")
    exact = name != CIFAR10_META
    if member.size > sizes[name] or (exact and member.size != sizes[name]):
        raise DatasetError(f"{archive}: refused: {path} has {member.size} bytes, expected "
                           f"{'' if exact else 'at most '}{sizes[name]}")
    return name


def _extract_member(tar, member, dest):
    """Copy a regular member's content into a temporary next to ``dest``; return its path."""
    fd, tmp = _temporary_for(dest)
    try:
        with os.fdopen(fd, "wb") as out:
            source = tar.extractfile(member)
            # Reading errors are the archive's (the caller reports them);
            # writing errors are the disk's.
            for chunk in iter(lambda: source.read(16 * CHUNK_BYTES), b""):
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise DatasetError(f"cannot write {tmp}: {exc}") from exc
            try:
                out.flush()
                os.fsync(out.fileno())  # on disk before the rename (see download_file)
            except OSError as exc:
                raise DatasetError(f"cannot write {tmp}: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _extract_cifar10(archive, folder):
    """Extract the files load_cifar10 reads from ``archive`` into ``folder``, safely.

    Only regular members named ``cifar-10-batches-bin/<a file of
    _cifar10_sizes()>`` are written, and only to ``folder/<that name>``:
    names taken from the table, never from the archive. Each is written to a
    temporary file; all are renamed into place once every one is complete.
    Other regular members (readme.html) and folders are skipped.

    The whole archive is refused (DatasetError, and nothing written) if any
    member has an absolute path or ``..``; is a link, device, named pipe or
    of another unknown type; is larger than the largest file CIFAR-10 has; is
    a data file of the wrong size or a second copy of one; if the archive has
    more than CIFAR10_MAX_MEMBERS members, lacks a file, or is damaged.
    """
    sizes = _cifar10_sizes()
    temporaries = {}  # file name -> its complete temporary
    created = not folder.exists()
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for count, member in enumerate(tar, 1):
                    if count > CIFAR10_MAX_MEMBERS:
                        raise DatasetError(f"{archive}: refused: more than "
                                           f"{CIFAR10_MAX_MEMBERS} members")
                    name = _wanted_member(member, archive, sizes, temporaries)
                    if name is None:
                        continue
                    try:
                        folder.mkdir(parents=True, exist_ok=True)
                    except OSError as exc:
                        raise DatasetError(f"cannot create the folder {folder}: {exc}") from exc
                    temporaries[name] = _extract_member(tar, member, folder / name)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"{archive}: the archive is damaged or truncated "
                               f"({type(exc).__name__}: {exc})") from exc
        missing = [f"{CIFAR10_FOLDER}/{name}" for name in sizes if name not in temporaries]
        if missing:
            raise DatasetError(f"{archive}: the archive lacks {', '.join(missing)}")
        for name, tmp in temporaries.items():
            try:
                _publish(tmp, folder / name)
            except OSError as exc:
                raise DatasetError(f"cannot write {folder / name}: {exc}") from exc
    finally:
        for tmp in temporaries.values():
            tmp.unlink(missing_ok=True)  # gone already if published
        if created:
            try:
                folder.rmdir()  # only if it stayed empty: nothing was extracted
            except OSError:
                pass


def download_cifar10(data_dir=None, *, mirrors=None, timeout=30.0, progress=True):
    """Download and extract CIFAR-10's binary version, unless its files are there.

    When ``<data_dir>/cifar-10-batches-bin/`` already holds the seven files
    load_cifar10 reads, nothing is written (the folder may be read-only).
    Otherwise ``<data_dir>/cifar-10-binary.tar.gz`` is downloaded (see
    :func:`download_file`: a temporary file renamed when complete, so an
    interrupted download is simply restarted), or taken as it is when it is
    there already (e.g. downloaded by hand); its MD5 is checked, and then the
    seven files are extracted safely (see ``_extract_cifar10``). If some of
    the seven were there, all seven are extracted again: a partial set may
    come from a copy that orders the records differently. The archive is
    kept; delete it to save its 170 MB once CIFAR-10 loads.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        See :func:`resolve_data_dir`.
    mirrors : sequence of str, optional
        Base URLs, each serving ``<mirror>/cifar-10-binary.tar.gz``, tried in
        order. Default: :data:`CIFAR10_MIRRORS` (read when called).
    timeout : float
        Seconds to wait for a connection or for the next piece of data.
    progress : bool
        Show a progress bar while downloading.

    Returns
    -------
    pathlib.Path
        The folder ``<data_dir>/cifar-10-batches-bin``.

    Raises
    ------
    DatasetError
        The download failed from every mirror, the archive's MD5 is wrong, or
        the archive was refused (a member that is not a plain CIFAR-10 file).
    """
    root = resolve_data_dir(data_dir)
    folder = root / CIFAR10_FOLDER
    if not _cifar10_missing(folder):
        return folder
    archive = root / CIFAR10_ARCHIVE
    if archive.is_file():
        try:
            _check_cifar10_archive(archive)
        except DatasetError as exc:
            hint = _redownload_hint(archive, True, "load_cifar10")
            raise DatasetError(f"{exc}\n{hint}") from None
    else:
        mirrors = CIFAR10_MIRRORS if mirrors is None else mirrors
        # The archive compresses the files it holds: it cannot be much larger.
        max_bytes = sum(_cifar10_sizes().values()) + (1 << 20)
        try:
            download_file(_mirror_urls(mirrors, CIFAR10_ARCHIVE), archive,
                          _check_cifar10_archive, timeout=timeout, progress=progress,
                          max_bytes=max_bytes)
        except DatasetError as exc:
            hint = _elsewhere_hint("CIFAR-10", CIFAR10_FOLDER, "the binary batches")
            raise DatasetError(f"{exc}\n{hint}") from None
    _extract_cifar10(archive, folder)
    return folder


def _read_cifar10_classes(path):
    """The class names in ``batches.meta.txt``, checked against CIFAR10_CLASSES."""
    with _open_regular(path) as f:
        try:
            text = f.read(CIFAR10_META_MAX_BYTES + 1)
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read the file ({exc})") from exc
    if len(text) > CIFAR10_META_MAX_BYTES:
        raise DatasetError(f"{path}: more than {CIFAR10_META_MAX_BYTES} bytes: not the "
                           "list of CIFAR-10's class names")
    try:
        names = tuple(line.strip() for line in text.decode("ascii").splitlines()
                      if line.strip())
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not ASCII text: not the list of CIFAR-10's class "
                           "names") from None
    if names != CIFAR10_CLASSES:
        raise DatasetError(f"{path}: names the classes {names}, expected {CIFAR10_CLASSES}")
    return names


def _read_cifar10_batch(path, out):
    """Read the batch file ``path`` into ``out``, a C-contiguous
    ``(records, 3073)`` uint8 array, checking its size and its labels."""
    expected = out.nbytes
    with _open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size != expected:
            whole = (f"{size // CIFAR10_RECORD_BYTES} records" if size % CIFAR10_RECORD_BYTES == 0
                     else "not a whole number of records")
            raise DatasetError(
                f"{path}: {size} bytes ({whole}), expected {expected}: {len(out)} records of "
                f"{CIFAR10_RECORD_BYTES} bytes (a label byte, then 1024 red, 1024 green and "
                f"1024 blue bytes); the file is {'truncated' if size < expected else 'too long'}"
                " or not a CIFAR-10 batch")
        try:
            got = f.readinto(out.reshape(-1))
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read the file ({exc})") from exc
    if got != expected:
        raise DatasetError(f"{path}: read {got} of its {expected} bytes (did it change "
                           "while being read?)")
    labels = out[:, 0]
    bad = np.flatnonzero(labels >= len(CIFAR10_CLASSES))
    if bad.size:
        raise DatasetError(f"{path}: {bad.size} records have labels above 9, the first "
                           f"record {bad[0]} (counting from 0) the label {labels[bad[0]]}; "
                           "the file is damaged or not a CIFAR-10 batch")


def _canonical_order(records):
    """Sort records by content: the order and the digest of the set of records.

    Parameters
    ----------
    records : numpy.ndarray of uint8, shape (N, B), C-contiguous

    Returns
    -------
    order : numpy.ndarray of intp, shape (N,)
        ``records[order]`` is sorted by each record's SHA-256 digest (as
        bytes). Records with equal digests are equal, so ``records[order]``
        depends only on which records there are, not on their order.
    digest : str
        SHA-256 (hex) of the N sorted 32-byte digests, concatenated.
    """
    flat = memoryview(records.reshape(-1))
    width = records.shape[1]
    digests = [hashlib.sha256(flat[i * width:(i + 1) * width]).digest()
               for i in range(len(records))]
    order = sorted(range(len(digests)), key=digests.__getitem__)
    digest = hashlib.sha256(b"".join(digests[i] for i in order)).hexdigest()
    return np.array(order, dtype=np.intp), digest


def _read_cifar10_part(folder, part):
    """Read, verify and sort one part (a key of CIFAR10_PARTS): images, labels."""
    spec = CIFAR10_PARTS[part]
    per_file = spec.records_per_file
    records = np.empty((per_file * len(spec.files), CIFAR10_RECORD_BYTES), dtype=np.uint8)
    for k, name in enumerate(spec.files):
        _read_cifar10_batch(folder / name, records[k * per_file:(k + 1) * per_file])

    files = ", ".join(spec.files)
    counts = np.bincount(records[:, 0], minlength=len(CIFAR10_CLASSES))
    wrong = np.flatnonzero(counts != spec.per_class)
    if wrong.size:
        label = wrong[0]
        raise DatasetError(f"{folder}: the {part} batches ({files}) hold {counts[label]} "
                           f"images of class {label} ({CIFAR10_CLASSES[label]}), expected "
                           f"{spec.per_class} of each class")
    order, digest = _canonical_order(records)
    if digest != spec.digest:
        raise DatasetError(f"{folder}: the {part} batches ({files}) do not hold CIFAR-10's "
                           f"{part} records: the SHA-256 over their sorted record digests is "
                           f"{digest}, expected {spec.digest}; a record is damaged")
    # One copy that sorts and drops the label byte; the result is C-contiguous.
    images = records[order, 1:].reshape(len(records), *CIFAR10_IMAGE_SHAPE)
    return images, records[order, 0]


def load_cifar10(data_dir=None, download=True, *, progress=True, timeout=30.0, mirrors=None):
    """Load CIFAR-10 (the binary version), verified and in a canonical order.

    Reads ``<data_dir>/cifar-10-batches-bin/``: ``data_batch_1.bin`` ...
    ``data_batch_5.bin`` (the training set) and ``test_batch.bin``, 10,000
    records each; a record is 3,073 bytes, a label byte (0..9) and then the
    32x32 image as 1024 red, 1024 green and 1024 blue bytes, rows top to
    bottom (Krizhevsky 2009; https://www.cs.toronto.edu/~kriz/cifar.html);
    and ``batches.meta.txt``, the class names in label order.

    **Verification** does not depend on the order of the records, because
    copies of CIFAR-10 differ in it (and so a checksum per file holds for one
    copy only): each part's records must have the published per-class counts
    (5,000 per class in training, 1,000 in test), and the SHA-256 over the
    sorted SHA-256 digests of its 3,073-byte records must be the one of
    CIFAR-10's records. One changed byte anywhere fails.

    **Canonical order**: each part is returned sorted by the SHA-256 digest
    of each record (label byte included), whatever order the files hold. So
    the fixed validation split, ``train_val_split(x_train, y_train, 5000)``
    (the last 5,000 in this order), the shuffling and therefore trained
    weights are the same for every user's copy.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        See :func:`resolve_data_dir`.
    download : bool
        Download (and extract) CIFAR-10 if files are missing, see
        :func:`download_cifar10`. If False, a missing file is an error and
        the network is never used.
    progress, timeout, mirrors
        Passed to :func:`download_cifar10`.

    Returns
    -------
    Dataset
        ``name="cifar10"``; ``x_train`` uint8 ``(50000, 3, 32, 32)`` (N, C,
        H, W; channels red, green, blue; pixels 0..255), ``y_train`` uint8
        ``(50000,)``, ``x_test`` uint8 ``(10000, 3, 32, 32)``, ``y_test``
        uint8 ``(10000,)``, labels 0..9; ``classes`` the 10 names
        (``"airplane"`` ... ``"truck"``). Images stay uint8: as float32 the
        training set would take 600 MB.

    Raises
    ------
    DatasetError
        A file is missing (and ``download`` is False) or cannot be
        downloaded, or a check fails: a file's size (truncated), a label
        above 9, the class names, the per-class counts, the record digest.
        The message names the file or folder and says how to get a good copy.
    """
    root = resolve_data_dir(data_dir)
    folder = root / CIFAR10_FOLDER
    if download:
        download_cifar10(data_dir, mirrors=mirrors, timeout=timeout, progress=progress)
    missing = _cifar10_missing(folder)
    if missing:
        url = _mirror_urls(CIFAR10_MIRRORS or ["<a CIFAR-10 mirror>"], CIFAR10_ARCHIVE)[0]
        raise DatasetError(
            f"CIFAR-10 files missing from {folder}: {', '.join(missing)}. Call "
            f"load_cifar10(download=True), or download {url} by hand into {root} (the next "
            "load_cifar10(download=True) checks and extracts it), or set "
            f"${DATA_DIR_ENV} to a folder that has {CIFAR10_FOLDER}/ in it.")
    try:
        classes = _read_cifar10_classes(folder / CIFAR10_META)
        x_train, y_train = _read_cifar10_part(folder, "train")
        x_test, y_test = _read_cifar10_part(folder, "test")
    except DatasetError as exc:
        # A whole folder, not one file: its files must come from one copy.
        hint = _redownload_hint(folder, download, "load_cifar10",
                                f"extracts it again (from {root / CIFAR10_ARCHIVE} if that "
                                "is still there, else downloaded)")
        raise DatasetError(f"{exc}\n{hint}") from None
    return Dataset(name="cifar10", x_train=x_train, y_train=y_train, x_test=x_test,
                   y_test=y_test, classes=classes)
