"""The trainer: it learns, it records, it resumes exactly, it stops on NaN."""
import numpy as np
import pytest

from zeronet import io, models, optimizers
from zeronet import layers as L
from zeronet.network import Sequential
from zeronet.sdlm import SDLM
from zeronet.trainer import Trainer

METRICS = ("epoch", "lr", "train_loss", "train_error", "val_loss", "val_error")


def blobs(seed, n=200, features=6, classes=3, dtype=np.float32):
    """Gaussian blobs, one per class: an easy problem for a small network."""
    rng = np.random.default_rng(seed)
    means = 2 * rng.standard_normal((classes, features))
    t = rng.integers(0, classes, size=n)
    x = means[t] + 0.7 * rng.standard_normal((n, features))
    return x.astype(dtype), t


def quiet_trainer(network, optimizer, **kwargs):
    messages = []
    trainer = Trainer(network, optimizer, progress=False, log=messages.append, **kwargs)
    trainer.messages = messages
    return trainer


def test_trainer_reduces_the_loss_and_records_history():
    x, t = blobs(0)
    xv, tv = blobs(0, n=60)[0], blobs(0, n=60)[1]
    net = models.mlp(np.random.default_rng(1), (16,), in_features=6, num_classes=3)
    trainer = quiet_trainer(net, optimizers.Adam(lr=0.01), epochs=8, batch_size=20,
                            rng=np.random.default_rng(2), eval_sets={"test": (xv, tv)})
    history = trainer.fit(x, t, xv, tv)
    assert len(history) == 8 and history is trainer.history
    for epoch, record in enumerate(history, start=1):
        assert record["epoch"] == epoch
        for key in (*METRICS, "test_loss", "test_error", "seconds"):
            assert key in record, f"epoch {epoch} lacks {key}: {record}"
        assert 0 <= record["train_error"] <= 1 and 0 <= record["val_error"] <= 1
    first, last = history[0]["train_loss"], history[-1]["train_loss"]
    assert last < 0.5 * first, f"train loss went from {first:.4f} to only {last:.4f}"
    assert history[-1]["val_error"] < 0.15, f"val error {history[-1]['val_error']:.3f}"
    assert history[-1]["val_error"] == history[-1]["test_error"]
    loss, error = trainer.evaluate(xv, tv)
    assert (loss, error) == (history[-1]["val_loss"], history[-1]["val_error"])
    assert len(trainer.messages) == 8


def test_training_is_reproducible_from_seeds():
    x, t = blobs(3)

    def run():
        net = models.mlp(np.random.default_rng(4), (8,), in_features=6, num_classes=3)
        trainer = quiet_trainer(net, optimizers.Momentum(lr=0.05), epochs=2, batch_size=32,
                                rng=np.random.default_rng(5))
        trainer.fit(x, t)
        return net

    a, b = run(), run()
    for p, q in zip(a.parameters(), b.parameters()):
        assert np.array_equal(p.data, q.data), p.name


class HookedSGD(optimizers.SGD):
    """SGD with both optimizer hooks, recording what the trainer hands them."""

    def __init__(self, lr):
        super().__init__(lr)
        self.calls = []

    def before_batch(self, network, step, steps, sample):
        xs, ts = sample(5)
        self.calls.append(("before_batch", step, steps, xs.copy(), ts.copy()))

    def after_backward(self, network):
        grads = [p.grad.copy() for p in network.parameters()]
        self.calls.append(("after_backward", self.t, grads))


def test_trainer_calls_the_optimizer_hooks_around_every_batch():
    # The hooks SDLM uses, in a plain optimizer: before_batch before every
    # batch, with a sampler that draws from the trainer's generator and
    # augments; after_backward with the batch's gradients, before update.
    x, t = blobs(6, n=50)
    net = models.mlp(np.random.default_rng(7), (4,), in_features=6, num_classes=3)
    optimizer = HookedSGD(lr=0.1)
    updates = []
    update = optimizer.update
    optimizer.update = lambda params: (updates.append([p.grad.copy() for p in params]),
                                       update(params))
    quiet_trainer(net, optimizer, epochs=2, batch_size=20, rng=np.random.default_rng(8),
                  augment=add_noise).fit(x, t)
    kinds = [call[0] for call in optimizer.calls]
    assert kinds == ["before_batch", "after_backward"] * 6        # 3 batches a pass
    befores = optimizer.calls[0::2]
    assert [(c[1], c[2]) for c in befores] == [(0, 3), (1, 3), (2, 3)] * 2
    for _, _, _, xs, ts in befores:
        assert xs.shape == (5, 6) and ts.shape == (5,)
        # Augmented: no sampled row is a training row as it stands.
        assert not any((row == x).all(axis=1).any() for row in xs)
        # The labels are those of the rows drawn (noise 0.3 keeps the nearest).
        nearest = np.argmin(((xs[:, None] - x[None]) ** 2).sum(axis=2), axis=1)
        assert np.array_equal(ts, t[nearest])
    for step, (_, t_before_update, grads) in enumerate(optimizer.calls[1::2]):
        assert t_before_update == step                 # before this batch's update
        for g, u in zip(grads, updates[step]):
            assert np.array_equal(g, u)                # this batch's gradients


