"""The feature schema and fast featurisation, on hand-built profiles."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from advisor import features as F
from advisor.errors import SpecError
from advisor.profile import LayerProfile, ModelProfile
from advisor.techniques import TECHNIQUES, Pipeline

REPO = Path(__file__).resolve().parent.parent


def tiny() -> ModelProfile:
    """32x32x3 -> conv 3x3 (8) -> BN -> ReLU -> depthwise 3x3 -> conv 1x1 (16) -> separable -> pool -> dense 10."""
    layers = (
        LayerProfile("c1", "Conv2D", 16 * 16 * 8 * 3 * 9, 3 * 9 * 8 + 8, ((32, 32, 3),), (16, 16, 8), 3, 2, 1),
        LayerProfile("bn", "BatchNormalization", 0, 32, ((16, 16, 8),), (16, 16, 8)),
        LayerProfile("relu", "ReLU", 0, 0, ((16, 16, 8),), (16, 16, 8)),
        LayerProfile("dw", "DepthwiseConv2D", 16 * 16 * 8 * 9, 8 * 9 + 8, ((16, 16, 8),), (16, 16, 8), 3, 1, 8),
        LayerProfile("pw", "Conv2D", 16 * 16 * 16 * 8, 8 * 16 + 16, ((16, 16, 8),), (16, 16, 16), 1, 1, 1),
        LayerProfile("sep", "SeparableConv2D", 16 * 16 * 16 * 9 + 16 * 16 * 16 * 16, 16 * 9 + 16 * 16 + 16,
                     ((16, 16, 16),), (16, 16, 16), 3, 1, 16),
        LayerProfile("add", "Add", 0, 0, ((16, 16, 16), (16, 16, 16)), (16, 16, 16)),
        LayerProfile("gap", "GlobalAveragePooling2D", 0, 0, ((16, 16, 16),), (16,)),
        LayerProfile("fc", "Dense", 160, 170, ((16,),), (10,)),
    )
    return ModelProfile("tiny", "tinies", (32, 32, 3), "float32", 10, "image", layers)


def test_schema_is_fixed_ordered_and_unique():
    assert len(set(F.FEATURE_NAMES)) == len(F.FEATURE_NAMES)
    blocks = (F.PROFILE_BLOCK, F.TECHNIQUE_BLOCK, F.STRUCTURE_BLOCK, F.DEVICE_BLOCK, F.CONTEXT_BLOCK, F.DERIVED_BLOCK)
    assert sum(b.stop - b.start for b in blocks) == len(F.FEATURE_NAMES)
    assert F.schema_hash() == F.schema_hash(list(F.FEATURE_NAMES))
    assert F.schema_hash() != F.schema_hash(F.FEATURE_NAMES[::-1])


def test_profile_features_count_work_per_group():
    p = tiny()
    f = F.profile_features(p)
    assert set(f) == set(F.PROFILE_NAMES)
    sep_dw = 16 * 16 * 16 * 9
    assert f["macs_depthwise"] == 16 * 16 * 8 * 9 + sep_dw
    assert f["macs_conv"] == 16 * 16 * 8 * 3 * 9 + 16 * 16 * 16 * 8 + 16 * 16 * 16 * 16
    assert f["macs_dense"] == 160
    assert f["macs"] == p.macs == f["macs_conv"] + f["macs_depthwise"] + f["macs_dense"]
    assert f["macs_conv_k1"] == 16 * 16 * 16 * 8 + 16 * 16 * 16 * 16  # pointwise, incl. the separable's
    assert f["macs_conv_strided"] == 16 * 16 * 8 * 3 * 9
    assert f["n_ops"] == 8  # BN and ReLU are folded/fused: free
    # As converted: the separable convolution is two operators; weighted ones keep weight and bias tensors.
    assert f["tflite_ops"] == 8 and f["tflite_tensors"] == 3 + 3 + 3 + 5 + 1 + 1 + 3
    assert f["act_elements"] == 2048 + 2048 + 4096 + 2 * 4096 + 4096 + 16 + 10
    assert math.isclose(f["share_depthwise"], f["macs_depthwise"] / p.macs)
    assert sum(f[f"macs_{g}_{b}"] for g in F.BUCKETED_GROUPS for b, _, _ in F.SIZE_BUCKETS) == p.macs
    assert f["domain_image"] == 1.0 and f["domain_text"] == 0.0
    assert math.isclose(f["log_macs"], math.log10(1 + p.macs))
    assert f["input_elements"] == 32 * 32 * 3 and f["input_size"] == 32


def test_technique_features_cover_every_registered_technique():
    for cls in TECHNIQUES:
        if cls.structural:  # described by the structure block, never by the technique block
            assert set(cls().features()) <= set(F.STRUCTURE_NAMES), cls.name
            assert F.technique_features(cls().spec)["n_steps"] == 0
            continue
        keys = set(Pipeline((cls(),)).features()) if cls.kind != "none" else set()
        assert keys <= set(F.TECHNIQUE_NAMES), cls.name
    f = F.technique_features("prune:0.8+cluster:16+ptq-int8")
    assert f["has_prune"] == f["has_cluster"] == f["has_ptq_int8"] == 1.0
    assert f["sparsity"] == 0.8 and math.isclose(f["density"], 0.2)
    assert f["clusters"] == 16 and f["cluster_bits"] == 4
    assert f["order_prune"] < f["order_cluster"] < f["order_quantize"]
    assert f["eff_weight_bits"] == 8 and f["eff_act_bits"] == 8
    none = F.technique_features("none")
    assert none["n_steps"] == 0 and none["eff_weight_bits"] == 32
    with pytest.raises(SpecError):
        F.technique_features("prune:7")


def test_device_features_from_full_and_partial_fingerprints():
    full = {"logical_cpus": 4, "physical_cores": 4, "isa_flags": ["neon", "asimd", "asimddp"], "machine": "aarch64",
            "memory_bytes": 8 * 2**30, "accelerator": "NVIDIA Orin (Ampere iGPU)"}
    f = F.device_features(full, threads=2)
    assert f["threads"] == 2 and f["thread_share"] == 0.5 and f["memory_gib"] == 8
    assert f["arch_aarch64"] == 1 and f["arch_x86_64"] == 0 and f["accelerator"] == 1
    assert f["isa_asimddp"] == 1 and f["isa_avx2"] == 0
    partial = F.device_features({"logical_cpus": 8, "machine": "x86_64", "accelerator": None}, threads=1)
    assert partial["accelerator"] == 0 and partial["arch_x86_64"] == 1
    assert math.isnan(partial["isa_avx2"]) and math.isnan(partial["physical_cores"])  # unknown, not "no"


def test_feature_matrix_broadcasts_and_matches_the_dicts():
    p = tiny()
    dev = F.device_features({"logical_cpus": 2, "machine": "x86_64", "accelerator": None}, 1)
    specs = ["none", "ptq-int8", Pipeline.parse("prune:0.5+ptq-dynamic"), "ptq-int8"]
    X = F.feature_matrix(p, specs, dev)
    assert X.shape == (4, len(F.FEATURE_NAMES))
    for i, spec in enumerate(specs):
        expect = {**F.profile_features(p), **F.technique_features(spec), **dev, "source_published": 0.0}
        for name, value in expect.items():
            got = X[i, F.INDEX[name]]
            assert got == value or (math.isnan(got) and math.isnan(value)), (spec, name)
    folded = sum(ly.params for ly in p.layers if ly.type == "BatchNormalization")
    assert X[1, F.INDEX["param_bytes"]] == p.params - folded  # int8: one byte per weight; BN is folded away
    assert X[0, F.INDEX["param_bytes"]] == 4 * (p.params - folded)
    # dynamic range leaves tensors under 1,024 elements in float32 (every layer of this tiny net)
    assert X[2, F.INDEX["param_bytes"]] == 4 * (p.params - folded)
    np.testing.assert_array_equal(X[1], X[3])
    np.testing.assert_array_equal(F.is_baseline(X), [True, False, False, False])
    np.testing.assert_array_equal(F.as_baseline(X)[2], X[0])
    # A pruned float pipeline stores the kernels of convolutions and dense layers sparsely: their non-zero
    # values, counted (with their tensors) for the index bytes; biases and the depthwise kernel stay dense.
    # A quantized pipeline keeps dense encoding.
    Xp = F.feature_matrix(p, ["prune:0.8", "prune:0.8+ptq-int8", "qat-int8"], dev)
    weights = p.params - folded
    kernels = 3 * 9 * 8 + 8 * 16 + 16 * 16 + 16 * 10  # c1, pw, the separable's pointwise half, fc
    index = 0.2 * kernels + (72 + 1) + (16 + 1) + (16 + 1) + (10 + 1)  # 1-byte indices; a segment per row, +1
    assert Xp[0, F.INDEX["param_bytes"]] == pytest.approx(4 * (weights - kernels) + 4 * kernels * 0.2 + index)
    assert Xp[0, F.INDEX["param_sparse"]] == pytest.approx(kernels * 0.2)
    assert Xp[0, F.INDEX["sparse_tensors"]] == 4
    assert Xp[1, F.INDEX["param_bytes"]] == weights and Xp[1, F.INDEX["param_sparse"]] == 0
    assert Xp[2, F.INDEX["param_sparse"]] == 0 and X[0, F.INDEX["param_sparse"]] == 0
    assert Xp[1, F.INDEX["sparse_tensors"]] == 0 and X[0, F.INDEX["sparse_tensors"]] == 0
    many = F.feature_matrix(F.profile_vector(p), [f"prune:{s / 1000:g}" for s in range(1, 1000)] * 10,
                            F.device_vector({"logical_cpus": 2}, 1))
    assert many.shape == (9990, len(F.FEATURE_NAMES))
    assert np.allclose(many[:999, F.INDEX["sparsity"]], np.arange(1, 1000) / 1000)


def test_stored_bytes_follow_what_each_layer_type_keeps():
    """Embeddings are pruned but stored dense, QAT leaves embedding and recurrent weights in float32
    (bench/results/sparse_storage.md): the stored-bytes feature counts them layer type by layer type."""
    layers = (
        LayerProfile("emb", "Embedding", 0, 1000 * 16, ((20,),), (20, 16)),
        LayerProfile("lstm", "LSTM", 20 * 4 * 32 * (16 + 32), 4 * 32 * (16 + 32 + 1), ((20, 16),), (32,)),
        LayerProfile("fc", "Dense", 32 * 2, 32 * 2 + 2, ((32,),), (2,)),
    )
    p = ModelProfile("text", "texts", (20,), "int32", 2, "text", layers)
    feats = F.profile_features(p)
    assert feats["params_sparse_stored"] == 64 and feats["n_sparse_stored"] == 1
    assert feats["tflite_ops"] == 1 + 1 + 1  # an Embedding is one GATHER, an LSTM one fused operator
    assert feats["tflite_tensors"] == 3 + 13 + 3
    assert feats["params_qat_float"] == 16000 + 4 * 32 * 49
    dev = F.device_features({"logical_cpus": 2, "machine": "x86_64", "accelerator": None}, 1)
    X = F.feature_matrix(p, ["prune:0.5", "qat-int8", "ptq-int8"], dev)
    total = p.params
    # only the dense kernel thins; its 32 non-zeros each keep a 1-byte index (32 inputs), and its 2
    # rows (plus one) a 1-byte segment entry
    assert X[0, F.INDEX["param_bytes"]] == pytest.approx(4 * total - 4 * 64 * 0.5 + 32 + 3)
    assert X[0, F.INDEX["param_sparse"]] == pytest.approx(32)
    floats = feats["params_qat_float"]
    assert X[1, F.INDEX["param_bytes"]] == pytest.approx(4 * floats + (total - floats))
    assert X[2, F.INDEX["param_bytes"]] == total  # post-training int8 quantizes every weight


def test_a_recurrent_loops_sequence_buffers_count_as_stored_float_constants():
    """A GRU or SimpleRNN that returns its sequence converts to a loop whose TensorArray keeps a
    float constant of steps x units; an LSTM (one fused operator) and a last layer returning its
    final state keep none. A float16 file halves it, a dynamic-range one keeps it float32."""
    layers = (
        LayerProfile("emb", "Embedding", 0, 100 * 8, ((20,),), (20, 8)),
        LayerProfile("gru0", "GRU", 1, 3 * 16 * (8 + 16 + 2), ((20, 8),), (20, 16)),
        LayerProfile("rnn", "SimpleRNN", 1, 12 * (16 + 12 + 1), ((20, 16),), (20, 12)),
        LayerProfile("lstm", "LSTM", 1, 4 * 8 * (12 + 8 + 1), ((20, 12),), (20, 8)),
        LayerProfile("gru1", "GRU", 1, 3 * 4 * (8 + 4 + 2), ((20, 8),), (4,)),
        LayerProfile("fc", "Dense", 8, 4 * 2 + 2, ((4,),), (2,)),
    )
    p = ModelProfile("text", "texts", (20,), "int32", 2, "text", layers)
    assert F.profile_features(p)["loop_buffers"] == 20 * 16 + 20 * 12
    dev = F.device_features({"logical_cpus": 2, "machine": "x86_64", "accelerator": None}, 1)
    X = F.feature_matrix(p, ["none", "ptq-float16", "ptq-dynamic"], dev)
    weights = p.params
    loop = 20 * 16 + 20 * 12
    assert X[0, F.INDEX["param_bytes"]] == pytest.approx(4 * (weights + loop))
    assert X[1, F.INDEX["param_bytes"]] == pytest.approx(2 * (weights + loop))
    dynamic = X[2, F.INDEX["param_bytes"]] - 4 * loop
    assert weights < dynamic < 4 * weights  # the weights shrink, the loop's buffers do not


def test_sequence_buffers_match_a_real_conversion(tf, keras):
    """The float constants the converter stores for a GRU returning its sequence are the
    `loop_buffers` the features count: 4 bytes each in a float file, 2 in a float16 one."""
    from tensorflow.lite.python import schema_py_generated as schema

    from measure.profiling import profile_model

    steps, units = 12, 8
    inp = keras.Input((steps,), dtype="int32", batch_size=1)
    x = keras.layers.Embedding(50, 4)(inp)
    x = keras.layers.GRU(units, return_sequences=True)(x)
    x = keras.layers.GRU(4)(x)
    model = keras.Model(inp, keras.layers.Dense(2)(x))
    prof = profile_model(model, model="g", family="gs", domain="text")
    assert F.profile_features(prof)["loop_buffers"] == steps * units

    def buffer_bytes(half: bool) -> int:
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        if half:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        flat = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(conv.convert(), 0))
        # constants only: tensors whose buffer holds data (a loop's outputs share the shape)
        return sum(len(flat.buffers[t.buffer].data) for g in flat.subgraphs for t in g.tensors
                   if list(t.shape) == [steps, 1, units] and flat.buffers[t.buffer].data is not None)

    assert buffer_bytes(False) == 4 * steps * units
    assert buffer_bytes(True) == 2 * steps * units


def test_quantization_channels_and_biases_follow_what_the_converter_stores():
    """Dynamic-range quantization scales only kernels of 1,024 weights or more; a random-weight
    network that nothing trained has zero biases (shared or dropped in the file), a fine-tuned
    one has real ones; the size boosters read no device or MAC column."""
    feats = F.profile_features(tiny())
    assert feats["channels_weighted"] == 8 + 8 + 16 + (16 + 16) + 10  # the separable's depthwise half too
    assert feats["channels_dense"] == 10
    assert feats["channels_dynamic"] == 0  # every kernel of tiny() is under 1,024 weights
    big = ModelProfile("big", "bigs", (64,), "float32", 100, "image", (
        LayerProfile("fc1", "Dense", 64 * 32, 64 * 32 + 32, ((64,),), (32,)),
        LayerProfile("fc2", "Dense", 32 * 100, 32 * 100 + 100, ((32,),), (100,)),
    ))
    assert F.profile_features(big)["channels_dynamic"] == 32 + 100
    # A kernel of exactly 1,024 weights without a bias (a batch norm follows it) is scaled too.
    no_bias = ModelProfile("nb", "nbs", (64,), "float32", 16, "image", (
        LayerProfile("fc", "Dense", 64 * 16, 64 * 16, ((64,),), (16,)),
        LayerProfile("bn", "BatchNormalization", 0, 64, ((16,),), (16,)),
    ))
    assert F.profile_features(no_bias)["channels_dynamic"] == 16
    # A transposed convolution's MACs are per input position: its 3x3x16x16 kernel (2,304 weights,
    # stride 2) is scaled, though MACs per output position would make it a quarter of that.
    up = ModelProfile("up", "ups", (8, 8, 16), "float32", 16, "image", (
        LayerProfile("up", "Conv2DTranspose", 8 * 8 * 9 * 16 * 16, 9 * 16 * 16 + 16, ((8, 8, 16),), (16, 16, 16),
                     3, 2, 1),
    ))
    assert F.profile_features(up)["channels_dynamic"] == 16
    # A PReLU's alphas take one scale under int8 and stay float under dynamic range, however many.
    prelu = ModelProfile("pr", "prs", (8, 8, 2048), "float32", 10, "image", (
        LayerProfile("a", "PReLU", 0, 2048, ((8, 8, 2048),), (8, 8, 2048)),
    ))
    feats_p = F.profile_features(prelu)
    assert (feats_p["n_weighted"], feats_p["channels_weighted"], feats_p["channels_dynamic"]) == (1, 0, 0)
    assert feats_p["params_small"] == 2048
    # A separable convolution's two kernels are quantized (or left float) each on its own: here a
    # 576-weight depthwise and a 1,024-weight pointwise kernel.
    sep = ModelProfile("sp", "sps", (8, 8, 64), "float32", 10, "image", (
        LayerProfile("s", "SeparableConv2D", 8 * 8 * 64 * (9 + 16), 64 * 9 + 64 * 16 + 16, ((8, 8, 64),), (8, 8, 16),
                     3, 1, 64),
    ))
    feats_s = F.profile_features(sep)
    assert feats_s["channels_weighted"] == 64 + 16 and feats_s["channels_dynamic"] == 16
    assert feats_s["params_small"] == 64 * 9
    dev = F.device_features({"logical_cpus": 2, "machine": "x86_64", "accelerator": None}, 1)
    X = F.feature_matrix(tiny(), ["none", "ptq-int8", "prune:0.5", "distill:0.5"], dev)

    bias = X[:, F.INDEX["channels_bias"]]
    assert (bias[:2] == feats["channels_weighted"]).all()  # a prediction is for a trained network
    X[:, F.INDEX["weights_random"]] = 1.0
    bias = F.fill_derived(X)[:, F.INDEX["channels_bias"]]
    assert bias[0] == 0 and bias[1] == 0 and bias[2] > 0 and bias[3] > 0  # trained by the plan itself
    seen = F.size_only(X)
    assert (seen[:, F.INDEX["threads"]] == 0).all() and (seen[:, F.INDEX["macs"]] == 0).all()
    assert (seen[:, F.INDEX["params"]] == X[:, F.INDEX["params"]]).all()
    assert (seen[:, F.INDEX["param_bytes"]] == X[:, F.INDEX["param_bytes"]]).all()


def test_rows_without_a_stored_profile_keep_their_totals():
    rows = pd.DataFrame([{"profile_digest": "0123456789abcdef", "macs": 1000, "params": 50, "input_size": 96,
                          "domain": "image", "technique": "ptq-int8", "threads": 2, "logical_cpus": 4,
                          "machine": "aarch64", "accelerator": None, "source": "published"}])
    X = F.rows_matrix(rows, profiles={})
    assert X[0, F.INDEX["macs"]] == 1000 and X[0, F.INDEX["params"]] == 50
    assert math.isnan(X[0, F.INDEX["macs_conv"]])
    assert X[0, F.INDEX["source_published"]] == 1.0 and X[0, F.INDEX["threads"]] == 2
    assert X[0, F.INDEX["weights_random"]] == 0.0
    assert X[0, F.INDEX["param_bytes"]] == 50


def test_featurising_imports_neither_pandas_nor_xgboost(tmp_path):
    (tmp_path / "tiny.json").write_text(tiny().to_json())
    code = ("import sys, advisor.features as F; from advisor.profile import ModelProfile; "
            f"p = ModelProfile.load({str(tmp_path / 'tiny.json')!r}); "
            "F.feature_matrix(p, ['none', 'ptq-int8'], F.device_features({}, 1)); "
            "print(sorted(m for m in ('pandas', 'xgboost', 'tensorflow', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_padded_macs_round_output_channels_up_to_whole_simd_tiles():
    p = tiny()
    feats = F.profile_features(p)
    t = F.CHANNEL_TILE
    pad = lambda c: -(-c // t) * t / c  # noqa: E731
    sep_dw = 16 * 16 * 16 * 9
    conv = 16 * 16 * 8 * 3 * 9 * pad(8) + 16 * 16 * 16 * 8 * pad(16) + 16 * 16 * 16 * 16 * pad(16)
    assert feats["macs_conv_padded"] == pytest.approx(conv)
    assert feats["macs_depthwise_padded"] == pytest.approx(16 * 16 * 8 * 9 * pad(8) + sep_dw * pad(16))
    assert feats["macs_dense_padded"] == pytest.approx(160 * pad(10))
    for g in F.PADDED_GROUPS:  # never fewer than the real MACs
        assert feats[f"macs_{g}_padded"] >= feats[f"macs_{g}"]
    # n_weighted: c1, dw, pw, fc, and the separable layer's two kernels (BatchNorm is folded away)
    assert feats["n_weighted"] == 6


def test_a_batch_norm_runs_unless_it_directly_follows_what_it_folds_into():
    """Conv -> BN folds (nothing runs for it); a pre-activation BN after a concatenation (DenseNet,
    ResNet v2) becomes a multiply and an add of its own, a unit with its elements."""
    layers = (
        LayerProfile("c", "Conv2D", 16 * 16 * 8 * 3 * 9, 8 * 27, ((16, 16, 3),), (16, 16, 8), 3, 1, 1),
        LayerProfile("bn0", "BatchNormalization", 0, 32, ((16, 16, 8),), (16, 16, 8)),
        LayerProfile("cat", "Concatenate", 0, 0, ((16, 16, 8), (16, 16, 8)), (16, 16, 16)),
        LayerProfile("bn1", "BatchNormalization", 0, 64, ((16, 16, 16),), (16, 16, 16)),
        LayerProfile("r", "ReLU", 0, 0, ((16, 16, 16),), (16, 16, 16)),
    )
    profile = ModelProfile("m", "f", (16, 16, 3), "float32", 10, "image", layers)
    assert [ly.name for ly, free in F.free_layers(profile) if free] == ["bn0", "r"]
    units = list(F.executed_units(profile))
    assert [u.layer.name for u in units] == ["c", "cat", "bn1"]
    assert units[-1].written == 16 * 16 * 16 and units[-1].group == "other"
    first = F.profile_features(ModelProfile("m", "f", (16, 16, 3), "float32", 10, "image", layers[:2]))
    assert F.profile_features(profile)["n_other"] == 2 and first["n_other"] == 0
    assert F.profile_features(profile)["params_folded"] == 96  # what a folded or unfolded BN stores is separate


def test_a_dense_layer_over_a_sequence_counts_the_operators_it_becomes():
    """A Dense on (length, width) tokens converts to nine operators (shape arithmetic, reshapes and
    the fully-connected op); on a flat vector to one. The per-op work counts operators, and the
    per-layer units carry the same count, so the prior's unit costs still sum to its total."""
    seq = LayerProfile("ffn", "Dense", 32 * 64 * 128, 64 * 128 + 128, ((32, 64),), (32, 128))
    flat = LayerProfile("fc", "Dense", 128 * 10, 1290, ((128,),), (10,))
    assert F.unit_ops(seq) == F.SEQUENCE_DENSE_OPS == 9 and F.unit_ops(flat) == 1
    assert F.unit_ops(LayerProfile("ln", "LayerNormalization", 0, 128, ((32, 64),), (32, 64))) == 12
    assert F.unit_ops(LayerProfile("gru", "GRU", 1, 1, ((16, 8),), (8,))) == 1  # its ops loop per step
    assert F.unit_ops(LayerProfile("c1", "Conv1D", 10, 10, ((100, 4),), (98, 8))) == 3  # EXPAND_DIMS, CONV_2D, RESHAPE
    profile = ModelProfile("m", "f", (32, 64), "float32", 10, "text", (seq, flat))
    assert F.profile_features(profile)["n_dense"] == 10
    assert [u.ops for u in F.executed_units(profile)] == [9, 1]


