"""The zoo: names, validation, offline weights, and real (tiny) builds that convert to TFLite."""

from __future__ import annotations

import numpy as np
import pytest

from advisor.errors import OptionError, UnknownNameError
from measure import zoo

REQUIRED = {
    "resnet50", "resnet101", "resnet152", "resnet50v2", "vgg16", "vgg19", "inception_v3",
    "inception_resnet_v2", "xception", "mobilenet", "mobilenet_v2", "mobilenet_v3_small",
    "mobilenet_v3_large", "densenet121", "nasnet_mobile", "efficientnet_b0",
    "lstm_text", "gru_text", "transformer_text",
}


def test_zoo_holds_the_study_networks():
    assert REQUIRED <= set(zoo.ZOO)
    for name, entry in zoo.ZOO.items():
        assert entry.name == name
        assert entry.domain in {"image", "text"}
        assert entry.min_input_size <= entry.default_input_size <= entry.max_input_size
        assert entry.description


def test_families_and_input_limits():
    assert zoo.get_entry("inception_v3").min_input_size == 75
    assert zoo.get_entry("xception").min_input_size == 71
    assert zoo.get_entry("mobilenet_v2").has_width
    assert not zoo.get_entry("resnet50").has_width
    assert zoo.get_entry("lstm_text").family == "rnn"
    assert zoo.get_entry("transformer_text").domain == "text"
    assert zoo.get_entry("resnet50").profile_sizes == (96, 128, 160, 224)
    assert zoo.get_entry("inception_v3").profile_sizes == (96, 128, 160, 224, 299)
    assert zoo.get_entry("gru_text").profile_sizes == (32, 64, 128)


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownNameError) as info:
        zoo.get_entry("mobilenetv2")
    assert "mobilenet_v2" in info.value.close
    assert "mobilenetv2" in str(info.value)
    with pytest.raises(UnknownNameError):
        zoo.build("resnet5O")


@pytest.mark.parametrize(
    "name, options, words",
    [
        ("xception", {"input_size": 64}, ["71", "xception"]),
        ("inception_v3", {"input_size": 32}, ["75"]),
        ("resnet50", {"input_size": 16}, ["32"]),
        ("resnet50", {"input_size": 224.0}, ["integer"]),
        ("resnet50", {"width": 0.5}, ["no width"]),
        ("mobilenet_v2", {"width": 0.3}, ["0.35", "1.4"]),
        ("mobilenet", {"width": 0.35}, ["0.25"]),
        ("lstm_text", {"width": 8.0}, ["0.125", "4"]),
        ("lstm_text", {"num_classes": 0}, ["num_classes"]),
    ],
)
def test_bad_options_raise_option_error_naming_the_range(name, options, words):
    with pytest.raises(OptionError) as info:
        zoo.build(name, **options)
    for word in words:
        assert word in str(info.value)


def test_cached_weights_are_found_only_for_their_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    entry = zoo.get_entry("mobilenet_v2")
    assert zoo.cached_imagenet_weights(entry, 224, 1.0, 1000) is None
    models = tmp_path / "models"
    models.mkdir()
    cached = models / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96.h5"
    cached.write_bytes(b"x")
    assert zoo.cached_imagenet_weights(entry, 96, 0.35, 1000) == cached
    assert zoo.cached_imagenet_weights(entry, 96, 0.35, 10) is None  # other classes: no top weights
    assert zoo.cached_imagenet_weights(entry, 97, 0.35, 1000) is None
    assert zoo.cached_imagenet_weights(entry, 96, 0.5, 1000) is None
    (models / "resnet50_weights_tf_dim_ordering_tf_kernels.h5").write_bytes(b"x")
    assert zoo.cached_imagenet_weights(zoo.get_entry("resnet50"), 224, 1.0, 1000) is not None
    assert zoo.cached_imagenet_weights(zoo.get_entry("resnet50"), 160, 1.0, 1000) is None


@pytest.mark.tf
def test_mobilenet_v2_tiny_builds_with_random_weights(keras, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty cache: nothing may be fetched
    built = zoo.build("mobilenet_v2", input_size=32, width=0.35, num_classes=10)
    assert built.weights == "random"
    assert (built.name, built.family, built.domain) == ("mobilenet_v2", "mobilenet_v2", "image")
    assert (built.input_size, built.width, built.num_classes) == (32, 0.35, 10)
    assert built.model.input_shape == (None, 32, 32, 3)
    assert built.model.output_shape == (None, 10)
    probs = built.model(np.zeros((1, 32, 32, 3), np.float32)).numpy()
    assert probs.shape == (1, 10) and np.isclose(probs.sum(), 1.0, atol=1e-5)


@pytest.mark.tf
def test_a_corrupt_cached_weights_file_falls_back_to_random(keras, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96.h5").write_bytes(
        b"not an hdf5 file"
    )
    built = zoo.build("mobilenet_v2", input_size=96, width=0.35)
    assert built.weights == "random"
    assert any("failed to load" in note for note in built.notes)


@pytest.mark.tf
def test_same_seed_same_weights(keras):
    a = zoo.build("gru_text", input_size=8, width=0.25, seed=3).model.get_weights()
    b = zoo.build("gru_text", input_size=8, width=0.25, seed=3).model.get_weights()
    c = zoo.build("gru_text", input_size=8, width=0.25, seed=4).model.get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.tf
def test_width_scales_text_models(keras):
    small = zoo.build("lstm_text", input_size=8, width=0.25).model
    assert small.get_layer("lstm").units == 16
    assert small.get_layer("embedding").output_dim == 16
    assert zoo.build("lstm_text", input_size=8).model.get_layer("lstm").units == 64


@pytest.mark.tf
@pytest.mark.parametrize("name", ["lstm_text", "gru_text", "transformer_text"])
def test_text_models_convert_to_tflite_and_run(tf, name):
    from ai_edge_litert.interpreter import Interpreter

    built = zoo.build(name, input_size=16, width=0.25)
    assert built.domain == "text" and built.num_classes == 2
    if built.family == "rnn":
        assert built.model.input_shape == (1, 16)
        assert any("fixed batch size of 1" in note for note in built.notes)
    flat = tf.lite.TFLiteConverter.from_keras_model(built.model).convert()
    interpreter = Interpreter(model_content=flat)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    assert inp["dtype"] == np.int32 and tuple(inp["shape"]) == (1, 16)
    tokens = np.random.default_rng(0).integers(0, zoo.TEXT_VOCAB_SIZE, size=(1, 16), dtype=np.int32)
    interpreter.set_tensor(inp["index"], tokens)
    interpreter.invoke()
    got = interpreter.get_tensor(out["index"])
    np.testing.assert_allclose(got, built.model(tokens).numpy(), atol=1e-4)
