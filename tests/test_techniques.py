"""The spec grammar and registry: pure, TensorFlow-free."""

import pytest

from advisor.errors import SpecError
from advisor.techniques import TECHNIQUES, Cluster, Pipeline, Prune, canonical


@pytest.mark.parametrize("spec, expected", [
    ("none", "none"),
    ("ptq-int8", "ptq-int8"),
    ("PTQ-Dynamic", "ptq-dynamic"),
    (" prune:0.80 + ptq-int8 ", "prune:0.8+ptq-int8"),
    ("prune-2:4", "prune-2:4"),
    ("cluster:16+ptq-dynamic", "cluster:16+ptq-dynamic"),
    ("prune:0.5+cluster:8+qat-int8", "prune:0.5+cluster:8+qat-int8"),
])
def test_canonical_round_trip(spec, expected):
    assert canonical(spec) == expected
    assert canonical(expected) == expected  # canonical is a fixed point


@pytest.mark.parametrize("spec, fragment", [
    ("", "empty technique spec"),
    ("foo", "unknown technique 'foo'"),
    ("prune", "strictly between 0 and 1"),
    ("prune:1.5", "strictly between 0 and 1"),
    ("prune:abc", "strictly between 0 and 1"),
    ("cluster:1", "from 2 to 256"),
    ("cluster:3.5", "from 2 to 256"),
    ("ptq-int8:3", "takes no parameter"),
    ("ptq-int8+prune:0.5", "must come before the conversion step"),
    ("ptq-int8+ptq-dynamic", "at most one quantize step"),
    ("prune:0.5+prune:0.6", "at most one prune step"),
    ("none+ptq-int8", "cannot be combined"),
    ("cluster:8+prune:0.5", "prune before cluster"),
    ("prune:0.5++ptq-int8", "empty step"),
])
def test_malformed_specs_are_clear_errors(spec, fragment):
    with pytest.raises(SpecError) as info:
        Pipeline.parse(spec)
    assert fragment in str(info.value)


def test_unknown_technique_lists_valid_forms():
    with pytest.raises(SpecError) as info:
        Pipeline.parse("quantise")
    for form in ("ptq-int8", "prune:S", "cluster:K", "prune-2:4", "qat-int8"):
        assert form in str(info.value)


def test_registry_refuses_duplicates():
    with pytest.raises(ValueError):
        TECHNIQUES.register(Prune)


def test_pipeline_structure_and_features():
    p = Pipeline.parse("prune:0.8+cluster:16+ptq-int8")
    assert [s.name for s in p.train_steps()] == ["prune", "cluster"]
    assert p.convert_step().name == "ptq-int8"
    assert p.needs_finetune
    f = p.features()
    assert f["sparsity"] == 0.8 and f["clusters"] == 16 and f["act_bits"] == 8
    assert f["order_prune"] < f["order_cluster"] < f["order_quantize"]
    assert Pipeline.parse("none").is_baseline and not Pipeline.parse("none").needs_finetune
    assert Pipeline.parse("cluster:32").steps == (Cluster(32),)
