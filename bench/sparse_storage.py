"""Benchmark: what the TFLite converter stores for pruned weights, per layer type.

Builds one-layer Keras models (Conv2D 3x3 and 1x1, DepthwiseConv2D, Dense, Embedding), zeroes a
fraction of the kernel at random, converts with `Optimize.EXPERIMENTAL_SPARSITY` (as
`measure.compress.convert` does for pruned float plans) and prints the bytes saved per weight
against the dense conversion. Not a test; about a minute on one core. Results of 2026-12-03 are
in bench/results/sparse_storage.md.

With `--encoding`, checks the encoding rule the features count (`advisor.features._sparse_index`)
on random Conv2D and Dense shapes and sparsities: what a sparse kernel takes beyond its non-zero
values, less the index (1, 2 or 4 bytes per non-zero, by the largest input-channel index) and
segment entries (one per row of the other dimensions, plus one, as wide as the non-zero count
needs), should leave the same fixed cost per tensor whatever the shape.

    .venv/bin/python bench/sparse_storage.py [--encoding]
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


def encoding(keras, tf, trials: int = 40) -> None:
    """Print, per random shape, the sparse tensor's bytes beyond its non-zero values and what the
    encoding rule leaves of them (the fixed cost per tensor)."""
    from advisor.features import _index_width

    rng = np.random.default_rng(0)
    L = keras.layers
    for _ in range(trials):
        kind = str(rng.choice(["dense", "conv", "conv1"]))
        cin, cout = int(rng.choice([3, 8, 24, 100, 255, 256, 257, 300, 700, 2048])), int(rng.choice([4, 16, 64, 300]))
        k = int(rng.choice([3, 5])) if kind == "conv" else 1
        if cin * cout * k * k > 3e6:
            continue
        inp = keras.Input((cin,) if kind == "dense" else (8, 8, cin))
        layer = L.Dense(cout) if kind == "dense" else L.Conv2D(cout, k, padding="same")
        model = keras.Model(inp, layer(inp))
        kernel, bias = layer.get_weights()
        dense = converted_bytes(tf, model, sparse=False)
        s = float(rng.choice([0.5, 0.8, 0.9, 0.95]))
        flat = kernel.ravel().copy()
        flat[rng.permutation(flat.size)[: int(s * flat.size)]] = 0
        layer.set_weights([flat.reshape(kernel.shape), bias])
        nonzero = int(np.count_nonzero(flat))
        beyond = converted_bytes(tf, model, sparse=True) - (dense - 4 * flat.size) - 4 * nonzero
        rule = nonzero * _index_width(cin - 1) + (cout * k * k + 1) * _index_width(nonzero)
        print(f"{kind:5} cin {cin:5} cout {cout:4} k {k} sparsity {s:.2f}: {beyond:7} bytes beyond the values, "
              f"rule {rule:7}, fixed {beyond - rule:5}", flush=True)


def main() -> int:
    keras, tf = get_keras(), get_tf()
    if "--encoding" in sys.argv[1:]:
        encoding(keras, tf)
        return 0
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