def test_a_profiles_float_file_is_not_part_of_its_digest():
    from dataclasses import replace

    from advisor.errors import ModelFileError
    from advisor.profile import ModelProfile

    prof = ModelProfile("m", "user", (8,), "float32", 2, "other")
    with_file = replace(prof, tflite_bytes=1234, tflite_weights="trained")
    assert "tflite_bytes" not in prof.to_dict() and with_file.to_dict()["tflite_bytes"] == 1234
    assert with_file.digest == prof.digest and with_file != prof
    assert ModelProfile.from_dict(with_file.to_dict()) == with_file
    with pytest.raises(ModelFileError):
        ModelProfile.from_dict({**with_file.to_dict(), "tflite_weights": "pretty"})


def test_sparse_index_bytes_follow_the_converters_encoding():
    """A pruned kernel's index array is as wide as its largest index needs (1 byte up to 255, 2
    beyond) and its segment array as wide as its non-zero count needs, one entry per row."""
    def dense(cin: int, cout: int) -> ModelProfile:
        return ModelProfile("d", "ds", (cin,), "float32", cout, "other",
                            (LayerProfile("fc", "Dense", cin * cout, cin * cout + cout, ((cin,),), (cout,)),))

    narrow, wide = F.profile_features(dense(256, 400)), F.profile_features(dense(257, 400))
    assert narrow["sparse_index_full"] == 256 * 400 and wide["sparse_index_full"] == 2 * 257 * 400
    # 400 rows + 1; 256 * 400 * k non-zeros: 2 bytes an entry up to 65,535 of them, then 4
    assert narrow["sparse_segments_0.5"] == 401 * 2 and narrow["sparse_segments_0.1"] == 401 * 2
    assert F.profile_features(dense(2048, 64))["sparse_segments_0.5"] == 65 * 4
    dev = F.device_features({"logical_cpus": 2, "machine": "x86_64", "accelerator": None}, 1)
    X = F.feature_matrix(dense(257, 400), ["prune:0.8", "prune:0.8+ptq-int8"], dev)
    kernel = 257 * 400
    values = 4 * (kernel * 0.2 + 400)  # non-zero weights and the bias, float32
    assert X[0, F.INDEX["param_bytes"]] == pytest.approx(values + 0.2 * kernel * 2 + 401 * 2)
    assert X[1, F.INDEX["param_bytes"]] == pytest.approx(kernel + 400)  # int8 files stay dense-encoded


