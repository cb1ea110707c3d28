"""Periodic retraining and versioned bundles, on a small store of rows shaped like real ones.

The rows come from `test_predictor.synthetic_rows` (a known formula, not measurements) and the
predictor is fitted with few trees, so each retrain takes seconds.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_predictor import FAST, synthetic_rows

from advisor import bundle as B
from advisor import model_versions as V
from advisor import retrain as R
from advisor.cli import main
from advisor.errors import BundleError
from advisor.store import Store

DEVICES = ("sim-x86", "sim-arm")


def _records(frame) -> list[dict]:
    return [{k: v for k, v in r.items() if v is not None and v == v} for r in frame.to_dict("records")]


@pytest.fixture(scope="module")
def rows_and_profiles():
    rows, profiles = synthetic_rows(per_family=3, devices=DEVICES)
    index = rows["model"].str.extract(r"-(\d+)@")[0].astype(int)
    return rows[index == 0].reset_index(drop=True), rows[index > 0].reset_index(drop=True), profiles


def _store(root: Path, frame, profiles) -> Store:
    store = Store(root)
    store.append(_records(frame))
    for digest in set(frame["profile_digest"]):
        store.put_profile(profiles[digest])
    return store


@pytest.fixture
def setup(tmp_path, rows_and_profiles):
    """(data store with the old rows, a second site's store with the new rows, an empty models folder)."""
    old, new, profiles = rows_and_profiles
    data = _store(tmp_path / "data", old, profiles)
    site = _store(tmp_path / "site", new, profiles)
    return data, site, tmp_path / "models"


def _champion(data: Store, models: Path) -> R.RetrainReport:
    report = R.retrain((), data=data.root, models=models, params=FAST)
    assert report.decision == "promoted" and "no champion yet" in report.reason
    return report


def _run(*argv: str) -> int:
    return main(list(argv))


# ---------------------------------------------------------------------------------------------
# Ingest: quarantine, de-duplication.


def _write_raw_shard(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))  # from_pylist takes the first row's keys only
    pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows]), path)
    return path


