"""Minibatch training with per-epoch metrics, a progress bar and checkpoints."""
import contextlib
import functools
import math
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from zeronet import io


class Trainer:
    """Train ``network`` with ``optimizer`` on shuffled minibatches.

    Parameters
    ----------
    epochs, batch_size : int
    rng : numpy.random.Generator
        Shuffling and augmentation draw from it (and only from it).
    schedule : object with ``lr(epoch)`` and ``observe(epoch, val_error)``, optional
        Sets ``optimizer.lr`` at the start of every epoch; if it has a true
        ``finished`` attribute, training stops there.
    augment : callable ``(x_batch, rng) -> x_batch``, optional
        Applied to every training minibatch (e.g. random distortions).
    checkpoint : path, optional
        Written (atomically) after every epoch; ``fit(resume=True)`` continues
        from it, ending with the same weights as an uninterrupted run.
    eval_sets : dict name -> (x, t), optional
        Extra sets whose error is recorded every epoch (e.g. the test set for
        a learning-curve figure; never use it to choose hyperparameters).
    progress : bool
        Show a tqdm progress bar with ETA.
    on_epoch_end : callable ``(history)``, optional
        Called after every epoch (and its checkpoint) with the history so far.

    If the optimizer averages the weights (``average=``), every evaluation
    uses the averaged weights (the trained ones are recorded as
    ``*_error_raw``), and ``fit`` ends with the averages in the network.

    An optimizer that needs more than gradients may have two hooks, which
    the trainer calls if they exist (:class:`~zeronet.sdlm.SDLM` has both):
    ``before_batch(network, step, steps, sample)`` before batch ``step`` of
    the ``steps`` in a pass, where ``sample(n)`` returns ``(x, t)``, n
    training examples drawn at random and augmented like the batches; and
    ``after_backward(network)`` between ``backward`` and ``update``.
    """

    def __init__(self, network, optimizer, *, epochs, batch_size, rng, schedule=None,
                 augment=None, checkpoint=None, eval_sets=None, progress=True,
                 eval_batch_size=1000, log=print, on_epoch_end=None):
        self.network, self.optimizer = network, optimizer
        self.epochs, self.batch_size, self.rng = int(epochs), int(batch_size), rng
        self.schedule, self.augment = schedule, augment
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.eval_sets = eval_sets or {}
        self.progress, self.eval_batch_size, self.log = progress, eval_batch_size, log
        self.on_epoch_end = on_epoch_end
        self.history = []

    def evaluate(self, x, t):
        """``(mean loss, error rate)`` of the network on ``x (N, ...)``, ``t (N,)``."""
        losses, wrong = 0.0, 0
        for i in range(0, len(x), self.eval_batch_size):
            xb, tb = x[i:i + self.eval_batch_size], t[i:i + self.eval_batch_size]
            losses += self.network.loss(xb, tb, train=False) * len(xb)
            wrong += int(np.sum(self.network.loss_layer.score.argmax(axis=1) != tb))
        return losses / len(x), wrong / len(x)

    def fit(self, x_train, t_train, x_val=None, t_val=None, *, resume=False):
        """Train; returns the history, a list with one dict of metrics per epoch."""
        start = 0
        if resume and self.checkpoint and self.checkpoint.exists():
            last, self.history = io.load_checkpoint(self.checkpoint, self.network,
                                                    self.optimizer, self.schedule, self.rng)
            start = last + 1
            self.log(f"resumed from {self.checkpoint} after epoch {last + 1}")
        sets = {**({"val": (x_val, t_val)} if x_val is not None else {}), **self.eval_sets}
        params = self.network.parameters()
        # getattr: an optimizer of your own need not know about averaging.
        averaging = getattr(self.optimizer, "average", None) is not None
        for epoch in range(start, self.epochs):
            if getattr(self.schedule, "finished", False):
                self.log(f"the schedule ended training after epoch {epoch}")
                break
            record = self._train_epoch(epoch, x_train, t_train)
            if averaging:
                # The weights as trained, beside the averaged ones below.
                for name, (x, t) in sets.items():
                    record[f"{name}_loss_raw"], record[f"{name}_error_raw"] = self.evaluate(x, t)
            with self.optimizer.averaged(params) if averaging else contextlib.nullcontext():
                for name, (x, t) in sets.items():
                    record[f"{name}_loss"], record[f"{name}_error"] = self.evaluate(x, t)
            if self.schedule is not None:
                self.schedule.observe(epoch, record.get("val_error", record["train_error"]))
            self.history.append(record)
            self.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in record.items()))
            if self.checkpoint:
                io.save_checkpoint(self.checkpoint, self.network, self.optimizer, self.schedule,
                                   epoch=epoch, rng=self.rng, history=self.history)
            if self.on_epoch_end is not None:
                self.on_epoch_end(self.history)
        if averaging:
            self.optimizer.apply_average(params)
        return self.history

    def _sample(self, x, t, n):
        """``n`` training examples (all if fewer) drawn at random without
        replacement, augmented like the batches they stand for."""
        pick = self.rng.choice(len(x), size=min(n, len(x)), replace=False)
        xs = x[pick] if self.augment is None else self.augment(x[pick], self.rng)
        return xs, t[pick]

    def _train_epoch(self, epoch, x, t):
        if self.schedule is not None:
            self.optimizer.lr = self.schedule.lr(epoch)
        params = self.network.parameters()
        order = self.rng.permutation(len(x))
        steps = math.ceil(len(x) / self.batch_size)
        # getattr: most optimizers have neither hook (see the class docstring).
        before_batch = getattr(self.optimizer, "before_batch", None)
        after_backward = getattr(self.optimizer, "after_backward", None)
        sample = functools.partial(self._sample, x, t)
        loss_sum, wrong, seen = 0.0, 0, 0
        began = time.perf_counter()
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{self.epochs}", unit="batch",
                   disable=not self.progress, leave=False)
        for step in bar:
            if before_batch is not None:
                before_batch(self.network, step, steps, sample)
            idx = order[step * self.batch_size:(step + 1) * self.batch_size]
            xb, tb = x[idx], t[idx]
            if self.augment is not None:
                xb = self.augment(xb, self.rng)
            loss = self.network.loss(xb, tb, train=True)
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss} at epoch {epoch + 1}, batch {step + 1}: training "
                    f"diverged; try a smaller learning rate (now {self.optimizer.lr:g})")
            self.network.backward()
            if after_backward is not None:
                after_backward(self.network)
            self.optimizer.update(params)
            # Running training error, measured on the batches as they were
            # trained on (with augmentation and dropout).
            wrong += int(np.sum(self.network.loss_layer.score.argmax(axis=1) != tb))
            loss_sum += loss * len(idx)
            seen += len(idx)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", err=f"{wrong / seen:.4f}")
        bar.close()
        return {"epoch": epoch + 1, "lr": self.optimizer.lr, "train_loss": loss_sum / seen,
                "train_error": wrong / seen, "seconds": time.perf_counter() - began}
