"""Low-rank factorisation, distillation and layer-wise plans applied for real to tiny Keras models,
and the analytic profiles the predictor uses checked against the real rebuilt networks."""

import numpy as np
import pytest

from advisor import layers as L
from advisor.errors import UnsupportedError
from advisor.techniques import Pipeline

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def residual_cnn(keras):
    """A tiny CNN with a residual add, batch norm, a depthwise layer and a flattened dense head."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="stem")(inp)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU()(x)
    y = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c1")(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(y)
    x = keras.layers.Add()([x, y])
    x = keras.layers.MaxPooling2D(4)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu", name="fc")(x)
    out = keras.layers.Dense(10, activation="softmax", name="head")(x)
    return keras.Model(inp, out, name="residual_cnn")


@pytest.fixture(scope="module")
def mlp(keras):
    keras.utils.set_random_seed(2)
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation="relu", name="h1"),
                             keras.layers.Dense(96, activation="relu", name="h2"),
                             keras.layers.Dense(5, name="logits")], name="mlp")


def _data(model, n=64):
    from measure.compress import TrainData

    rng = np.random.default_rng(0)
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    classes = int(model.outputs[0].shape[-1])
    return TrainData(rng.uniform(0, 1, (n, *shape)).astype("float32"), rng.integers(0, classes, n), "random")


def _profile(model):
    from measure.rebuild import profile_of

    return profile_of(model)


@pytest.mark.parametrize("model_name", ["residual_cnn", "mlp"])
@pytest.mark.parametrize("fraction,selector", [(0.25, "all"), (0.5, "dense"), (0.1, "conv")])
def test_factorised_network_matches_its_analytic_profile(request, model_name, fraction, selector):
    from measure.rebuild import factorise_model

    model = request.getfixturevalue(model_name)
    if selector == "conv" and model_name == "mlp":
        with pytest.raises(UnsupportedError, match="no dense or convolution layer"):
            factorise_model(model, fraction, selector)
        return
    new, plans = factorise_model(model, fraction, selector)
    expected = L.factorise(_profile(model), fraction, selector)
    real = _profile(new)
    assert [(ly.name, ly.type, ly.macs, ly.params, ly.output_shape) for ly in real.layers] == \
           [(ly.name, ly.type, ly.macs, ly.params, ly.output_shape) for ly in expected.layers]
    assert plans and real.params < _profile(model).params


def test_factorisation_is_the_best_rank_r_approximation(mlp):
    """The two factors multiply to the truncated SVD: its error is the tail of singular values."""
    from measure.rebuild import factorise_model

    x = np.random.default_rng(3).normal(size=(8, 64)).astype("float32")
    new, plans = factorise_model(mlp, 0.3, "l0")
    assert set(plans) == {"h1"}
    f = plans["h1"]
    kernel = mlp.get_layer("h1").get_weights()[0]
    s = np.linalg.svd(kernel, compute_uv=False)
    a, = new.get_layer("h1_lr1").get_weights()
    b, _ = new.get_layer("h1").get_weights()
    err = np.linalg.norm(kernel - a @ b)
    assert err == pytest.approx(np.sqrt((s[f.rank:] ** 2).sum()), rel=1e-3)
    assert new.predict(x, verbose=0).shape == (8, 5)


@pytest.mark.parametrize("model_name", ["residual_cnn", "mlp", "tiny_cnn"])
def test_student_matches_its_analytic_profile(request, model_name):
    from measure.rebuild import student_model

    model = request.getfixturevalue(model_name)
    student = student_model(model, 0.5)
    real, expected = _profile(student), L.widen(_profile(model), 0.5)
    # biases thin with the outputs alone: per layer, weights counted exactly (tiny_cnn's are 3% of it)
    weighted = ("Conv2D", "Dense", "DepthwiseConv2D")
    assert [ly.params for ly in real.layers if ly.type in weighted] == \
           [ly.params for ly in expected.layers if ly.type in weighted]
    assert real.params == pytest.approx(expected.params, rel=0.02)
    assert real.macs == pytest.approx(expected.macs, rel=0.02)
    assert real.num_classes == _profile(model).num_classes  # the classifier keeps its outputs
    assert real.params < 0.5 * _profile(model).params


@pytest.mark.parametrize("spec", ["lowrank:0.25", "lowrank:0.25+ptq-int8", "distill:0.5",
                                  "distill:0.5+prune:0.8+ptq-int8", "distill:0.5,t=2,a=0.5+lowrank:0.5@dense",
                                  "prune:0.9@dense+prune:0.5", "cluster:8@large+cluster:32", "qat-int8@mid",
                                  "prune:0.8@conv+qat-int8@mid"])
def test_structural_and_layerwise_plans_convert_and_run(residual_cnn, spec):
    from ai_edge_litert.interpreter import Interpreter

    from measure.compress import compress, convert

    data = _data(residual_cnn)
    pipeline = Pipeline.parse(spec)
    c = compress(residual_cnn, pipeline, data)
    blob = convert(c, data.x)
    it = Interpreter(model_content=blob)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    x = data.x[:1] if inp["dtype"] == np.float32 else np.zeros((1, 16, 16, 3), dtype=inp["dtype"])
    it.set_tensor(inp["index"], x)
    it.invoke()
    assert it.get_tensor(it.get_output_details()[0]["index"]).shape == (1, 10)
    assert c.notes


def test_layerwise_pruning_gives_each_layer_its_own_sparsity(residual_cnn):
    from measure.compress import compress

    c = compress(residual_cnn, Pipeline.parse("prune:0.9@dense+prune:0.5"), _data(residual_cnn))
    zeros = {ly.name: float((ly.kernel.numpy() == 0).mean()) for ly in c.model.layers if hasattr(ly, "kernel")}
    assert zeros["fc"] == pytest.approx(0.9, abs=0.02) and zeros["head"] == pytest.approx(0.9, abs=0.05)
    assert zeros["stem"] == pytest.approx(0.5, abs=0.05) and zeros["c1"] == pytest.approx(0.5, abs=0.02)


def test_layerwise_qat_leaves_the_ends_in_float(residual_cnn):
    from measure.compress import compress

    c = compress(residual_cnn, Pipeline.parse("qat-int8@mid"), _data(residual_cnn))
    wrapped = {ly.layer.name for ly in c.model.layers if type(ly).__name__ == "QuantizeWrapperV2"}
    assert "c1" in wrapped and "fc" in wrapped
    assert "stem" not in wrapped and "head" not in wrapped


def test_distillation_learns_from_the_teacher(keras):
    """On separable data a half-width student taught by a trained teacher beats chance by far."""
    from measure.compress import FinetuneSettings, TrainData, compress

    rng = np.random.default_rng(4)
    x = rng.normal(size=(512, 16)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + 2 * (x[:, 2] > 0).astype(int)
    keras.utils.set_random_seed(4)
    teacher = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, activation="relu"),
                                keras.layers.Dense(4, activation="softmax")])
    teacher.compile("adam", "sparse_categorical_crossentropy")
    teacher.fit(x, y, epochs=20, verbose=0)
    c = compress(teacher, Pipeline.parse("distill:0.5"), TrainData(x, y, "random"),
                 FinetuneSettings(epochs=4, max_samples=512))
    assert c.model.count_params() < teacher.count_params() / 1.8
    acc = float((c.model.predict(x, verbose=0).argmax(1) == y).mean())
    assert acc > 0.6  # chance is 0.25


def test_distilling_a_network_whose_copy_cannot_be_thinned_is_a_clear_error(keras):
    from measure.rebuild import student_model

    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = keras.layers.Add()([x, keras.layers.Conv2D(4, 1)(inp)])  # fine: both branches thin alike
    x = keras.layers.Concatenate()([x, inp])  # the raw input joins a thinned branch
    x = keras.layers.Flatten()(x)
    model = keras.Model(inp, keras.layers.Dense(3)(x))
    with pytest.raises(UnsupportedError, match="distill"):
        student_model(model, 0.5)


def test_structural_plans_are_timed_against_the_network_they_built(keras):
    """distill:0.5+ptq-int8's ratio is to distill:0.5 (measured with it, in the same rounds), and that
    float student's own row comes along, its ratio to the original."""
    from measure.devices import LocalDevice
    from measure.runner import MeasureSettings, measure_many

    fast = MeasureSettings(energy=False, idle_s=0.0, min_runs=3, time_cap_s=2.0, min_rounds=2, max_rounds=3,
                           finetune_samples=32)
    out = measure_many("sampled:dense:7", ["distill:0.5+ptq-int8", "lowrank:0.25"], LocalDevice(), fast)
    distilled, lowrank = out
    student = [r for r in distilled.extra if r["technique"] == "distill:0.5"]
    assert len(student) == 1
    assert distilled.row["baseline_config_id"] == student[0]["config_id"]
    assert student[0]["baseline_config_id"] == distilled.baseline["config_id"]
    assert lowrank.row["baseline_config_id"] == lowrank.baseline["config_id"]
    assert 0 < distilled.row["latency_ratio_to_baseline"] < 10
    assert "latency ratio against distill:0.5" in distilled.row["notes"]
    assert student[0]["size_bytes"] < distilled.baseline["size_bytes"]


def test_a_small_vocabulary_text_model_is_fed_token_ids_it_can_look_up(keras, tmp_path):
    """Calibration data, timing and memory feed token ids below the model's own vocabulary: ids up
    to the default 10,000 made an Embedding(20) fail GATHER once converted to int8."""
    from measure.devices import LocalDevice
    from measure.runner import MeasureSettings, embedding_vocab, measure_many

    tokens = keras.Input((6,), dtype="int32")
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 4)(tokens))
    model = keras.Model(tokens, keras.layers.Dense(2)(x))
    assert embedding_vocab(model) == 20
    path = tmp_path / "tokens.keras"
    model.save(path)
    fast = MeasureSettings(energy=False, idle_s=0.0, min_runs=3, time_cap_s=2.0, min_rounds=2, max_rounds=3)
    (out,) = measure_many(str(path), ["ptq-int8"], LocalDevice(), fast)
    assert out.row["status"] == "ok" and out.row["latency_ms_median"] > 0
