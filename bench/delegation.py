"""Benchmark: which kernels run a compressed network, XNNPACK's or TFLite's own?

The TFLite interpreter hands what XNNPACK supports to the XNNPACK delegate and runs the rest in
its built-in kernels; each run of delegated operators between two that are not is one delegate
partition. Whether a numeric mode's operators stay in XNNPACK decides its speed more than its
arithmetic does: this script converts zoo networks under each post-training mode, counts the
delegate partitions, and times each file with the default delegate and without any (built-in
kernels only), 1 thread, rounds interleaved, median of the round medians. Where the two times
agree, XNNPACK runs almost nothing of the network.

    .venv/bin/python bench/delegation.py [--networks mobilenet_v2@96,resnet50@96] [--out bench/results/delegation]

Real conversions of zoo networks on random weights (the timings do not depend on the weights;
int8 calibrates on random inputs); about a minute per network on 2 cores. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = ("none", "ptq-dynamic", "ptq-float16", "ptq-int8")
RESOLVERS = ("xnnpack", "builtin")


def _interpreter(blob: bytes, resolver: str):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.AUTO if resolver == "xnnpack" else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = Interpreter(model_content=blob, num_threads=1, experimental_op_resolver_type=kind)
    it.allocate_tensors()
    detail = it.get_input_details()[0]
    it.set_tensor(detail["index"], np.random.default_rng(0).random(detail["shape"]).astype(detail["dtype"]))
    return it


def _partitions(blob: bytes) -> int:
    """Delegate partitions XNNPACK takes: DELEGATE nodes the interpreter adds to the graph."""
    it = _interpreter(blob, "xnnpack")
    return sum(1 for op in it._get_ops_details() if op["op_name"] == "DELEGATE")


def _times(blobs: dict[tuple[str, str], bytes], rounds: int, invokes: int) -> dict[tuple[str, str], float]:
    """Median per-invoke ms for each (mode, resolver), rounds interleaved across them."""
    interpreters = {key: _interpreter(blob, key[1]) for key, blob in blobs.items()}
    for it in interpreters.values():
        for _ in range(max(3, invokes // 10)):
            it.invoke()
    per_round: dict[tuple[str, str], list[float]] = {key: [] for key in interpreters}
    for _ in range(rounds):
        for key, it in interpreters.items():
            start = time.perf_counter()
            for _ in range(invokes):
                it.invoke()
            per_round[key].append((time.perf_counter() - start) / invokes * 1e3)
    return {key: statistics.median(v) for key, v in per_round.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default="mobilenet_v2@96,resnet50@96,mobilenet_v3_small@96,efficientnet_b0@96")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--invokes", type=int, default=50)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "delegation"))
    args = ap.parse_args()

    from advisor.fingerprint import collect_fingerprint, fingerprint_id
    from advisor.techniques import Pipeline
    from measure.compress import Compressed, convert
    from measure.zoo import build

    results = []
    for spec in args.networks.split(","):
        name, _, size = spec.partition("@")
        built = build(name, input_size=int(size) if size else None)
        shape = tuple(int(d) for d in built.model.inputs[0].shape[1:])
        rep = np.random.default_rng(0).random((8, *shape)).astype(np.float32)
        blobs = {}
        for mode in MODES:
            blob = convert(Compressed(built.model, Pipeline.parse(mode), "none"), rep)
            for resolver in RESOLVERS:
                blobs[mode, resolver] = blob
        times = _times(blobs, args.rounds, args.invokes)
        for mode in MODES:
            row = {"network": spec, "mode": mode, "partitions": _partitions(blobs[mode, "xnnpack"]),
                   "xnnpack_ms": times[mode, "xnnpack"], "builtin_ms": times[mode, "builtin"],
                   "ratio_to_none": times[mode, "xnnpack"] / times["none", "xnnpack"]}
            results.append(row)
            print(row, file=sys.stderr, flush=True)

    fp = collect_fingerprint()
    machine = f"{fp.get('cpu_model')}, {fp.get('logical_cpus')} logical CPUs, fingerprint {fingerprint_id(fp)}"
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    Path(args.out + ".json").write_text(json.dumps({"date_utc": date, "machine": machine, "rows": results}, indent=1))
    lines = ["# Which kernels run a compressed network: XNNPACK's or TFLite's own", "",
             f"{date}; {machine}; 1 thread; random weights; `python bench/delegation.py`. "
             "Partitions: XNNPACK delegate partitions in the graph. Times: median per-invoke ms with the default "
             "XNNPACK delegate and with built-in kernels only.", "",
             "| network | mode | partitions | XNNPACK ms | built-in only ms | ratio to none (XNNPACK) |",
             "|---|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['network']} | {r['mode']} | {r['partitions']} | {r['xnnpack_ms']:.3f} | "
                     f"{r['builtin_ms']:.3f} | {r['ratio_to_none']:.2f} |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