def test_a_layerwise_prune_counts_index_bytes_at_each_layers_own_sparsity():
    """Layers pruned to different sparsities store their index and segment arrays at their own kept
    share, not at the network's average."""
    big = ModelProfile("two", "twos", (2048,), "float32", 10, "other", (
        LayerProfile("fc1", "Dense", 2048 * 2048, 2048 * 2048 + 2048, ((2048,),), (2048,)),  # 2^22 MACs: large
        LayerProfile("fc2", "Dense", 2048 * 10, 2048 * 10 + 10, ((2048,),), (10,)),
    ))
    dev = F.device_features({"logical_cpus": 2, "machine": "x86_64", "accelerator": None}, 1)
    X = F.feature_matrix(big, ["prune:0.9@large+prune:0.5", "prune:0.5"], dev)
    k1, k2 = 2048 * 2048, 2048 * 10
    # 2-byte indices (2,048 input channels); segments: one per row plus one, 4 bytes past 65,535 non-zeros
    index = 0.1 * k1 * 2 + 2049 * 4 + 0.5 * k2 * 2 + 11 * 2
    assert X[0, F.INDEX["prune_index_bytes"]] == pytest.approx(index)
    values = 4 * (0.1 * k1 + 0.5 * k2 + 2048 + 10)
    assert X[0, F.INDEX["param_bytes"]] == pytest.approx(values + index)
    assert X[1, F.INDEX["prune_index_bytes"]] == 0  # one sparsity everywhere: the tabulated shares


