"""Profile every zoo network at its default and common input sizes, for the TensorFlow-free advisor.

Writes `advisor/data/profiles/<name>@<size>.json` (one layer per line, so that diffs stay
readable; with the size of the float .tflite file the network converts to, random weights) and
`advisor/data/profiles/index.json`, which maps `"<name>@<size>"` to the file and
its totals. Networks are built with random weights, width 1.0 and their default classes
(1000 for image networks, 2 for text ones): MACs, parameters and shapes do not depend on weights.

    .venv/bin/python bench/zoo_profiles.py                 # everything (a few minutes)
    .venv/bin/python bench/zoo_profiles.py --only resnet50 lstm_text
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from advisor.profile import ModelProfile
from measure import zoo
from measure.loading import zoo_key

OUT = REPO / "advisor" / "data" / "profiles"


CONV_FIELDS = ("kernel", "stride", "groups")


def profile_json(profile: ModelProfile) -> str:
    """The profile's JSON, one layer per line; zero convolution fields are left out (they load as 0)."""
    d = profile.to_dict()
    layers = [
        {k: v for k, v in layer.items() if not (k in CONV_FIELDS and v == 0)} for layer in d.pop("layers")
    ]
    head = json.dumps(d, sort_keys=True)[:-1]
    body = ",\n".join("  " + json.dumps(layer, sort_keys=True, separators=(",", ":")) for layer in layers)
    return f'{head}, "layers": [\n{body}\n]}}\n'


def profile_one(name: str, size: int) -> ModelProfile:
    from measure._tf import keras
    from measure.profiling import profile_model, with_float_file

    built = zoo.build(name, input_size=size)
    try:
        key = zoo_key(name, built.input_size, built.width, built.num_classes)
        profile = profile_model(built.model, model=key, family=built.family, domain=built.domain)
        return with_float_file(profile, built.model, "random")
    finally:
        del built
        keras().backend.clear_session()  # a session of hundreds of graphs otherwise keeps growing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="profile only these zoo networks")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    args = parser.parse_args(argv)
    names = args.only or list(zoo.ZOO)
    for name in names:
        zoo.get_entry(name)  # fail on a typo before minutes of work
    args.out.mkdir(parents=True, exist_ok=True)
    index_path = args.out / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}

    print(f"{'profile':<28} {'GMACs':>9} {'Mparams':>8} {'depth':>5} {'layers':>6} {'s':>5}")
    for name in names:
        entry = zoo.get_entry(name)
        for size in entry.profile_sizes:
            started = time.perf_counter()
            profile = profile_one(name, size)
            file_name = f"{name}@{size}.json"
            (args.out / file_name).write_text(profile_json(profile))
            index[f"{name}@{size}"] = {
                "file": file_name,
                "model": profile.model,
                "family": profile.family,
                "domain": profile.domain,
                "input_size": size,
                "default": size == entry.default_input_size,
                "macs": profile.macs,
                "params": profile.params,
                "depth": profile.depth,
                "layers": len(profile.layers),
            }
            print(f"{name + '@' + str(size):<28} {profile.macs / 1e9:>9.3f} {profile.params / 1e6:>8.2f} "
                  f"{profile.depth:>5} {len(profile.layers):>6} {time.perf_counter() - started:>5.1f}",
                  flush=True)
            index_path.write_text(json.dumps(dict(sorted(index.items())), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
