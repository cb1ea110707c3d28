"""Sampled architectures: deterministic specs, names, and real tiny builds that convert and run."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from advisor.errors import OptionError, UnknownNameError
from measure import sampling
from measure.sampling import KERNEL_BLOCKS, SAMPLED_BLOCKS, SampleLimits, parse_sampled_name, sample_arch

TINY = SampleLimits(max_input_size=32, max_seq_len=16, max_width=16, max_depth=3)


def test_every_block_type_is_registered():
    assert set(SAMPLED_BLOCKS) == {"plain", "residual", "inverted_residual", "depthwise_separable", "dense",
                                   "lstm", "gru", "attention"}


@pytest.mark.parametrize("block", SAMPLED_BLOCKS)
def test_same_seed_gives_the_same_spec(block):
    assert sample_arch(block, 17) == sample_arch(block, 17)
    specs = {sample_arch(block, s) for s in range(40)}
    assert len(specs) > 20  # seeds really vary the architecture


@pytest.mark.parametrize("block", SAMPLED_BLOCKS)
def test_draws_stay_in_their_ranges(block):
    for seed in range(200):
        spec = sample_arch(block, seed)
        assert spec.family == f"sampled-{block}"
        assert all(8 <= w <= 256 for w in spec.widths)
        assert 1 <= spec.depth <= 16
        if spec.domain == "image":
            assert spec.input_channels in (1, 3)
            assert 8 <= spec.input_size <= 224
        else:
            assert 16 <= spec.input_size <= 256
            assert spec.vocab_size == 10000
        if spec.strides:
            downsampled = spec.input_size / spec.stem_stride / 2 ** sum(s == 2 for s in spec.strides)
            assert downsampled >= 1, spec  # never downsampled past one pixel
            assert len(spec.kernel_sizes) == spec.depth


def test_small_inputs_are_drawn_more_often_than_large():
    sizes = [sample_arch("residual", s).input_size for s in range(400)]
    assert sum(s <= 64 for s in sizes) > 2 * sum(s >= 160 for s in sizes)


def test_limits_cap_the_draws():
    for block in SAMPLED_BLOCKS:
        for seed in range(30):
            spec = sample_arch(block, seed, TINY)
            assert spec.depth <= 3 and max(spec.widths) <= 16 and spec.input_size <= 32


@pytest.mark.parametrize("name, expected", [
    ("sampled:residual:17", ("residual", 17)),
    ("sampled:inverted_residual:0", ("inverted_residual", 0)),
    ("sampled:attention:007", ("attention", 7)),
])
def test_names_parse(name, expected):
    assert parse_sampled_name(name) == expected
    assert sampling.sampled_name(*expected) == f"sampled:{expected[0]}:{expected[1]}"
    assert sample_arch(*expected).name == sampling.sampled_name(*expected)


@pytest.mark.parametrize("name, error, words", [
    ("residual:17", OptionError, ["sampled:<block>:<seed>"]),
    ("sampled:residual", OptionError, ["sampled:<block>:<seed>"]),
    ("sampled:residual:1:2", OptionError, ["sampled:<block>:<seed>"]),
    ("sampled:residual:-1", OptionError, ["non-negative", "-1"]),
    ("sampled:residual:x", OptionError, ["non-negative"]),
    ("sampled:resnet:1", UnknownNameError, ["resnet", "residual"]),
    ("sampled:inverted-residual:1", UnknownNameError, ["inverted_residual"]),
])
def test_bad_names_say_what_is_wrong(name, error, words):
    with pytest.raises(error) as info:
        parse_sampled_name(name)
    for word in words:
        assert word in str(info.value)


def test_bad_seeds_and_blocks_are_refused():
    with pytest.raises(OptionError):
        sample_arch("plain", -3)
    with pytest.raises(UnknownNameError):
        sample_arch("conv", 3)


def test_importing_does_not_import_tensorflow():
    code = "import sys, measure.sampling; print('tensorflow' in sys.modules, 'measure.loading' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------------------------------
# Real builds (TensorFlow)


def _convert_and_run(model, spec) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    from advisor.techniques import Pipeline
    from measure.compress import Compressed, convert

    blob = convert(Compressed(model, Pipeline.parse("none"), "none"), None)
    interpreter = Interpreter(model_content=blob)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    rng = np.random.default_rng(0)
    if spec.domain == "text":
        x = rng.integers(1, spec.vocab_size, size=inp["shape"]).astype(inp["dtype"])
    else:
        x = rng.random(inp["shape"]).astype(inp["dtype"])
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.tf
@pytest.mark.parametrize("block", SAMPLED_BLOCKS)
def test_every_block_type_builds_converts_and_runs(keras, block):
    spec = sample_arch(block, 5, TINY)
    model = sampling.build_arch(spec)
    assert model.outputs[0].shape[-1] == spec.num_classes
    if spec.domain == "image":
        assert tuple(model.inputs[0].shape[1:]) == (spec.input_size, spec.input_size, spec.input_channels)
    else:
        assert tuple(model.inputs[0].shape[1:]) == (spec.input_size,)
    out = _convert_and_run(model, spec)
    assert out.shape[-1] == spec.num_classes
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-3)  # softmax head
    again = sampling.build_arch(sample_arch(block, 5, TINY))
    assert again.count_params() == model.count_params()
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)  # seeded initialisation


@pytest.mark.tf
def test_conv_blocks_follow_their_shape_rules(keras):
    spec = dataclasses.replace(sample_arch("residual", 1, TINY), input_size=32, input_channels=3, depth=3,
                               base_width=8, width_growth=2.0, stem_stride=1, kernel_sizes=(3, 3, 5),
                               strides=(1, 2, 1))
    assert spec.widths == (8, 16, 16)
    model = sampling.build_arch(spec)
    names = {layer.name for layer in model.layers}
    assert "block1_proj_conv" in names  # projection where the shape changes
    assert "block0_proj_conv" not in names and "block2_proj_conv" not in names
    inv = dataclasses.replace(spec, block="inverted_residual", expansion=4)
    names = {layer.name for layer in sampling.build_arch(inv).layers}
    assert {"block0_add", "block2_add"} <= names and "block1_add" not in names  # MobileNetV2 rule


@pytest.mark.tf
def test_resolve_sampled_gives_a_resolved_model(keras):
    name = next(f"sampled:dense:{s}" for s in range(100) if sample_arch("dense", s).input_size <= 16)
    resolved = sampling.resolve_sampled(name, num_classes=3)
    spec = sample_arch(*parse_sampled_name(name))
    assert (resolved.key, resolved.kind, resolved.family, resolved.domain) == (
        name, "sampled", "sampled-dense", "image")
    assert resolved.input_size == spec.input_size and resolved.width is None
    assert resolved.num_classes == 3 and resolved.keras_model.outputs[0].shape[-1] == 3
    assert resolved.weights == "random" and name in resolved.notes[0]
    with pytest.raises(OptionError, match="fixed input size"):
        sampling.resolve_sampled(name, input_size=spec.input_size + 1)
    with pytest.raises(OptionError, match="width"):
        sampling.resolve_sampled(name, width=0.5)
    recurrent = next(f"sampled:gru:{s}" for s in range(100) if sample_arch("gru", s).input_size <= 16
                     and sample_arch("gru", s).base_width <= 32 and sample_arch("gru", s).embed_dim <= 32)
    assert sampling.resolve_sampled(recurrent).has_recurrent


def test_kernel_probes_are_one_layer_and_not_part_of_all():
    assert set(KERNEL_BLOCKS) == {"conv_kernel", "depthwise_kernel", "inner_depthwise_kernel", "dense_kernel",
                                  "eltwise_kernel", "resample_kernel", "conv1d_kernel", "lstm_kernel", "gru_kernel",
                                  "attention_kernel", "sequence_kernel", "activation_kernel", "separable_kernel",
                                  "grouped_kernel"}
    assert not set(KERNEL_BLOCKS) & set(SAMPLED_BLOCKS)
    for block in KERNEL_BLOCKS:
        specs = [sample_arch(block, seed) for seed in range(200)]
        assert len(set(specs)) > 100 and all(s.depth == 1 and s.family.endswith("_kernel") for s in specs)
        for s in specs:
            if block in ("conv_kernel", "depthwise_kernel"):  # within the MAC budget that keeps them quick
                side = -(-s.input_size // s.strides[0])
                macs = side * side * s.kernel_sizes[0] ** 2 * s.widths[0] * (
                    1 if block == "depthwise_kernel" else s.input_channels)
                assert macs <= 150_000_000 or s.widths[0] <= 8, s
            if block == "depthwise_kernel":
                assert s.base_width == s.input_channels  # (widths floor at 8; the layer keeps its input channels)
            if block == "inner_depthwise_kernel":  # the two 1x1 convolutions around it stay within the budget too
                side = -(-s.input_size // s.strides[0])
                assert (s.input_size ** 2 + side * side) * s.widths[0] ** 2 <= 150_000_000 or s.widths[0] <= 8, s
            if block == "separable_kernel":  # depthwise and pointwise MACs within the budget; 8 outputs at least
                side = -(-s.input_size // s.strides[0])
                macs = side * side * s.input_channels * (s.kernel_sizes[0] ** 2 + s.base_width)
                assert (macs <= 150_000_000 or max(s.input_channels, s.base_width) <= 8) and s.base_width >= 8, s
            if block == "grouped_kernel":  # channels divide by the groups, MACs within the budget
                side = -(-s.input_size // s.strides[0])
                macs = side * side * s.kernel_sizes[0] ** 2 * s.input_channels // s.groups * s.base_width
                assert s.input_channels % s.groups == 0 and s.base_width % s.groups == 0 and s.groups >= 2, s
                assert macs <= 150_000_000 and s.op == "grouped_conv", s
            if block in ("eltwise_kernel", "activation_kernel"):  # more than the invoke's time, yet quick
                assert 16_384 <= s.input_size ** 2 * s.input_channels <= 2_000_000, s
            if block in ("lstm_kernel", "gru_kernel"):
                assert s.input_size * 4 * (s.embed_dim + s.widths[0]) * s.widths[0] <= 60_000_000 or s.widths[0] == 8
            if block == "attention_kernel":
                assert s.base_width % s.heads == 0 and s.base_width // s.heads >= 8
            if block == "conv1d_kernel":
                macs = -(-s.input_size // s.strides[0]) * s.kernel_sizes[0] * s.input_channels * s.widths[0]
                assert macs <= 150_000_000 or s.widths[0] <= 8, s
            if block == "resample_kernel" and s.op.startswith("upsample"):  # 16 k to 2 M output elements
                assert 16_384 <= 4 * s.input_size ** 2 * s.input_channels <= 2_000_000 or s.input_channels == 3, s
            if block == "resample_kernel" and not s.op.startswith("upsample"):
                positions = s.input_size ** 2 if s.op == "transpose_conv" else (-(-s.input_size // s.strides[0])) ** 2
                macs = positions * s.kernel_sizes[0] ** 2 * s.input_channels // s.groups * s.widths[0]
                assert macs <= 150_000_000 or s.widths[0] <= 8, s
                assert s.input_channels % s.groups == 0 and s.widths[0] % s.groups == 0, s
                assert (s.groups == 1) == (s.op == "transpose_conv"), s
    assert {parse_sampled_name(f"sampled:{b}:3")[0] for b in KERNEL_BLOCKS} == set(KERNEL_BLOCKS)
    for block, ops in (("eltwise_kernel", sampling.ELTWISE_OPS), ("sequence_kernel", sampling.SEQUENCE_OPS),
                       ("resample_kernel", sampling.RESAMPLE_OPS), ("activation_kernel", sampling.ACTIVATION_OPS)):
        assert {sample_arch(block, seed).op for seed in range(200)} == set(ops)  # every op is drawn


_ONE_LAYER_PROBES = ("conv_kernel", "depthwise_kernel", "dense_kernel", "conv1d_kernel", "separable_kernel")


@pytest.mark.tf
def test_the_inner_depthwise_probe_sits_between_two_pointwise_convolutions(keras):
    spec = sample_arch("inner_depthwise_kernel", 2, TINY)
    model = sampling.build_arch(spec)
    kinds = [(type(ly).__name__, getattr(ly, "kernel_size", None)) for ly in model.layers
             if ly.count_params() and type(ly).__name__ != "BatchNormalization"]
    assert kinds == [("Conv2D", (1, 1)), ("DepthwiseConv2D", (spec.kernel_sizes[0],) * 2), ("Conv2D", (1, 1)),
                     ("Dense", None)]
    assert model.get_layer("probe_dw").kernel_size == (spec.kernel_sizes[0],) * 2
    out = _convert_and_run(model, spec)
    assert out.shape[-1] == spec.num_classes


@pytest.mark.tf
@pytest.mark.parametrize("block", _ONE_LAYER_PROBES)
def test_kernel_probes_build_convert_and_run(keras, block):
    spec = sample_arch(block, 2, TINY)
    model = sampling.build_arch(spec)
    weighted = [ly for ly in model.layers if ly.count_params() and type(ly).__name__ != "BatchNormalization"]
    assert len(weighted) == 2  # the probed layer and the classifier
    out = _convert_and_run(model, spec)
    assert out.shape[-1] == spec.num_classes


_OP_PROBES = [("eltwise_kernel", op) for op in sampling.ELTWISE_OPS] + [
    ("sequence_kernel", op) for op in sampling.SEQUENCE_OPS] + [
    ("resample_kernel", op) for op in sampling.RESAMPLE_OPS] + [
    ("activation_kernel", op) for op in sampling.ACTIVATION_OPS] + [
    ("grouped_kernel", "grouped_conv")] + [
    ("lstm_kernel", "last"), ("gru_kernel", "sequence"), ("attention_kernel", None)]


@pytest.mark.tf
@pytest.mark.parametrize(("block", "op"), _OP_PROBES)
def test_op_probes_build_convert_and_run(keras, block, op):
    """Every element-wise and sequence op, and the recurrent and attention probes, convert and run;
    the probed layer is named "probe" (what the per-layer model learns its cost from)."""
    spec = dataclasses.replace(sample_arch(block, 4, TINY), op=op)
    model = sampling.build_arch(spec)
    assert "probe" in [ly.name for ly in model.layers]
    out = _convert_and_run(model, spec)
    assert out.shape[-1] == spec.num_classes and np.all(np.isfinite(out))


def test_an_unknown_probe_op_is_refused(keras):
    spec = dataclasses.replace(sample_arch("eltwise_kernel", 0, TINY), op="fft")
    with pytest.raises(OptionError, match="unknown element-wise probe op 'fft'"):
        sampling.build_arch(spec)
    spec = dataclasses.replace(sample_arch("resample_kernel", 0, TINY), op="fft")
    with pytest.raises(OptionError, match="unknown resampling probe op 'fft'"):
        sampling.build_arch(spec)