def test_sparse_index_bytes_match_a_real_conversion(tf, keras):
    """The index and segment bytes the features count are what the TFLite converter adds for a
    pruned kernel (beyond its non-zero values and a fixed cost per tensor), across index widths."""
    from measure.profiling import profile_model

    rng = np.random.default_rng(0)
    counted, measured = [], []
    for cin, cout in ((24, 40), (300, 40), (40, 300)):
        inp = keras.Input((cin,))
        model = keras.Model(inp, keras.layers.Dense(cout)(inp))

        def convert(sparse: bool, model=model) -> int:
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            if sparse:
                conv.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
            return len(conv.convert())

        dense_file = convert(False)
        kernel, bias = model.layers[1].get_weights()
        flat = kernel.ravel().copy()
        flat[rng.permutation(flat.size)[: int(0.8 * flat.size)]] = 0
        model.layers[1].set_weights([flat.reshape(kernel.shape), bias])
        nonzero = int(np.count_nonzero(flat))
        extra = convert(True) - (dense_file - 4 * flat.size) - 4 * nonzero  # index, segments, fixed cost
        prof = profile_model(model, model="d", family="ds", domain="other")
        dev = F.device_features({"logical_cpus": 2, "machine": "x86_64", "accelerator": None}, 1)
        X = F.feature_matrix(prof, ["prune:0.8"], dev)
        counted.append(X[0, F.INDEX["param_bytes"]] - 4 * (nonzero + cout))
        measured.append(extra)
    fixed = np.array(measured) - np.array(counted)
    # what is left is the same per-tensor cost for every shape (sparsity metadata, a densify operator)
    assert fixed.max() - fixed.min() <= 16, (measured, counted)
    assert 100 < fixed.mean() < 600


