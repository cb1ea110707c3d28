"""Benchmark: networks nobody measured, of kinds the dataset has few of, predicted then measured.

`advisor evaluate --split family` holds out families the dataset has many networks of. A user's
network can hold layers no training network had (a 1-D convolution over audio, a transposed
convolution in a decoder) or layers far larger than any timed (attention over 1,024 tokens).
This builds eight such small networks with random weights (Keras files, as a user would pass
them), asks the bundle for each under `none` and `ptq-int8` (`Advisor.plan`, what `advisor
verify` prints), measures each on this machine into a scratch store (the dataset is not
touched), and reports predicted p10/p50/p90 against measured, and whether the answer warned
that layers lie outside what the training data timed (`advisor.coverage`).

    python bench/unseen.py [--bundle models/current] [--out bench/results/unseen]

About three minutes on 2 cores; keep the machine otherwise idle while it measures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _report import publish  # noqa: E402

TECHNIQUES = ("none", "ptq-int8")


def _networks(keras) -> dict:
    """Name -> (what it is, a Keras model): eight kinds of network the zoo and the sampler lack."""
    L = keras.layers
    out = {}
    i = keras.Input((16000, 1))
    x = L.Conv1D(16, 9, strides=4, activation="relu")(i)
    x = L.MaxPooling1D(4)(x)
    x = L.Conv1D(32, 5, activation="relu")(x)
    out["audio-conv1d"] = ("1-D convolutions over a 1 s, 16 kHz signal",
                           keras.Model(i, L.Dense(10, activation="softmax")(L.GlobalAveragePooling1D()(x))))
    i = keras.Input((64, 64, 3))
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(i)
    x = L.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    x = L.UpSampling2D()(x)
    x = L.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu")(x)
    out["decoder-transpose"] = ("an encoder-decoder: nearest up-sampling and a transposed convolution",
                                keras.Model(i, L.Conv2D(2, 1)(x)))
    i = keras.Input((64, 64, 3))
    x = L.Conv2D(32, 3, strides=2, padding="same", activation="relu")(i)
    y = L.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)
    y = L.UpSampling2D(interpolation="bilinear")(y)
    x = L.Concatenate()([x, y])
    out["fpn-bilinear"] = ("a feature-pyramid step: bilinear up-sampling and a concatenation",
                           keras.Model(i, L.Conv2D(8, 1)(x)))
    i = keras.Input((56, 56, 64))
    x = L.Conv2D(128, 1, activation="relu")(i)
    x = L.Conv2D(128, 3, padding="same", groups=32, activation="relu")(x)
    x = L.Conv2D(64, 1)(x)
    x = L.Add()([i, x])
    out["resnext-block"] = ("a ResNeXt block: a 32-group 3x3 convolution between two 1x1",
                            keras.Model(i, L.Dense(10)(L.GlobalAveragePooling2D()(x))))
    i = keras.Input((32, 32, 8))
    x = L.Conv2D(16, 3, padding="same")(i)
    x = L.Reshape((32 * 32, 16))(x)
    x = L.LayerNormalization()(x)
    x = L.MultiHeadAttention(2, 8)(x, x)
    out["attention-1024"] = ("self-attention over 1,024 tokens (a 32x32 feature map)",
                             keras.Model(i, L.Dense(10)(L.GlobalAveragePooling1D()(x))))
    i = keras.Input((50,), dtype="int32")
    x = L.Embedding(5000, 32)(i)
    out["bilstm-text"] = ("a bidirectional LSTM over 50 tokens",
                          keras.Model(i, L.Dense(2, activation="softmax")(L.Bidirectional(L.LSTM(32))(x))))
    i = keras.Input((32, 32, 3))
    x = L.SeparableConv2D(32, 3, activation="relu")(i)
    x = L.SeparableConv2D(64, 3, strides=2)(x)
    x = L.GlobalMaxPooling2D()(L.LeakyReLU()(x))
    out["separable-cnn"] = ("separable convolutions, a leaky ReLU and global max pooling",
                            keras.Model(i, L.Dense(10)(x)))
    i = keras.Input((20,))
    x = L.Dense(64, activation="relu")(i)
    x = L.BatchNormalization()(x)
    x = L.Dense(64, activation="tanh")(x)
    out["tabular-mlp"] = ("a 3-layer MLP on 20 tabular features", keras.Model(i, L.Dense(1)(x)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=str(ROOT / "models" / "current"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "unseen"))
    args = ap.parse_args(argv)

    from advisor.api import Advisor
    from advisor.fingerprint import collect_fingerprint, fingerprint_id
    from measure._tf import keras as _keras
    from measure.verify import verify_recommendation

    keras = _keras()
    advisor = Advisor.load(args.bundle)
    work = Path(tempfile.mkdtemp(prefix="unseen-"))
    rows = []
    for name, (what, model) in _networks(keras).items():
        path = work / f"{name}.keras"
        model.save(path)
        for technique in TECHNIQUES:
            rec = advisor.plan(str(path), technique)
            warned = any("outside what the training data timed" in line for line in rec.explanation)
            band = rec.predicted["latency_ms"]
            try:
                result = verify_recommendation(rec, model=str(path), device="local", data=None,
                                               store=work / "store", threads=1, input_size=None)
                measured = result["measured"].get("latency_ms")
            except Exception as exc:  # a conversion the converter refuses: recorded, the run goes on
                measured = None
                print(f"{name} {technique}: not measured ({str(exc).splitlines()[0][:120]})", file=sys.stderr)
            rows.append({"network": name, "what": what, "technique": technique, "warned": warned,
                         "p10": band["p10"], "p50": band["p50"], "p90": band["p90"], "measured": measured})
            print(rows[-1], flush=True)
    ok = [r for r in rows if r["measured"]]
    within = [abs(r["p50"] / r["measured"] - 1) <= 0.10 for r in ok]
    inside = [r["p10"] <= r["measured"] <= r["p90"] for r in ok]
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    fp = fingerprint_id(collect_fingerprint())
    lines = ["# Networks nobody measured: predicted against measured latency (`bench/unseen.py`)", "",
             f"Bundle {advisor.bundle.version}; measured {when} on this machine (fingerprint {fp}), 1 thread, random "
             "weights, into a scratch store. `warned`: the answer named layers outside what the training data "
             "timed.", "",
             "| network | what | technique | p10 | p50 | p90 | measured | measured / p50 | in band | warned |",
             "|---|---|---|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        m = r["measured"]
        measured = (f"{m:.4g} | {m / r['p50']:.2f} | {'yes' if r['p10'] <= m <= r['p90'] else 'no'}" if m
                    else "not measured | - | -")
        lines.append(f"| {r['network']} | {r['what']} | {r['technique']} | {r['p10']:.4g} | {r['p50']:.4g} | "
                     f"{r['p90']:.4g} | {measured} | {'yes' if r['warned'] else 'no'} |")
    lines += ["", f"Within ±10%: {sum(within)} of {len(ok)}; inside p10–p90: {sum(inside)} of {len(ok)}; "
              f"answers that warned: {sum(r['warned'] for r in rows)} of {len(rows)}.", ""]
    publish("\n".join(lines), Path(args.out).with_suffix(".md"))
    Path(args.out).with_suffix(".json").write_text(json.dumps({"bundle": advisor.bundle.version, "measured": when,
                                                               "fingerprint": fp, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