# ------------------------------------------------------------------ resume ----

def add_noise(x, rng):
    """An augmentation that draws from the trainer's generator."""
    return x + rng.normal(0.0, 0.3, size=x.shape).astype(x.dtype)


def conv_dropout_net(rng):
    return Sequential([
        ("conv", L.Convolution(1, 3, 3, pad=1, rng=rng)),
        ("relu", L.ReLU()),
        ("pool", L.MaxPooling(2, 1)),              # (2, 3) -> (1, 2)
        ("drop", L.Dropout(0.3, rng=np.random.default_rng(rng.integers(1 << 30)))),
        ("fc", L.Affine(3 * 1 * 2, 3, rng=rng)),
    ])


def setup(kind):
    """Fresh objects built from fixed seeds, as a new process would build them."""
    rng = np.random.default_rng(10)
    schedule, augment, reshape = None, None, False
    if kind == "momentum":
        net = models.mlp(rng, (12,), in_features=6, num_classes=3)
        optimizer = optimizers.Momentum(lr=0.05)
    elif kind == "dropout":
        net = Sequential([("fc1", L.Affine(6, 16, rng=rng)), ("relu", L.ReLU()),
                          ("drop", L.Dropout(0.5, rng=np.random.default_rng(11))),
                          ("fc2", L.Affine(16, 3, rng=rng))])
        optimizer = optimizers.Adam(lr=0.01)
    elif kind == "augment":
        net = models.mlp(rng, (12,), in_features=6, num_classes=3)
        optimizer = optimizers.SGD(lr=0.1, weight_decay=0.001)
        augment = add_noise
    elif kind == "averaged":
        net = models.mlp(rng, (12,), in_features=6, num_classes=3)
        optimizer = optimizers.Momentum(lr=0.05, average=0.9)
    elif kind == "plateau":
        net = models.mlp(rng, (12,), in_features=6, num_classes=3)
        optimizer = optimizers.Momentum(lr=0.1)
        # min_delta so large that only the first epoch counts as an improvement.
        schedule = optimizers.ReduceOnPlateau(0.1, patience=2, min_delta=10.0)
    elif kind == "conv_everything":
        net = conv_dropout_net(rng)
        optimizer = optimizers.Momentum(lr=0.05)
        schedule = optimizers.PiecewiseConstant([3], [0.05, 0.01])
        augment, reshape = add_noise, True
    elif kind == "adam":
        # Adam's step size depends on its step count t and on m and v.
        net = conv_dropout_net(rng)
        optimizer = optimizers.Adam(lr=0.01)
        schedule = optimizers.PiecewiseConstant([3], [0.01, 0.002])
        reshape = True
    elif kind == "sdlm_running":
        net = conv_dropout_net(rng)
        optimizer = SDLM(lr=0.01, samples=40, running=0.3)
        reshape = True
    elif kind == "sdlm":
        # The curvature is re-estimated every pass from examples the trainer's
        # generator picks (and augments): the resumed run must pick the same.
        net = conv_dropout_net(rng)
        optimizer = SDLM(lr=0.01, samples=40, momentum=0.5, estimates_per_pass=3)
        augment, reshape = add_noise, True
    return net, optimizer, schedule, augment, reshape


def train(kind, checkpoint, epochs, resume=False):
    net, optimizer, schedule, augment, reshape = setup(kind)
    x, t = blobs(12)
    xv, tv = blobs(13, n=50)
    if reshape:
        x, xv = x.reshape(-1, 1, 2, 3), xv.reshape(-1, 1, 2, 3)
    trainer = quiet_trainer(net, optimizer, epochs=epochs, batch_size=32,
                            rng=np.random.default_rng(14), schedule=schedule, augment=augment,
                            checkpoint=checkpoint)
    trainer.fit(x, t, xv, tv, resume=resume)
    return trainer


@pytest.mark.parametrize("kind", ["momentum", "dropout", "augment", "plateau", "conv_everything",
                                  "averaged", "adam", "sdlm", "sdlm_running"])
def test_resume_after_interrupt_equals_uninterrupted(kind, tmp_path):
    full = train(kind, tmp_path / "full.h5", epochs=4)
    train(kind, tmp_path / "part.h5", epochs=2)                   # "interrupted" after 2
    resumed = train(kind, tmp_path / "part.h5", epochs=4, resume=True)
    assert any("resumed" in m for m in resumed.messages), resumed.messages

    for p, q in zip(full.network.parameters(), resumed.network.parameters()):
        assert p.name == q.name
        assert np.array_equal(p.data, q.data), (
            f"{kind}: {p.name} differs after resume by up to {np.max(np.abs(p.data - q.data)):.3g}")
    assert len(resumed.history) == len(full.history) == 4
    for a, b in zip(full.history, resumed.history):
        for key in METRICS:
            assert a[key] == b[key], f"{kind}, epoch {a['epoch']}: {key} {a[key]!r} vs {b[key]!r}"
    assert resumed.optimizer.t == full.optimizer.t
    for key, slot in full.optimizer.slots.items():
        assert np.array_equal(slot, resumed.optimizer.slots[key]), key
    assert full.rng.bit_generator.state == resumed.rng.bit_generator.state
    for key, g in full.network.generators().items():
        assert g.bit_generator.state == resumed.network.generators()[key].bit_generator.state
    if full.schedule is not None:
        assert full.schedule.state_dict() == resumed.schedule.state_dict()