def test_a_built_networks_float_file_is_estimated_from_the_originals():
    """A structural plan's network was never converted: its float file is estimated from the
    original's bytes per tensor beyond its weights and folded biases; from a random-weight file
    (which stores no zero bias) the built, trained network adds a bias per weighted layer."""
    from dataclasses import replace

    dev = F.device_features({"logical_cpus": 2, "machine": "x86_64", "accelerator": None}, 1)
    trained = replace(tiny(), tflite_bytes=9000, tflite_weights="trained")
    X = F.feature_matrix(trained, ["none", "distill:0.5", "distill:0.5+ptq-int8"], dev)
    ff = X[:, F.INDEX["float_file_bytes"]]
    assert ff[0] == 9000
    weights = X[:, F.INDEX["params"]] - X[:, F.INDEX["params_folded"]]
    biases = X[:, F.INDEX["params_folded"]] / 4  # the one batch norm's channels
    assert biases[0] == 8
    tensors = X[:, F.INDEX["tflite_tensors"]]
    excess = (9000 - 4 * (weights[0] + biases[0])) / tensors[0]
    assert ff[1] == pytest.approx(4 * (weights[1] + biases[1]) + excess * tensors[1]) and ff[1] < 9000
    assert ff[2] == ff[1] and (X[1:, F.INDEX["float_file_random"]] == 0).all()
    random = F.feature_matrix(replace(trained, tflite_weights="random"), ["none", "distill:0.5"], dev)
    ff = random[:, F.INDEX["float_file_bytes"]]
    excess = (9000 - 4 * weights[0]) / tensors[0]
    added = random[1, F.INDEX["n_weighted"]]
    assert ff[0] == 9000 and added > 0
    assert ff[1] == pytest.approx(4 * (weights[1] + random[1, F.INDEX["channels_weighted"]])
                                  + excess * (tensors[1] + added))
    assert random[1, F.INDEX["float_file_random"]] == 0  # the estimate is of a file with its biases


