"""Train the book's SimpleConvNet on MNIST, as ゼロから作る Deep Learning §7.5
does in ``ch07/train_convnet.py``: Adam at lr 0.001, batches of 100, 20 epochs.

    python reproduce/simple_convnet.py           # the book's 20 epochs: minutes
    python reproduce/simple_convnet.py --quick   # seconds: 2 epochs on 2,000 digits

A template for your own network: change the layers (zeronet.models.simple_convnet
lists them), the optimizer or the data, and run it again.
"""
import argparse
import time
from pathlib import Path

import zeronet  # before NumPy: it tunes OpenBLAS's threads, which NumPy loads

import numpy as np

from zeronet import datasets, models
from zeronet.optimizers import Adam
from zeronet.trainer import Trainer

BOOK_TEST_ACCURACY = 0.9896     # the book's §7.5 run, per study notes of the book

parser = argparse.ArgumentParser(description="Train the book's SimpleConvNet on MNIST.")
parser.add_argument("--quick", action="store_true", help="2 epochs on 2,000 digits (seconds)")
parser.add_argument("--epochs", type=int, default=20, help="training passes (the book: 20)")
parser.add_argument("--seed", type=int, default=0, help="seed of the random generator")
parser.add_argument("--data-dir", help="folder holding mnist/ (default: $ZERONET_DATA, else data/)")
parser.add_argument("--save", default="runs/simple_convnet.h5", help="where to write the weights")
args = parser.parse_args()

mnist = datasets.load_mnist(args.data_dir)     # uint8 digits (N, 28, 28), labels 0..9 (N,)
x_train, t_train, x_test, t_test = mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test
epochs = args.epochs
if args.quick:
    x_train, t_train, x_test, t_test = x_train[:2000], t_train[:2000], x_test[:1000], t_test[:1000]
    epochs = 2

rng = np.random.default_rng(args.seed)         # every random draw comes from here
network = models.simple_convnet(rng)           # conv 30@5x5 - ReLU - pool - 100 - ReLU - 10
trainer = Trainer(network, Adam(lr=0.001), epochs=epochs, batch_size=100, rng=rng)
start = time.perf_counter()
trainer.fit(x_train, t_train)
minutes = (time.perf_counter() - start) / 60

accuracy = network.accuracy(x_test, t_test)
print(f"test accuracy {accuracy:.2%} on {len(x_test):,} digits (the book: "
      f"{BOOK_TEST_ACCURACY:.2%}); {epochs} epochs in {minutes:.1f} min")
Path(args.save).parent.mkdir(parents=True, exist_ok=True)
zeronet.save(network, args.save, metadata={"test_accuracy": accuracy, "epochs": epochs})
print(f"weights saved to {args.save}; zeronet.load({str(args.save)!r}) reads them back")
