"""Optimizers and learning-rate schedules.

An optimizer updates each :class:`~zeronet.layers.Parameter`'s ``data`` in
place from its ``grad``; its per-parameter state is keyed by the parameter's
qualified name, so it can be saved to and restored from a checkpoint.
LeCun's SDLM, which needs second derivatives too, is in :mod:`zeronet.sdlm`.

Every update stays in the parameter's dtype: the scalars that multiply arrays
are Python floats, because under NumPy 2 a NumPy float64 scalar times a
float32 array gives a float64 array (NEP 50), an upcast and a copy per step.
"""
import contextlib
import math

import numpy as np


class Optimizer:
    """Base class. ``average``, if given (e.g. 0.999), also keeps an
    exponential moving average of every parameter over the updates
    (Polyak averaging): ``a <- a + (1 - d) (w - a)`` after update ``t``,
    with ``d = min(average, (1 + t) / (10 + t))``.
    :meth:`averaged` swaps it in, for evaluation and for the final weights.
    """

    def __init__(self, lr, average=None):
        self.lr = lr
        self.slots = {}        # "slot/param-name" -> array, e.g. "v/conv1/W"
        self.t = 0             # number of updates so far
        if average is not None and not 0 < average < 1:
            raise ValueError(f"average must be in (0, 1), got {average}")
        self.average = None if average is None else float(average)

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        # A schedule may hand over a NumPy scalar; a Python float keeps every
        # update in the parameters' dtype (see the module docstring).
        self._lr = float(value)

    def slot(self, kind, param):
        key = f"{kind}/{param.name}"
        if key not in self.slots:
            self.slots[key] = np.zeros_like(param.data)
        return self.slots[key]

    def update(self, params):
        self.check_names(params)
        self.t += 1
        for p in params:
            self.update_one(p)
        self.update_average(params)

    def update_average(self, params):
        if self.average is None:
            return
        # Warm-up: early on, a decay of 0.9995 would keep the untrained
        # starting weights in the average for thousands of steps; the rate
        # min(average, (1 + t) / (10 + t)) forgets them quickly.
        decay = min(self.average, (1 + self.t) / (10 + self.t))
        for p in params:
            key = f"avg/{p.name}"
            if key not in self.slots:        # starts at the first updated weights
                self.slots[key] = p.data.copy()
            else:
                avg = self.slots[key]
                avg += (1 - decay) * (p.data - avg)

    def apply_average(self, params):
        """Put the averaged values into the parameters for good (no-op
        without averaging)."""
        if self.average is not None:
            for p in params:
                if f"avg/{p.name}" in self.slots:
                    p.data[...] = self.slots[f"avg/{p.name}"]

    @contextlib.contextmanager
    def averaged(self, params):
        """Inside the block, the parameters hold their averages (if any);
        their own values come back afterwards."""
        if self.average is None:
            yield
            return
        saved = [p.data.copy() for p in params]
        try:
            self.apply_average(params)
            yield
        finally:
            for p, value in zip(params, saved):
                p.data[...] = value

    def check_names(self, params):
        # State is keyed by name: two parameters called "W" would share it.
        if len({p.name for p in params}) != len(params):
            raise ValueError("parameters must have distinct names (put the layers in a "
                             "Sequential, which names them 'layer/param')")

    def state_dict(self):
        return {"lr": self.lr, "t": self.t, "slots": dict(self.slots)}

    def load_state_dict(self, state):
        self.lr, self.t = float(state["lr"]), int(state["t"])
        self.slots = {k: np.array(v) for k, v in state["slots"].items()}


class SGD(Optimizer):
    """``w <- w - lr * (dL/dw + weight_decay * w)`` (book §6.1.2)."""

    def __init__(self, lr=0.01, weight_decay=0.0, average=None):
        super().__init__(lr, average)
        self.weight_decay = float(weight_decay)

    def update_one(self, p):
        grad = p.grad + self.weight_decay * p.data if self.weight_decay and p.decay else p.grad
        p.data -= self.lr * grad