def test_a_layer_without_bias_converts_without_a_bias_tensor():
    """The first half of a factorised layer has no bias and no batch norm after it: one tensor
    fewer than a layer with a bias; a bias-free convolution a batch norm folds into gets one."""
    from dataclasses import replace

    p = tiny()
    base = F.profile_features(p)["tflite_tensors"]
    no_bias = replace(p.layers[4], params=8 * 16)  # pw without its 16 biases, before the separable
    assert F.profile_features(replace(p, layers=(*p.layers[:4], no_bias, *p.layers[5:])))["tflite_tensors"] == base - 1
    c1 = replace(p.layers[0], params=3 * 9 * 8)  # c1 without bias, but the batch norm folds into it
    assert F.profile_features(replace(p, layers=(c1, *p.layers[1:])))["tflite_tensors"] == base


def test_a_layerwise_qat_counts_a_layers_channels_as_the_whole_network_does():
    """The layers a layer-wise QAT takes carry the quantization parameters `channels_weighted`
    counts for them: a separable convolution's depthwise half too (c1, pw and sep are taken)."""
    taken = F.layerwise_features(tiny(), Pipeline.parse("qat-int8@conv"))
    assert taken["qat_channels"] == 8 + 16 + (16 + 16)


def test_a_layerwise_qat_counts_the_operators_it_adds():
    """Quantization-aware training of some layers puts each between a QUANTIZE and a DEQUANTIZE and
    leaves the batch norm right after it unfolded (a MUL and an ADD with float constants); the
    whole-model QAT and every other plan add nothing."""
    p = tiny()  # c1 -> bn -> relu -> dw -> pw -> sep -> add -> gap -> fc
    dev = F.device_features({"logical_cpus": 2, "machine": "x86_64", "accelerator": None}, 1)
    X = F.feature_matrix(p, ["qat-int8@conv", "qat-int8", "prune:0.5@conv"], dev)
    taken = F.layerwise_features(p, Pipeline.parse("qat-int8@conv"))
    assert taken["qat_split_layers"] >= 2 and taken["qat_unfolded_bn"] == 1 and taken["qat_bn_params"] == 32
    # Only the layers taken carry quantization parameters: the dense classifier is not among them.
    assert 2 <= taken["qat_weighted"] < X[0, F.INDEX["n_weighted"]] and taken["qat_channels_dense"] == 0
    assert 0 < taken["qat_channels"] < X[0, F.INDEX["channels_weighted"]]
    assert X[0, F.INDEX["plan_tensors"]] == 2 * taken["qat_split_layers"] + 4
    assert (X[1:, F.INDEX["plan_tensors"]] == 0).all() and X[1, F.INDEX["qat_unfolded_bn"]] == 0
    whole = F.feature_matrix(p, ["qat-int8"], dev)[0, F.INDEX["param_bytes"]]
    assert X[0, F.INDEX["param_bytes"]] > whole  # the unfolded norm's constants and the float layers


def test_the_accuracy_features_leave_out_the_files_bookkeeping():
    """A layer-wise plan's byte and channel counts scale with the network, not with what the
    technique does to it: the accuracy change (technique features only) does not read them."""
    dev = F.device_features({"logical_cpus": 2, "machine": "x86_64", "accelerator": None}, 1)
    X = F.feature_matrix(tiny(), ["qat-int8@conv", "prune:0.9@conv+prune:0.5"], dev)
    names = ("prune_index_bytes", "qat_weighted", "qat_channels")
    assert all(X[:, F.INDEX[n]].max() > 0 for n in names)
    kept = F.technique_only(X)
    assert all((kept[:, F.INDEX[n]] == 0).all() for n in names)
    assert (kept[:, F.INDEX["qat_split_layers"]] == X[:, F.INDEX["qat_split_layers"]]).all()
