"""Per-layer latency costs (advisor.layer_costs), on the synthetic rows of test_predictor.

Their ground truth gives each layer a non-linear efficiency (small layers run below peak), which
a linear per-MAC prior cannot express and a per-layer model can: these rows are generated, never
measurements.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from advisor import bundle as B
from advisor import features as F
from advisor import layer_costs as L
from advisor.errors import BundleError
from advisor.predictor import PRIORS, Predictor, fit_prior, fit_ratio_prior, is_probe, prepare
from advisor.profile import LayerProfile, ModelProfile
from tests.test_predictor import FAST, _Net, _row, synthetic_rows


def _baselines(rows, profiles):
    d = prepare(rows, profiles)
    base = d.measured & d.baseline & np.isfinite(d.latency)
    return d, d.X[base], d.latency[base]


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_rows(per_family=6, devices=("sim-x86", "sim-arm"), techniques=("ptq-int8",))


def test_units_follow_the_feature_bookkeeping():
    layers = (
        LayerProfile("c", "Conv2D", 16 * 16 * 8 * 3 * 9, 8 * 27 + 8, ((32, 32, 3),), (16, 16, 8), 3, 2, 1),
        LayerProfile("bn", "BatchNormalization", 0, 32, ((16, 16, 8),), (16, 16, 8)),
        LayerProfile("r", "ReLU", 0, 0, ((16, 16, 8),), (16, 16, 8)),
        LayerProfile("s", "SeparableConv2D", 16 * 16 * 8 * 9 + 16 * 16 * 8 * 16, 8 * 9 + 8 * 16 + 16,
                     ((16, 16, 8),), (16, 16, 16), 3, 1, 1),
        LayerProfile("p", "GlobalAveragePooling2D", 0, 0, ((16, 16, 16),), (16,)),
        LayerProfile("odd", "SomeCustomLayer", 0, 0, ((16,),), (16,)),
        LayerProfile("g", "Conv2D", 16 * 16 * 8 * 4 * 1, 8 * 4 + 8, ((16, 16, 16),), (16, 16, 8), 1, 1, 4),
        LayerProfile("up", "UpSampling2D", 0, 0, ((16, 16, 8),), (32, 32, 8)),
        LayerProfile("t", "Conv2DTranspose", 32 * 32 * 8 * 4 * 4, 8 * 4 * 4 + 4, ((32, 32, 8),), (64, 64, 4), 2, 2, 1),
    )
    profile = ModelProfile("m", "f", (32, 32, 3), "float32", 16, "image", layers)
    u = L.units(profile)
    # Free layers (batch norm, ReLU) are skipped; the separable convolution is two units; one invoke.
    assert len(u) == 9
    assert list(np.asarray(F.GROUPS)[u.group]) == ["conv", "depthwise", "conv", "other", "other", "conv", "other",
                                                   "conv", "other"]
    assert u.invoke.tolist() == [False] * 8 + [True]
    types = u.shape[:, len(F.GROUPS):len(F.GROUPS) + len(L.UNIT_TYPES)]
    assert types[4].sum() == 0  # a type without a column of its own
    assert types[8, L.UNIT_TYPES.index("invoke")] == 1
    assert types[2, L.UNIT_TYPES.index("pointwise")] == 1
    assert types[6, L.UNIT_TYPES.index("UpSampling2D")] == 1 and types[7, L.UNIT_TYPES.index("Conv2DTranspose")] == 1
    # A convolution's groups (1 when ordinary); 0 for the depthwise half and layers without groups.
    groups = u.shape[:, len(F.GROUPS) + len(L.UNIT_TYPES) + L._SHAPE_NAMES.index("groups")]
    assert groups.tolist() == [1, 0, 0, 0, 0, 4, 0, 1, 0]
    assert L.unit_matrix(u, np.zeros(len(F.FEATURE_NAMES))).shape == (9, len(L.UNIT_FEATURES))


def test_a_recurrent_unit_records_its_loop_steps_even_when_it_returns_only_the_last_state():
    layers = (
        LayerProfile("g1", "GRU", 3 * 40 * (8 + 16 + 2) * 16, 3 * (8 + 16 + 2) * 16, ((40, 8),), (40, 16)),
        LayerProfile("g2", "GRU", 3 * 40 * (16 + 16 + 2) * 16, 3 * (16 + 16 + 2) * 16, ((40, 16),), (16,)),
        LayerProfile("d", "Dense", 16 * 10, 16 * 10 + 10, ((16,),), (10,)),
    )
    u = L.units(ModelProfile("m", "f", (40, 8), "float32", 10, "sequence", layers))
    at = len(F.GROUPS) + len(L.UNIT_TYPES)
    steps = u.shape[:, at + L._SHAPE_NAMES.index("log_steps")]
    positions = u.shape[:, at + L._SHAPE_NAMES.index("log_positions")]
    # Both loops run 40 steps; only the first one's output says so.
    np.testing.assert_allclose(steps, [np.log1p(40), np.log1p(40), 0.0, 0.0])
    assert positions[0] == pytest.approx(np.log1p(40)) and positions[1] == pytest.approx(np.log1p(1))


def _recurrent_profile(cell: str) -> ModelProfile:
    layers = (
        LayerProfile("e", "Embedding", 0, 100 * 8, ((40,),), (40, 8)),
        LayerProfile("r1", cell, 3 * 40 * (8 + 16 + 2) * 16, 3 * (8 + 16 + 2) * 16, ((40, 8),), (40, 16)),
        LayerProfile("r2", cell, 3 * 40 * (16 + 16 + 2) * 16, 3 * (16 + 16 + 2) * 16, ((40, 16),), (16,)),
        LayerProfile("d", "Dense", 16 * 10, 16 * 10 + 10, ((16,),), (10,)),
    )
    return ModelProfile("m", "f", (40,), "int32", 10, "text", layers)


def test_looped_recurrent_layers_count_their_steps_for_the_prior_and_a_fused_lstm_none():
    gru = _recurrent_profile("GRU")
    features = F.profile_features(gru)
    # Two loops of 40 iterations; the first also writes its sequence.
    assert (features["steps_recurrent"], features["seq_steps_recurrent"]) == (80.0, 40.0)
    u = L.units(gru)
    assert u.steps.tolist() == [[0, 0], [40, 40], [40, 0], [0, 0], [0, 0]]  # embedding, r1, r2, dense, invoke
    lstm = _recurrent_profile("LSTM")  # one fused operator: no loop of dispatches
    assert (F.profile_features(lstm)["steps_recurrent"], F.profile_features(lstm)["seq_steps_recurrent"]) == (0, 0)
    assert not L.units(lstm).steps.any()


def test_per_step_costs_are_shared_out_to_the_recurrent_units():
    from advisor.predictor import Prior

    x = np.zeros(len(F.FEATURE_NAMES))
    for name, value in F.profile_features(_recurrent_profile("GRU")).items():
        x[F.INDEX[name]] = value
    columns = PRIORS["latency"].columns
    coef = tuple(1e-3 if c == "steps_recurrent" else 4e-3 if c == "seq_steps_recurrent" else 1e-7
                 for c in columns)
    prior = Prior("latency", columns, "macs", (), (), (coef,), (0.01,), (1e-6,), (1,))
    u = L.units(_recurrent_profile("GRU"))
    costs = L.prior_unit_costs(prior, x, u)
    assert costs.sum() == pytest.approx(prior(x[None, :])[0], rel=1e-9)
    without = tuple(0.0 if c in F.LOOP_STEP_NAMES else v for c, v in zip(columns, coef))
    plain = L.prior_unit_costs(Prior("latency", columns, "macs", (), (), (without,), (0.01,), (1e-6,), (1,)), x, u)
    # Each loop carries its own iterations: 40 x (1 + 4) us for the one writing its sequence, 40 x 1 us.
    np.testing.assert_allclose(costs - plain, [0.0, 40 * 5e-3, 40 * 1e-3, 0.0, 0.0], atol=1e-12)


def test_prior_unit_costs_sum_to_the_linear_prior(synthetic):
    rows, profiles = synthetic
    _, X, y = _baselines(rows, profiles)
    prior = fit_prior(PRIORS["latency"], X, y)
    keys = F.profile_keys(X)
    sums = np.array([L.prior_unit_costs(prior, X[i], L.units_of(keys[i])).sum() for i in range(len(X))])
    np.testing.assert_allclose(sums, prior(X), rtol=1e-9)


def _shape_latency(profile: ModelProfile, device: str) -> float:
    """A made-up truth no per-MAC prior can express: a layer's speed per MAC grows with its input
    channels (narrow layers starve the vector units), and a depthwise MAC costs 4x on one device."""
    ms = 0.02
    for layer in profile.layers:
        if layer.type in F.FREE_LAYERS:
            continue
        c_in = layer.input_shapes[0][-1] if layer.input_shapes and layer.input_shapes[0] else 1
        per_mac = 1e-6 * (1.0 + 48.0 / c_in) * (4.0 if device == "sim-arm" and "Depthwise" in layer.type else 1.0)
        ms += 0.003 + layer.macs * per_mac
    return ms


def _probes(n: int) -> tuple[list[dict], dict[str, ModelProfile]]:
    """Single-layer networks of random shape (like plans/kernels.toml's), family `s-conv_kernel`."""
    rng = np.random.default_rng(1)
    rows, profiles = [], {}
    for i in range(n):
        net = _Net((int(rng.choice([8, 16, 32])),) * 2 + (int(rng.choice([3, 8, 16, 32, 64, 128])),))
        if i % 3 == 2:
            net.dw(3, 1)
        else:
            net.conv(int(rng.choice([8, 16, 32, 64, 128])), int(rng.choice([1, 3])), 1)
        net.add("GlobalAveragePooling2D", 0, 0, (net.shape[-1],))
        profile = ModelProfile(f"probe{i}", "s-conv_kernel", (8, 8, 3), "float32", 10, "image", tuple(net.layers))
        profiles[profile.digest] = profile
        for dev in ("sim-x86", "sim-arm"):
            rows.append(_row(profile, dev, 1, "none", 1.0, 1000, 900, None))
    return rows, profiles


@pytest.fixture(scope="module")
def shaped(synthetic):
    """Baseline rows and probes timed by `_shape_latency`."""
    rows, profiles = synthetic
    probe_rows, probe_profiles = _probes(60)
    profiles = {**profiles, **probe_profiles}
    rows = pd.concat([rows[rows["technique"] == "none"], pd.DataFrame(probe_rows)], ignore_index=True)
    rows["latency_ms_median"] = [_shape_latency(profiles[d], dev) for d, dev in zip(rows["profile_digest"],
                                                                                   rows["device"])]
    return rows, profiles


def test_layer_costs_beat_the_linear_prior_on_unseen_families(shaped):
    rows, profiles = shaped
    held = rows["family"].isin(["s-bottleneck", "s-inverted"]).to_numpy()
    d, X_tr, y_tr = _baselines(rows[~held], profiles)
    _, X_te, y_te = _baselines(rows[held], profiles)
    prior = fit_prior(PRIORS["latency"], X_tr, y_tr)
    groups = np.where(is_probe(d.family), "", d.family)[d.baseline]
    fitted = L.fit(X_tr, y_tr, prior, L.FitSettings(min_networks=10), groups=groups)
    assert fitted is not None
    layers, raw = fitted
    assert layers.rows == len(y_tr) and json.loads(raw)["learner"]
    linear = np.abs(np.log(prior(X_te) / y_te))
    learned = np.abs(np.log(layers(X_te, prior) / y_te))
    assert np.median(learned) < 0.7 * np.median(linear)


def test_held_out_families_can_refuse_the_layer_model(synthetic):
    """Where the linear prior already fits (test_predictor's truth, 2% noise), per-layer trees
    only learn noise: the held-out folds see it and no layer model is kept."""
    rows, profiles = synthetic
    held = rows["family"].isin(["s-bottleneck"]).to_numpy()
    d, X, y = _baselines(rows[~held], profiles)
    prior = fit_prior(PRIORS["latency"], X, y)
    assert L.fit(X, y, prior, L.FitSettings(min_networks=10), groups=d.family[d.baseline]) is None


def test_a_row_without_layers_keeps_the_linear_prior(synthetic):
    rows, profiles = synthetic
    _, X, y = _baselines(rows, profiles)
    prior = fit_prior(PRIORS["latency"], X, y)
    layers, _ = L.fit(X, y, prior, L.FitSettings(rounds=20, min_networks=10))
    totals_only = X.copy()
    totals_only[:, F.PROFILE_BLOCK] = F._vector(F.partial_profile_features(1e6, 1e4, 32.0, "image"), F.PROFILE_NAMES)
    np.testing.assert_allclose(layers(totals_only, prior), prior(totals_only))
    assert not np.allclose(layers(X, prior), prior(X))


def test_too_few_networks_fit_nothing(synthetic):
    rows, profiles = synthetic
    _, X, y = _baselines(rows, profiles)
    prior = fit_prior(PRIORS["latency"], X, y)
    assert L.fit(X[:5], y[:5], prior, L.FitSettings(min_networks=10)) is None


def test_predictor_uses_layer_costs_and_the_switch_turns_them_off(shaped):
    rows, profiles = shaped
    on = Predictor(**FAST).fit(rows, profiles)
    off = Predictor(**FAST, layer_latency=False).fit(rows, profiles)
    assert L.NAME in on.boosters_ and L.NAME in on.priors_ and on.n_rows_[L.NAME] > 0
    assert L.NAME not in off.boosters_ and L.NAME not in off.priors_
    _, X, _ = _baselines(rows, profiles)
    assert not np.allclose(on.predict(X)["latency"], off.predict(X)["latency"])


def test_bundle_keeps_the_layer_model_and_refuses_another_unit_schema(shaped, tmp_path):
    rows, profiles = shaped
    predictor = Predictor(**FAST).fit(rows, profiles)
    path = B.save(predictor, tmp_path / "b")
    assert (path / f"{L.NAME}.json").is_file()
    loaded = B.load(path).predictor
    assert isinstance(loaded.priors_[L.NAME], L.LayerCosts)
    _, X, _ = _baselines(rows, profiles)
    np.testing.assert_allclose(loaded.predict(X)["latency"], predictor.predict(X)["latency"], rtol=1e-5)
    card = json.loads((path / B.CARD).read_text())
    assert L.NAME not in card["predictor"]["priors"]  # its trees are a file of their own, not card JSON
    card["components"][L.NAME]["unit_schema"] = "0" * 16
    (path / B.CARD).write_text(json.dumps(card))
    with pytest.raises(BundleError, match="per-layer schema"):
        B.load(path)


def _int8_ratio(profile: ModelProfile, device: str) -> float:
    """A made-up int8 speed-up per layer shape: wide layers run 3x faster, narrow ones (under 16
    input channels) and element-wise ops 1.5x slower, so the network's ratio follows its mix."""
    base = quant = 0.02
    for layer in profile.layers:
        if layer.type in F.FREE_LAYERS:
            continue
        c_in = layer.input_shapes[0][-1] if layer.input_shapes and layer.input_shapes[0] else 1
        t = _shape_latency(ModelProfile("one", "f", profile.input_shape, "float32", 10, "image", (layer,)),
                           device) - 0.02
        base += t
        quant += t * (1 / 3 if layer.macs and c_in >= 16 else 1.5)
    return quant / base


def test_layer_speedups_beat_per_group_speedups_on_unseen_families(shaped):
    rows, profiles = shaped
    quant = rows.copy()
    quant["technique"] = "ptq-int8"
    quant["config_id"] = [f"{c}-q" for c in rows["config_id"]]
    quant["baseline_config_id"] = rows["config_id"].to_numpy()
    quant["latency_ratio_to_baseline"] = [_int8_ratio(profiles[d], dev) for d, dev in zip(rows["profile_digest"],
                                                                                         rows["device"])]
    quant["latency_ms_median"] = rows["latency_ms_median"].to_numpy() * quant["latency_ratio_to_baseline"]
    both = pd.concat([rows, quant], ignore_index=True)
    held = both["family"].isin(["s-bottleneck", "s-inverted"]).to_numpy()
    train, test = prepare(both[~held], profiles), prepare(both[held], profiles)
    base = train.baseline
    priors = {"latency": fit_prior(PRIORS["latency"], train.X[base], train.latency[base])}
    priors["latency_ratio"] = fit_ratio_prior(priors["latency"], train.X[~base], train.ratio[~base])
    groups = np.where(is_probe(train.family), "", train.family)
    fitted = L.fit_speedups(train.X[~base], train.ratio[~base], priors, L.FitSettings(min_networks=10),
                            groups=groups[~base])
    assert fitted is not None
    priors[L.RATIO_NAME] = fitted[0]
    q = ~test.baseline
    per_group = np.abs(np.log(priors["latency_ratio"](test.X[q], priors["latency"]) / test.ratio[q]))
    per_layer = np.abs(np.log(L.latency_ratio(priors, test.X[q]) / test.ratio[q]))
    assert np.median(per_layer) < 0.7 * np.median(per_group)
    np.testing.assert_allclose(L.latency_ratio(priors, test.X[test.baseline]), 1.0)
    # Sums are memoised per set of priors: the same answer again, a new one for other priors.
    again = L.latency_ratio(priors, test.X[q])
    np.testing.assert_array_equal(again, L.latency_ratio(priors, test.X[q]))
    other = {**priors, "latency": fit_prior(PRIORS["latency"], test.X[test.baseline], test.latency[test.baseline])}
    assert not np.allclose(L.latency_ratio(other, test.X[q]), again)


def test_a_layerwise_plan_gives_each_layer_the_steps_that_take_it():
    """`prune:0.9@large+prune:0.5+ptq-int8`: the big layer is pruned to 10%, the others to 50%, all
    int8; `prune:0.8@mid`: the first and last layers are left as they are; a whole-model plan gives
    every unit its own settings."""
    layers = (
        LayerProfile("stem", "Conv2D", 16 * 16 * 8 * 27, 8 * 27 + 8, ((32, 32, 3),), (16, 16, 8), 3, 2, 1),
        LayerProfile("pool", "GlobalAveragePooling2D", 0, 0, ((16, 16, 8),), (8,)),
        LayerProfile("big", "Dense", 8 * 512, 8 * 512 + 512, ((8,),), (512,)),
        LayerProfile("head", "Dense", 512 * 2, 512 * 2 + 2, ((512,),), (2,)),
    )
    profile = ModelProfile("m", "f", (32, 32, 3), "float32", 2, "image", layers)
    u = L.units(profile)
    assert u.layer == ("stem", "pool", "big", "head", "")
    density = L.STEP_SETTINGS.index("density")
    int8 = L.STEP_SETTINGS.index("quant_full_int")

    def steps_of(spec):
        pv, tv, sv = F.pipeline_vectors(profile, spec)
        x = np.zeros(len(F.FEATURE_NAMES))
        x[F.PROFILE_BLOCK], x[F.TECHNIQUE_BLOCK], x[F.STRUCTURE_BLOCK] = pv, tv, sv
        return x, L.unit_steps(u, x, F.profile_keys(x[None, :])[0])

    x, s = steps_of("prune:0.9@large+prune:0.5+ptq-int8")
    mean = x[F.INDEX["density"]]  # units without weights keep the plan's average
    np.testing.assert_allclose(s[:, density], [0.5, mean, 0.1, 0.5, mean])
    assert s[[0, 2, 3], int8].tolist() == [1.0, 1.0, 1.0]
    _, s = steps_of("prune:0.8@mid")
    assert s[[0, 3], density].tolist() == [1.0, 1.0] and s[2, density] == pytest.approx(0.2)
    assert s[0, L.STEP_SETTINGS.index("n_steps")] == 0  # untouched: the settings of `none`
    x, s = steps_of("prune:0.8+ptq-int8")  # whole-model: not a layer-wise plan
    assert (s == x[L._STEP_INDEX]).all()
