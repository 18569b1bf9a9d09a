"""LeCun's optimizer, stochastic diagonal Levenberg-Marquardt (SDLM), and the
curvature pass it needs (LeCun et al. 1998, Appendix C).

LeNet-5 was trained with SDLM: every parameter ``w_k`` takes its own step
``lr / (mu + h_k)``, where ``h_k`` estimates the second derivative
d2E/dw_k2. The estimate comes from a second backward pass, the *curvature
pass*, which carries squared derivatives instead of derivatives:

    d2E/dx_j2 = sum_i (dy_i/dx_j)^2 d2E/dy_i2,   h_k = sum_i (dy_i/dw_k)^2 d2E/dy_i2

This is the paper's approximation (Gauss-Newton, on the diagonal): the
terms with a second derivative of a layer's own function, and the cross
terms between units, are left out, so it never goes negative. (Only the
RBF output layer adds its own: its squared distances are where the
criterion's curvature comes from.)

Everything SDLM needs beyond gradients lives in this module, so that a
plain layer carries none of it:

- :data:`CURVATURE_RULES`: the curvature pass through one layer, a function
  per layer type, reading what the layer kept for ``backward``;
- :func:`loss_curvature`: where the pass starts, d2E/dscore2;
- :func:`network_curvature`: the pass through a whole network, giving
  ``{parameter name: d2E/dw2}``;
- :class:`SDLM`: the optimizer, which keeps its estimates by parameter name
  and asks the :class:`~zeronet.trainer.Trainer` for them through two hooks.
"""
import numpy as np

from zeronet import kernels
from zeronet.layers import (RBF, Affine, AvgPooling, Convolution, Dropout, Flatten, MaxPooling,
                            ReLU, ScaledTanh, Sigmoid, Subsampling, Tanh, _check_dout,
                            _window_sums_backward)
from zeronet.losses import MAPLoss, SoftmaxWithLoss
from zeronet.optimizers import Optimizer

# ------------------------------------------------------- the curvature pass ----

CURVATURE_RULES = {}    # layer class -> rule(layer, d2out) -> (d2x, {local name: d2E/dw2})
LOSS_CURVATURE = {}     # loss class -> rule(loss) -> d2E/dscore2


def curvature_rule(*layer_types):
    """Decorator: the function is the curvature rule of ``layer_types``.

    A rule takes a layer after its ``forward`` and ``d2out``, an estimate
    of d2E/dy2 for every output (the shape of y); it returns d2E/dx2 (the
    shape of x) and ``{local parameter name: d2E/dw2}`` (each shaped as its
    parameter). It must leave the layer's ``grad`` arrays alone: the
    :class:`~zeronet.trainer.Trainer` runs the pass between ``backward``
    and the update. Register one for a layer of your own to train it with
    SDLM.
    """
    def register(rule):
        for layer_type in layer_types:
            CURVATURE_RULES[layer_type] = rule
        return rule
    return register


def _rule_for(table, obj):
    # The class's own rule, else the nearest base class's (a subclass
    # computes what its base computes unless it registers its own).
    for cls in type(obj).__mro__:
        if cls in table:
            return table[cls]
    raise NotImplementedError(f"{type(obj).__name__} has no curvature rule, which the SDLM "
                              f"optimizer needs")


def layer_curvature(layer, d2out):
    """The curvature pass through one layer (call it after ``forward``, as
    ``backward``): ``(d2x, {local parameter name: d2E/dw2})``. Raises
    NotImplementedError naming the layer type if it has no rule."""
    return _rule_for(CURVATURE_RULES, layer)(layer, d2out)


def loss_curvature(loss):
    """d2E/dscore2 for the batch of the loss's last ``forward``, ``(N, K)``:
    where the curvature pass starts."""
    return _rule_for(LOSS_CURVATURE, loss)(loss)


