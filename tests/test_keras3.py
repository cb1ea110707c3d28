"""Model files written by Keras 3 (TensorFlow's default Keras) load as Keras 2 models with the same
outputs, so that a user's model saved today can be profiled, compressed and measured."""

from __future__ import annotations

import numpy as np
import pytest

from advisor.errors import ModelFileError
from measure.keras3 import saved_by_keras3
from measure.loading import resolve_model

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def keras3(tf):
    import keras

    assert int(keras.__version__.split(".")[0]) >= 3
    keras.utils.set_random_seed(0)
    return keras


def _functional_cnn(keras3):
    """Residual CNN with a relu6 activation string, batch norm, depthwise conv, dropout."""
    layers = keras3.layers
    inp = keras3.Input((32, 32, 3), name="image")
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6", name="stem")(inp)
    x = layers.BatchNormalization(name="stem_bn")(x)
    y = layers.DepthwiseConv2D(3, padding="same", activation="silu", name="dw")(x)
    y = layers.Conv2D(8, 1, name="pw")(y)
    x = layers.Add(name="add")([x, y])
    x = layers.Activation("relu6", name="act")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(0.1, name="drop")(x)
    return keras3.Model(inp, layers.Dense(10, activation="softmax", name="classifier")(x), name="k3_cnn")


def _sequential_mlp(keras3):
    return keras3.Sequential([keras3.Input((20,)), keras3.layers.Dense(16, activation="gelu"),
                              keras3.layers.LayerNormalization(), keras3.layers.Dense(4)], name="k3_mlp")


def _two_inputs_shared(keras3):
    """Two inputs through one shared dense layer (called twice), concatenated."""
    layers = keras3.layers
    a, b = keras3.Input((12,), name="a"), keras3.Input((12,), name="b")
    shared = layers.Dense(6, activation="tanh", name="shared")
    x = layers.Concatenate(name="concat")([shared(a), shared(b)])
    return keras3.Model([a, b], layers.Dense(3, name="head")(x), name="k3_two")


def _ops_and_hard_activations(keras3):
    """What Keras 3's own MobileNetV3 has: keras.ops arithmetic in the graph, hard_silu/hard_sigmoid."""
    layers, ops = keras3.layers, keras3.ops
    inp = keras3.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, activation="hard_silu", name="conv")(inp)
    gate = layers.Conv2D(8, 1, activation="hard_sigmoid", name="gate")(x)
    x = ops.multiply(ops.add(x, 1.5), gate)
    x = layers.Activation("leaky_relu", name="leaky")(ops.multiply(x, 0.5))
    return keras3.Model(inp, layers.Dense(3)(layers.GlobalAveragePooling2D()(x)), name="k3_ops")


def _text_attention(keras3):
    """Tokens through an LSTM (dynamic batch) and a self-attention block."""
    layers = keras3.layers
    tokens = keras3.Input((12,), dtype="int32")
    x = layers.LSTM(8, return_sequences=True)(layers.Embedding(50, 8)(tokens))
    x = layers.LayerNormalization()(layers.Add()([x, layers.MultiHeadAttention(2, 4)(x, x)]))
    return keras3.Model(tokens, layers.Dense(2)(layers.GlobalAveragePooling1D()(x)), name="k3_text")


def _nested_backbone(keras3):
    """Transfer learning's shape: a backbone model used as a layer, a new head on top."""
    layers = keras3.layers
    inner_in = keras3.Input((16, 16, 3))
    features = layers.Conv2D(6, 3, activation="relu", name="conv")(layers.BatchNormalization(name="bn")(inner_in))
    backbone = keras3.Model(inner_in, features, name="backbone")
    inp = keras3.Input((16, 16, 3))
    x = layers.GlobalAveragePooling2D()(backbone(layers.Rescaling(1 / 127.5, offset=-1)(inp), training=False))
    return keras3.Model(inp, layers.Dense(3, activation="softmax")(x), name="k3_transfer")


def _wrapped_recurrent(keras3):
    """Wrapper layers: a Bidirectional GRU (its config holds the GRU's) and a TimeDistributed Dense."""
    layers = keras3.layers
    tokens = keras3.Input((10,), dtype="int32")
    x = layers.Conv1D(8, 3, activation="relu")(layers.Embedding(50, 8)(tokens))
    x = layers.Bidirectional(layers.GRU(6, return_sequences=True), name="bigru")(x)
    x = layers.TimeDistributed(layers.Dense(4), name="per_step")(x)
    return keras3.Model(tokens, layers.Dense(3)(layers.GlobalMaxPooling1D()(x)), name="k3_wrapped")