class Momentum(Optimizer):
    """Momentum with weight decay, exactly Krizhevsky et al. 2012 §5:

    ``v <- momentum * v - weight_decay * lr * w - lr * dL/dw``;  ``w <- w + v``

    with momentum 0.9 and weight decay 0.0005 in the paper. Biases are not
    decayed (``Parameter.decay``).
    """

    def __init__(self, lr=0.01, momentum=0.9, weight_decay=0.0005, average=None):
        super().__init__(lr, average)
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)

    def update_one(self, p):
        v = self.slot("v", p)
        v *= self.momentum
        if self.weight_decay and p.decay:
            v -= (self.weight_decay * self.lr) * p.data
        v -= self.lr * p.grad
        p.data += v


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), in the book's form (§6.1.6): bias correction
    folded into the step size."""

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, average=None):
        super().__init__(lr, average)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def update(self, params):
        self.check_names(params)
        self.t += 1
        # math.sqrt, not np.sqrt: a Python float, so lr_t * m stays in m's dtype.
        self.lr_t = self.lr * math.sqrt(1 - self.beta2 ** self.t) / (1 - self.beta1 ** self.t)
        for p in params:
            self.update_one(p)
        self.update_average(params)

    def update_one(self, p):
        m, v = self.slot("m", p), self.slot("v", p)
        m += (1 - self.beta1) * (p.grad - m)
        v += (1 - self.beta2) * (p.grad * p.grad - v)
        p.data -= self.lr_t * m / (np.sqrt(v) + self.eps)


# -------------------------------------------------------------- schedules ----

class PiecewiseConstant:
    """Learning rate constant on epoch intervals (LeNet-5's schedule shape).

    ``values[i]`` applies from epoch ``boundaries[i-1]`` (0 for i = 0) up to,
    not including, ``boundaries[i]``. Epochs count from 0.
    """

    def __init__(self, boundaries, values):
        if len(values) != len(boundaries) + 1 or list(boundaries) != sorted(boundaries):
            raise ValueError("need sorted boundaries and one more value than boundaries")
        self.boundaries, self.values = [int(b) for b in boundaries], [float(v) for v in values]

    def lr(self, epoch):
        return self.values[sum(epoch >= b for b in self.boundaries)]

    def observe(self, epoch, val_error):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class ReduceOnPlateau:
    """Divide the rate by ``1/factor`` when the validation error has not
    improved for ``patience`` epochs (Krizhevsky et al. 2012 §5: "divide the
    learning rate by 10 when the validation error rate stopped improving").

    ``latest``: 0-based epochs from which the first, second, ... reduced
    rate applies at the latest, plateau or not, so that the reductions fit a
    fixed budget of epochs. ``max_reductions``: after that many reductions
    the next plateau ends training (the paper's rate "was reduced three
    times prior to termination"); ``finished`` then turns true, and the
    :class:`~zeronet.trainer.Trainer` stops.
    """

    def __init__(self, lr, factor=0.1, patience=1, min_delta=0.0, min_lr=0.0, *, latest=(),
                 max_reductions=None):
        self.current, self.factor, self.patience = float(lr), float(factor), int(patience)
        self.min_delta, self.min_lr = float(min_delta), float(min_lr)
        self.latest = [int(epoch) for epoch in latest]
        self.max_reductions = max_reductions
        self.best, self.bad_epochs, self.reductions = np.inf, 0, 0
        self.finished = False

    def lr(self, epoch):
        return self.current

    def observe(self, epoch, val_error):
        if val_error < self.best - self.min_delta:
            self.best, self.bad_epochs = float(val_error), 0
        else:
            self.bad_epochs += 1
        if self.reductions == self.max_reductions:
            self.finished = self.finished or self.bad_epochs >= self.patience
            return
        due = self.reductions < len(self.latest) and epoch + 1 >= self.latest[self.reductions]
        if ((self.bad_epochs >= self.patience or due)
                and self.current * self.factor >= self.min_lr):
            self.current *= self.factor
            self.bad_epochs, self.reductions = 0, self.reductions + 1

    def state_dict(self):
        return {"current": self.current, "best": self.best, "bad_epochs": self.bad_epochs,
                "reductions": self.reductions, "finished": self.finished}

    def load_state_dict(self, state):
        self.current, self.best = float(state["current"]), float(state["best"])
        # .get: checkpoints written before training could finish early.
        self.finished = bool(state.get("finished", False))
        self.bad_epochs, self.reductions = int(state["bad_epochs"]), int(state["reductions"])