def test_each_kind_of_bad_row_is_quarantined_with_its_reasons_and_nothing_is_lost(setup, rows_and_profiles, tmp_path):
    data, _, _ = setup
    _, new, _ = rows_and_profiles
    good = _records(new.head(6))
    missing = dict(_records(new.iloc[[6]])[0])
    del missing["model"]
    nan = {**_records(new.iloc[[7]])[0], "latency_ms_median": float("nan")}
    impossible = {**_records(new.iloc[[8]])[0], "size_bytes": -5}
    version = {**_records(new.iloc[[9]])[0], "schema_version": 2}
    shard = _write_raw_shard(tmp_path / "in" / "mixed.parquet", [*good, missing, nan, impossible, version])
    (tmp_path / "in" / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    before = len(data.read())

    report = R.ingest([tmp_path / "in"], data)

    assert report.shards == 2 and report.rows_read == 10
    assert report.quarantined == 5 and report.appended == 6
    assert report.kinds == {"missing field": 1, "NaN or infinite": 1, "impossible value": 1,
                            "wrong schema version": 1, "unreadable shard": 1}
    assert report.reasons["field 'size_bytes': must be >= 0"] == 1
    assert len(data.read()) == before + 6
    files = sorted((data.root / "quarantine").iterdir())
    assert [f.suffix for f in files] == [".parquet", ".jsonl"]
    assert files[0].read_bytes() == b"PAR1 this is not parquet"  # the unreadable shard, byte for byte
    lines = [json.loads(line) for line in files[1].read_text().splitlines()]
    assert [q["row_index"] for q in lines] == [6, 7, 8, 9] and all(q["source"] == str(shard) for q in lines)
    kept = {q["row"]["config_id"]: q for q in lines}
    assert kept[nan["config_id"]]["row"]["latency_ms_median"] != kept[nan["config_id"]]["row"]["latency_ms_median"]
    assert kept[impossible["config_id"]]["row"]["size_bytes"] == -5
    assert kept[version["config_id"]]["row"]["schema_version"] == 2
    assert "model" in kept[missing["config_id"]]["row"] and kept[missing["config_id"]]["row"]["model"] is None
    assert any("is required" in r for r in kept[missing["config_id"]]["reasons"])
    for original in (nan, impossible, version):  # every field of a bad row is kept
        stored = kept[original["config_id"]]["row"]
        for key, value in original.items():
            same = (isinstance(value, float) and math.isnan(value) and math.isnan(stored[key])) or stored[key] == value
            assert same, (key, value, stored[key])

    again = R.ingest([tmp_path / "in"], data)  # the same shards again: nothing new, nothing quarantined twice
    assert again.appended == 0 and again.duplicates_stored == 6 and again.quarantined == 5
    assert sorted((data.root / "quarantine").iterdir()) == files and len(data.read()) == before + 6


def test_duplicates_are_dropped_against_the_store_and_within_the_new_shards(setup, rows_and_profiles, tmp_path):
    data, site, _ = setup
    old, new, _ = rows_and_profiles
    stored = _records(old.head(3))
    fresh = _records(new.head(4))
    _write_raw_shard(tmp_path / "in" / "a.parquet", [*stored, *fresh])
    _write_raw_shard(tmp_path / "in" / "b.parquet", fresh[:2])
    # a configuration that failed here before, measured fine elsewhere: the ok row wins, as in the store
    failed = {**_records(new.iloc[[10]])[0], "status": "failed", "error": "converter crashed"}
    for key in ("size_bytes", "latency_ms_median"):
        failed.pop(key)
    data.append([failed])
    _write_raw_shard(tmp_path / "in" / "c.parquet", _records(new.iloc[[10]]))
    before = len(data.read())

    report = R.ingest([tmp_path / "in"], data)

    assert report.duplicates_stored == 3 and report.duplicates_within == 2 and report.appended == 5
    assert report.quarantined == 0
    after = data.read()
    assert len(after) == before + 4  # four new ids; the fifth replaced the failed row
    assert after.set_index("config_id").loc[failed["config_id"], "status"] == "ok"


def test_profiles_and_fingerprints_come_along_from_the_other_site(setup, rows_and_profiles, tmp_path):
    data, site, _ = setup
    _, new, profiles = rows_and_profiles
    empty = Store(tmp_path / "bare")  # a store without the new rows' profiles
    site.put_fingerprint("b" * 12, {"cpu_model": "sim arm", "logical_cpus": 4})
    report = R.ingest([site.root], empty)
    assert report.appended == len(new) and report.profiles_missing == 0
    assert report.profiles_copied == len(set(new["profile_digest"]))
    assert empty.fingerprints()["b" * 12]["logical_cpus"] == 4
    assert R.shard_files(site.root) == site.shards() == R.shard_files(site.directory)


def test_a_path_that_is_not_there_is_one_clear_error(setup, tmp_path):
    data, _, models = setup
    code = _run("retrain", "--new", str(tmp_path / "nowhere"), "--data", str(data.root), "--models", str(models))
    assert code == 2


# ---------------------------------------------------------------------------------------------
# Champion and challenger.


def test_more_good_rows_are_promoted_then_listed_and_rolled_back(setup, capsys):
    data, site, models = setup
    first = _champion(data, models)
    v1 = first.challenger
    assert V.champion_name(models) == v1 and B.load(models / "current").version == v1
    assert V.training_ids(models / v1) == frozenset(data.read()["config_id"])

    before = data.read()
    report = R.retrain([site.root], data=data.root, models=models)
    assert report.ingest.appended > 0 and report.pending == report.ingest.appended
    exam_families = {"s-plain", "s-inverted", "s-rnn"}
    assert set(report.exam["families"]) == exam_families
    # the exam is the champion's own rows of those families: none of the rows that just arrived
    assert report.exam["rows"] == int(before["family"].isin(exam_families).sum()) > 0
    assert report.decision == "promoted", R.summary_lines(report)
    assert all(c["ok"] for c in report.checks)
    compared = [c for c in report.checks if "worse_by" in c]
    assert {c["criterion"].split(" ")[0] for c in compared} >= {"latency", "size", "energy", "accuracy-change"}
    v2 = report.challenger
    assert V.champion_name(models) == v2 != v1
    card = B.read_card(models / "current")
    assert card["retrain"]["decision"] == "promoted" and card["evaluation"]["split"] == "exam"
    assert card["training_data"]["rows"] == len(data.read())  # refit on every row once promoted

    assert _run("models", "--models", str(models), "--json") == 0
    listing = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in listing["bundles"]] == [v1, v2] and listing["current"] == v2
    assert [b["current"] for b in listing["bundles"]] == [False, True]
    assert listing["bundles"][1]["metrics"]["latency_within_10pct"] is not None
    assert _run("models", "--models", str(models)) == 0
    text = capsys.readouterr().out
    assert f"* {v2}" in text and f"  {v1}" in text

    assert _run("models", "use", v1, "--models", str(models)) == 0
    assert B.load(models / "current").version == v1
    assert _run("models", "use", "no-such-version", "--models", str(models)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown bundle version 'no-such-version'" in err and v1 in err and v2 in err
    assert B.load(models / "current").version == v1

    # The same rows again: nothing to do, and the rollback sticks (v2's rows are not retried).
    again = R.retrain([site.root], data=data.root, models=models)
    assert again.decision == "no new rows" and again.ingest.duplicates_stored == report.ingest.appended
    assert v2 in again.reason and V.champion_name(models) == v1
    assert [h["by"] for h in V.history(models)] == ["retrain", "retrain", "models use"]


def test_no_new_rows_exits_zero_without_training(setup, capsys):
    data, _, models = setup
    _champion(data, models)
    names = sorted(p.name for p in models.iterdir())
    assert _run("retrain", "--data", str(data.root), "--models", str(models)) == 0
    assert "no new rows" in capsys.readouterr().out
    assert sorted(p.name for p in models.iterdir()) == names


def test_a_challenger_trained_on_corrupted_rows_is_not_promoted(setup, rows_and_profiles, tmp_path):
    data, _, models = setup
    _, new, profiles = rows_and_profiles
    champion = _champion(data, models).challenger
    # Valid-looking, wrong: every latency 3x, every compressed file 1.6x its float file's share
    # (a float file's own bytes are read, not predicted, so scaling every size alike is invisible).
    bad = new.copy()
    bad["latency_ms_median"] *= 3.0
    compressed = bad["technique"] != "none"
    for column in ("size_bytes", "size_gzip_bytes"):
        bad[column] = bad[column].where(~compressed, bad[column] * 1.6).astype("int64")
    site = _store(tmp_path / "bad-site", bad, profiles)

    report = R.retrain([site.root], data=data.root, models=models)

    assert report.ingest.quarantined == 0  # nothing in the schema is wrong with them
    assert report.decision == "rejected", R.summary_lines(report)
    failed = {c["criterion"].split(" ")[0] for c in report.checks if not c["ok"]}
    assert {"latency", "size"} <= failed
    assert V.champion_name(models) == champion and B.load(models / "current").version == champion
    rejected = V.find(models, report.challenger)
    assert not rejected.current and rejected.retrain["decision"] == "rejected"

    again = R.retrain((), data=data.root, models=models)  # cron again: the same rows are not retried
    assert again.decision == "no new rows" and report.challenger in again.reason


# ---------------------------------------------------------------------------------------------
# Safe from cron.


def test_a_second_run_is_refused_while_one_holds_the_lock(setup, capsys):
    data, site, models = setup
    v1 = _champion(data, models).challenger
    rows = len(data.read())
    with V.exclusive(models):
        code = _run("retrain", "--new", str(site.root), "--data", str(data.root), "--models", str(models))
        assert code == 2
        err = capsys.readouterr().err
        assert f"another retrain is running (pid {os.getpid()})" in err and err.count("\n") == 1
        assert _run("models", "use", v1, "--models", str(models)) == 2
        assert "another retrain is running" in capsys.readouterr().err
    assert len(data.read()) == rows  # nothing was ingested
    assert not list(data.root.glob("quarantine"))
    with V.exclusive(models):  # released: it can be taken again
        pass


@pytest.mark.parametrize("where", ["fit", "pointer"])
def test_an_interrupted_run_leaves_the_champion_in_place(setup, monkeypatch, where):
    data, site, models = setup
    champion = _champion(data, models).challenger
    card = (models / champion / "card.json").read_bytes()
    calls = {"n": 0}
    if where == "fit":
        real = R._fit

        def flaky(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:  # the second fit of the run: mid-way through training
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(R, "_fit", flaky)
    else:
        def crash(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(V, "set_champion", crash)

    with pytest.raises(KeyboardInterrupt):
        R.retrain([site.root], data=data.root, models=models)

    assert V.champion_name(models) == champion and B.load(models / "current").version == champion
    assert (models / champion / "card.json").read_bytes() == card
    assert not [p for p in models.iterdir() if p.name.endswith(".tmp")]
    assert len(data.read()) == len(Store(data.root).read())  # the store reads whole
    with V.exclusive(models):
        pass
    monkeypatch.undo()
    resumed = R.retrain((), data=data.root, models=models)  # the rows that arrived are still pending
    assert resumed.pending > 0 and resumed.decision == "promoted"


# ---------------------------------------------------------------------------------------------
# The pointer and `advisor train`.


def test_current_follows_the_pointer_and_falls_back_to_the_folder(setup, tmp_path):
    data, _, models = setup
    shipped = tmp_path / "m" / "current"
    v = _champion(data, models).challenger
    shipped.parent.mkdir()
    for f in (models / v).iterdir():
        (shipped / f.name).parent.mkdir(exist_ok=True)
        (shipped / f.name).write_bytes(f.read_bytes())
    assert B.resolve(shipped) == shipped and V.champion_name(shipped.parent) == "current"
    assert [b.current for b in V.list_bundles(shipped.parent)] == [True]
    (shipped.parent / B.POINTER).write_text("gone\n")
    with pytest.raises(BundleError, match="names 'gone'") as info:
        B.load(shipped)
    assert "\n" not in str(info.value)
    (shipped.parent / B.POINTER).write_text("current\n")
    assert B.load(shipped).path == shipped
    assert B.resolve(models / v) == models / v  # any other path is itself


def test_train_without_out_publishes_a_version_and_makes_it_current(setup, monkeypatch, capsys):
    import advisor.predictor

    data, _, models = setup

    class Fast(advisor.predictor.Predictor):
        def __init__(self, **params):
            super().__init__(**{**FAST, **params})

    monkeypatch.setattr(advisor.predictor, "Predictor", Fast)
    monkeypatch.setattr(B, "MODELS_ROOT", models)
    monkeypatch.delenv("ADVISOR_BUNDLE", raising=False)
    assert _run("train", "--data", str(data.root), "--evaluate", "none", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    folder = Path(out["bundle"])
    assert folder.parent == models and V.champion_name(models) == folder.name
    assert B.load(models / "current").version == folder.name
    assert V.training_ids(folder) == frozenset(data.read()["config_id"])
    with V.exclusive(models):
        assert _run("train", "--data", str(data.root), "--evaluate", "none") == 2
    assert np.all([b.name == folder.name for b in V.list_bundles(models)])


def test_the_rule_allows_for_the_spread_across_seeds_but_not_for_a_real_loss():
    rule = R.PromotionRule()

    def exam(within: float, sd: float, seeds: int = 3) -> dict:
        return {"seeds": seeds, "targets": {"latency": {"within_10pct": within, "n": 40, "sd": {"within_10pct": sd}}}}

    ok, checks = rule.judge(exam(0.50, 0.05), exam(0.45, 0.05))  # 5 points lower, seeds spread 5 points
    assert ok and checks[0]["allowed"] > 0.05
    ok, checks = rule.judge(exam(0.50, 0.0), exam(0.45, 0.0))  # the same loss with no spread is a loss
    assert not ok and checks[0]["worse_by"] == pytest.approx(0.05)
    ok, _ = rule.judge(exam(0.50, 0.05), exam(0.20, 0.05))
    assert not ok
    ok, checks = rule.judge(exam(0.50, 0.0), {"seeds": 3, "targets": {}})  # cannot predict what the champion can
    assert not ok and "cannot predict" in checks[0]["note"]
    assert "mean of 3 seeds" in rule.describe() and "within ±10%" in rule.describe()


def test_the_shipped_current_folder_is_a_version_of_its_own(setup, capsys):
    data, _, models = setup
    v1 = _champion(data, models).challenger
    shipped = models / "current"  # as in the repository: a real folder, its card's own version
    shipped.mkdir()
    for f in (models / v1).iterdir():
        (shipped / f.name).write_bytes(f.read_bytes())
    card = json.loads((shipped / "card.json").read_text())
    card["version"] = "shipped-1"
    (shipped / "card.json").write_text(json.dumps(card))

    listed = {b.name: b for b in V.list_bundles(models)}
    assert listed["current"].version == "shipped-1" and not listed["current"].current and listed[v1].current
    assert _run("models", "use", "shipped-1", "--models", str(models)) == 0
    assert V.champion_name(models) == "current" and B.load(models / "current").version == "shipped-1"
    assert _run("models", "use", v1, "--models", str(models)) == 0
    assert B.load(models / "current").version == v1