def _decoder(keras3):
    """Segmentation shapes: separable conv, group norm, transposed conv, concat, upsampling."""
    layers = keras3.layers
    inp = keras3.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    y = layers.SeparableConv2D(8, 3, padding="same", activation="swish")(layers.MaxPooling2D()(x))
    y = layers.Conv2DTranspose(8, 3, strides=2, padding="same")(layers.GroupNormalization(groups=4)(y))
    out = layers.Conv2D(2, 1)(layers.UpSampling2D()(layers.Concatenate()([x, y])))
    return keras3.Model(inp, out, name="k3_decoder")


def _inputs(model, rng):
    return [rng.integers(0, 50, (1, *t.shape[1:])).astype("int32") if "int" in str(t.dtype)
            else rng.random((1, *t.shape[1:]), dtype=np.float32) for t in model.inputs]


@pytest.mark.parametrize("build, suffix", [(_functional_cnn, ".keras"), (_functional_cnn, ".h5"),
                                           (_sequential_mlp, ".keras"), (_two_inputs_shared, ".keras"),
                                           (_ops_and_hard_activations, ".keras"), (_text_attention, ".keras"),
                                           (_nested_backbone, ".keras"), (_wrapped_recurrent, ".keras"),
                                           (_decoder, ".keras")])
def test_keras3_files_rebuild_with_the_same_outputs(keras3, build, suffix, tmp_path, rng):
    model = build(keras3)
    path = tmp_path / f"{model.name}{suffix}"
    model.save(path)
    assert saved_by_keras3(path)
    resolved = resolve_model(str(path))
    assert resolved.kind == "file" and resolved.weights == "file"
    rebuilt = resolved.keras_model
    assert type(rebuilt).__module__.startswith("tf_keras")
    x = _inputs(model, rng)
    expected = np.asarray(model.predict(x if len(x) > 1 else x[0], verbose=0))
    got = np.asarray(rebuilt.predict(x if len(x) > 1 else x[0], verbose=0))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_rebuilt_keras3_model_profiles_and_converts(keras3, tmp_path):
    from advisor.techniques import Pipeline
    from measure.compress import Compressed, convert
    from measure.profiling import profile_model

    path = tmp_path / "cnn.keras"
    _functional_cnn(keras3).save(path)
    resolved = resolve_model(str(path))
    profile = profile_model(resolved.keras_model, model=resolved.key, family="user", domain=resolved.domain)
    types = [layer.type for layer in profile.layers]
    assert {"Conv2D", "DepthwiseConv2D", "Dense"} <= set(types)
    assert profile.macs > 0 and profile.input_shape == (32, 32, 3)
    flatbuffer = convert(Compressed(resolved.keras_model, Pipeline.parse("none"), "none"), None)
    assert flatbuffer[4:8] == b"TFL3"


def test_a_tf_keras_file_is_not_taken_for_keras3(tiny_cnn, tmp_path):
    path = tmp_path / "tiny.keras"
    tiny_cnn.save(path)
    assert not saved_by_keras3(path)


def test_a_lambda_layer_is_refused_in_one_line(keras3, tmp_path):
    inp = keras3.Input((8,))
    out = keras3.layers.Lambda(lambda t: t * 2.0, name="double")(inp)
    path = tmp_path / "lambda.keras"
    keras3.Model(inp, keras3.layers.Dense(2)(out)).save(path)
    with pytest.raises(ModelFileError) as info:
        resolve_model(str(path))
    message = str(info.value)
    assert "\n" not in message and "Lambda" in message and "double" in message and str(path) in message


def test_a_custom_layer_is_refused_in_one_line(keras3, tmp_path):
    @keras3.saving.register_keras_serializable(package="user_pkg")
    class Scale(keras3.layers.Layer):
        def call(self, x):
            return x * 3.0

    inp = keras3.Input((8,))
    path = tmp_path / "custom.keras"
    keras3.Model(inp, Scale(name="scale")(inp)).save(path)
    with pytest.raises(ModelFileError) as info:
        resolve_model(str(path))
    message = str(info.value)
    assert "\n" not in message and "user_pkg>Scale" in message and "scale" in message