def test_averaged_training_evaluates_and_ends_with_the_average():
    trainer = train("averaged", None, epochs=3)
    record = trainer.history[-1]
    assert {"val_error", "val_error_raw", "val_loss", "val_loss_raw"} <= set(record)
    x, t = blobs(13, n=50)
    # fit() leaves the averaged weights in the network: its error now is
    # the recorded averaged one, not the raw one.
    assert trainer.evaluate(x, t) == (record["val_loss"], record["val_error"])
    for p in trainer.network.parameters():
        assert np.array_equal(p.data, trainer.optimizer.slots[f"avg/{p.name}"]), p.name


def test_reduce_on_plateau_state_survives_resume(tmp_path):
    full = train("plateau", tmp_path / "full.h5", epochs=4)
    resumed_part = train("plateau", tmp_path / "part.h5", epochs=2)
    assert resumed_part.schedule.bad_epochs == 1          # one bad epoch before the stop
    resumed = train("plateau", tmp_path / "part.h5", epochs=4, resume=True)
    # Epoch 1 sets the best; epochs 2 and 3 do not improve, so with patience 2
    # the rate is divided by 10 for epoch 4 -- but only if the count of bad
    # epochs made before the interruption was restored.
    rates = [r["lr"] for r in resumed.history]
    assert rates == pytest.approx([0.1, 0.1, 0.1, 0.01], rel=1e-12), rates
    assert [r["lr"] for r in full.history] == rates
    assert resumed.schedule.reductions == full.schedule.reductions == 1


def test_resume_without_a_checkpoint_starts_from_scratch(tmp_path):
    trainer = train("momentum", tmp_path / "none.h5", epochs=1, resume=True)
    assert [r["epoch"] for r in trainer.history] == [1]
    assert (tmp_path / "none.h5").exists()


def test_resume_of_a_finished_run_trains_no_more(tmp_path):
    done = train("momentum", tmp_path / "ck.h5", epochs=2)
    again = train("momentum", tmp_path / "ck.h5", epochs=2, resume=True)
    assert again.history == done.history
    for p, q in zip(done.network.parameters(), again.network.parameters()):
        assert np.array_equal(p.data, q.data)


# --------------------------------------------------------------------- NaN ----

def test_nan_in_the_input_raises_naming_the_epoch():
    x, t = blobs(20)
    x[17, 2] = np.nan
    net = models.mlp(np.random.default_rng(21), (8,), in_features=6, num_classes=3)
    trainer = quiet_trainer(net, optimizers.SGD(lr=0.1), epochs=3, batch_size=50,
                            rng=np.random.default_rng(22))
    with pytest.raises(FloatingPointError, match=r"at epoch 1\b"):
        trainer.fit(x, t)


def test_nan_in_a_later_epoch_names_that_epoch(tmp_path):
    x, t = blobs(23)
    calls = []

    def poison_after_first_epoch(xb, rng):
        calls.append(1)
        if len(calls) > 4:          # 200 examples / batch 50 = 4 batches per epoch
            xb = xb.copy()
            xb[0, 0] = np.nan
        return xb

    net = models.mlp(np.random.default_rng(24), (8,), in_features=6, num_classes=3)
    checkpoint = tmp_path / "ck.h5"
    trainer = quiet_trainer(net, optimizers.SGD(lr=0.1), epochs=3, batch_size=50,
                            rng=np.random.default_rng(25), augment=poison_after_first_epoch,
                            checkpoint=checkpoint)
    with pytest.raises(FloatingPointError, match=r"at epoch 2, batch 1") as info:
        trainer.fit(x, t)
    assert "learning rate" in str(info.value)
    # The checkpoint of the last good epoch is intact.
    epoch, history = io.load_checkpoint(checkpoint, net, optimizers.SGD(), None,
                                        np.random.default_rng(0))
    assert epoch == 0 and len(history) == 1


def test_divergence_from_a_huge_learning_rate_raises():
    x, t = blobs(26)
    net = models.mlp(np.random.default_rng(27), (32,), in_features=6, num_classes=3,
                     activation="relu")
    trainer = quiet_trainer(net, optimizers.SGD(lr=1e30), epochs=5, batch_size=20,
                            rng=np.random.default_rng(28))
    with np.errstate(all="ignore"):
        with pytest.raises(FloatingPointError, match=r"epoch \d+.*diverged"):
            trainer.fit(x, t)
