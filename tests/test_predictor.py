"""The learned predictor, on synthetic rows with a known ground truth.

The rows below are generated from hand-built ModelProfiles and a made-up kernel-cost formula:
they exercise the estimator's mechanics (what it trains on, what it refuses, how its quantiles
behave) and are never measurements. Other test modules import `synthetic_rows` from here.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import pytest

from advisor import features as F
from advisor.errors import OptionError
from advisor.predictor import TARGETS, Predictor, prepare
from advisor.profile import LayerProfile, ModelProfile
from advisor.store import SCHEMA_VERSION, config_id

# ---------------------------------------------------------------------------------------------
# Synthetic rows: a kernel-sum ground truth (ms per MAC and per op, by layer group and device).

TECHS = ("ptq-dynamic", "ptq-float16", "ptq-int8", "qat-int8", "prune:0.5", "prune:0.8", "prune-2:4", "cluster:16",
         "prune:0.5+ptq-int8", "cluster:8+ptq-dynamic")
DEVICES = {
    "sim-x86": {"conv": 0.4e-6, "conv1": 0.3e-6, "depthwise": 2.0e-6, "dense": 1.2e-6, "recurrent": 3e-6,
                "attention": 1e-6, "act": 1e-8, "op": 0.004, "invoke": 0.02, "cpus": 8, "machine": "x86_64"},
    "sim-arm": {"conv": 1.6e-6, "conv1": 1.4e-6, "depthwise": 12e-6, "dense": 4e-6, "recurrent": 9e-6,
                "attention": 4e-6, "act": 5e-8, "op": 0.02, "invoke": 0.1, "cpus": 4, "machine": "aarch64"},
}
SPEEDUP = {
    "ptq-dynamic": {"conv": 0.85, "conv1": 0.85, "depthwise": 1.0, "dense": 0.5, "recurrent": 0.6, "attention": 0.7},
    "ptq-int8": {"conv": 0.45, "conv1": 0.4, "depthwise": 0.9, "dense": 0.4, "recurrent": 0.7, "attention": 0.6},
}
SPEEDUP["qat-int8"] = SPEEDUP["ptq-int8"]
IMAGE_FAMILIES = ("s-plain", "s-residual", "s-mobile", "s-inverted", "s-wide", "s-bottleneck")
TEXT_FAMILIES = ("s-rnn", "s-attention")


class _Net:
    """Builds one network's layers, tracking the current shape."""

    def __init__(self, shape: tuple[int, ...]):
        self.layers: list[LayerProfile] = []
        self.shape = shape

    def add(self, type_: str, macs: int, params: int, out: tuple[int, ...], kernel: int = 0, stride: int = 0,
            groups: int = 0) -> None:
        self.layers.append(LayerProfile(f"l{len(self.layers)}", type_, int(macs), int(params), (self.shape,),
                                        tuple(int(x) for x in out), kernel, stride, groups))
        self.shape = tuple(int(x) for x in out)

    def conv(self, cout: int, k: int = 3, stride: int = 1) -> None:
        h, w, c = self.shape
        ho, wo = max(h // stride, 1), max(w // stride, 1)
        self.add("Conv2D", ho * wo * cout * c * k * k, k * k * c * cout + cout, (ho, wo, cout), k, stride, 1)
        self.add("BatchNormalization", 0, 4 * cout, self.shape)
        self.add("ReLU", 0, 0, self.shape)

    def dw(self, k: int = 3, stride: int = 1) -> None:
        h, w, c = self.shape
        ho, wo = max(h // stride, 1), max(w // stride, 1)
        self.add("DepthwiseConv2D", ho * wo * c * k * k, k * k * c + c, (ho, wo, c), k, stride, c)
        self.add("ReLU", 0, 0, self.shape)


def _image_net(family: str, rng: np.random.Generator, size: int) -> _Net:
    net = _Net((size, size, 3))
    net.conv(int(rng.choice([8, 16, 24, 32])), 3, 2)
    for i in range(int(rng.integers(3, 7))):
        stride = 2 if i % 2 == 1 else 1
        c = net.shape[-1]
        out = min(c * (2 if stride == 2 else 1), 512)
        if family in ("s-plain", "s-residual"):
            net.conv(out, 3, stride)
            net.conv(out, 3, 1)
        elif family == "s-mobile":
            net.dw(3, stride)
            net.conv(out, 1, 1)
        elif family == "s-inverted":
            net.conv(c * 4, 1, 1)
            net.dw(3, stride)
            net.conv(out, 1, 1)
        elif family == "s-wide":
            net.conv(out, 5, stride)
        else:  # bottleneck
            net.conv(max(out // 4, 4), 1, 1)
            net.conv(max(out // 4, 4), 3, stride)
            net.conv(out, 1, 1)
        if family in ("s-residual", "s-bottleneck") or (family == "s-inverted" and stride == 1):
            net.add("Add", 0, 0, net.shape)
    c = net.shape[-1]
    classes = int(rng.choice([10, 100]))
    net.add("GlobalAveragePooling2D", 0, 0, (c,))
    net.add("Dense", c * classes, c * classes + classes, (classes,))
    return net


def _text_net(family: str, rng: np.random.Generator, seq: int) -> _Net:
    net = _Net((seq,))
    d = int(rng.choice([32, 64, 128]))
    net.add("Embedding", 0, 5000 * d, (seq, d))
    if family == "s-rnn":
        units = int(rng.choice([32, 64, 128]))
        net.add("LSTM", seq * 4 * (d + units) * units, 4 * ((d + units) * units + units), (units,))
        net.add("Dense", units * 2, units * 2 + 2, (2,))
        return net
    for _ in range(int(rng.integers(1, 4))):
        net.add("MultiHeadAttention", 4 * seq * d * d + 2 * seq * seq * d, 4 * d * d + 4 * d, (seq, d))
        net.add("Add", 0, 0, (seq, d))
        net.add("Dense", seq * d * 2 * d, 2 * d * d + 2 * d, (seq, 2 * d))
        net.add("Dense", seq * 2 * d * d, 2 * d * d + d, (seq, d))
    net.add("GlobalAveragePooling1D", 0, 0, (d,))
    net.add("Dense", d * 2, 2 * d + 2, (2,))
    return net


def make_profiles(families: tuple[str, ...], per_family: int, rng: np.random.Generator) -> list[ModelProfile]:
    out = []
    for fam in families:
        for m in range(per_family):
            text = fam in TEXT_FAMILIES
            size = int(rng.choice([32, 64, 128] if text else [32, 64, 96, 128]))
            net = _text_net(fam, rng, size) if text else _image_net(fam, rng, size)
            out.append(ModelProfile(model=f"{fam}-{m}@{size}", family=fam,
                                    input_shape=(size,) if text else (size, size, 3), input_dtype="float32",
                                    num_classes=net.layers[-1].output_shape[-1], domain="text" if text else "image",
                                    layers=tuple(net.layers)))
    return out


def true_latency(profile: ModelProfile, device: str, technique: str, threads: int) -> float:
    d = DEVICES[device]
    speed: dict[str, float] = {}
    for part in technique.split("+"):
        speed.update(SPEEDUP.get(part, {}))
    act_factor = 0.5 if {"ptq-int8", "qat-int8"} & set(technique.split("+")) else 1.0
    groups = {"DepthwiseConv2D": "depthwise", "Dense": "dense", "LSTM": "recurrent", "MultiHeadAttention": "attention"}
    total = d["invoke"]
    for ly in profile.layers:
        if ly.type in ("BatchNormalization", "ReLU"):
            continue
        total += d["op"] + d["act"] * ly.output_elements * act_factor / threads ** 0.5
        g = ("conv1" if ly.kernel == 1 else "conv") if ly.type == "Conv2D" else groups.get(ly.type)
        if g:
            efficiency = 1.0 + 2e4 / (ly.macs + 1e3)  # small layers run below peak
            # SIMD kernels round output channels up to whole tiles (as measured on real x86 rows)
            channels = ly.output_shape[-1] if ly.output_shape else 1
            tiles = -(-channels // 32) * 32 / channels
            total += ly.macs * tiles * d[g] * speed.get(g, 1.0) * efficiency / threads ** 0.85
    return total


def true_size(profile: ModelProfile, technique: str) -> tuple[float, float]:
    parts = technique.split("+")
    bits = 32
    for p in parts:
        bits = {"ptq-dynamic": 8, "ptq-int8": 8, "qat-int8": 8, "ptq-float16": 16}.get(p, bits)
    weights = sum(ly.params for ly in profile.layers if ly.type != "BatchNormalization")
    n_ops = sum(1 for ly in profile.layers if ly.type not in ("BatchNormalization", "ReLU"))
    size = weights * bits / 8 + (0.02 * weights if bits == 8 else 0) + 350 * n_ops + 2500
    sparsity = next((float(p.split(":")[1]) for p in parts if p.startswith("prune:")), 0.5 if "prune-2:4" in parts
                    else 0.0)
    clusters = next((int(p.split(":")[1]) for p in parts if p.startswith("cluster:")), 0)
    gz = size * 0.92 * (1 - 0.75 * sparsity)
    if clusters:
        gz = min(gz, weights * math.log2(clusters) / 8 * 1.3 + 350 * n_ops + 2500)
    return size, gz


def true_accuracy(profile: ModelProfile, technique: str) -> float:
    share_dw = sum(ly.macs for ly in profile.layers if ly.type == "DepthwiseConv2D") / max(profile.macs, 1)
    delta = 0.0
    for p in technique.split("+"):
        if p == "ptq-dynamic":
            delta -= 0.3
        elif p == "ptq-int8":
            delta -= 0.5 + 4 * share_dw
        elif p == "qat-int8":
            delta -= 0.2 + share_dw
        elif p.startswith("prune:"):
            delta -= 8 * float(p.split(":")[1]) ** 4
        elif p == "prune-2:4":
            delta -= 1.0
        elif p.startswith("cluster:"):
            delta -= 6 / int(p.split(":")[1])
    return delta


def _row(prof: ModelProfile, dev: str, threads: int, tech: str, latency: float, size: float, gz: float,
         power: float | None) -> dict:
    d = DEVICES[dev]
    return {
        "schema_version": SCHEMA_VERSION, "config_id": config_id(prof.model, tech, dev, {"threads": threads}),
        "status": "ok", "source": "measured", "model": prof.model, "model_kind": "sampled", "family": prof.family,
        "domain": prof.domain, "input_size": int(prof.input_shape[0]), "profile_digest": prof.digest,
        "macs": prof.macs, "params": prof.params, "technique": tech, "device": dev, "threads": threads,
        "size_bytes": int(size), "size_gzip_bytes": int(gz), "latency_ms_median": float(latency),
        "energy_mj": float(latency * power) if power else None,
        "fingerprint_id": ("a" if dev == "sim-x86" else "b") * 12, "logical_cpus": d["cpus"],
        "machine": d["machine"], "accelerator": None, "tool_version": "0.1.0",
        "measured_at": "2025-01-01T00:00:00Z",
    }


@functools.lru_cache(maxsize=8)
def _synthetic(families: tuple[str, ...], per_family: int, devices: tuple[str, ...], threads: tuple[int, ...],
               techniques: tuple[str, ...], seed: int, noise: float) -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    profiles = make_profiles(families, per_family, rng)
    rows = []
    for prof in profiles:
        for dev in devices:
            for t in threads:
                base_lat = true_latency(prof, dev, "none", t) * math.exp(rng.normal(0, noise))
                power = (2.5 + 0.8 * t) * math.exp(rng.normal(0, 0.03)) if dev == "sim-arm" else None
                base = _row(prof, dev, t, "none", base_lat, *true_size(prof, "none"), power)
                rows.append(base)
                for tech in techniques:
                    truth = true_latency(prof, dev, tech, t) / true_latency(prof, dev, "none", t)
                    ratio = truth * math.exp(rng.normal(0, noise / 2))
                    row = _row(prof, dev, t, tech, base_lat * ratio, *true_size(prof, tech), power)
                    row["latency_ratio_to_baseline"] = ratio
                    row["baseline_config_id"] = base["config_id"]
                    if t == threads[0] and dev == devices[0]:
                        row["accuracy_delta_pp"] = true_accuracy(prof, tech) + rng.normal(0, 0.2)
                    rows.append(row)
    return pd.DataFrame(rows), {p.digest: p for p in profiles}


def synthetic_rows(families: tuple[str, ...] = IMAGE_FAMILIES + TEXT_FAMILIES, per_family: int = 2,
                   devices: tuple[str, ...] = ("sim-x86",), threads: tuple[int, ...] = (1,),
                   techniques: tuple[str, ...] = ("ptq-int8", "ptq-dynamic", "prune:0.5", "cluster:16+ptq-dynamic"),
                   seed: int = 0, noise: float = 0.02) -> tuple[pd.DataFrame, dict[str, ModelProfile]]:
    """(rows, profiles by digest): synthetic rows from a known formula, NOT measurements."""
    rows, profiles = _synthetic(tuple(families), per_family, tuple(devices), tuple(threads), tuple(techniques),
                                seed, noise)
    return rows.copy(), dict(profiles)


FAST = {"n_estimators": 25, "calibration_folds": 0}


@pytest.fixture(scope="module")
def fitted() -> tuple[Predictor, pd.DataFrame, dict]:
    rows, profiles = synthetic_rows(devices=("sim-x86", "sim-arm"))
    return Predictor(**FAST).fit(rows, profiles), rows, profiles


# ---------------------------------------------------------------------------------------------
# The estimator contract.


def test_init_stores_parameters_only_and_clone_works():
    from sklearn.base import clone

    p = Predictor(n_estimators=7, latency_mode="direct")
    assert p.get_params()["n_estimators"] == 7
    assert not [k for k in vars(p) if k.endswith("_")]
    q = clone(p)
    assert q is not p and q.get_params() == p.get_params()
    assert p.set_params(max_depth=3) is p and p.max_depth == 3
    with pytest.raises(OptionError, match="unknown Predictor parameter"):
        p.set_params(depth=3)


def test_fit_returns_self_with_learned_attributes(fitted):
    p, rows, _ = fitted
    assert p.fit is not None
    for attr in ("boosters_", "forests_", "priors_", "feature_names_", "n_rows_", "targets_", "unavailable_",
                 "calibration_", "data_summary_", "devices_"):
        assert hasattr(p, attr), attr
    assert p.feature_names_ == F.FEATURE_NAMES
    assert set(p.targets_) == set(TARGETS)
    assert p.data_summary_["rows"] == len(rows)
    assert p.data_summary_["by_device"] == {"sim-arm": len(rows) // 2, "sim-x86": len(rows) // 2}
    assert all(isinstance(raw, bytes) for raw in p.boosters_.values())
    again = Predictor(**FAST)
    assert again.fit(rows.head(60), synthetic_rows()[1]) is again


def test_predictions_are_sorted_quantiles_in_natural_units(fitted):
    p, rows, profiles = fitted
    out = p.predict(rows, profiles)
    assert set(out) == set(TARGETS)
    for target, q in out.items():
        assert q.shape == (len(rows), 3)
        finite = np.isfinite(q).all(axis=1)
        assert np.all(np.diff(q[finite], axis=1) >= 0), target
    assert (out["latency"] > 0).all() and (out["size"] > 0).all()
    base = (rows["technique"] == "none").to_numpy()
    assert np.all(out["accuracy_delta"][base] == 0.0)
    # In-sample, the medians land near the truth (a sanity check, not a held-out score).
    rel = np.abs(out["latency"][:, 1] / rows["latency_ms_median"].to_numpy() - 1)
    assert np.median(rel) < 0.10
    size_rel = np.abs(out["size"][:, 1] / rows["size_bytes"].to_numpy() - 1)
    assert np.median(size_rel) < 0.02


def test_predict_on_rows_equals_predict_on_the_matrix(fitted):
    p, rows, profiles = fitted
    by_rows = p.predict(rows, profiles)
    by_matrix = p.predict(prepare(rows, profiles).X)
    for target in by_rows:
        np.testing.assert_allclose(by_rows[target], by_matrix[target])


def test_feature_matrix_for_candidates_matches_row_featurisation(fitted):
    p, rows, profiles = fitted
    row = rows[(rows["device"] == "sim-x86") & (rows["technique"] == "ptq-int8")].iloc[:1]
    prof = profiles[row["profile_digest"].iloc[0]]
    fp = {"logical_cpus": 8, "machine": "x86_64", "accelerator": None}
    X = F.feature_matrix(prof, ["ptq-int8", "none"], F.device_features(fp, 1))
    np.testing.assert_array_equal(X[:1], F.rows_matrix(row, profiles))
    out = p.predict(X)
    assert out["latency"][0, 1] < out["latency"][1, 1]  # int8 is faster than float in the formula


def test_accuracy_change_reads_the_technique_not_the_network(fitted):
    p, rows, profiles = fitted
    X = prepare(rows, profiles).X
    spec = F.technique_vector("prune:0.5")
    other = X[np.argsort(X[:, 0])[[0, -1]]].copy()  # two different networks (and devices)
    other[:, F.TECHNIQUE_BLOCK] = spec
    other = F.fill_derived(other)
    assert not np.array_equal(other[0, F.PROFILE_BLOCK], other[1, F.PROFILE_BLOCK])
    acc = p.predict(other)["accuracy_delta"]
    np.testing.assert_array_equal(acc[0], acc[1])
    harder = other.copy()
    harder[:, F.TECHNIQUE_BLOCK] = F.technique_vector("ptq-dynamic")
    assert not np.array_equal(p.predict(F.fill_derived(harder))["accuracy_delta"][0], acc[0])  # it reads that


def test_a_step_no_accuracy_row_had_gets_an_unknown_accuracy_change(fitted):
    """The synthetic rows measure accuracy for quantization, pruning and clustering, never for a
    distillation student or a low-rank network: those are unknown (NaN), not the numeric steps' change
    as if the structural step were free. Latency and size are still predicted."""
    p, rows, profiles = fitted
    assert "has_prune" in p.accuracy_steps_ and "has_ptq_int8" in p.accuracy_steps_
    assert "has_distill" not in p.accuracy_steps_ and "has_lowrank" not in p.accuracy_steps_
    prof = next(iter(profiles.values()))
    dev = F.device_features({"logical_cpus": 2, "machine": "x86_64", "accelerator": None}, 1)
    specs = ["none", "ptq-int8", "distill:0.5+ptq-int8", "lowrank:0.5", "prune:0.5+ptq-int8"]
    out = p.predict(F.feature_matrix(prof, specs, dev))
    acc = out["accuracy_delta"]
    assert (acc[0] == 0).all() and np.isfinite(acc[[1, 4]]).all()
    assert np.isnan(acc[[2, 3]]).all()
    assert np.isfinite(out["latency"]).all() and np.isfinite(out["size"]).all()
    # the evidence travels with the bundle's state
    state = p.to_state()
    assert "has_distill" not in state["accuracy_steps"]
    again = Predictor.from_state(state, p.boosters_)
    np.testing.assert_array_equal(np.isnan(again.predict(F.feature_matrix(prof, specs, dev))["accuracy_delta"]),
                                  np.isnan(acc))


def test_latency_never_reads_whether_the_weights_were_random():
    """Random-weight rows store zero biases (size); they run as fast. Even where the training rows
    make the weights look like a cause of latency, the timing boosters cannot see them."""
    rows, profiles = synthetic_rows()
    nets = sorted(rows["profile_digest"].unique())
    random = rows["profile_digest"].isin(nets[::2]).to_numpy()
    rows["weights"] = np.where(random, "random", "trained")
    rows.loc[random, "latency_ms_median"] *= 3.0  # a spurious link the trees would happily learn
    p = Predictor(**FAST).fit(rows, profiles)
    X = prepare(rows, profiles).X[:8].copy()
    X[:, F.INDEX["weights_random"]] = 0.0
    trained = p.predict(F.fill_derived(X.copy()))
    X[:, F.INDEX["weights_random"]] = 1.0
    as_random = p.predict(F.fill_derived(X))
    np.testing.assert_array_equal(trained["latency"], as_random["latency"])
    assert not np.array_equal(trained["size"], as_random["size"])  # size does read it


def test_energy_only_for_machines_with_a_power_meter(fitted):
    p, rows, profiles = fitted
    out = p.predict(rows, profiles)
    arm = (rows["device"] == "sim-arm").to_numpy()
    assert np.isfinite(out["energy"][arm]).all()
    assert np.isnan(out["energy"][~arm]).all()


def test_too_few_rows_is_refused_with_a_clear_error():
    rows, profiles = synthetic_rows()
    with pytest.raises(OptionError, match="too few rows .* need at least 20"):
        Predictor(**FAST).fit(rows.head(12), profiles)


def test_failed_rows_never_train_anything():
    rows, profiles = synthetic_rows()
    failed = rows.head(30).copy()
    failed["status"] = "failed"
    failed["config_id"] = [f"{i:016x}" for i in range(len(failed))]
    failed["latency_ms_median"] = 1e9
    failed["size_bytes"] = 1
    a = Predictor(**FAST).fit(rows, profiles).predict(rows, profiles)
    b = Predictor(**FAST).fit(pd.concat([rows, failed], ignore_index=True), profiles).predict(rows, profiles)
    for target in a:
        np.testing.assert_allclose(a[target], b[target])


def test_published_rows_feed_only_the_accuracy_model():
    rows, profiles = synthetic_rows()
    pub = rows[rows["technique"] != "none"].head(20).copy()
    pub["source"] = "published"
    pub["config_id"] = [f"{i:016x}" for i in range(len(pub))]
    pub["latency_ms_median"] = 1e6  # absurd on purpose: it must not reach the latency model
    pub["size_bytes"] = 10
    pub["accuracy_delta_pp"] = -5.0
    pub["profile_digest"] = None  # published rows often have no stored profile
    plain = Predictor(**FAST).fit(rows, profiles)
    mixed = Predictor(**FAST).fit(pd.concat([rows, pub], ignore_index=True), profiles)
    assert mixed.n_rows_["accuracy_delta"] == plain.n_rows_["accuracy_delta"] + len(pub)
    assert mixed.n_rows_["latency_ratio"] == plain.n_rows_["latency_ratio"]
    assert mixed.data_summary_["by_source"] == {"measured": len(rows), "published": len(pub)}
    a, b = plain.predict(rows, profiles), mixed.predict(rows, profiles)
    for target in ("latency", "size", "size_gzip"):
        np.testing.assert_allclose(a[target], b[target])


def test_missing_accuracy_rows_make_the_target_unavailable_not_an_error():
    rows, profiles = synthetic_rows()
    rows = rows.drop(columns=["accuracy_delta_pp"])
    p = Predictor(**FAST).fit(rows, profiles)
    assert "accuracy_delta" not in p.targets_
    assert "accuracy_delta" in p.unavailable_ and "0 training rows" in p.unavailable_["accuracy_delta"]
    assert "accuracy_delta" not in p.predict(rows, profiles)


def test_baseline_only_data_predicts_baselines_and_says_compressed_is_unavailable():
    rows, profiles = synthetic_rows(per_family=4, techniques=())
    p = Predictor(**FAST).fit(rows, profiles)
    assert "latency:compressed" in p.unavailable_
    fp = {"logical_cpus": 8, "machine": "x86_64", "accelerator": None}
    X = F.feature_matrix(next(iter(profiles.values())), ["none", "ptq-int8"], F.device_features(fp, 1))
    lat = p.predict(X)["latency"]
    assert np.isfinite(lat[0]).all() and np.isnan(lat[1]).all()


def test_unparseable_technique_rows_are_dropped_and_counted():
    rows, profiles = synthetic_rows()
    odd = rows.head(3).copy()
    odd["technique"] = "post-training 16x8"
    odd["config_id"] = [f"{i:016x}" for i in range(3)]
    p = Predictor(**FAST).fit(pd.concat([rows, odd], ignore_index=True), profiles)
    assert p.data_summary_["dropped"]["technique not understood"] == 3


def test_direct_latency_mode_and_calibration_run():
    rows, profiles = synthetic_rows()
    p = Predictor(n_estimators=20, latency_mode="direct", calibration_folds=2).fit(rows, profiles)
    assert "latency_direct" in p.boosters_ and "latency_base" not in p.boosters_
    assert set(p.calibration_) >= {"latency", "size"}
    assert p.calibration_["latency"]["novel"]["folds"] == 2
    assert set(p.calibration_["latency"]) == {"novel", "familiar"}
    q = p.predict(rows, profiles)["latency"]
    assert np.all(np.diff(q, axis=1) >= 0)
    with pytest.raises(OptionError, match="latency_mode"):
        Predictor(latency_mode="sideways").fit(rows, profiles)


def test_prior_keeps_per_machine_costs_and_falls_back_for_an_unseen_machine(fitted):
    p, rows, profiles = fitted
    prior = p.priors_["latency"]
    assert len(prior.keys) == 2  # sim-x86 and sim-arm, one thread each
    assert all(c >= 0 for coef in prior.coef for c in coef)
    X = prepare(rows, profiles).X
    unseen = X.copy()
    unseen[:, F.INDEX["logical_cpus"]] = 64
    assert (prior.set_index(unseen) == len(prior.keys)).all()
    assert np.isfinite(prior(unseen)).all() and (prior(unseen) > 0).all()


def test_bands_are_wider_for_networks_the_predictor_never_saw():
    rows, profiles = synthetic_rows(per_family=3)
    p = Predictor(n_estimators=25, calibration_folds=3).fit(rows, profiles)
    X = prepare(rows, profiles).X
    novel = X.copy()
    novel[:, F.INDEX["act_peak"]] += 1.0  # a profile no training row has; the trees barely notice
    assert not np.isin(F.profile_keys(novel), list(p.known_profiles_)).any()
    assert np.isin(F.profile_keys(X), list(p.known_profiles_)).all()
    seen, unseen = p.predict(X)["latency"], p.predict(novel)["latency"]
    width = np.log(seen[:, 2] / seen[:, 0]).mean()
    assert np.log(unseen[:, 2] / unseen[:, 0]).mean() > width
    lat = p.calibration_["latency"]
    assert lat["novel"]["hi"] - lat["novel"]["lo"] > lat["familiar"]["hi"] - lat["familiar"]["lo"]


def test_a_machine_no_row_came_from_gets_the_held_out_machines_band():
    rows, profiles = synthetic_rows(per_family=2, devices=("sim-x86", "sim-arm"))
    p = Predictor(n_estimators=25, calibration_folds=2).fit(rows, profiles)
    device = p.calibration_["latency"]["new_device"]
    # Holding the 4x-slower machine out (and the faster one) misses by far more than a family does.
    novel = p.calibration_["latency"]["novel"]
    assert device["hi"] - device["lo"] > novel["hi"] - novel["lo"]
    assert "new_device" not in p.calibration_.get("size", {})
    X = prepare(rows, profiles).X
    elsewhere = X.copy()
    elsewhere[:, F.INDEX["logical_cpus"]] = 64.0  # a machine none of the rows ran on
    seen, unseen = p.predict(X)["latency"], p.predict(elsewhere)["latency"]
    assert (np.log(unseen[:, 2] / unseen[:, 0]) > np.log(seen[:, 2] / seen[:, 0]) + 0.1).all()
    # A calibrated device is no longer unknown: its band is the family-level one, medians unmoved.
    calibrated = p.predict(elsewhere, calibrated=True)["latency"]
    np.testing.assert_allclose(calibrated[:, 1], unseen[:, 1])
    assert (np.log(calibrated[:, 2] / calibrated[:, 0]) < np.log(unseen[:, 2] / unseen[:, 0]) - 0.1).all()
    np.testing.assert_allclose(p.predict(X, calibrated=True)["latency"], seen)  # a known machine: as before
    again = Predictor.from_state(p.to_state(), p.boosters_)
    np.testing.assert_allclose(again.predict(elsewhere)["latency"], unseen)


def test_a_well_measured_machine_gets_bands_of_its_own(monkeypatch):
    """Two machines, one timed with far more noise: one pooled band would be too wide for the
    quiet one and too narrow for the noisy one; each gets its own, and a third machine the pooled."""
    import advisor.predictor as P

    quiet, _ = synthetic_rows(per_family=3, devices=("sim-x86",), noise=0.01, seed=1)
    noisy, profiles = synthetic_rows(per_family=3, devices=("sim-arm",), noise=1.0, seed=2)
    rows = pd.concat([quiet, noisy], ignore_index=True)
    profiles = {**synthetic_rows(per_family=3, devices=("sim-x86",), noise=0.01, seed=1)[1], **profiles}
    monkeypatch.setattr(P, "MACHINE_BAND_ROWS", 30)
    p = Predictor(n_estimators=25, calibration_folds=3).fit(rows, profiles)
    novel = p.calibration_["latency"]["novel"]
    own = {m["device"]: m for m in novel["machines"]}
    assert set(own) == {"sim-x86", "sim-arm"}
    assert own["sim-arm"]["hi"] - own["sim-arm"]["lo"] > own["sim-x86"]["hi"] - own["sim-x86"]["lo"] + 0.3
    assert novel["hi"] - novel["lo"] > own["sim-x86"]["hi"] - own["sim-x86"]["lo"]
    assert "machines" not in p.calibration_["size"]["novel"]  # latency and energy only
    d = prepare(rows, profiles)
    band = p.predict(d.X)["latency"]
    raw = np.sort(p._model().raw(d.X)["latency"], axis=1)  # every row's network was seen: "familiar"
    for name, shift in {m["device"]: m for m in p.calibration_["latency"]["familiar"]["machines"]}.items():
        mine = d.device == name
        np.testing.assert_allclose(np.log(band[mine, 0]), np.minimum(raw[mine, 0] + shift["lo"], raw[mine, 1]))
        np.testing.assert_allclose(np.log(band[mine, 2]), np.maximum(raw[mine, 2] + shift["hi"], raw[mine, 1]))
    again = Predictor.from_state(p.to_state(), p.boosters_)  # the shifts survive a bundle
    np.testing.assert_allclose(again.predict(d.X)["latency"], band)


def test_ratio_prior_recovers_per_group_speedups_and_round_trips():
    from advisor.predictor import PRIORS, RatioPrior, fit_prior, fit_ratio_prior, group_times, prior_from_dict

    rows, profiles = synthetic_rows(per_family=3, techniques=("ptq-int8",))
    data = prepare(rows, profiles)
    base = data.baseline
    prior = fit_prior(PRIORS["latency"], data.X[base], data.latency[base])
    # Ratios made from known speed-ups per group: int8 conv 3x faster, recurrent 4x slower.
    truth = np.ones(len(F.GROUPS) + 1)
    truth[F.GROUPS.index("conv")], truth[F.GROUPS.index("recurrent")] = 1 / 3, 4.0
    Xc = data.X[~base]
    T = group_times(prior, F.as_baseline(Xc))
    assert np.allclose(T.sum(axis=1), prior(F.as_baseline(Xc)))  # the groups add up to the prior
    ratio = (T @ truth) / T.sum(axis=1)
    fitted = fit_ratio_prior(prior, Xc, ratio)
    assert isinstance(fitted, RatioPrior) and fitted.rows
    np.testing.assert_allclose(fitted(Xc, prior), ratio, rtol=0.05)
    assert np.all(fitted(data.X[base], prior) == 1.0)  # a baseline is its own baseline
    again = prior_from_dict(fitted.to_dict())
    assert again == fitted and isinstance(prior_from_dict(prior.to_dict()), type(prior))
    # A mode no row had (fp16 here) is left at ratio 1 rather than guessed.
    fp16 = F.feature_matrix(profiles[rows["profile_digest"].iloc[0]], ["ptq-float16"],
                            F.device_features({"logical_cpus": 2}, 1))
    assert fitted(fp16, prior)[0] == pytest.approx(1.0)


def test_a_known_float_file_is_the_uncompressed_size_and_anchors_the_compressed_ones(fitted):
    from dataclasses import replace

    from advisor.predictor import SIZE_CHANGE

    model, rows, profiles = fitted
    assert SIZE_CHANGE in model.priors_  # fitted: the synthetic rows' networks have measured "none" rows
    prof = next(iter(profiles.values()))
    fp = {"machine": "x86_64", "logical_cpus": 2, "physical_cores": 2, "isa_flags": ["avx2", "fma"]}
    specs = ["none", "ptq-float16", "ptq-int8", "distill:0.5"]

    def sizes(profile):
        return model.predict(F.feature_matrix(profile, specs, F.device_features(fp, 1)))["size"]

    unknown = sizes(prof)
    file = int(unknown[0, 1] * 1.1)  # the file 10% over what the prior thought
    known = sizes(replace(prof, tflite_bytes=file, tflite_weights="trained"))
    np.testing.assert_array_equal(known[0], [file] * 3)  # a fact, not a prediction
    assert unknown[0, 0] < unknown[0, 2]
    bigger = sizes(replace(prof, tflite_bytes=int(1.2 * file), tflite_weights="trained"))
    assert (bigger[1:3, 1] > known[1:3, 1]).all()  # quantized sizes follow the file they come from
    # A structural step builds another network, whose file nobody converted: estimated from the
    # original's file (`features._float_file`), so it follows that file, but never taken as a fact.
    assert known[3, 1] != unknown[3, 1] and known[3, 0] < known[3, 1] < known[3, 2]
    assert bigger[3, 1] > known[3, 1]
    # From a random-weight file too (which stores no zero bias; the built network, trained, does).
    random_file = sizes(replace(prof, tflite_bytes=file, tflite_weights="random"))
    bigger_random = sizes(replace(prof, tflite_bytes=int(1.2 * file), tflite_weights="random"))
    assert random_file[3, 1] != unknown[3, 1] and bigger_random[3, 1] > random_file[3, 1]
    # Weights other than the file's (a zoo file of random weights, a trained network asked about):
    # predicted, from the file.
    other = model.predict(F.feature_matrix(replace(prof, tflite_bytes=file, tflite_weights="random"), ["none"],
                                           F.device_features(fp, 1)))["size"]
    assert other[0, 0] < other[0, 2]


def test_float_files_come_from_the_uncompressed_rows_with_the_same_weights():
    rows = pd.DataFrame([
        {"profile_digest": "a", "technique": "none", "status": "ok", "size_bytes": 1000.0, "weights": "random"},
        {"profile_digest": "a", "technique": "none", "status": "ok", "size_bytes": 1100.0, "weights": "trained"},
        {"profile_digest": "a", "technique": "ptq-int8", "status": "ok", "size_bytes": 400.0, "weights": "random"},
        {"profile_digest": "b", "technique": "none", "status": "failed", "size_bytes": 9.0, "weights": "random"},
    ])
    assert F.float_files(rows) == {("a", True): 1000.0, ("a", False): 1100.0}


def test_training_reports_its_stages_to_a_listener_and_nothing_otherwise(capsys):
    import io

    from advisor.progress import StageProgress, reporting

    rows, profiles = synthetic_rows(devices=("sim-x86",))
    Predictor(**FAST).fit(rows, profiles)
    assert capsys.readouterr().err == ""  # the library used from Python stays quiet
    heard = io.StringIO()
    with reporting(StageProgress(stream=heard)):
        Predictor(**FAST).fit(rows, profiles)
    lines = heard.getvalue().splitlines()
    assert any("featurising" in line for line in lines) and any("fitting" in line for line in lines)


def test_the_qat_size_change_is_drawn_toward_the_post_training_int8_one(monkeypatch):
    """QAT and post-training int8 files come out of the same full-integer converter: QAT's few rows
    learn how they differ from int8's set, rather than 18 coefficients of their own from scratch,
    except that QAT's dense kernels carry one scale and zero point a tensor, not a channel."""
    import advisor.predictor as P

    rows, profiles = synthetic_rows(per_family=2, techniques=("ptq-int8", "qat-int8"))
    data = prepare(rows, profiles)
    sized = data.measured & (data.size > 0)
    prior = P.fit_prior(P.PRIORS["size"], data.X[sized], data.size[sized])

    def sets(weight: float) -> tuple[np.ndarray, np.ndarray]:
        monkeypatch.setattr(P, "QAT_TOWARD_INT8", weight)
        change = P.fit_size_change(data.X[sized], data.size[sized], prior, min_rows=10)
        by_key = dict(zip(change.keys, change.coef))
        aware = P._SIZE_MODES.index("quant_aware")
        qat = next(k for k in by_key if k[aware] == 1.0)
        return np.asarray(by_key[qat]), np.asarray(by_key[qat[:aware] + (0.0,) + qat[aware + 1:]])

    alone, int8 = sets(0.0)
    drawn, int8_again = sets(P.QAT_TOWARD_INT8 if P.QAT_TOWARD_INT8 > 0 else 1.0)
    np.testing.assert_array_equal(int8, int8_again)  # the post-training set does not depend on QAT's rows
    # QAT quantizes a dense kernel per tensor: 12 bytes a dense channel fewer than int8's per-channel
    toward = int8.copy()
    toward[P.SIZE_CHANGE_COLUMNS.index("channels_dense")] -= 12.0
    assert np.linalg.norm(drawn - toward) < np.linalg.norm(alone - toward)
    # and with an overwhelming draw, QAT's set is int8's, less those 12 bytes
    far, int8 = sets(1e9)
    toward = int8.copy()
    toward[P.SIZE_CHANGE_COLUMNS.index("channels_dense")] -= 12.0
    np.testing.assert_allclose(far, toward, rtol=1e-3, atol=1e-6)


def test_a_file_measured_on_several_machines_is_one_size_row():
    """A converted file's bytes do not depend on the machine: the size fits count a network and
    plan measured on four machines once, and keep rows that differ in the plan or in the bytes."""
    import advisor.predictor as P

    x = np.zeros((5, len(F.FEATURE_NAMES)))
    x[:, F.INDEX["params"]] = 1000.0
    device = F.DEVICE_BLOCK.start
    x[1, device] = 1.0  # the same file, another machine
    x[2, device] = 2.0  # another machine that wrote a different file (another converter)
    x[3, F.INDEX["quant_full_int"]] = 1.0  # another plan
    x[4, F.INDEX["params"]] = np.nan  # unknown totals still count as a value of their own
    size = np.array([400.0, 400.0, 404.0, 120.0, 400.0])
    kept = P.one_per_file(x, size, np.ones(5, dtype=bool))
    assert kept.tolist() == [True, False, True, True, True]
    only = np.array([False, True, True, False, False])
    assert P.one_per_file(x, size, only).tolist() == only.tolist()  # nothing outside `rows` is added


def test_a_machine_without_looped_layers_borrows_the_per_step_cost_of_the_others():
    """One machine timed GRU networks, the other none: the other's per-step cost is not fitted
    from nothing (0) but borrowed, the first machine's scaled by how much faster it runs MACs."""
    from advisor.predictor import PRIORS, fit_prior

    rng = np.random.default_rng(0)
    n = 200
    X = np.zeros((n, len(F.FEATURE_NAMES)))
    macs = rng.uniform(1e5, 1e7, n)
    X[:, F.INDEX["macs"]] = X[:, F.INDEX["macs_recurrent"]] = macs
    slow = np.arange(n) < n // 2
    X[:, F.INDEX["threads"]] = np.where(slow, 1.0, 2.0)
    X[slow, F.INDEX["steps_recurrent"]] = rng.integers(8, 256, slow.sum())
    per_mac = np.where(slow, 1e-6, 0.5e-6)
    y = per_mac * macs + 2e-3 * X[:, F.INDEX["steps_recurrent"]] + 0.01
    prior = fit_prior(PRIORS["latency"], X, y)
    step = PRIORS["latency"].columns.index("steps_recurrent")
    threads = prior.key_columns.index("threads")
    coef = {key[threads]: c[step] for key, c in zip(prior.keys, prior.coef)}
    assert coef[1.0] == pytest.approx(2e-3, rel=0.05)  # fitted where the steps were timed
    assert coef[2.0] == pytest.approx(1e-3, rel=0.3)  # borrowed: half the time per MAC, half per step
    np.testing.assert_allclose(prior(X[slow]), y[slow], rtol=0.05)
