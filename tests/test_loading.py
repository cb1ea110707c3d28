"""Resolving models by zoo name and by path, with one clear error for every bad input."""

from __future__ import annotations

import numpy as np
import pytest

from advisor.errors import ModelFileError, OptionError, UnknownNameError
from measure.loading import resolve_model, zoo_key


def assert_one_clear_line(exc: BaseException, *words: str) -> None:
    message = str(exc)
    assert "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message


# ---------------------------------------------------------------------------------------------
# Names and paths that never reach TensorFlow


def test_unknown_name_suggests_zoo_names():
    with pytest.raises(UnknownNameError) as info:
        resolve_model("resnet5O")
    assert "resnet50" in info.value.close


@pytest.mark.parametrize("missing", ["does/not/exist.h5", "nowhere.keras", "gone.tflite"])
def test_missing_file_is_a_model_file_error(missing, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelFileError) as info:
        resolve_model(missing)
    assert_one_clear_line(info.value, missing, "does not exist")


def test_unsupported_extension(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x01")
    with pytest.raises(ModelFileError) as info:
        resolve_model(str(path))
    assert_one_clear_line(info.value, str(path), ".onnx", ".keras")


def test_directory_without_saved_model(tmp_path):
    with pytest.raises(ModelFileError, match="saved_model.pb"):
        resolve_model(str(tmp_path))


def test_options_for_a_file_model_are_refused(tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes(b"anything")
    with pytest.raises(OptionError, match="input_size"):
        resolve_model(str(path), input_size=64)
    with pytest.raises(OptionError, match="width"):
        resolve_model(str(path), width=0.5)


def test_sampled_names_go_to_the_sampler():
    with pytest.raises(UnknownNameError, match="sampled block type"):
        resolve_model("sampled:no-such-block:1")


def test_zoo_key_names_non_default_configurations():
    assert zoo_key("resnet50", 224, 1.0, 1000) == "resnet50"
    assert zoo_key("mobilenet_v2", 96, 0.35, 10) == "mobilenet_v2@96-w0.35-c10"
    assert zoo_key("lstm_text", 64, 1.0, 2) == "lstm_text"


# ---------------------------------------------------------------------------------------------
# Real files


@pytest.mark.tf
@pytest.mark.parametrize("suffix", [".h5", ".keras", ".tflite"])
def test_corrupt_files_are_model_file_errors(suffix, tmp_path, rng):
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelFileError) as info:
        resolve_model(str(path))
    assert_one_clear_line(info.value, str(path))


@pytest.fixture(scope="module")
def saved_tiny(tiny_cnn, tmp_path_factory):
    """tiny_cnn saved as .keras, .h5 and a SavedModel directory."""
    root = tmp_path_factory.mktemp("saved")
    paths = {"keras": root / "tiny.keras", "h5": root / "tiny.h5", "savedmodel": root / "tiny_savedmodel"}
    tiny_cnn.save(paths["keras"])
    tiny_cnn.save(paths["h5"])
    tiny_cnn.save(paths["savedmodel"], save_format="tf")
    return paths


@pytest.mark.tf
@pytest.mark.parametrize("kind", ["keras", "h5", "savedmodel"])
def test_saved_keras_models_load_back(kind, saved_tiny, tiny_cnn):
    path = saved_tiny[kind]
    first = resolve_model(str(path))
    second = resolve_model(str(path))
    assert first.key == second.key
    assert first.key == f"file:{path.name}@{first.sha256[:12]}"
    assert first.kind == "file" and first.weights == "file" and first.family == "user"
    assert (first.domain, first.input_size, first.num_classes) == ("image", 32, 10)
    assert not first.has_recurrent and first.tflite_path is None
    x = np.random.default_rng(1).random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(first.keras_model(x).numpy(), tiny_cnn(x).numpy(), atol=1e-6)


@pytest.mark.tf
@pytest.mark.parametrize("kind", ["keras", "h5"])
def test_truncated_keras_files_are_model_file_errors(kind, saved_tiny, tmp_path):
    data = saved_tiny[kind].read_bytes()
    path = tmp_path / saved_tiny[kind].name
    path.write_bytes(data[: len(data) // 2])  # right signature, missing the rest
    with pytest.raises(ModelFileError) as info:
        resolve_model(str(path))
    assert_one_clear_line(info.value, str(path), "cannot load Keras model")


@pytest.mark.tf
def test_savedmodel_not_from_keras_is_refused(tf, tmp_path):
    module = tf.Module()
    module.double = tf.function(lambda x: 2 * x, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "plain"))
    with pytest.raises(ModelFileError) as info:
        resolve_model(str(tmp_path / "plain"))
    assert_one_clear_line(info.value, "Keras")


@pytest.mark.tf
def test_tflite_file_resolves_for_measurement_only(tf, tiny_cnn, tmp_path):
    path = tmp_path / "tiny.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(tiny_cnn).convert())
    resolved = resolve_model(str(path))
    assert resolved.kind == "tflite" and resolved.keras_model is None
    assert resolved.tflite_path == str(path)
    assert (resolved.domain, resolved.input_size, resolved.num_classes) == ("image", 32, 10)
    assert resolved.key == resolve_model(str(path)).key


@pytest.mark.tf
def test_recurrent_user_model_with_dynamic_batch_is_flagged(keras, tmp_path):
    inp = keras.Input((10,), dtype="int32")
    x = keras.layers.Embedding(100, 8)(inp)
    out = keras.layers.Dense(2)(keras.layers.Bidirectional(keras.layers.GRU(4))(x))
    path = tmp_path / "rnn.keras"
    keras.Model(inp, out).save(path)
    original = keras.models.load_model(path)
    resolved = resolve_model(str(path))
    assert resolved.has_recurrent and resolved.domain == "text"
    assert any("fixed batch of 1" in note for note in resolved.notes)
    model = resolved.keras_model
    assert model.inputs[0].shape[0] == 1
    tokens = np.arange(10, dtype=np.int32)[None] % 100
    np.testing.assert_allclose(model(tokens).numpy(), original(tokens).numpy(), atol=1e-6)
    from advisor.techniques import Pipeline
    from measure.compress import Compressed, convert

    # The converter refuses recurrent layers with a dynamic batch; rebuilt, the model converts.
    assert convert(Compressed(model, Pipeline.parse("none"), "none"), None)[4:8] == b"TFL3"


@pytest.mark.tf
def test_zoo_models_resolve_and_save_round_trip(keras, tmp_path):
    resolved = resolve_model("transformer_text", input_size=16, width=0.25)
    assert resolved.kind == "zoo" and resolved.key == "transformer_text@16-w0.25"
    assert resolved.family == "transformer" and not resolved.has_recurrent
    path = tmp_path / "transformer.keras"
    resolved.keras_model.save(path)  # the custom position embedding must load back
    loaded = resolve_model(str(path))
    assert loaded.domain == "text" and loaded.input_size == 16
    tokens = np.arange(16, dtype=np.int32)[None]
    np.testing.assert_allclose(loaded.keras_model(tokens).numpy(),
                               resolved.keras_model(tokens).numpy(), atol=1e-6)
    assert resolve_model("lstm_text", input_size=16).has_recurrent
