"""A network of named layers applied in order, with a loss at the end."""
import numpy as np

from zeronet._validate import flag
from zeronet.layers import LAYERS
from zeronet.losses import LOSSES, SoftmaxWithLoss


class Sequential:
    """Layers applied in order (book §7.5's SimpleConvNet, generalised).

    ``layers`` is a list of ``(name, layer)`` pairs; a parameter ``W`` of the
    layer ``conv1`` is called ``conv1/W`` everywhere (optimizer state, HDF5).

    Shapes: ``predict`` maps ``x (N, ...)`` to scores ``(N, K)``; with
    ``until="relu7"``, to that layer's output (its features, e.g. ``(N, D)``).
    """

    def __init__(self, layers, loss=None, *, input_grad=False):
        self.layers = {}
        for name, layer in layers:
            if not name or "/" in name or name in self.layers:
                raise ValueError(f"layer names must be unique and contain no '/', got {name!r}")
            self.layers[name] = layer
            for key, param in layer.params.items():
                param.name = f"{name}/{key}"
        self.loss_layer = loss if loss is not None else SoftmaxWithLoss()
        # Nobody needs the gradient with respect to the images when training:
        # by default backward stops at the first layer with parameters, and
        # that layer skips computing its dx (if it can).
        self.input_grad = flag(input_grad, "input_grad")
        layers = list(self.layers.values())
        self._first_trainable = next((i for i, l in enumerate(layers) if l.params), 0)
        if layers and hasattr(layers[self._first_trainable], "input_grad"):
            layers[self._first_trainable].input_grad = input_grad

    def predict(self, x, *, train=False, until=None):
        """Scores, or with ``until`` the output of the layer of that name
        (the layers after it are not run)."""
        if until is not None and until not in self.layers:
            raise ValueError(f"until: no layer named {until!r} (layers: {', '.join(self.layers)})")
        for name, layer in self.layers.items():
            x = layer.forward(x, train=train)
            if name == until:
                break
        return x

    def loss(self, x, t, *, train=False):
        """Mean loss on a batch; keeps what ``backward`` needs. Pass
        ``train=True`` when training (Dropout then drops)."""
        return self.loss_layer.forward(self.predict(x, train=train), t)

    def backward(self, dout=1.0):
        """Fill every parameter's ``grad``. Returns the gradient with respect to
        the input if the network was built with ``input_grad=True``, else None."""
        dx = self.loss_layer.backward(dout)
        first = 0 if self.input_grad else self._first_trainable
        for layer in reversed(list(self.layers.values())[first:]):
            dx = layer.backward(dx)
        return dx if self.input_grad else None

    def parameters(self):
        """All parameters, in layer order."""
        return [p for layer in self.layers.values() for p in layer.params.values()]

    def num_parameters(self):
        """Trainable parameter count (masked-out connections do not count)."""
        return sum(p.trainable_size for p in self.parameters())

    def predict_batched(self, x, batch_size=1000, *, until=None):
        """:meth:`predict` for a large ``x``, ``batch_size`` examples at a time."""
        return np.concatenate([self.predict(x[i:i + batch_size], until=until)
                               for i in range(0, len(x), batch_size)])

    def accuracy(self, x, t, batch_size=1000):
        """Fraction of examples whose highest score is the label ``t``
        (indices ``(N,)`` or one-hot ``(N, K)``)."""
        t = np.asarray(t)
        if t.ndim == 2:
            t = t.argmax(axis=1)
        return float(np.mean(self.predict_batched(x, batch_size).argmax(axis=1) == t))

    def generators(self):
        """Random generators inside layers (Dropout), keyed ``layer/attr``."""
        return {f"{name}/{key}": g for name, layer in self.layers.items()
                for key, g in layer.generators().items()}

    def config(self):
        """The architecture as JSON-friendly data (rebuilt by :meth:`from_config`).
        The loss is listed only when it is one of zeronet's and not the
        default softmax cross-entropy, so files written before losses were
        recorded still describe their networks exactly."""
        config = {"layers": [{"name": name, "type": type(layer).__name__, "config": layer.config()}
                             for name, layer in self.layers.items()]}
        kind = type(self.loss_layer).__name__
        # A loss of your own cannot be rebuilt from a file; it is left out,
        # as it was before losses were recorded, so the weights still save.
        if kind in LOSSES and kind != "SoftmaxWithLoss":
            config["loss"] = {"type": kind, "config": self.loss_layer.config()}
        return config

    @classmethod
    def from_config(cls, config):
        layers = []
        for spec in config["layers"]:
            if spec["type"] not in LAYERS:
                raise ValueError(f"unknown layer type {spec['type']!r} in architecture")
            layers.append((spec["name"], LAYERS[spec["type"]](**spec["config"])))
        loss = config.get("loss")
        if loss is not None and loss["type"] not in LOSSES:
            raise ValueError(f"unknown loss type {loss['type']!r} in architecture")
        return cls(layers, LOSSES[loss["type"]](**loss["config"]) if loss else None)

    def __repr__(self):
        lines = [f"  {name}: {layer!r}" for name, layer in self.layers.items()]
        return "Sequential(\n" + "\n".join(lines) + "\n)"
