"""Benchmark: how many TFLite operators and tensors one Keras layer becomes, per numeric mode.

A profile counts Keras layers; the .tflite file (its size, and the per-op cost of an invoke) counts
TFLite operators and tensors, and some layers expand into many (a MultiHeadAttention into a dozen
or more, a LayerNormalization into several; a BatchNormalization folds into nothing). This script
converts, for each layer type, a small model with the layer and the same model without it, under
`none`, `ptq-dynamic`, `ptq-float16` and `ptq-int8`, and reports the difference in operators (all
subgraphs, a recurrent layer's loop body included) and tensors. The table feeds
`advisor.features.TFLITE_OPS` (ops per layer, as converted without quantization).

    .venv/bin/python bench/tflite_ops.py [--out bench/results/tflite_ops]

Real conversions on random weights; about a minute on 2 cores. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = ("none", "ptq-dynamic", "ptq-float16", "ptq-int8")
#: Conversions that crash the converter natively (the process dies): not attempted.
CRASHES = {("GRU", "ptq-int8"): "the int8 converter segfaults on GRU (as in the campaigns)"}


def _cases(keras):
    """(layer type, input shape, function adding the layer to a tensor) for each layer type."""
    L = keras.layers
    from measure.zoo import position_embedding_class

    pe = position_embedding_class()
    img, seq = (16, 16, 16), (12, 16)
    return [
        ("Conv2D", img, lambda x: L.Conv2D(16, 3, padding="same")(x)),
        ("DepthwiseConv2D", img, lambda x: L.DepthwiseConv2D(3, padding="same")(x)),
        ("SeparableConv2D", img, lambda x: L.SeparableConv2D(16, 3, padding="same")(x)),
        ("BatchNormalization", img, lambda x: L.BatchNormalization()(x)),
        ("ReLU", img, lambda x: L.ReLU()(x)),
        ("Activation", img, lambda x: L.Activation("swish")(x)),
        ("Add", img, lambda x: L.Add()([x, x])),
        ("Multiply", img, lambda x: L.Multiply()([x, x])),
        ("Concatenate", img, lambda x: L.Concatenate()([x, x])),
        ("ZeroPadding2D", img, lambda x: L.ZeroPadding2D(1)(x)),
        ("MaxPooling2D", img, lambda x: L.MaxPooling2D()(x)),
        ("AveragePooling2D", img, lambda x: L.AveragePooling2D()(x)),
        ("GlobalAveragePooling2D", img, lambda x: L.Reshape((1, 1, 16))(L.GlobalAveragePooling2D()(x))),
        ("Dense", seq, lambda x: L.Dense(16)(x)),
        ("LayerNormalization", seq, lambda x: L.LayerNormalization()(x)),
        ("MultiHeadAttention", seq, lambda x: L.MultiHeadAttention(2, 8)(x, x)),
        ("PositionEmbedding", seq, lambda x: pe(12, 16)(x)),
        ("LSTM", seq, lambda x: L.LSTM(16, return_sequences=True)(x)),
        ("GRU", seq, lambda x: L.GRU(16, return_sequences=True)(x)),
    ]


def _count(blob: bytes) -> tuple[int, int]:
    """(operators in every subgraph, tensors in every subgraph) of a TFLite flatbuffer."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(blob, 0)
    ops = tensors = 0
    for i in range(model.SubgraphsLength()):
        g = model.Subgraphs(i)
        ops += g.OperatorsLength()
        tensors += g.TensorsLength()
    return ops, tensors


def _model(keras, shape, add=None):
    """input -> Dense(16) (so every case has a weighted layer before it) -> [layer] -> flatten -> Dense(4)."""
    L = keras.layers
    x = inp = keras.Input(shape, batch_size=1)
    x = L.Dense(shape[-1])(x)
    if add is not None:
        x = add(x)
    x = L.Flatten()(x)
    out = L.Dense(4)(x)
    return keras.Model(inp, out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "tflite_ops"))
    args = ap.parse_args()

    from advisor.fingerprint import collect_fingerprint, fingerprint_id
    from advisor.techniques import Pipeline
    from measure._tf import keras as get_keras
    from measure.compress import Compressed, convert

    keras = get_keras()
    keras.utils.set_random_seed(0)
    results = []
    for name, shape, add in _cases(keras):
        rep = np.random.default_rng(0).normal(size=(8, *shape)).astype(np.float32)
        row = {"layer": name}
        for mode in MODES:
            if (name, mode) in CRASHES:
                row[mode] = {"ops": None, "tensors": None, "why": CRASHES[name, mode]}
                continue
            counts = []
            for with_layer in (False, True):
                model = _model(keras, shape, add if with_layer else None)
                blob = convert(Compressed(model, Pipeline.parse(mode), "none"), rep)
                counts.append(_count(blob))
            row[mode] = {"ops": counts[1][0] - counts[0][0], "tensors": counts[1][1] - counts[0][1]}
        results.append(row)
        print(name, {m: row[m]["ops"] for m in MODES}, file=sys.stderr, flush=True)

    def cell(c: dict) -> str:
        return "n/a" if c["ops"] is None else f"{c['ops']} ({c['tensors']})"

    fp = collect_fingerprint()
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    Path(args.out + ".json").write_text(json.dumps({"date_utc": date, "machine_id": fingerprint_id(fp),
                                                    "rows": results}, indent=1))
    lines = ["# TFLite operators (and tensors) one Keras layer becomes", "",
             f"{date}; TensorFlow's converter of this project (`python bench/tflite_ops.py`). Each cell: "
             "operators added by the layer (tensors added), against the same model without it.", "",
             "| layer | " + " | ".join(MODES) + " |", "|---|" + "---:|" * len(MODES)]
    for r in results:
        lines.append(f"| {r['layer']} | " + " | ".join(cell(r[m]) for m in MODES) + " |")
    lines += ["", *(f"n/a: {why}." for why in sorted(set(CRASHES.values())))]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