def network_curvature(network):
    """The curvature pass through ``network`` for the batch of its last
    ``loss`` call: ``{parameter name: d2L/dw2}``, each array shaped as its
    parameter. Like :meth:`~zeronet.network.Sequential.backward`, it stops
    at the first layer with parameters; it leaves every ``grad`` as it was.
    """
    # RBF and MAPLoss hand over the paper's criterion together (see
    # rbf_curvature): either one alone would mean something else.
    layers = list(network.layers.values())
    if (bool(layers) and isinstance(layers[-1], RBF)) != isinstance(network.loss_layer, MAPLoss):
        raise ValueError("the curvature pass takes the paper's criterion from an RBF output "
                         "layer and the MAPLoss together; this network has "
                         f"{type(layers[-1]).__name__ if layers else 'no'} output layer and "
                         f"{type(network.loss_layer).__name__}")
    first_trainable = next((i for i, layer in enumerate(layers) if layer.params), 0)
    curvature = {}
    d2 = loss_curvature(network.loss_layer)
    for layer in reversed(layers[first_trainable:]):
        d2, h = layer_curvature(layer, d2)
        curvature.update({layer.params[name].name: value for name, value in h.items()})
    return curvature


@curvature_rule(ReLU, Sigmoid, Tanh, ScaledTanh, Dropout)
def elementwise_curvature(layer, d2out):
    """``y_i = f(x_i)``: d2E/dx_i2 = f'(x_i)^2 d2E/dy_i2, that is
    ``backward`` applied twice."""
    return layer.backward(layer.backward(d2out)), {}


@curvature_rule(Flatten, MaxPooling)
def zero_one_curvature(layer, d2out):
    """Every derivative dy/dx is 0 or 1: squaring changes nothing, so it is
    ``backward``."""
    return layer.backward(d2out), {}


@curvature_rule(AvgPooling)
def avg_pooling_curvature(layer, d2out):
    """Every derivative is 1/kk, so its square is 1/kk^2: ``backward`` of
    d2out/kk."""
    kk = layer.kernel_size[0] * layer.kernel_size[1]
    return layer.backward(d2out / d2out.dtype.type(kk)), {}


@curvature_rule(Convolution)
def convolution_curvature(layer, d2out):
    """``y = col W^T + b`` is linear: the gradients' pass with x and W
    squared (im2col only copies values and pads with 0 = 0^2, so
    col(x)^2 = col(x^2)). Masked-out connections get no curvature."""
    _check_dout(layer, d2out)
    d2out = np.ascontiguousarray(d2out, dtype=layer.dtype)
    d2x, h_W, h_b = kernels.conv_backward(np.square(layer.x), np.square(layer.weights()), d2out,
                                          layer.stride, layer.pad, layer.groups,
                                          layer.input_grad, bias_grad=True)
    mask = layer.params["W"].mask
    if mask is not None:
        h_W *= mask
    return d2x, {"W": h_W, "b": h_b}


@curvature_rule(Subsampling)
def subsampling_curvature(layer, d2out):
    """Linear in the window sums, the coefficients and the bias: the
    gradients' pass with every factor squared."""
    _check_dout(layer, d2out)
    coeff = layer.params["coeff"].data
    h_coeff = np.einsum("nchw,nchw->c", d2out, np.square(layer.window_sum))
    h_b = np.einsum("nchw->c", d2out)
    d2x = _window_sums_backward(d2out * np.square(coeff)[:, None, None], layer.x_shape,
                                layer.kernel_size, layer.kernel_size, (0, 0))
    return d2x, {"coeff": h_coeff, "b": h_b}


@curvature_rule(Affine)
def affine_curvature(layer, d2out):
    """Linear: the gradients' pass with x and W squared."""
    _check_dout(layer, d2out)
    W = layer.params["W"].data
    h_W = np.square(layer.x).T @ d2out
    h_b = d2out.sum(axis=0)
    return (d2out @ np.square(W).T).reshape(layer.x_shape), {"W": h_W, "b": h_b}


