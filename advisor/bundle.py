"""Predictor bundles: a folder of XGBoost JSON models and a `card.json`, never a pickle.

Layout of a bundle folder (by default `models/current`; versioned ones as `models/<version>/`):

    card.json            what the bundle is: format, version, creation time, the feature schema
                         (names and hash), each target (unit, how it is composed and transformed,
                         calibration, availability), each component file with its SHA-256, the
                         priors' coefficients, the training data (hash, rows per device, source
                         and family), held-out evaluation metrics, library versions
    <component>.json     one XGBoost model per component (`booster.save_raw("json")`)

A models folder can hold many versioned bundles; the one-line file `<models>/CHAMPION` names the
folder the path `<models>/current` stands for (see `resolve`). Without that file, `current` is
the real folder of that name (the one shipped in the repository). `advisor.model_versions` lists
them, switches the pointer and publishes new versions.

`load` reads the card and evaluates the models with `advisor.trees` (numpy only): xgboost is
never imported on that path. It refuses, with a one-line `BundleError`, a missing folder, a
missing or corrupt file, a file whose hash differs from the card's, a newer bundle format,
and a card whose feature schema differs from this code's `FEATURE_NAMES`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from advisor import features as F
from advisor import layer_costs
from advisor.errors import BundleError
from advisor.lookup import cache_root
from advisor.predictor import COMPONENTS, TARGETS, Predictor
from advisor.trees import Forest, compiled

BUNDLE_FORMAT = 1
CARD = "card.json"
#: In a models folder: the name of the folder `current` stands for (written by `advisor models use`).
#: Not "CURRENT": on a case-insensitive file system that would be the `current` folder itself.
POINTER = "CHAMPION"
CURRENT = "current"
#: Beside the component files: the config_ids of the rows the bundle was fitted on (optional).
TRAINING_IDS = "training_ids.json"
# The repository's models/ (beside the package in a checkout or editable install), unless set.
MODELS_ROOT = Path(os.environ.get("ADVISOR_MODELS", Path(__file__).resolve().parent.parent / "models"))
DEFAULT_BUNDLE = Path(os.environ.get("ADVISOR_BUNDLE", str(MODELS_ROOT / "current")))

#: How each target is composed from components (for the card; `advisor.predictor` does it).
COMPOSITION = {
    "latency": "exp(log latency_prior(baseline) + latency_base [+ latency_ratio]); latency_ratio is 0 for "
               "the baseline; components combined in log space: medians add, p10/p90 spreads in quadrature",
    "energy": "latency x exp(power); only on machines whose rows had energy",
    "size": "size_prior x exp(size)",
    "size_gzip": "size_prior x exp(size_gzip)",
    "accuracy_delta": "accuracy_delta (pp); 0 for the baseline",
}


@dataclass(frozen=True)
class LoadedBundle:
    """A bundle read from disk: its card and a fitted `Predictor` that evaluates with numpy."""

    path: Path
    card: Mapping[str, Any]
    predictor: Predictor

    @property
    def version(self) -> str:
        return str(self.card.get("version"))

    @property
    def targets(self) -> tuple[str, ...]:
        return self.predictor.targets_

    def predict(self, X: np.ndarray, *, calibrated: bool = False) -> dict[str, np.ndarray]:
        """p10/p50/p90 per available target for a feature matrix (see `Predictor.predict`)."""
        return self.predictor.predict(X, calibrated=calibrated)


def resolve(directory: str | Path = DEFAULT_BUNDLE) -> Path:
    """The bundle folder a path means: `<models>/current` is the folder `<models>/CHAMPION` names.

    Any other path, or `current` in a folder without a CHAMPION file, is itself.

    Raises:
        BundleError: the pointer is unreadable or names no folder there.
    """
    directory = Path(directory)
    if directory.name != CURRENT:
        return directory
    pointer = directory.parent / POINTER
    try:
        name = pointer.read_text().strip()
    except FileNotFoundError:
        return directory
    except OSError as exc:
        raise BundleError(f"cannot read the champion pointer {pointer} ({exc.strerror or exc})") from None
    if name == CURRENT:
        return directory
    target = directory.parent / name
    if not name or "/" in name or name.startswith(".") or not target.is_dir():
        raise BundleError(f"the champion pointer {pointer} names {name!r}, which is no bundle folder in "
                          f"{directory.parent}; choose one with `advisor models use VERSION`")
    return target


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _library_versions() -> dict[str, str | None]:
    from advisor.versions import PREDICT_DISTS, library_versions

    return library_versions(PREDICT_DISTS)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def make_card(predictor: Predictor, card_extra: Mapping[str, Any] | None = None,
              version: str | None = None) -> dict[str, Any]:
    """The card for a fitted predictor (without the component hashes, which `save` adds)."""
    state = predictor.to_state()
    created = _utc_now()
    data = state["data_summary"]
    card: dict[str, Any] = {
        "format": "compression-advisor predictor bundle",
        "format_version": BUNDLE_FORMAT,
        "version": version or f"{created:%Y%m%dT%H%M%SZ}-{str(data.get('hash', ''))[:8]}",
        "created": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "feature_schema": {"hash": F.schema_hash(), "count": len(F.FEATURE_NAMES), "names": list(F.FEATURE_NAMES)},
        "targets": {
            name: {"unit": t.unit, "doc": t.doc, "space": "log" if t.log else "linear",
                   "composition": COMPOSITION[name], "available": name in predictor.targets_,
                   "unavailable_reason": predictor.unavailable_.get(name),
                   "calibration": predictor.calibration_.get(name)}
            for name, t in TARGETS.items()
        },
        "quantiles": [0.1, 0.5, 0.9],
        "components": {},
        "training_data": data,
        "evaluation": None,
        "library_versions": _library_versions(),
        "predictor": state,
    }
    for key, value in (card_extra or {}).items():
        card[key] = value
    return card


def save(predictor: Predictor, directory: str | Path = DEFAULT_BUNDLE,
         card_extra: Mapping[str, Any] | None = None, version: str | None = None,
         training_ids: Iterable[str] | None = None, considered_ids: Iterable[str] | None = None) -> Path:
    """Write a fitted predictor as a bundle folder, replacing any bundle there; returns the folder.

    The folder is written beside its destination under a temporary name, then swapped in, so a
    crash never leaves half a bundle under the real name.

    Args:
        card_extra: more card fields (e.g. {"evaluation": evaluate(...)}); they override.
        training_ids: the config_ids of the rows given to `fit`; written as `training_ids.json`
            (and counted on the card), so a later retrain knows which rows the bundle has seen.
        considered_ids: rows a retrain weighed for this bundle beyond those it was fitted on
            (its held-out exam); kept in the same file.

    Raises:
        BundleError: the predictor is not fitted, or the folder cannot be written.
    """
    if not hasattr(predictor, "boosters_"):
        raise BundleError("cannot save an unfitted Predictor: call fit(rows, profiles) first")
    import secrets
    import shutil

    directory = Path(directory)
    card = make_card(predictor, card_extra, version)
    temp = directory.parent / f".{directory.name}.{secrets.token_hex(4)}.tmp"
    old = directory.parent / f".{directory.name}.{secrets.token_hex(4)}.old"
    try:
        temp.mkdir(parents=True)
        for name, raw in predictor.boosters_.items():
            (temp / f"{name}.json").write_bytes(raw)
            card["components"][name] = {"file": f"{name}.json", "sha256": _sha256(raw),
                                        "rows": predictor.n_rows_.get(name), "doc": _doc(name)}
            if name in layer_costs.BOOSTERS:
                card["components"][name]["unit_schema"] = F.schema_hash(layer_costs.BOOSTERS[name][0])
        if training_ids is not None:
            ids = sorted({str(i) for i in training_ids})
            content: dict[str, list[str]] = {"config_ids": ids}
            if considered_ids is not None:
                content["considered"] = sorted({str(i) for i in considered_ids} - set(ids))
            raw_ids = (json.dumps(content) + "\n").encode()
            (temp / TRAINING_IDS).write_bytes(raw_ids)
            card["training_ids"] = {"file": TRAINING_IDS, "count": len(ids), "sha256": _sha256(raw_ids)}
        (temp / CARD).write_text(json.dumps(card, indent=1, sort_keys=False, allow_nan=False) + "\n")
        if directory.exists():
            directory.rename(old)
        temp.rename(directory)
    except (OSError, ValueError) as exc:
        shutil.rmtree(temp, ignore_errors=True)
        if old.exists() and not directory.exists():
            old.rename(directory)
        raise BundleError(f"cannot write bundle {directory}: {exc}") from None
    shutil.rmtree(old, ignore_errors=True)
    return directory


def _doc(name: str) -> str:
    return layer_costs.BOOSTERS[name][1] if name in layer_costs.BOOSTERS else COMPONENTS[name].doc


def read_card(directory: str | Path = DEFAULT_BUNDLE, follow: bool = True) -> dict[str, Any]:
    """The card of a bundle folder, checked for format and feature schema.

    `<models>/current` follows the champion pointer (`resolve`) unless `follow` is False (the
    folder of that name itself, e.g. to list it).

    Raises:
        BundleError: missing folder or card, corrupt card, newer format, or a schema mismatch.
    """
    directory = resolve(directory) if follow else Path(directory)
    if not directory.is_dir():
        raise BundleError(f"no predictor bundle at {directory} (train one with `advisor train`)")
    path = directory / CARD
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"bundle {directory} has no {CARD}: not a bundle, or an unfinished one") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"bundle {directory}: {CARD} is unreadable or corrupt ({exc})") from None
    if not isinstance(card, dict) or "feature_schema" not in card or "predictor" not in card:
        raise BundleError(f"bundle {directory}: {CARD} is not a predictor card")
    fmt = card.get("format_version")
    if not isinstance(fmt, int) or fmt > BUNDLE_FORMAT:
        raise BundleError(f"bundle {directory} has format {fmt!r}; this code reads up to {BUNDLE_FORMAT}: "
                          "upgrade compression-advisor")
    theirs = (card.get("feature_schema") or {}).get("hash")
    if theirs != F.schema_hash():
        raise BundleError(f"bundle {directory} was trained on feature schema {theirs}, but this code's is "
                          f"{F.schema_hash()}: retrain with `advisor train`")
    return card


def load(directory: str | Path = DEFAULT_BUNDLE, follow: bool = True) -> LoadedBundle:
    """Load a bundle for prediction, with numpy only (xgboost is not imported).

    `<models>/current` follows the champion pointer (`resolve`) unless `follow` is False; the
    result's `path` is the folder actually read.

    Raises:
        BundleError: see the module docstring; the message is one line naming the problem.
    """
    directory = resolve(directory) if follow else Path(directory)
    card = read_card(directory, follow=False)
    boosters: dict[str, bytes] = {}
    forests: dict[str, Forest] = {}
    forests_cache = cache_root() / "forests"
    for name, entry in (card.get("components") or {}).items():
        path = directory / str(entry.get("file", f"{name}.json"))
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise BundleError(f"bundle {directory}: cannot read {path.name} ({exc.strerror or exc})") from None
        digest = _sha256(raw)
        if digest != entry.get("sha256"):
            raise BundleError(f"bundle {directory}: {path.name} does not match the card's hash (corrupt or "
                              "replaced); retrain with `advisor train`")
        try:
            forest = compiled(raw, digest, forests_cache)
        except BundleError as exc:
            raise BundleError(f"bundle {directory}: {path.name}: {exc}") from None
        width = len(F.FEATURE_NAMES)
        if name in layer_costs.BOOSTERS:
            schema = layer_costs.BOOSTERS[name][0]
            width = len(schema)
            if entry.get("unit_schema") != F.schema_hash(schema):
                raise BundleError(f"bundle {directory}: {path.name} was trained on another per-layer schema than "
                                  "this code's: retrain with `advisor train`")
        if forest.num_feature != width:
            raise BundleError(f"bundle {directory}: {path.name} expects {forest.num_feature} features, this code "
                              f"has {width}")
        boosters[name], forests[name] = raw, forest
    try:
        predictor = Predictor.from_state(card["predictor"], boosters, forests)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"bundle {directory}: {CARD} is malformed ({exc!r})") from None
    missing = [t for t in predictor.targets_ if t not in TARGETS]
    if missing:
        raise BundleError(f"bundle {directory} predicts targets this code does not know: {', '.join(missing)}")
    return LoadedBundle(path=directory, card=card, predictor=predictor)
