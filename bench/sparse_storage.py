"""Benchmark: what the TFLite converter stores for pruned weights, per layer type.

Builds one-layer Keras models (Conv2D 3x3 and 1x1, DepthwiseConv2D, Dense, Embedding), zeroes a
fraction of the kernel at random, converts with `Optimize.EXPERIMENTAL_SPARSITY` (as
`measure.compress.convert` does for pruned float plans) and prints the bytes saved per weight
against the dense conversion. Not a test; about a minute on one core. Results of 2026-12-03 are
in bench/results/sparse_storage.md.

    .venv/bin/python bench/sparse_storage.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from measure._tf import keras as get_keras  # noqa: E402 - after the path is set
from measure._tf import tf as get_tf  # noqa: E402

KINDS = ("conv", "conv1", "dw", "dense", "embed")
SPARSITIES = (0.5, 0.8, 0.9)


def build(keras, kind: str, channels: int):
    """A model of one weighted layer of `kind` with `channels` output channels."""
    L = keras.layers
    if kind == "dense":
        x = inp = keras.Input((64,))
        return keras.Model(inp, L.Dense(channels)(x))
    if kind == "embed":
        x = inp = keras.Input((8,), dtype="int32")
        return keras.Model(inp, L.Embedding(4000, channels)(x))
    x = inp = keras.Input((16, 16, channels))
    layer = {"conv": lambda: L.Conv2D(channels, 3, padding="same"), "conv1": lambda: L.Conv2D(channels, 1),
             "dw": lambda: L.DepthwiseConv2D(3, padding="same")}[kind]()
    return keras.Model(inp, layer(x))


def converted_bytes(tf, model, sparse: bool) -> int:
    """Size of the float .tflite file, with sparse tensor encoding or without."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if sparse:
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return len(converter.convert())


def main() -> int:
    keras, tf = get_keras(), get_tf()
    rng = np.random.default_rng(0)
    for kind in KINDS:
        for channels in (32, 128):
            model = build(keras, kind, channels)
            weights = model.layers[1].get_weights()
            n = weights[0].size
            dense = converted_bytes(tf, model, sparse=False)
            cells = []
            for s in SPARSITIES:
                kernel = weights[0].copy().ravel()
                kernel[rng.permutation(n)[: int(s * n)]] = 0
                model.layers[1].set_weights([kernel.reshape(weights[0].shape), *weights[1:]])
                saved = (dense - converted_bytes(tf, model, sparse=True)) / n
                cells.append(f"s={s}: {saved:+.2f} B/w")
            print(kind, channels, "weights", n, "dense file", dense, *cells, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