@curvature_rule(RBF)
def rbf_curvature(layer, penalty_weights):
    """Second derivatives in the paper's way (Appendix C), for use with
    :class:`~zeronet.losses.MAPLoss` only (:func:`network_curvature` checks
    this).

    The curvature is that of a criterion linear in the penalties,
    ``sum_i c_i y_i`` (the paper's MSE criterion ``y_D``: c is 1 for the
    true class, 0 otherwise; see :func:`map_loss_curvature`), and
    ``penalty_weights (N, K)`` are the ``c_i`` (divided by N, as every
    loss's derivatives): *not* second derivatives of the scores, as other
    layers receive. Each penalty is a sum of squares whose second
    derivative is 2 in every input, so d2E/dx_j2 = 2 sum_i c_i: exact, and
    the Gauss-Newton of a sum of squares at the same time.
    Shapes: ``(N, K)`` -> ``(N, D)``; the codes are fixed, so no parameters.
    """
    _check_dout(layer, penalty_weights)
    weight = layer.dtype.type(2) * penalty_weights.sum(axis=1, keepdims=True, dtype=layer.dtype)
    return np.broadcast_to(weight, layer.x.shape).copy(), {}


def softmax_loss_curvature(loss):
    """The Hessian of mean cross-entropy with respect to the scores is
    ``(diag(y) - y y^T) / N``; its diagonal ``y (1 - y) / N`` is exact, and
    never negative."""
    return loss.y * (1 - loss.y) * loss.y.dtype.type(1 / loss.t.shape[0])


def map_loss_curvature(loss):
    """What the curvature pass starts from for LeNet-5, ``(N, K)``.

    The paper estimates the second derivatives with the mean-squared-error
    criterion, the true class's penalty ``y_D`` alone (Appendix C), not
    with eq. 9: once every penalty is far above j, eq. 9 is nearly linear
    in them and its own curvature vanishes. ``y_D`` is linear in the scores
    too, so what goes back is the weight of each penalty in the criterion
    (1/N for the true class): :func:`rbf_curvature` turns it into the
    curvature of the RBF's squared distances. So this works with an RBF
    output layer only.
    """
    weight = np.zeros_like(loss.y)
    weight[np.arange(len(loss.t)), loss.t] = 1 / len(loss.t)
    return weight


LOSS_CURVATURE.update({SoftmaxWithLoss: softmax_loss_curvature, MAPLoss: map_loss_curvature})


# ------------------------------------------------------------ the optimizer ----

