"""Profiles of real tiny models against hand-computed MACs and Keras' own parameter counts."""

from __future__ import annotations

import json

import pytest

from advisor.errors import OptionError
from advisor.profile import ModelProfile
from measure import zoo
from measure.profiling import profile_model

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def conv_model(keras):
    """8x8x3 -> Conv2D -> grouped 1x1 Conv2D -> DepthwiseConv2D -> SeparableConv2D -> Dense."""
    layers = keras.layers
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inp)  # 8x8x4
    x = layers.Conv2D(8, 1, groups=2, name="grouped")(x)  # 8x8x8
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, name="depthwise")(x)  # 6x6x16
    x = layers.SeparableConv2D(5, 3, padding="same", name="separable")(x)  # 6x6x5
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    out = layers.Dense(6, name="dense")(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def text_model(keras):
    """12 tokens -> Embedding -> Conv1D -> LSTM -> MultiHeadAttention -> Dense (3-D) -> GRU -> Dense."""
    layers = keras.layers
    inp = keras.Input((12,), dtype="int32")
    x = layers.Embedding(50, 8, name="embedding")(inp)  # 12x8
    x = layers.Conv1D(8, 3, padding="same", name="conv1d")(x)  # 12x8
    x = layers.LSTM(16, return_sequences=True, name="lstm")(x)  # 12x16
    x = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attention")(x, x)  # 12x16
    x = layers.Dense(3, name="dense_seq")(x)  # 12x3
    x = layers.GRU(5, name="gru")(x)  # 5
    out = layers.Dense(2, name="dense")(x)
    return keras.Model(inp, out)


def by_name(profile: ModelProfile) -> dict:
    return {layer.name: layer for layer in profile.layers}


def test_convolution_macs_match_hand_computed(conv_model):
    profile = profile_model(conv_model, model="conv", family="user", domain="image")
    layers = by_name(profile)
    assert layers["conv"].macs == 8 * 8 * 4 * 3 * 3 * 3
    assert layers["grouped"].macs == 8 * 8 * 8 * 1 * 1 * 4 // 2
    assert layers["depthwise"].macs == 6 * 6 * 8 * 2 * 3 * 3
    assert layers["separable"].macs == 6 * 6 * 16 * 3 * 3 + 6 * 6 * 16 * 5
    assert layers["dense"].macs == 5 * 6
    assert layers["bn"].macs == 0 and layers["pool"].macs == 0  # kept, with no MACs
    assert (layers["conv"].kernel, layers["conv"].stride, layers["conv"].groups) == (3, 1, 1)
    assert layers["grouped"].groups == 2
    assert layers["depthwise"].groups == 8
    assert layers["depthwise"].input_shapes == ((8, 8, 8),)
    assert layers["depthwise"].output_shape == (6, 6, 16)
    assert profile.params == conv_model.count_params()
    assert profile.input_shape == (8, 8, 3) and profile.input_dtype == "float32"
    assert profile.num_classes == 6


def test_upsampling_counts_its_interpolation_and_a_transposed_convolution_its_input_positions(keras):
    layers = keras.layers
    inp = keras.Input((6, 5, 4))
    near = layers.UpSampling2D(2, name="near")(inp)  # 12x10x4: copies, no arithmetic
    bilinear = layers.UpSampling2D(2, interpolation="bilinear", name="bilinear")(inp)  # 4 taps per output
    x = layers.Concatenate(name="cat")([near, bilinear])
    out = layers.Conv2DTranspose(3, 3, strides=2, padding="same", name="up")(x)  # 24x20x3 from 12x10x8
    layers_ = by_name(profile_model(keras.Model(inp, out), model="decoder", family="user", domain="image"))
    assert layers_["near"].macs == 0
    assert layers_["bilinear"].macs == 12 * 10 * 4 * 4
    assert layers_["up"].macs == 12 * 10 * 8 * 3 * 3 * 3 and layers_["up"].output_shape == (24, 20, 3)


def test_sequence_macs_match_hand_computed(text_model):
    profile = profile_model(text_model, model="text", family="user", domain="text")
    layers = by_name(profile)
    assert layers["embedding"].macs == 0 and layers["embedding"].params == 50 * 8
    assert layers["conv1d"].macs == 12 * 8 * 3 * 8
    assert layers["lstm"].macs == 4 * (8 + 16) * 16 * 12
    assert layers["attention"].macs == 4 * 12 * 16 * 2 * 4 + 2 * 2 * 12 * 12 * 4
    assert layers["dense_seq"].macs == 12 * 16 * 3
    assert layers["gru"].macs == 3 * (3 + 5) * 5 * 12
    assert layers["dense"].macs == 5 * 2
    assert layers["attention"].input_shapes[0] == (12, 16)
    assert profile.params == text_model.count_params()
    assert profile.input_dtype == "int32" and profile.input_shape == (12,)
    assert [layer.name for layer in profile.layers] == [
        "embedding", "conv1d", "lstm", "attention", "dense_seq", "gru", "dense"
    ]


def test_tiny_cnn_profile(tiny_cnn):
    profile = profile_model(tiny_cnn, model="tiny_cnn", family="user", domain="image")
    assert [layer.type for layer in profile.layers] == [
        "Conv2D", "DepthwiseConv2D", "Conv2D", "GlobalAveragePooling2D", "Dense"
    ]
    assert profile.macs == 16 * 16 * 8 * 27 + 16 * 16 * 8 * 9 + 16 * 16 * 16 * 8 + 16 * 10
    assert profile.params == tiny_cnn.count_params()
    assert profile.layers[0].stride == 2
    assert profile.depth == 4


def test_profile_json_round_trips(tiny_cnn):
    profile = profile_model(tiny_cnn, model="tiny_cnn", family="user", domain="image")
    again = ModelProfile.from_dict(json.loads(profile.to_json()))
    assert again == profile
    assert again.digest == profile.digest


def test_zoo_networks_profile_with_keras_param_counts(keras):
    for name, options in [
        ("mobilenet_v2", {"input_size": 32, "width": 0.35, "num_classes": 10}),
        ("transformer_text", {"input_size": 16, "width": 0.25}),
        ("lstm_text", {"input_size": 16, "width": 0.25}),
    ]:
        built = zoo.build(name, **options)
        profile = profile_model(built.model, model=name, family=built.family, domain=built.domain)
        assert profile.params == built.model.count_params(), name
        assert profile.num_classes == built.num_classes
        assert profile.macs > 0
        assert all(len(layer.output_shape) >= 1 for layer in profile.layers)
    assert by_name(profile)["lstm"].macs == 4 * (16 + 16) * 16 * 16


def test_wrappers_and_nested_models_are_looked_through(keras, tiny_cnn, tf):
    from measure._tf import tfmot

    plain = profile_model(tiny_cnn, model="m", family="user", domain="image")
    pruned_model = tfmot().sparsity.keras.prune_low_magnitude(tiny_cnn)
    pruned = profile_model(pruned_model, model="m", family="user", domain="image")
    assert [(ly.name, ly.type, ly.macs, ly.params) for ly in pruned.layers] == [
        (ly.name, ly.type, ly.macs, ly.params) for ly in plain.layers
    ]

    inner = keras.models.clone_model(tiny_cnn)  # calling the shared fixture would add a node to it
    outer_in = keras.Input((32, 32, 3))
    nested = keras.Model(outer_in, keras.layers.Dense(3, name="head")(inner(outer_in)))
    profile = profile_model(nested, model="n", family="user", domain="image")
    assert profile.layers[0].name == f"{inner.name}/{plain.layers[0].name}"
    assert profile.macs == plain.macs + 10 * 3
    assert profile.params == nested.count_params()

    seq_in = keras.Input((6, 4))
    bi = keras.layers.Bidirectional(keras.layers.LSTM(3), name="bi")(seq_in)
    bi_profile = profile_model(keras.Model(seq_in, bi), model="b", family="user", domain="other")
    # Two recurrent loops in TFLite, so two layers: each direction's work, weights and output.
    assert [ly.type for ly in bi_profile.layers] == ["LSTM", "LSTM"]
    assert [ly.macs for ly in bi_profile.layers] == [4 * (4 + 3) * 3 * 6] * 2
    assert [ly.output_shape for ly in bi_profile.layers] == [(3,), (3,)]
    assert bi_profile.params == keras.Model(seq_in, bi).count_params()

    steps = keras.layers.TimeDistributed(keras.layers.Dense(5), name="td")(seq_in)
    td = profile_model(keras.Model(seq_in, steps), model="t", family="user", domain="other")
    assert [(ly.type, ly.macs, ly.output_shape) for ly in td.layers] == [("Dense", 6 * 4 * 5, (6, 5))]


def test_unknown_input_dimensions_are_refused(keras):
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, keras.layers.Conv2D(2, 3)(inp))
    with pytest.raises(OptionError, match="unknown dimensions"):
        profile_model(model, model="dyn", family="user", domain="image")


def test_a_profile_records_its_float_file_as_a_measurement_converts_it(tiny_cnn):
    from advisor.techniques import Pipeline
    from measure.compress import Compressed, convert
    from measure.profiling import with_float_file

    plain = profile_model(tiny_cnn, model="m", family="user", domain="image")
    recorded = with_float_file(plain, tiny_cnn, "trained")
    flatbuffer = convert(Compressed(tiny_cnn, Pipeline.parse("none"), "none"), None)
    assert recorded.tflite_bytes == len(flatbuffer) and recorded.tflite_weights == "trained"
    assert recorded.digest == plain.digest and recorded.layers == plain.layers
