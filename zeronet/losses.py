"""Loss layers."""
import numpy as np


class SoftmaxWithLoss:
    """Softmax followed by mean cross-entropy (book §5.6.3).

    ``forward(score, t)`` takes scores ``(N, K)`` and labels ``t`` as class
    indices ``(N,)`` or one-hot ``(N, K)``; returns the mean loss (a float).
    ``backward(dout=1.0)`` returns ``dscore = dout * (y - t) / N``.
    Saved for backward: ``y`` (probabilities), ``t`` (as indices); and
    ``score``, whose argmax is the prediction.
    """

    def forward(self, score, t):
        self.t, self.score = self._labels(score, t), score
        return self._cross_entropy(score, self.t)

    def config(self):
        """Constructor arguments as JSON-friendly values."""
        return {}

    def _labels(self, score, t):
        """Labels as class indices ``(N,)``, checked against ``score (N, K)``."""
        if score.ndim != 2:
            raise ValueError(f"{type(self).__name__} expects scores of shape (N, K), "
                             f"got {score.shape}")
        if score.shape[0] == 0:
            raise ValueError(f"{type(self).__name__}: an empty batch (N = 0) has no mean loss")
        t = np.asarray(t)
        if t.ndim == 1 and not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"class-index labels must be integers, got {t.dtype}")
        if t.ndim == 2 and t.shape == score.shape:     # one-hot
            t = t.argmax(axis=1)
        if t.shape != (score.shape[0],):
            raise ValueError(f"labels must have shape ({score.shape[0]},) or "
                             f"({score.shape[0]}, {score.shape[1]}), got {t.shape}")
        if t.size and (t.min() < 0 or t.max() >= score.shape[1]):
            raise ValueError(f"labels must lie in [0, {score.shape[1]}), got {t.min()}..{t.max()}")
        return t

    def _cross_entropy(self, score, t):
        """Mean cross-entropy of softmax(score) against labels ``t``; keeps ``y``."""
        # Softmax of scores shifted by their row maximum (exp never
        # overflows), and the log of the picked probability from the same
        # shifted scores, so that a confident wrong answer gives a large
        # loss, not log(0).
        z = score - score.max(axis=1, keepdims=True)
        e = np.exp(z)
        total = e.sum(axis=1, keepdims=True)
        self.y = e / total
        log_p = z[np.arange(score.shape[0]), t] - np.log(total[:, 0])
        return float(-log_p.mean())

    def backward(self, dout=1.0):
        n = self.t.shape[0]
        dx = self.y.copy()
        dx[np.arange(n), self.t] -= 1
        return dx * dx.dtype.type(dout / n)


class MAPLoss(SoftmaxWithLoss):
    """LeNet-5's loss (LeCun et al. 1998 §II.C, eq. 9), for :class:`RBF` scores.

    With the RBF penalties ``y_i = -score_i`` and the true class ``D``:

        E = y_D + log(exp(-j) + sum_i exp(-y_i))

    which is softmax cross-entropy over the K scores plus one extra,
    constant score ``-j``: a "rubbish" class that no label ever names. It
    stops the loss from pushing every penalty up once all the wrong ones
    are already larger than ``j`` (the paper: "j is a positive constant"
    that keeps the penalties of the incorrect classes from being pushed
    further up when they are already very large).

    Shapes as :class:`SoftmaxWithLoss`; ``y`` keeps the K class
    probabilities (the rubbish class's share is left out).
    """

    def __init__(self, j=10.0):
        if not (np.isfinite(j) and j > 0):
            raise ValueError(f"the MAP loss's constant j must be a positive number, got {j}")
        self.j = float(j)

    def config(self):
        return {"j": self.j}

    def _cross_entropy(self, score, t):
        # Labels were checked against the K class scores (forward), so no
        # label can name the rubbish class. Predictions come from ``score``,
        # not ``y``: once every penalty exceeds j by ~90, float32 ``y``
        # underflows to 0 and its argmax would say class 0.
        rubbish = np.full((score.shape[0], 1), -self.j, dtype=score.dtype)
        loss = super()._cross_entropy(np.concatenate([score, rubbish], axis=1), t)
        # Its score is a constant, so its gradient is dropped: keeping only
        # the K class columns makes backward's y - t the gradient of E.
        self.y = self.y[:, :-1]
        return loss


LOSSES = {cls.__name__: cls for cls in (SoftmaxWithLoss, MAPLoss)}