class SDLM(Optimizer):
    """Stochastic diagonal Levenberg-Marquardt (LeCun et al. 1998, Appendix C),
    the optimizer LeNet-5 was trained with:

    ``w_k <- w_k - lr / (mu + h_k) * dL/dw_k``

    Every parameter has its own step: large where the loss curves gently
    (``h_k`` small), small where it curves sharply. ``h_k`` estimates the
    second derivative d2L/dw_k2 (the curvature pass,
    :func:`network_curvature`), averaged over ``samples`` training examples
    by :meth:`estimate_curvature`, which :meth:`before_batch` calls before
    every pass. ``mu`` keeps the step finite where ``h_k`` is nearly 0.

    The paper's values: ``mu = 0.02``, 500 samples, and a global rate from
    0.0005 down to 0.00001 (for updates after single examples).

    ``running`` (e.g. 0.02), if given, keeps ``h`` up to date between the
    estimates, like the running average of Appendix C: after every batch,
    ``h <- h + running * (h_batch - h)``, with ``h_batch`` from a curvature
    pass on that batch (:meth:`after_backward`; each step then costs about
    one more backward pass). LeNet-5 needs it: from the paper's small
    initial weights the curvature grows by orders of magnitude within the
    first hundred batches, and with ``h`` from before the pass the steps
    became so large that the network saturated, even at 0.0005
    (reproduce/lenet.py, SDLM_RUNNING). ``estimates_per_pass`` > 1
    re-estimates ``h`` from ``samples`` examples that many times per pass,
    evenly spaced (every 250 batches was not often enough).
    ``momentum`` (the paper's has none) adds ``v <- momentum v - step``.

    ``h`` and the step factors ``1 / (mu + h)`` are optimizer state
    (``"h/<param>"``, ``"step/<param>"``), so a checkpoint holds everything
    :meth:`update` needs, even outside the trainer (which re-estimates them
    at the start of every pass anyway). ``batch_curvature`` holds the last
    batch's curvature, ``{param name: d2L/dw2}``, until :meth:`update` uses
    it.

    Trainer hooks (:class:`~zeronet.trainer.Trainer` calls them if an
    optimizer has them): :meth:`before_batch` and :meth:`after_backward`.
    """

    def __init__(self, lr=0.0005, mu=0.02, samples=500, momentum=0.0, estimates_per_pass=1,
                 running=None, average=None):
        super().__init__(lr, average)
        if not mu > 0:
            raise ValueError(f"SDLM's mu must be positive (it bounds the step), got {mu}")
        if estimates_per_pass < 1:
            raise ValueError(f"estimates_per_pass must be at least 1, got {estimates_per_pass}")
        if running is not None and not 0 < running <= 1:
            raise ValueError(f"running must be in (0, 1], got {running}")
        self.mu, self.samples, self.momentum = float(mu), int(samples), float(momentum)
        self.estimates_per_pass = int(estimates_per_pass)
        self.running = None if running is None else float(running)
        self.batch_curvature = {}

    def before_batch(self, network, step, steps, sample):
        """Trainer hook, before batch ``step`` of a pass of ``steps``: the
        paper re-estimates the curvature before every pass and keeps it for
        the pass; ``estimates_per_pass`` > 1 refreshes it within, at evenly
        spaced steps. ``sample(n)`` gives ``(x, t)``, n training examples
        drawn at random in training form (augmented like the batches)."""
        per_pass = min(self.estimates_per_pass, steps)
        if step in {i * steps // per_pass for i in range(per_pass)}:
            self.estimate_curvature(network, *sample(self.samples))

    def after_backward(self, network):
        """Trainer hook, after ``network.backward()``: with ``running``, the
        curvature pass on the same batch, for :meth:`update` to follow."""
        if self.running:
            self.batch_curvature = network_curvature(network)

    def estimate_curvature(self, network, x, t, batch_size=100):
        """Set every parameter's curvature estimate ``h`` to the mean over the
        examples ``x (S, ...)``, ``t (S,)``, in training mode (Dropout drops)."""
        params = network.parameters()
        self.check_names(params)
        total = {p.name: np.zeros(p.data.shape) for p in params}     # float64 sums
        for i in range(0, len(x), batch_size):
            xb, tb = x[i:i + batch_size], t[i:i + batch_size]
            network.loss(xb, tb, train=True)
            curvature = network_curvature(network)
            for p in params:
                total[p.name] += curvature[p.name] * len(xb)     # a mean over xb
        for p in params:
            h = total[p.name] / len(x)
            self.slots[f"h/{p.name}"] = h.astype(p.data.dtype)
            self.slots[f"step/{p.name}"] = (1 / (self.mu + h)).astype(p.data.dtype)

    def update_one(self, p):
        step = self.slots.get(f"step/{p.name}")
        if step is None:
            raise RuntimeError(f"SDLM has no curvature estimate for {p.name}: call "
                               f"estimate_curvature() first (the Trainer does, every pass)")
        if self.running:
            h = self.slots.get(f"h/{p.name}")
            # pop: used once; the next update needs the next batch's.
            curvature = self.batch_curvature.pop(p.name, None)
            if curvature is None or h is None:
                raise RuntimeError(f"SDLM(running=...) follows every batch's curvature: call "
                                   f"after_backward(network) after network.backward() (the "
                                   f"Trainer does); {p.name} has none")
            h += self.running * (curvature - h)
            np.divide(1, self.mu + h, out=step)
        change = p.grad * step
        change *= -self.lr
        if self.momentum:
            v = self.slot("v", p)
            v *= self.momentum
            v += change
            change = v
        p.data += change
