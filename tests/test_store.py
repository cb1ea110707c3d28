"""The dataset store: real Parquet shards in a temporary directory."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from advisor.errors import StoreError
from advisor.store import (
    COLUMNS,
    SCHEMA_VERSION,
    Store,
    StoreWarning,
    config_id,
    validate_row,
)

REPO = Path(__file__).resolve().parent.parent


def ok_row(model: str = "mobilenet_v2", technique: str = "ptq-int8", **overrides: object) -> dict:
    """A complete, valid measured row; `overrides` replace or add fields."""
    settings = {"input_size": 96, "width": 1.0, "threads": 2}
    row: dict[str, object] = {
        "schema_version": SCHEMA_VERSION,
        "config_id": config_id(model, technique, "local", settings),
        "status": "ok",
        "source": "measured",
        "model": model,
        "model_kind": "zoo",
        "family": "mobilenet_v2",
        "domain": "image",
        "input_size": 96,
        "width": 1.0,
        "weights": "random",
        "technique": technique,
        "finetune": "none",
        "device": "local",
        "threads": 2,
        "settings_json": settings,
        "size_bytes": 1_234_567,
        "latency_ms_median": 4.2,
        "latency_ms_mean": 4.3,
        "latency_rule_met": True,
        "latency_raw_ms": [4.1, 4.2, 4.5],
        "latency_rounds_ms": [4.2, 4.25],
        "top1": 0.71,
        "accuracy_delta_pp": -1.5,
        "fingerprint_id": "fp-0001",
        "versions_json": {"tensorflow": "2.21.0"},
        "tool_version": "0.1.0",
        "measured_at": "2025-01-01T00:00:00Z",
    }
    row.update(overrides)
    return row


def failed_row(model: str = "mobilenet_v2", technique: str = "ptq-int8", **overrides: object) -> dict:
    """A failed measurement: no numbers, an error."""
    row = ok_row(model, technique, status="failed", error="conversion failed")
    for name in ("size_bytes", "latency_ms_median", "latency_ms_mean", "latency_raw_ms",
                 "latency_rounds_ms", "latency_rule_met", "top1", "accuracy_delta_pp"):
        row.pop(name)
    row.update(overrides)
    return row


# ---------------------------------------------------------------------------------------------
# config_id


def test_config_id_is_16_hex_and_pinned():
    cid = config_id("mobilenet_v2", "ptq-int8", "local", {"input_size": 96, "threads": 2})
    # Pinned: changing the hash would orphan every stored row.
    assert cid == "89e4a1e3ec46c640"
    assert config_id("m", "t", "d", {}) == _expected("m", "t", "d", {})


def test_config_id_treats_integral_floats_as_ints():
    assert config_id("m", "t", "d", {"width": 1.0}) == config_id("m", "t", "d", {"width": 1})
    assert config_id("m", "t", "d", {"width": 0.5}) != config_id("m", "t", "d", {"width": 1})


def _expected(model, technique, device, settings):
    import hashlib

    payload = json.dumps(
        {"device": device, "model": model, "settings": settings, "technique": technique},
        sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def test_config_id_matches_documented_recipe():
    settings = {"input_size": 96, "dataset": "mnist", "finetune": "random", "threads": 2}
    assert config_id("a", "prune:0.5", "pi4", settings) == _expected("a", "prune:0.5", "pi4", settings)


def test_config_id_ignores_key_order_and_none_values():
    a = config_id("m", "t", "d", {"input_size": 96, "width": 1.0, "threads": 2})
    b = config_id("m", "t", "d", {"threads": 2, "width": 1.0, "input_size": 96})
    c = config_id("m", "t", "d", {"threads": 2, "width": 1.0, "input_size": 96, "new_option": None})
    assert a == b == c


def test_config_id_differs_when_anything_differs():
    base = ("m", "t", "d", {"threads": 2})
    ids = {
        config_id(*base),
        config_id("m2", "t", "d", {"threads": 2}),
        config_id("m", "t2", "d", {"threads": 2}),
        config_id("m", "t", "d2", {"threads": 2}),
        config_id("m", "t", "d", {"threads": 4}),
    }
    assert len(ids) == 5


def test_config_id_rejects_bad_input():
    with pytest.raises(StoreError, match="model"):
        config_id("", "t", "d", {})
    with pytest.raises(StoreError, match="JSON"):
        config_id("m", "t", "d", {"x": float("nan")})
    with pytest.raises(StoreError, match="JSON"):
        config_id("m", "t", "d", {"x": object()})


# ---------------------------------------------------------------------------------------------
# validate_row


def test_schema_registry_is_consistent():
    assert {c.kind for c in COLUMNS.values()} <= {"str", "int", "float", "bool", "list_float"}
    assert all(name == col.name and col.doc for name, col in COLUMNS.items())
    required = {n for n, c in COLUMNS.items() if c.required}
    assert {"schema_version", "config_id", "status", "source", "model", "technique", "device",
            "fingerprint_id", "tool_version", "measured_at"} <= required


def test_valid_rows_have_no_problems():
    assert validate_row(ok_row()) == []
    assert validate_row(failed_row()) == []
    published = ok_row(source="published", model_kind="published", fingerprint_id="published",
                       citation="Someone et al. 2020")
    del published["size_bytes"], published["latency_ms_median"]
    assert validate_row(published) == []


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"family": None}, "family", "required"),
        ({"input_size": "96"}, "input_size", "integer"),
        ({"input_size": 96.0}, "input_size", "integer"),
        ({"threads": True}, "threads", "integer"),
        ({"latency_ms_median": float("nan")}, "latency_ms_median", "NaN"),
        ({"latency_ms_mean": float("inf")}, "latency_ms_mean", "finite"),
        ({"size_bytes": -1}, "size_bytes", ">= 0"),
        ({"latency_ms_median": -0.5}, "latency_ms_median", ">= 0"),
        ({"latency_raw_ms": [1.0, -2.0]}, "latency_raw_ms", ">= 0"),
        ({"latency_raw_ms": [1.0, float("nan")]}, "latency_raw_ms", "finite"),
        ({"top1": 1.5}, "top1", "<= 1"),
        ({"f1": -0.1}, "f1", ">= 0"),
        ({"schema_version": 2}, "schema_version", "one of"),
        ({"status": "okay"}, "status", "one of"),
        ({"source": "guessed"}, "source", "one of"),
        ({"measured_at": "yesterday"}, "measured_at", "ISO-8601"),
        ({"measured_at": "2025-01-01T00:00:00+02:00"}, "measured_at", "UTC"),
        ({"config_id": "XYZ"}, "config_id", "hex"),
        ({"finetune": "sometimes"}, "finetune", "dataset:"),
        ({"settings_json": "[1, 2]"}, "settings_json", "JSON object"),
        ({"latency_rule_met": "yes"}, "latency_rule_met", "boolean"),
    ],
)
def test_invalid_fields_are_named(change, field, words):
    problems = validate_row(ok_row(**change))
    assert len(problems) == 1, problems
    assert field in problems[0] and words in problems[0]


def test_absent_required_field_is_named():
    row = ok_row()
    del row["tool_version"]
    assert validate_row(row) == ["field 'tool_version': is required"]


def test_measured_ok_rows_need_size_and_latency_but_failed_rows_do_not():
    row = ok_row()
    del row["size_bytes"], row["latency_ms_median"]
    fields = " ".join(validate_row(row))
    assert "size_bytes" in fields and "latency_ms_median" in fields
    assert validate_row(failed_row(size_bytes=None, latency_ms_median=None)) == []


def test_failed_rows_need_an_error_and_published_fingerprint_needs_published_source():
    assert any("error" in p for p in validate_row(failed_row(error=None)))
    assert any("fingerprint_id" in p for p in validate_row(ok_row(fingerprint_id="published")))


def test_nan_in_an_optional_number_counts_as_missing():
    assert validate_row(ok_row(top5=float("nan"), macs=float("nan"))) == []


def test_unknown_keys_are_allowed():
    assert validate_row(ok_row(future_metric=3.5)) == []


# ---------------------------------------------------------------------------------------------
# Store: round trip, de-duplication, resume


def test_round_trip_keeps_values_lists_nulls_and_extras(tmp_path):
    store = Store(tmp_path)
    rows = [ok_row(future_metric={"a": 1}), failed_row("resnet18")]
    shard = store.append(rows)

    assert shard.parent == tmp_path / "measurements"
    assert shard.name.startswith("shard-") and shard.suffix == ".parquet"
    assert len(shard.stem.split("-")[1]) == len("20250101T000000") and len(shard.stem.split("-")[2]) == 8
    assert store.shards() == [shard]
    assert pq.read_table(shard).schema.metadata[b"compression_advisor.schema_version"] == b"1"

    frame = store.read()
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == len(store) == 2
    ok = frame[frame.status == "ok"].iloc[0]
    assert ok["size_bytes"] == 1_234_567 and ok["latency_ms_median"] == 4.2
    assert list(ok["latency_raw_ms"]) == [4.1, 4.2, 4.5]
    assert bool(ok["latency_rule_met"]) is True
    assert json.loads(ok["settings_json"]) == {"input_size": 96, "threads": 2, "width": 1}
    assert json.loads(ok["versions_json"]) == {"tensorflow": "2.21.0"}
    assert json.loads(ok["extra_json"]) == {"future_metric": {"a": 1}}
    assert pd.isna(ok["macs"]) and pd.isna(ok["energy_mj"]) and pd.isna(ok["cpu_model"])

    failed = frame[frame.status == "failed"].iloc[0]
    assert failed["error"] == "conversion failed"
    assert pd.isna(failed["size_bytes"]) and pd.isna(failed["latency_ms_median"])
    assert failed["latency_raw_ms"] is None or len(failed["latency_raw_ms"]) == 0
    # A missing integer stays an integer column, not a float one.
    assert str(frame["size_bytes"].dtype) == "Int64"


def test_rows_read_back_can_be_appended_again(tmp_path):
    store = Store(tmp_path / "a")
    store.append([ok_row(), failed_row("resnet18")])
    rows = store.read().to_dict("records")
    assert all(validate_row(r) == [] for r in rows)
    again = Store(tmp_path / "b")
    again.append(rows)
    pd.testing.assert_frame_equal(store.read(), again.read())


def test_empty_store_reads_empty_frame_with_schema(tmp_path):
    store = Store(tmp_path / "nothing-here")
    frame = store.read()
    assert frame.empty and list(frame.columns) == list(COLUMNS)
    assert len(store) == 0 and store.ids() == set() and store.shards() == []
    assert store.compact() is None


def test_newer_measurement_wins(tmp_path):
    store = Store(tmp_path)
    store.append([ok_row(latency_ms_median=5.0, measured_at="2025-01-02T00:00:00Z")])
    store.append([ok_row(latency_ms_median=4.0, measured_at="2025-01-01T00:00:00Z")])
    store.append([ok_row(latency_ms_median=6.0, measured_at="2025-01-03T00:00:00+00:00")])
    frame = store.read()
    assert len(frame) == 1 and frame.loc[0, "latency_ms_median"] == 6.0


def test_ok_beats_failed_even_when_failed_is_newer(tmp_path):
    store = Store(tmp_path)
    store.append([ok_row(measured_at="2025-01-01T00:00:00Z")])
    store.append([failed_row(measured_at="2025-06-01T00:00:00Z")])
    frame = store.read()
    assert len(frame) == 1 and frame.loc[0, "status"] == "ok"
    assert store.read(status="failed").empty


def test_duplicates_within_one_append_are_deduplicated(tmp_path):
    store = Store(tmp_path)
    store.append([failed_row(), ok_row(latency_ms_median=3.0), failed_row()])
    assert len(store) == 1 and store.read().loc[0, "latency_ms_median"] == 3.0


def test_ids_for_resume_and_filters(tmp_path):
    store = Store(tmp_path)
    a, b, c = ok_row("a"), failed_row("b"), ok_row("c", device="pi4", fingerprint_id="fp-pi")
    c["config_id"] = config_id("c", "ptq-int8", "pi4", {})
    store.append([a, b])
    store.append([c])
    assert store.ids() == {a["config_id"], c["config_id"]}
    assert store.ids("failed") == {b["config_id"]}
    assert store.ids(None) == {a["config_id"], b["config_id"], c["config_id"]}
    assert list(store.read(device="pi4")["model"]) == ["c"]
    assert list(store.read(status="ok", device="local")["model"]) == ["a"]
    assert store.read(source="published").empty
    with pytest.raises(StoreError, match="valid: ok, failed"):
        store.read(status="okay")

    # A retried configuration that now succeeds leaves the failed set.
    store.append([ok_row("b")])
    assert store.ids("failed") == set() and len(store) == 3


# ---------------------------------------------------------------------------------------------
# Invalid rows, crashes, compaction


def test_invalid_rows_write_nothing_and_name_index_field_problem(tmp_path):
    store = Store(tmp_path)
    store.append([ok_row("a")])
    before = sorted(p.name for p in (tmp_path / "measurements").iterdir())
    with pytest.raises(StoreError) as info:
        store.append([ok_row("b"), ok_row("c"), ok_row("d", top1=2.0)])
    message = str(info.value)
    assert "row 2" in message and "top1" in message and "<= 1" in message
    assert "nothing was written" in message
    assert sorted(p.name for p in (tmp_path / "measurements").iterdir()) == before
    assert store.ids() == {ok_row("a")["config_id"]}

    with pytest.raises(StoreError, match="no rows"):
        store.append([])
    with pytest.raises(StoreError, match="sequence of rows"):
        store.append(ok_row())  # type: ignore[arg-type]


def test_crash_leftovers_are_ignored_and_corrupt_shards_skipped_with_warning(tmp_path):
    store = Store(tmp_path)
    good = store.append([ok_row("a"), failed_row("b")])
    directory = tmp_path / "measurements"
    # A crash before os.replace leaves a temp file (here: a partial copy of a real shard).
    (directory / f".{good.name}.deadbeef.tmp").write_bytes(good.read_bytes()[:100])
    # A truncated shard and one of pure garbage.
    truncated = directory / "shard-20990101T000000-0000aaaa.parquet"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = directory / "shard-20990101T000001-0000bbbb.parquet"
    garbage.write_bytes(b"not parquet at all")

    assert store.shards() == [good, truncated, garbage]
    with pytest.warns(StoreWarning) as caught:
        frame = store.read()
    assert set(frame["model"]) == {"a", "b"}
    messages = " ".join(str(w.message) for w in caught)
    assert str(truncated) in messages and str(garbage) in messages and ".tmp" not in messages

    # Still appendable, and compaction never deletes what it could not read.
    store.append([ok_row("c")])
    with pytest.warns(StoreWarning):
        merged = store.compact()
    assert truncated.exists() and garbage.exists() and not good.exists()
    with pytest.warns(StoreWarning):
        assert set(store.read()["model"]) == {"a", "b", "c"}
    assert merged in store.shards()


def test_compact_keeps_content_identical(tmp_path):
    store = Store(tmp_path)
    store.append([ok_row("a", measured_at="2025-01-01T00:00:00Z"), failed_row("b")])
    store.append([ok_row("a", latency_ms_median=9.0, measured_at="2025-02-01T00:00:00Z")])
    store.append([ok_row("c", extra_thing="kept"), failed_row("a")])
    before = store.read()
    old = store.shards()

    merged = store.compact()
    assert merged is not None and store.shards() == [merged] and merged not in old
    after = store.read()
    pd.testing.assert_frame_equal(before, after)
    assert pq.read_table(merged).num_rows == 3  # duplicates gone on disk too
    assert after.set_index("model").loc["a", "latency_ms_median"] == 9.0
    assert json.loads(after.set_index("model").loc["c", "extra_json"]) == {"extra_thing": "kept"}


def test_shard_from_newer_schema_is_refused(tmp_path):
    store = Store(tmp_path)
    shard = store.append([ok_row()])
    table = pq.read_table(shard)
    table = table.replace_schema_metadata({b"compression_advisor.schema_version": b"99"})
    pq.write_table(table, tmp_path / "measurements" / "shard-20990101T000000-99999999.parquet")
    with pytest.raises(StoreError, match="schema version 99"):
        store.read()


def test_store_does_not_import_tensorflow():
    code = (
        "import sys, advisor.store\n"
        "heavy = ('tensorflow', 'keras', 'tf_keras')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_latency_lists_survive_as_floats(tmp_path):
    store = Store(tmp_path)
    store.append([ok_row(latency_raw_ms=(1, 2.5, 3), latency_rounds_ms=[])])
    row = store.read().iloc[0]
    assert [float(x) for x in row["latency_raw_ms"]] == [1.0, 2.5, 3.0]
    assert len(row["latency_rounds_ms"]) == 0
    assert not any(math.isnan(x) for x in row["latency_raw_ms"])


def test_device_fingerprint_is_kept_once_per_device_not_in_the_rows(tmp_path):
    from advisor.fingerprint import collect_fingerprint, fingerprint_id

    store = Store(tmp_path)
    fp = collect_fingerprint()
    fid = fingerprint_id(fp)
    rows = [dict(ok_row(technique=t), fingerprint_id=fid, device_fingerprint=fp) for t in ("ptq-int8", "none")]
    store.append(rows)
    assert store.fingerprints() == {fid: json.loads(json.dumps(fp, default=str))}
    back = store.read()
    assert "device_fingerprint" not in back.columns
    assert back["extra_json"].isna().all()  # not folded into every row
    # The first one stays; a bad id writes nothing and stores no rows.
    store.append([dict(ok_row(model="resnet50"), fingerprint_id=fid, device_fingerprint={"cpu_model": "other"})])
    assert store.fingerprints()[fid]["cpu_model"] == fp["cpu_model"]
    with pytest.raises(StoreError, match="12 hex"):
        store.put_fingerprint("../../etc", fp)
    (tmp_path / "devices" / "0123456789ab.json").write_text("{broken")
    assert set(store.fingerprints()) == {fid}
