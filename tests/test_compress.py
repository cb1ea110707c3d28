"""Every technique applied for real to a tiny Keras model, converted, and run in LiteRT."""

import numpy as np
import pytest

from advisor.errors import UnsupportedError
from advisor.techniques import Pipeline

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def train_data(tiny_cnn):
    from measure.compress import TrainData

    rng = np.random.default_rng(0)
    return TrainData(rng.uniform(0, 1, (64, 32, 32, 3)).astype("float32"), rng.integers(0, 10, 64), "random")


def _run_tflite(blob, x):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=blob)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    if inp["dtype"] == np.int8:
        scale, zero = inp["quantization"]
        x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    it.set_tensor(inp["index"], x)
    it.invoke()
    return inp, it.get_tensor(out["index"])


def _compress_convert(model, spec, data):
    from measure.compress import compress, convert

    pipeline = Pipeline.parse(spec)
    c = compress(model, pipeline, data if pipeline.needs_finetune else None)
    return c, convert(c, data.x)


@pytest.mark.parametrize("spec", ["none", "ptq-dynamic", "ptq-float16", "ptq-int8", "prune:0.8", "prune-2:4",
                                  "cluster:8", "qat-int8", "prune:0.5+ptq-int8", "cluster:8+ptq-dynamic"])
def test_technique_converts_and_runs(tiny_cnn, train_data, spec):
    c, blob = _compress_convert(tiny_cnn, spec, train_data)
    assert blob[4:8] == b"TFL3"  # a real flatbuffer
    inp, y = _run_tflite(blob, train_data.x[:1])
    assert y.shape == (1, 10)
    full_int = spec.endswith("int8")
    assert (inp["dtype"] == np.int8) == full_int
    assert c.finetune == ("random" if Pipeline.parse(spec).needs_finetune else "none")


def test_pruning_reaches_its_sparsity(tiny_cnn, train_data):
    c, _ = _compress_convert(tiny_cnn, "prune:0.8", train_data)
    kernels = [ly.kernel.numpy() for ly in c.model.layers if type(ly).__name__ in ("Conv2D", "Dense")]
    for k in kernels:
        assert (k == 0).mean() == pytest.approx(0.8, abs=0.02)
    assert any("pruned" in n for n in c.notes)


def test_two_four_pruning_is_structured(tiny_cnn, train_data):
    c, _ = _compress_convert(tiny_cnn, "prune-2:4", train_data)
    dense = [ly for ly in c.model.layers if type(ly).__name__ == "Dense"][0]
    k = dense.kernel.numpy()  # (16 inputs, 10 units): groups of 4 along the input dimension
    groups = (k.T.reshape(-1, 4) == 0).sum(axis=1)
    assert (groups >= 2).all()


def test_clustering_limits_distinct_weights(tiny_cnn, train_data):
    c, _ = _compress_convert(tiny_cnn, "cluster:4", train_data)
    conv = [ly for ly in c.model.layers if type(ly).__name__ == "Conv2D"][-1]
    assert len(np.unique(conv.kernel.numpy())) <= 4


def test_unsupported_layer_is_a_clear_error(keras, train_data):
    from measure.compress import TrainData

    inp = keras.Input((8,))
    out = keras.layers.Lambda(lambda t: t * 2.0)(inp)  # no weights: nothing to prune
    model = keras.Model(inp, out)
    data = TrainData(np.zeros((4, 8), "float32"), np.zeros(4, "int64"), "random")
    with pytest.raises(UnsupportedError, match="no layer that supports it"):
        _compress_convert(model, "prune:0.5", data)


def test_cosine_decay_lowers_the_rate_over_the_run(keras):
    """Off, the fine-tuning rate is held; on, it follows a cosine from the rate to 5% of it."""
    from measure.compress import FinetuneSettings

    held = FinetuneSettings(learning_rate=1e-3).optimizer(1e-3, 100)
    assert float(held.learning_rate) == pytest.approx(1e-3)
    # tf_keras's `learning_rate` reads the current value; the schedule itself is kept here:
    schedule = FinetuneSettings(cosine_decay=True).optimizer(1e-3, 100)._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
    assert float(schedule(0)) == pytest.approx(1e-3)
    assert float(schedule(50)) < 1e-3 and float(schedule(100)) == pytest.approx(5e-5)


def test_augmented_pruning_reaches_its_sparsity_across_epochs(tiny_cnn, train_data):
    """With augmentation every epoch is its own fit; the pruning step must carry over between them."""
    from measure.compress import FinetuneSettings, compress

    settings = FinetuneSettings(epochs=3, batch_size=16, augment="flip-crop", prune_ramp=0.5)
    c = compress(tiny_cnn, Pipeline.parse("prune:0.8"), train_data, settings)
    kernels = [ly.kernel.numpy() for ly in c.model.layers if type(ly).__name__ in ("Conv2D", "Dense")]
    for k in kernels:
        assert (k == 0).mean() == pytest.approx(0.8, abs=0.02)
    assert any("'flip-crop' augmented copies" in n for n in c.notes)


def test_augmented_distillation_trains_on_fresh_copies_each_epoch(keras, train_data, monkeypatch):
    from measure import augment
    from measure.compress import FinetuneSettings, compress

    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    teacher = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(x))

    seen = []

    def recording(x, rng):
        out = augment.flip_crop(x, rng)
        seen.append(out)
        return out

    monkeypatch.setitem(augment.AUGMENTATIONS, "recording", recording)
    settings = FinetuneSettings(epochs=1, distill_factor=3, batch_size=16, augment="recording")
    c = compress(teacher, Pipeline.parse("distill:0.5"), train_data, settings)
    assert len(seen) == 3  # one fresh copy per student epoch
    assert not np.array_equal(seen[0], seen[1])
    assert c.model.count_params() < teacher.count_params() / 2


def test_augmentation_on_non_image_data_is_refused(keras):
    from advisor.errors import SpecError
    from measure.compress import FinetuneSettings, TrainData, compress

    inp = keras.Input((8,))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(inp))
    data = TrainData(np.zeros((8, 8), "float32"), np.zeros(8, "int64"), "random")
    with pytest.raises(SpecError, match="needs images"):
        compress(model, Pipeline.parse("prune:0.5"), data, FinetuneSettings(augment="flip-crop"))
