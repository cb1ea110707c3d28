"""Rebuild a Keras model from its configuration: factorised layers, or a thinner student.

Both structural techniques change the network's layers, not just its weights, so they edit the
model's config (a Sequential or functional model's JSON-like description) and build a new model
from it: a factorised layer becomes two plain layers (`<name>_lr1` then `<name>`, so every layer
that consumed `<name>` still does), and a student gets fewer channels per layer. The new model
is made of ordinary Keras layers, so pruning, clustering and QAT apply to it as to any other.
What the rebuild should produce is `advisor.layers` (TensorFlow-free, used by the predictor);
`check_profile` refuses a rebuild whose real profile differs from it, so the dataset's features
always describe the network that was measured.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from advisor.errors import UnsupportedError
from advisor.layers import WIDTH_FIELDS, Factorisation, plan_factorisation, scaled, select, width_span
from advisor.profile import ModelProfile
from measure._tf import keras


def _entries(config: dict) -> list[dict]:
    return config["layers"]


def _name(entry: dict) -> str:
    return entry.get("name") or entry["config"]["name"]


def _build(model: Any, config: dict) -> Any:
    from measure.zoo import custom_objects

    k = keras()
    cls = k.Sequential if isinstance(model, k.Sequential) else k.Model
    try:
        return cls.from_config(config, custom_objects=custom_objects())
    except Exception as exc:  # noqa: BLE001 - keras raises many kinds on a config it cannot build
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UnsupportedError(f"cannot rebuild model '{model.name}' with its new layers: {text}") from exc


def _refuse_nested(model: Any, what: str) -> None:
    k = keras()
    if any(isinstance(ly, k.Model) for ly in model.layers):
        raise UnsupportedError(f"{what}: model '{model.name}' nests models as layers; flatten it first")


def profile_of(model: Any) -> ModelProfile:
    from measure.profiling import profile_model

    return profile_model(model, model=model.name, family="user", domain="other")


def check_profile(expected: ModelProfile, built: Any, what: str, tolerance: float = 0.02) -> None:
    """Refuse a rebuilt model whose parameters or MACs differ from the analytic profile by more
    than `tolerance` (relative): the predictor featurises the analytic one."""
    real = profile_of(built)
    for name, a, b in (("parameters", expected.params, real.params), ("MACs", expected.macs, real.macs)):
        if abs(a - b) > tolerance * max(b, 1):
            raise UnsupportedError(f"{what}: the rebuilt network has {b:,} {name}, its description "
                                   f"{a:,}: this architecture is not supported by {what.split(':')[0]}")


# ---------------------------------------------------------------------------------------------
# Low-rank factorisation.


def _factor_configs(entry: dict, f: Factorisation) -> tuple[dict, dict]:
    first, second = copy.deepcopy(entry), copy.deepcopy(entry)
    cfg1, cfg2 = first["config"], second["config"]
    name = _name(entry)
    cfg1["name"] = f"{name}_lr1"
    if "name" in first:
        first["name"] = f"{name}_lr1"
    cfg1.update(use_bias=False, activation="linear", activity_regularizer=None)
    if entry["class_name"] == "Conv2D":
        cfg1["filters"] = f.rank
        cfg2.update(kernel_size=[1, 1], strides=[1, 1], padding="valid", dilation_rate=[1, 1])
    else:
        cfg1["units"] = f.rank
    if "inbound_nodes" in entry:
        second["inbound_nodes"] = [[[f"{name}_lr1", 0, 0, {}]]]
    return first, second


def factorise_model(model: Any, fraction: float, selector: str = "all") -> tuple[Any, dict[str, Factorisation]]:
    """`model` with each selected Dense / Conv2D layer that saves parameters at rank `fraction` of
    full rank replaced by its truncated SVD (two layers), and the factorisations done.

    Raises:
        UnsupportedError: no layer to factorise, a nested or shared layer, or a rebuild that fails.
    """
    from advisor.layers import factorise

    _refuse_nested(model, "lowrank")
    prof = profile_of(model)
    chosen = select(prof, selector)
    plans = {ly.name: plan_factorisation(ly, fraction) for ly in prof.layers if ly.name in chosen}
    plans = {n: f for n, f in plans.items() if f is not None}
    if not plans:
        raise UnsupportedError(f"lowrank:{fraction:g}: model '{model.name}' has no dense or convolution layer "
                               "where that rank saves parameters")
    config = model.get_config()
    entries = []
    for entry in _entries(config):
        name = _name(entry)
        if name in plans:
            if len(entry.get("inbound_nodes") or [None]) > 1:
                raise UnsupportedError(f"lowrank: layer '{name}' is shared (called more than once)")
            entries.extend(_factor_configs(entry, plans[name]))
        else:
            entries.append(entry)
    config["layers"] = entries
    new = _build(model, config)
    for layer in new.layers:
        base = layer.name[:-4] if layer.name.endswith("_lr1") else layer.name
        if base in plans:
            continue
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    for name, f in plans.items():
        old = model.get_layer(name).get_weights()
        kernel = np.asarray(old[0])
        u, s, vt = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), full_matrices=False)
        root = np.sqrt(s[: f.rank])
        a = (u[:, : f.rank] * root).reshape((*kernel.shape[:-1], f.rank))
        b = root[:, None] * vt[: f.rank]
        if kernel.ndim == 4:
            b = b.reshape(1, 1, f.rank, kernel.shape[-1])
        new.get_layer(f"{name}_lr1").set_weights([a.astype(kernel.dtype)])
        new.get_layer(name).set_weights([b.astype(kernel.dtype), *old[1:]])
    check_profile(factorise(prof, fraction, selector), new, f"lowrank:{fraction:g}")
    return new, plans


# ---------------------------------------------------------------------------------------------
# The distillation student.


def _scale_entry(entry: dict, width: float, classifier: bool) -> None:
    cfg = entry["config"]
    kind = entry["class_name"]
    if kind in WIDTH_FIELDS and not classifier:
        key = WIDTH_FIELDS[kind]
        cfg[key] = scaled(int(cfg[key]), width)
    elif kind == "Reshape" and cfg.get("target_shape"):
        shape = list(cfg["target_shape"])
        shape[-1] = scaled(int(shape[-1]), width)
        cfg["target_shape"] = shape
    elif kind == "Bidirectional":
        inner = cfg["layer"]["config"]
        inner["units"] = scaled(int(inner["units"]), width)


def student_model(model: Any, width: float) -> Any:
    """A fresh (randomly initialised) network like `model` with its channels and units times
    `width`, from the first layer that sets them up to the classifier, whose outputs stay.

    Raises:
        UnsupportedError: a nested model, or an architecture whose thinner copy cannot be built.
    """
    from advisor.layers import widen

    _refuse_nested(model, "distill")
    config = copy.deepcopy(model.get_config())
    entries = _entries(config)
    first, last = width_span([e["class_name"] for e in entries])
    if first < 0:
        raise UnsupportedError(f"distill: model '{model.name}' has no layer with channels or units to thin")
    for i, entry in enumerate(entries):
        if first <= i <= last:
            _scale_entry(entry, width, classifier=i == last)
    student = _build(model, config)
    check_profile(widen(profile_of(model), width), student, f"distill:{width:g}")
    return student
