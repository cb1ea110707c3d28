"""Benchmark: the spec-sheet scaling of `advisor.board_speed` against published ARM latencies.

No ARM board was ever measured here, so the only check of the scaling is published figures: the
TFLite guide's Pixel 2 (one big core) and the hosted-models page's Pixel 3 (CPU, 4 threads)
latencies in ../shared/published/. Each published float and int8 latency of a network the zoo has
a profile for is compared with the bundle's prediction for the reference machine, scaled by the
phone's core (clock x FP32 FLOPs per cycle x `ARM_EFFICIENCY`, the same rule as for the board
profiles). Those figures are from 2018-2020 TFLite builds, before XNNPACK was the default float
path, so today's kernels should beat them: a prediction below a published figure is expected;
one far above it would say the scaling is too pessimistic. Nothing here is tuned to them.

    python bench/board_scaling.py [--published ../shared/published] [--bundle models/current]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._report import publish  # noqa: E402

# The phones' big cores: (clock GHz, FP32 FLOPs per cycle) and the threads the figures used.
PHONES = {
    "pixel2-1-big-core": ("Pixel 2, 1 big core (Kryo 280, Cortex-A73 class, 2.35 GHz)", 2.35, 8, 1),
    "Pixel 3 (Android 10), CPU 4 threads": ("Pixel 3, 4 threads (Kryo 385 Gold, Cortex-A75 class, 2.5 GHz)",
                                            2.5, 8, 4),
}
# Published model names -> zoo profile names.
MODELS = {"mobilenet_v1_1.0_224": "mobilenet@224", "mobilenet_v2_1.0_224": "mobilenet_v2@224",
          "Mobilenet_V1_1.0_128": "mobilenet@128", "Mobilenet_V1_1.0_160": "mobilenet@160",
          "Mobilenet_V1_1.0_192": "mobilenet@192", "Mobilenet_V1_1.0_224": "mobilenet@224",
          "Mobilenet_V2_1.0_224": "mobilenet_v2@224", "inception_v3": "inception_v3@299",
          "Inception_V3": "inception_v3@299"}
# The published compressed models, in spec terms (the hosted '_quant' checkpoints are QAT-trained).
TECHNIQUES = {"qat-int8": "qat-int8", "ptq-dynamic": "ptq-dynamic"}


def published_rows(directory: Path) -> list[dict]:
    """(model, phone, technique, float ms, compressed ms) from the published CSVs."""
    out = []
    for name in ("tfmot_docs.csv", "more_published.csv"):
        path = directory / name
        if not path.is_file():
            continue
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("unit") != "ms" or row.get("device") not in PHONES or row.get("model") not in MODELS:
                    continue
                technique = TECHNIQUES.get(row["technique"]) or ("qat-int8" if "8-bit quantized" in row["technique"]
                                                                 else None)
                if technique is None:
                    continue
                out.append({"model": row["model"], "zoo": MODELS[row["model"]], "phone": row["device"],
                            "technique": technique, "float_ms": float(row["baseline_value"]),
                            "compressed_ms": float(row["compressed_value"])})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--published", default=str(ROOT.parent / "shared" / "published"))
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "board_scaling.md"))
    args = ap.parse_args()
    rows = published_rows(Path(args.published))
    if not rows:
        print(f"no published phone latencies under {args.published}: nothing to compare", file=sys.stderr)
        return 2

    import numpy as np

    from advisor import board_speed as S
    from advisor.bundle import DEFAULT_BUNDLE, load
    from advisor.errors import AdvisorError
    from advisor.features import device_features, feature_matrix
    from advisor.lookup import resolve_profile

    bundle = load(args.bundle or DEFAULT_BUNDLE)
    by_device = (bundle.card.get("training_data") or {}).get("by_device") or {}
    reference, ref_fp = S.reference_machine(bundle.predictor, by_device)
    ref_gflops = S.reference_gflops(bundle, reference)
    lines = [
        "# Spec-sheet scaling to ARM cores, against published phone latencies",
        "",
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; bundle {bundle.version}; reference machine "
        f"{reference} ({ref_gflops:.0f} GFLOP/s per thread as the bundle predicts ResNet-50); ARM efficiency "
        f"{S.ARM_EFFICIENCY:g}, band at least ÷{S.BAND:g}/×{S.BAND:g} (`advisor/board_speed.py`).",
        f"Reproduce: `python bench/board_scaling.py`. Published figures: {args.published} (2018-2020 TFLite "
        "builds; today's XNNPACK float kernels are faster, so predictions below them are expected).",
        "",
        "| network | phone | plan | published ms | predicted p50 [p10–p90] ms | predicted / published | in band |",
        "|---|---|---|---|---|---|---|",
    ]
    from advisor.devices import get_profile

    arm_fp = get_profile("jetson_tx2").fingerprint  # an ARM fingerprint the bundle never saw
    ratios, inside, unscaled, seen = [], [], [], set()
    for row in rows:
        title, ghz, flops, threads = PHONES[row["phone"]]
        scaling = S.BoardScaling(board=title, reference=reference, source="its published clock and cores",
                                 board_gflops=ghz * flops * S.ARM_EFFICIENCY,
                                 reference_gflops=ref_gflops, threads_board=threads)
        try:
            profile = resolve_profile(row["zoo"])
        except AdvisorError as exc:
            print(f"skipped {row['model']}: {exc}", file=sys.stderr)
            continue
        X = feature_matrix(profile, ["none", row["technique"]], device_features(ref_fp, 1))
        lat = S.scaled_prediction(bundle, X, scaling)["latency"]  # the answer path's own scaling and band
        raw = bundle.predict(feature_matrix(profile, ["none", row["technique"]], device_features(arm_fp, threads)))
        for i, (plan, published) in enumerate((("none", row["float_ms"]), (row["technique"], row["compressed_ms"]))):
            if (row["model"], row["phone"], plan) in seen:  # a float figure both tables give
                continue
            seen.add((row["model"], row["phone"], plan))
            unscaled.append(float(raw["latency"][i, 1]) / published)
            p10, p50, p90 = lat[i]
            ok = p10 <= published <= p90
            ratios.append(p50 / published)
            inside.append(ok)
            lines.append(f"| {row['model']} | {title} | {plan} | {published:g} | {p50:.3g} [{p10:.3g}–{p90:.3g}] | "
                         f"{p50 / published:.2f} | {'yes' if ok else 'NO'} |")
    ratios_arr = np.asarray(ratios)
    lines += ["", f"- {len(ratios)} published figures; predicted / published: median {np.median(ratios_arr):.2f}, "
              f"range {ratios_arr.min():.2f}–{ratios_arr.max():.2f}; inside the p10–p90 band: {sum(inside)} of "
              f"{len(inside)}.",
              f"- Without the scaling (the bundle's own answer for an ARM fingerprint it never saw, the Jetson TX2 "
              f"profile's, at the phone's threads): predicted / published median {np.median(unscaled):.3f}, "
              f"range {min(unscaled):.3f}–{max(unscaled):.3f}."]
    publish("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
