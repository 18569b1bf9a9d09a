"""Weights and checkpoints in HDF5 (h5py). No pickle anywhere.

File layout (open it with ``h5dump`` or HDFView to see):

- ``/<layer>/<param>``: one dataset per parameter, e.g. ``/conv1/W``, in the
  parameter's own dtype, stored exactly, with HDF5's Fletcher-32 checksum so
  that flipped bytes are caught on reading (HDF5 has no checksum otherwise).
- root attributes: ``format = "zeronet-weights"``, ``format_version``,
  ``zeronet_version``, ``dtype``, ``architecture`` (JSON from which
  :meth:`Sequential.from_config` rebuilds the network) and ``metadata``
  (JSON: training summary, anything the caller adds).
- checkpoints add a ``/_checkpoint`` group: optimizer slots as datasets,
  epoch, random-generator states, schedule state and history as attributes.

Every write goes to a temporary file in the same folder that is renamed over
the target only when complete, so a crash never leaves a half-written file.
"""
import json
import os
from pathlib import Path

import h5py
import numpy as np

import zeronet
from zeronet.network import Sequential

FORMAT = "zeronet-weights"
FORMAT_VERSION = 1
CHECKPOINT = "_checkpoint"


class WeightsFileError(ValueError):
    """A file that is not a readable zeronet weights file, or does not fit."""


def _atomic_write(path, fill):
    """Call ``fill(h5file)`` on a temporary file, then rename it to ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            fill(f)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())       # the data is on disk before the rename
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_network(f, network, metadata):
    params = network.parameters()
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["zeronet_version"] = zeronet.__version__
    f.attrs["dtype"] = ",".join(sorted({p.data.dtype.name for p in params}))
    f.attrs["architecture"] = json.dumps(network.config())
    f.attrs["metadata"] = json.dumps(metadata or {})
    for p in params:
        f.create_dataset(p.name, data=p.data, fletcher32=True)


def save(network, path, metadata=None):
    """Write ``network``'s architecture and weights to the HDF5 file ``path``.

    ``metadata``: a JSON-friendly dict stored with the weights (e.g. the
    training summary); read it back as ``load(path).metadata``.
    """
    _atomic_write(path, lambda f: _write_network(f, network, metadata))


def _open(path):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsFileError(f"{path} is not a readable HDF5 file "
                               f"(truncated or corrupt?): {exc}") from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise WeightsFileError(f"{path} is an HDF5 file but not a zeronet weights file "
                               f"(no format={FORMAT!r} attribute)")
    return f


def _dataset_names(group, skip=CHECKPOINT):
    names = []
    group.visititems(lambda name, obj: names.append(name)
                     if isinstance(obj, h5py.Dataset) and not name.startswith(skip) else None)
    return names


def _read_weights(f, network, path):
    """Copy every parameter from ``f`` into ``network``, checking the fit.

    Everything is read and checked first and copied in only at the end, so a
    bad file leaves the network as it was.
    """
    params = {p.name: p for p in network.parameters()}
    stored = set(_dataset_names(f))
    missing, extra = sorted(set(params) - stored), sorted(stored - set(params))
    if missing or extra:
        raise WeightsFileError(f"{path} does not fit the architecture: "
                               f"missing parameters {missing}, unexpected datasets {extra}")
    values = {}
    for name, p in params.items():
        ds = f[name]
        if ds.shape != p.data.shape or ds.dtype != p.data.dtype:
            raise WeightsFileError(f"{path}: parameter {name} is {ds.dtype}{ds.shape} in the "
                                   f"file but the network needs {p.data.dtype}{p.data.shape}")
        values[name] = ds[()]
        if not np.all(np.isfinite(values[name])):
            raise WeightsFileError(f"{path}: parameter {name} holds NaN or infinite values")
    for name, p in params.items():
        p.data[...] = values[name]


def _reading(path):
    """Turn the many ways h5py reports a damaged file into one clear error."""
    class Guard:
        def __enter__(self):
            return self

        def __exit__(self, kind, exc, tb):
            if kind is not None and issubclass(kind, (OSError, RuntimeError, KeyError,
                                                      TypeError, json.JSONDecodeError)) \
                    and not issubclass(kind, FileNotFoundError):
                raise WeightsFileError(f"{path} is damaged or not a complete zeronet file "
                                       f"({kind.__name__}: {exc})") from exc
            return False
    return Guard()


def load(path):
    """Rebuild the network stored in ``path`` and load its weights.

    Returns a :class:`~zeronet.network.Sequential` with a ``metadata`` dict.
    Raises :class:`WeightsFileError` for a non-zeronet, corrupt or
    inconsistent file.
    """
    with _reading(path), _open(path) as f:
        try:
            network = Sequential.from_config(json.loads(f.attrs["architecture"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsFileError(f"{path}: cannot rebuild the architecture: {exc}") from None
        _read_weights(f, network, path)
        network.metadata = json.loads(f.attrs.get("metadata", "{}"))
    return network


# ------------------------------------------------------------ checkpoints ----

def save_checkpoint(path, network, optimizer, schedule, *, epoch, rng, history, metadata=None):
    """Everything needed to resume training after ``epoch`` (0-based) ended.

    ``rng`` is the trainer's generator; the network's own generators
    (Dropout) are saved too.
    """
    def fill(f):
        _write_network(f, network, metadata)
        ck = f.create_group(CHECKPOINT)
        ck.attrs["epoch"] = epoch
        ck.attrs["rng"] = json.dumps(rng.bit_generator.state)
        ck.attrs["layer_rngs"] = json.dumps(
            {k: g.bit_generator.state for k, g in network.generators().items()})
        ck.attrs["schedule"] = json.dumps(schedule.state_dict() if schedule else {})
        ck.attrs["history"] = json.dumps(history)
        state = optimizer.state_dict()
        ck.attrs["optimizer"] = json.dumps({"type": type(optimizer).__name__,
                                            "lr": state["lr"], "t": state["t"]})
        for key, value in state["slots"].items():
            ck.create_dataset(f"optimizer/{key}", data=value, fletcher32=True)
    _atomic_write(path, fill)


def load_checkpoint(path, network, optimizer, schedule, rng):
    """Restore a checkpoint into existing objects; returns ``(epoch, history)``.

    The network must have the architecture the checkpoint was written from.
    """
    with _reading(path), _open(path) as f:
        if CHECKPOINT not in f:
            raise WeightsFileError(f"{path} holds weights but no training checkpoint")
        if json.loads(f.attrs["architecture"]) != network.config():
            raise WeightsFileError(f"{path} was written for a different architecture")
        _read_weights(f, network, path)
        ck = f[CHECKPOINT]
        opt = json.loads(ck.attrs["optimizer"])
        if opt["type"] != type(optimizer).__name__:
            raise WeightsFileError(f"{path} holds {opt['type']} state, not "
                                   f"{type(optimizer).__name__}")
        slots = {}
        if "optimizer" in ck:
            for name in _dataset_names(ck["optimizer"], skip="\0"):
                slots[name] = ck["optimizer"][name][()]
        optimizer.load_state_dict({"lr": opt["lr"], "t": opt["t"], "slots": slots})
        if schedule is not None:
            schedule.load_state_dict(json.loads(ck.attrs["schedule"]))
        rng.bit_generator.state = json.loads(ck.attrs["rng"])
        for key, state in json.loads(ck.attrs["layer_rngs"]).items():
            network.generators()[key].bit_generator.state = state
        return int(ck.attrs["epoch"]), json.loads(ck.attrs["history"])
