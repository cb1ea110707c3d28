"""Periodic retraining: ingest new rows, train a challenger, promote it only if it is not worse.

One run (`retrain`), under the models folder's lock (`model_versions.exclusive`):

1. **Ingest** every new shard (`--new`: Parquet files, folders of them, or another store's root).
   Each row is checked with `store.validate_row` (plus the shard's own schema version); a bad row
   goes, with its reasons and its source, to `<data>/quarantine/<utc>-<shard>-<sha8>.jsonl`
   (written atomically before anything else; Python JSON, so NaN stays NaN): nothing is lost. An
   unreadable shard is copied there byte for byte. Good rows are de-duplicated by config_id within
   the new shards and against the store (by the store's own rule: "ok" beats "failed", then the
   newest), their profiles and device fingerprints are copied from the source store when it has
   them, and they are appended as one new shard.
2. **Pending rows**: the store's "ok" rows the champion has not trained on (its
   `training_ids.json`; a bundle without one, like the shipped `current`, is taken to have
   trained on the store as it was before this run), less those a rejected challenger or a former
   champion already weighed (so cron does not retry rejected rows, and a rollback with
   `advisor models use` sticks). None pending: nothing to do (unless `force`).
3. **The exam**: whole architecture families, chosen by a seeded hash of the family name
   (`ExamSpec`: 20%, seed 0; kernel probes never), so the same families are the exam in every
   run. Its rows are the champion's own training rows of those families: rows that just arrived
   (or were once rejected) never grade a challenger, so a corrupted shard cannot grade itself.
4. **Champion and challenger on the same exam**: the champion bundle has seen the exam rows, so
   it is scored as its recipe (its card's `Predictor` parameters) refit on its own training rows
   without the exam families; the challenger (the champion's parameters unless given) is fitted
   on every row without the exam families. Neither has seen an exam row.
5. **Promotion** (`PromotionRule`, printed with every run): on each target both predict on the
   exam, the challenger's score may not be worse than the champion's by more than the tolerance.
   Promoted: the challenger is refit on every row, saved as a new version and made the champion
   (the pointer switched last). Rejected: the comparison fit is saved as a version (not the
   champion) for inspection. With no champion, the first challenger is promoted untested.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from advisor import bundle as B
from advisor import model_versions as V
from advisor.errors import BundleError, OptionError
from advisor.progress import stage

if TYPE_CHECKING:
    import pandas as pd

    from advisor.predictor import Predictor
    from advisor.store import Store

QUARANTINE = "quarantine"


# ---------------------------------------------------------------------------------------------
# Why a row was refused: one counted reason per problem, and the kind the issue names.


_GOT = re.compile(r"(, got | \(got ).*$")
_ELEMENT = re.compile(r"element \d+: ")

#: Kinds of problem, first match wins: (kind, test on the reason text).
REASON_KINDS: tuple[tuple[str, Any], ...] = (
    ("wrong schema version", lambda r: "schema_version" in r or "schema version" in r),
    ("NaN or infinite", lambda r: "NaN" in r or "finite" in r),
    ("missing field", lambda r: r.endswith("is required") or "is required when" in r),
    ("unreadable shard", lambda r: r.startswith("unreadable shard")),
    ("impossible value", lambda r: True),
)


def reason_key(problem: str) -> str:
    """A problem message without the offending value, so equal problems count together."""
    return _GOT.sub("", _ELEMENT.sub("", problem)).strip()


def reason_kind(reason: str) -> str:
    """Which kind of problem a reason is (see `REASON_KINDS`)."""
    return next(kind for kind, test in REASON_KINDS if test(reason))


# ---------------------------------------------------------------------------------------------
# Ingest.


@dataclass
class IngestReport:
    """What ingesting the new shards did."""

    sources: list[str] = field(default_factory=list)
    shards: int = 0
    rows_read: int = 0
    quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)
    quarantine_files: list[str] = field(default_factory=list)
    duplicates_stored: int = 0
    duplicates_within: int = 0
    appended_ids: list[str] = field(default_factory=list)
    shard: str | None = None
    profiles_copied: int = 0
    profiles_missing: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def appended(self) -> int:
        return len(self.appended_ids)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"sources": self.sources, "shards": self.shards, "rows_read": self.rows_read,
                "quarantined": self.quarantined, "reasons": dict(self.reasons.most_common()),
                "kinds": dict(self.kinds.most_common()), "quarantine_files": self.quarantine_files,
                "duplicates_stored": self.duplicates_stored, "duplicates_within": self.duplicates_within,
                "appended": self.appended, "shard": self.shard, "profiles_copied": self.profiles_copied,
                "profiles_missing": self.profiles_missing, "notes": self.notes}


def shard_files(path: str | Path) -> list[Path]:
    """The Parquet shards a `--new` path names: a file, a folder of them, or a store root.

    Raises:
        OptionError: the path does not exist or is not Parquet.
    """
    p = Path(path)
    if p.is_file():
        if p.suffix != ".parquet":
            raise OptionError(f"--new {p}: not a Parquet shard (expected a .parquet file, a folder of them, "
                              "or a dataset store)")
        return [p]
    if p.is_dir():
        folder = p / "measurements" if (p / "measurements").is_dir() else p
        return sorted(f for f in folder.glob("*.parquet") if f.is_file() and not f.name.startswith("."))
    raise OptionError(f"--new {p}: no such file or folder")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, bytes):
        return o.decode("utf-8", errors="backslashreplace")
    return str(o)


def _sha8(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


def _stamp(now: datetime | None) -> str:
    return f"{(now or datetime.now(timezone.utc)):%Y%m%dT%H%M%SZ}"


def _read_shard(path: Path) -> tuple[bytes, list[dict] | None, str | None]:
    """(file bytes, rows or None, a problem with the whole shard or None)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from advisor.store import SCHEMA_VERSION

    data = path.read_bytes()
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        return data, None, f"unreadable shard: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    version = (table.schema.metadata or {}).get(b"compression_advisor.schema_version")
    problem = None
    if version is not None and version.decode(errors="replace") != str(SCHEMA_VERSION):
        problem = f"shard schema version {version.decode(errors='replace')} (this code reads {SCHEMA_VERSION})"
    return data, table.to_pylist(), problem


def _better(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Does row `a` win over row `b` for the same config_id (the store's rule: ok, then newest)?"""
    def rank(r: Mapping[str, Any]) -> tuple[bool, str]:
        return r.get("status") == "ok", str(r.get("measured_at") or "")

    return rank(a) >= rank(b)


def _copy_sidecars(store: Store, rows: Sequence[Mapping[str, Any]], roots_of: Mapping[str, list[Path]],
                   report: IngestReport) -> None:
    """Copy the profiles and device fingerprints the good rows refer to from their source stores."""
    from advisor.errors import ModelFileError
    from advisor.profile import ModelProfile

    seen_profiles: set[str] = set()
    seen_devices: set[str] = set()
    known_devices = set(store.fingerprints())
    for row in rows:
        roots = roots_of[str(row["config_id"])]
        digest = row.get("profile_digest")
        if digest and digest not in seen_profiles and re.fullmatch(r"[0-9a-f]{16}", str(digest)):
            seen_profiles.add(str(digest))
            if store.get_profile(str(digest)) is None:
                found = next((r / "profiles" / f"{digest}.json" for r in roots
                              if (r / "profiles" / f"{digest}.json").is_file()), None)
                try:
                    profile = ModelProfile.load(found) if found else None
                except ModelFileError:
                    profile = None
                if profile is not None and profile.digest == digest:
                    store.put_profile(profile)
                    report.profiles_copied += 1
                else:
                    report.profiles_missing += 1
        fid = row.get("fingerprint_id")
        if fid and fid not in seen_devices and fid not in known_devices and re.fullmatch(r"[0-9a-f]{12}", str(fid)):
            seen_devices.add(str(fid))
            for r in roots:
                path = r / "devices" / f"{fid}.json"
                try:
                    fp = json.loads(path.read_text()) if path.is_file() else None
                except (OSError, ValueError):
                    fp = None
                if isinstance(fp, dict):
                    store.put_fingerprint(str(fid), fp)
                    break


def ingest(paths: Iterable[str | Path], store: Store, now: datetime | None = None) -> IngestReport:
    """Validate, quarantine, de-duplicate and append the rows of new shards (module docstring, step 1).

    Returns the report; the store gains at most one new shard. Quarantine files are written
    before the store is touched, so an interruption loses no bad row; a rerun appends what an
    interrupted run did not (de-duplication makes it idempotent).
    """
    from advisor.atomic import write_bytes_atomic
    from advisor.store import validate_row

    report = IngestReport()
    quarantine = store.root / QUARANTINE
    candidates: dict[str, dict] = {}
    roots_of: dict[str, list[Path]] = {}
    for source in paths:
        report.sources.append(str(source))
        files = shard_files(source)
        if not files:
            report.notes.append(f"{source}: no Parquet shards")
        for path in files:
            report.shards += 1
            data, rows, shard_problem = _read_shard(path)
            tag = f"{path.stem}-{_sha8(data)}"
            already = sorted(quarantine.glob(f"*-{tag}.*")) if quarantine.is_dir() else []
            if rows is None:
                report.reasons[shard_problem] += 1
                report.kinds[reason_kind(shard_problem)] += 1
                report.quarantined += 1
                if already:
                    report.notes.append(f"{path}: already quarantined as {already[0].name}")
                else:
                    target = write_bytes_atomic(quarantine / f"{_stamp(now)}-{tag}.parquet", data)
                    report.quarantine_files.append(str(target))
                    report.notes.append(f"{path}: {shard_problem}; copied whole to {target}")
                continue
            report.rows_read += len(rows)
            bad_lines = []
            for index, row in enumerate(rows):
                problems = validate_row(row)
                if shard_problem:
                    problems = [shard_problem, *problems]
                if problems:
                    keys = list(dict.fromkeys(reason_key(p) for p in problems))
                    report.reasons.update(keys)
                    report.kinds.update(set(reason_kind(k) for k in keys))
                    report.quarantined += 1
                    bad_lines.append(json.dumps({"source": str(path), "row_index": index, "reasons": problems,
                                                 "row": row}, allow_nan=True, default=_json_default))
                    continue
                cid = str(row["config_id"])
                if cid in candidates:
                    report.duplicates_within += 1
                    if not _better(row, candidates[cid]):
                        continue
                candidates[cid] = row
                roots_of[cid] = [path.parent, path.parent.parent]
            if bad_lines and not already:
                target = write_bytes_atomic(quarantine / f"{_stamp(now)}-{tag}.jsonl",
                                            ("\n".join(bad_lines) + "\n").encode())
                report.quarantine_files.append(str(target))
            elif bad_lines:
                report.notes.append(f"{path}: its {len(bad_lines)} bad row(s) are already in {already[0].name}")
    if not candidates:
        return report
    stored = store.read()
    status = dict(zip(stored["config_id"].astype(str), stored["status"].astype(str)))
    good = []
    for cid, row in candidates.items():
        if cid in status and (status[cid] == "ok" or row.get("status") != "ok"):
            report.duplicates_stored += 1
            continue
        good.append(row)
    if good:
        _copy_sidecars(store, good, roots_of, report)
        report.shard = str(store.append(good))
        report.appended_ids = [str(r["config_id"]) for r in good]
    return report


# ---------------------------------------------------------------------------------------------
# The exam and the promotion rule.


@dataclass(frozen=True)
class ExamSpec:
    """Which families are the exam: those whose seeded hash falls below `share` (at least one, never all)."""

    share: float = 0.2
    seed: int = 0

    def _u(self, family: str) -> float:
        return int(hashlib.sha256(f"{self.seed}:{family}".encode()).hexdigest()[:12], 16) / 16 ** 12

    def families(self, families: Iterable[str]) -> frozenset[str]:
        """The exam families among `families` (kernel probes excluded); empty with fewer than two."""
        from advisor.predictor import PROBE_FAMILY_SUFFIX

        pool = sorted({str(f) for f in families if not str(f).endswith(PROBE_FAMILY_SUFFIX)}, key=self._u)
        if len(pool) < 2:
            return frozenset()
        chosen = [f for f in pool if self._u(f) < self.share] or pool[:1]
        return frozenset(chosen[: len(pool) - 1])

    def describe(self) -> str:
        return f"families whose sha256(seed {self.seed}) falls in the lowest {100 * self.share:g}%, kernel probes never"


@dataclass(frozen=True)
class Criterion:
    """One promotion check: the challenger's `metric` on `target` may be worse by at most `tolerance`."""

    target: str  # key in an evaluation's "targets"
    metric: str
    higher_is_better: bool
    tolerance: float
    label: str
    unit: str  # how the tolerance is shown: "points" (of a share) or "pp"

    def describe(self) -> str:
        amount = f"{100 * self.tolerance:g} point(s)" if self.unit == "points" else f"{self.tolerance:g} pp"
        return f"{self.label} not {'lower' if self.higher_is_better else 'higher'} by more than {amount}"


#: The default checks (a registry: add a criterion, not an if).
CRITERIA: tuple[Criterion, ...] = (
    Criterion("latency", "within_10pct", True, 0.01, "latency within ±10%", "points"),
    Criterion("energy", "within_10pct", True, 0.01, "energy within ±10%", "points"),
    Criterion("size", "within_5pct", True, 0.01, "size within ±5%", "points"),
    Criterion("accuracy_drop", "mae_pp", False, 0.1, "accuracy-change MAE", "pp"),
)


@dataclass(frozen=True)
class PromotionRule:
    """Promote only if, on every target both predict on the exam (`min_rows` each), no criterion fails,
    and the challenger predicts at least one target there.

    Each side is fitted `seeds` times (random_state, +1, ...) and scored by its mean: measured on
    the real data, the seed alone moved the exam's latency within-10% by 7 points, so a single fit
    each would promote or reject by chance. A criterion fails when the challenger is worse by more
    than its tolerance plus twice the standard error of the difference of the means.
    """

    criteria: tuple[Criterion, ...] = CRITERIA
    min_rows: int = 5
    seeds: int = 3

    def describe(self) -> str:
        """The rule in one line, as printed by every run."""
        return (f"promote only if, on the exam rows (mean of {self.seeds} seeds each side), for each target both "
                f"predict (at least {self.min_rows} rows each): " + "; ".join(c.describe() for c in self.criteria)
                + " (beyond twice the standard error across seeds)")

    def judge(self, champion: Mapping[str, Any] | None, challenger: Mapping[str, Any]) -> tuple[bool, list[dict]]:
        """(promote?, one check per criterion) for two exam scores (`score`); champion None: no champion."""
        checks = []
        compared = 0
        for c in self.criteria:
            h = (challenger["targets"].get(c.target) or {})
            ch_value, ch_n = h.get(c.metric), int(h.get("n") or 0)
            h_ok = ch_value is not None and ch_n >= self.min_rows
            if champion is None:
                checks.append({"criterion": c.describe(), "champion": None, "challenger": ch_value,
                               "n": ch_n, "ok": True, "note": "no champion"})
                compared += h_ok
                continue
            m = (champion["targets"].get(c.target) or {})
            cm_value, cm_n = m.get(c.metric), int(m.get("n") or 0)
            m_ok = cm_value is not None and cm_n >= self.min_rows
            check = {"criterion": c.describe(), "champion": cm_value, "challenger": ch_value,
                     "n_champion": cm_n, "n_challenger": ch_n}
            if not m_ok:
                check.update(ok=True, note="not compared: the champion has too few exam rows for it")
            elif not h_ok:
                check.update(ok=False, note="the challenger cannot predict it on the exam")
            else:
                worse = (cm_value - ch_value) if c.higher_is_better else (ch_value - cm_value)
                sd_m, sd_h = (m.get("sd") or {}).get(c.metric, 0.0), (h.get("sd") or {}).get(c.metric, 0.0)
                k_m, k_h = max(int(champion.get("seeds", 1)), 1), max(int(challenger.get("seeds", 1)), 1)
                allowed = c.tolerance + 2 * math.sqrt(sd_m ** 2 / k_m + sd_h ** 2 / k_h)
                check.update(ok=bool(worse <= allowed + 1e-12), worse_by=float(worse), allowed=float(allowed))
                compared += 1
            checks.append(check)
        return all(ch["ok"] for ch in checks) and compared > 0, checks


def score(predictor: Predictor, rows: pd.DataFrame, profiles: Mapping[str, Any],
          fingerprints: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """A fitted predictor's scores on `rows`, with `advisor evaluate`'s metrics (same shape)."""
    from advisor.evaluate import _accuracy_metrics, _natural_truth, _ratio_metrics
    from advisor.predictor import prepare

    test = prepare(rows, profiles, fingerprints)
    pred = predictor.predict(test.X) if len(test) else {}
    targets: dict[str, Any] = {}
    for target, (mask, y) in _natural_truth(test).items():
        q = pred.get(target)
        y_t, q_t = (y[mask], q[mask]) if q is not None else (np.zeros(0), np.zeros((0, 3)))
        name = "accuracy_drop" if target == "accuracy_delta" else target
        targets[name] = (_accuracy_metrics if target == "accuracy_delta" else _ratio_metrics)(y_t, q_t)
    return {"split": "exam", "rows": int(len(test)), "targets": targets}


def mean_scores(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The mean of several `score` results (one per seed), each metric's standard deviation under "sd"."""
    first = runs[0]
    targets: dict[str, Any] = {}
    for name, metrics in first["targets"].items():
        merged: dict[str, Any] = {"sd": {}}
        for key, value in metrics.items():
            values = [r["targets"][name].get(key) for r in runs]
            if key == "n" or not all(isinstance(v, (int, float)) for v in values):
                merged[key] = value
                continue
            merged[key] = float(np.mean(values))
            merged["sd"][key] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        targets[name] = merged
    return {"split": "exam", "rows": first["rows"], "seeds": len(runs), "targets": targets}


# ---------------------------------------------------------------------------------------------
# One run.


@dataclass
class RetrainReport:
    """What a run did: the ingest report, the decision and why, and the versions involved."""

    ingest: IngestReport
    decision: str  # "no new rows" | "promoted" | "rejected" | "kept"
    rule: str
    reason: str
    champion: str | None = None
    challenger: str | None = None  # the version written (promoted or not), if any
    pending: int = 0
    exam: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    checks: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of `advisor retrain --json`."""
        return {"decision": self.decision, "reason": self.reason, "rule": self.rule, "champion": self.champion,
                "challenger": self.challenger, "pending_rows": self.pending, "exam": self.exam,
                "scores": self.scores, "checks": self.checks, "ingest": self.ingest.to_dict(), "notes": self.notes}


def _champion(root: Path) -> tuple[Any, frozenset[str] | None, str | None]:
    """(loaded champion or None, the ids it was fitted on or None, why it is unusable or None)."""
    name = V.champion_name(root)
    if name is None:
        return None, None, None
    try:
        loaded = B.load(root / name, follow=False)
        return loaded, V.training_ids(root / name), None
    except BundleError as exc:
        return None, None, str(exc)


def _tried(root: Path, champion: str | None) -> tuple[set[str], list[str]]:
    """Rows already weighed by a bundle other than the champion that should not be retried by cron:
    a rejected challenger's, or a former champion's (so a rollback with `models use` sticks)."""
    former = {str(h.get("champion")) for h in V.history(root)}
    seen: set[str] = set()
    names = []
    for b in V.list_bundles(root):
        if b.name == champion or not ((b.retrain or {}).get("decision") == "rejected" or b.name in former):
            continue
        with contextlib.suppress(BundleError):
            ids = V.training_ids(b.path, considered=True)
            if ids:
                seen |= ids
                names.append(b.name)
    return seen, names


def _fit(params: Mapping[str, Any], rows: pd.DataFrame, profiles: Mapping[str, Any],
         fingerprints: Mapping[str, Mapping[str, Any]]) -> Predictor:
    from advisor.predictor import Predictor

    return Predictor(**params).fit(rows, profiles, fingerprints)


def retrain(new: Sequence[str | Path] = (), data: str | Path | None = None, models: str | Path | None = None,
            params: Mapping[str, Any] | None = None, rule: PromotionRule = PromotionRule(),
            exam: ExamSpec = ExamSpec(), force: bool = False, now: datetime | None = None) -> RetrainReport:
    """Ingest `new`, train a challenger, and promote it only if `rule` says it is not worse (module docstring).

    Args:
        new: shards to ingest (files, folders, store roots); none: only rows already pending.
        data: the dataset store (default the repository's training_data/).
        models: the models folder (default models/ or $ADVISOR_MODELS).
        params: the challenger's `Predictor` parameters (default: the champion's).
        force: train and compare even with no pending rows.

    Raises:
        BusyError: another run holds the lock. OptionError/StoreError: unusable input.
    """
    from advisor.lookup import DEFAULT_STORE
    from advisor.store import Store

    store = Store(data if data is not None else DEFAULT_STORE)
    root = V.models_root(models)
    with V.exclusive(root, "retrain"):
        if new:
            stage(f"ingesting {len(new)} source(s) of new rows")
        report = ingest(new, store, now=now) if new else IngestReport()
        return _decide(report, store, root, params, rule, exam, force)


def _decide(report: IngestReport, store: Store, root: Path, params: Mapping[str, Any] | None,
            rule: PromotionRule, exam: ExamSpec, force: bool) -> RetrainReport:
    from advisor.store import utc_now_iso

    out = RetrainReport(ingest=report, decision="no new rows", rule=rule.describe(), reason="")
    champion, champion_ids, unusable = _champion(root)
    out.champion = champion.path.name if champion is not None else None
    if unusable:
        out.notes.append(f"the champion cannot be used by this code ({unusable}); any challenger that trains "
                         "is promoted")
    rows = store.read()
    if len(rows) == 0:
        out.reason = f"the store {store.root} has no rows"
        return out
    ok = (rows["status"] == "ok").fillna(False).to_numpy(dtype=bool)
    ids = rows["config_id"].astype(str).to_numpy()
    if champion is None:
        champion_rows = np.zeros(len(rows), bool)
        seen = champion_rows
    else:
        if champion_ids is not None:
            champion_rows = np.isin(ids, list(champion_ids))
            seen = np.isin(ids, list(V.training_ids(champion.path, considered=True) or ()))
        else:
            champion_rows = seen = ~np.isin(ids, report.appended_ids)
            out.notes.append(f"the champion {out.champion} does not record its training rows: taken to be the "
                             f"{int(champion_rows.sum())} rows stored before this run")
    tried, tried_by = _tried(root, out.champion) if champion is not None else (set(), [])
    unseen = ok & ~seen
    pending = unseen & ~np.isin(ids, list(tried))
    out.pending = int(pending.sum())
    if not out.pending and not force:
        out.reason = "no new rows: nothing to train (use --force to retrain anyway)"
        if unseen.any():
            out.reason = (f"no new rows: the {int(unseen.sum())} row(s) the champion has not trained on were "
                          f"already weighed by {', '.join(tried_by)} (rejected, or rolled back from); "
                          "nothing to train (use --force to retrain anyway)")
        return out

    profiles, fingerprints = _profiles(store, rows), store.fingerprints()
    champion_params = dict((champion.card.get("predictor") or {}).get("params") or {}) if champion else {}
    challenger_params = {**champion_params, **(params or {})}
    families = rows["family"].astype(str).to_numpy()
    exam_families = exam.families(families[ok])
    in_exam_family = np.isin(families, list(exam_families))
    # Exam rows are the champion's own (vetted) rows: new or once-rejected rows never grade a challenger.
    exam_rows = ok & in_exam_family & champion_rows
    out.exam = {"rule": exam.describe(), "families": sorted(exam_families), "rows": int(exam_rows.sum())}
    retrain_card: dict[str, Any] = {"pending_rows": out.pending, "champion": out.champion, "exam": out.exam,
                                    "rule": out.rule}

    challenger_fit = None
    if exam_rows.any():
        exam_frame = rows[exam_rows]
        seed = int(challenger_params.get("random_state", 0))
        runs: dict[str, list[dict]] = {"challenger": [], "champion": []}
        for k in range(max(rule.seeds, 1)):
            stage(f"training challenger {k + 1} of {max(rule.seeds, 1)} without the exam families")
            fit = _fit({**challenger_params, "random_state": seed + k}, rows[~in_exam_family], profiles, fingerprints)
            challenger_fit = challenger_fit or fit  # the first seed's fit is the one kept if rejected
            runs["challenger"].append(score(fit, exam_frame, profiles, fingerprints))
        if champion is not None:
            champion_seed = int(champion_params.get("random_state", 0))
            try:
                for k in range(max(rule.seeds, 1)):
                    stage(f"training the champion's recipe {k + 1} of {max(rule.seeds, 1)} on the same rows")
                    fit = _fit({**champion_params, "random_state": champion_seed + k},
                               rows[champion_rows & ~in_exam_family], profiles, fingerprints)
                    runs["champion"].append(score(fit, exam_frame, profiles, fingerprints))
            except OptionError as exc:
                out.notes.append(f"the champion's recipe could not be refit without the exam ({exc}); it has no "
                                 "exam scores")
                runs["champion"] = []
        out.scores = {name: mean_scores(r) if r else {"split": "exam", "rows": 0, "seeds": 0, "targets": {}}
                      for name, r in runs.items() if r or champion is not None}

    if champion is None:
        promote = True
        out.reason = ("no usable champion: the challenger is promoted" if unusable
                      else "no champion yet: the challenger becomes the first")
    elif challenger_fit is None:
        out.decision, out.reason = "kept", ("no exam rows (the exam needs the champion's rows of at least one "
                                            "held-out family): champion kept, nothing compared")
        return out
    else:
        promote, out.checks = rule.judge(out.scores["champion"], out.scores["challenger"])
        failed = [c["criterion"] for c in out.checks if not c["ok"]]
        if promote:
            out.reason = "the challenger is not worse on the exam"
        else:
            out.reason = "the challenger is worse on the exam: " + ("; ".join(failed) or "nothing could be compared")

    retrain_card.update(decision="promoted" if promote else "rejected", checks=out.checks, at=utc_now_iso())
    if promote:
        stage("promoting: training the new champion on every row")
        final = _fit(challenger_params, rows, profiles, fingerprints)
        evaluation = out.scores.get("challenger")
        if evaluation is not None:
            evaluation = {**evaluation, "note": "exam scores of this recipe fitted without the exam families"}
        path = V.publish(final, root, {"evaluation": evaluation, "retrain": retrain_card}, training_ids=ids,
                         promote=True, by="retrain")
        out.decision = "promoted"
    else:
        assert challenger_fit is not None
        path = V.publish(challenger_fit, root, {"evaluation": out.scores["challenger"], "retrain": retrain_card},
                         training_ids=ids[~in_exam_family], considered_ids=ids, promote=False)
        out.decision = "rejected"
    out.challenger = path.name
    return out


def _profiles(store: Store, rows: pd.DataFrame) -> dict[str, Any]:
    profiles = {}
    for digest in rows["profile_digest"].dropna().unique():
        profile = store.get_profile(str(digest))
        if profile is not None:
            profiles[str(digest)] = profile
    return profiles


def summary_lines(report: RetrainReport) -> list[str]:
    """A human-readable account of a run."""
    ing = report.ingest
    lines = []
    if ing.sources:
        lines.append(f"ingested {ing.rows_read} row(s) from {ing.shards} shard(s): {ing.appended} new, "
                     f"{ing.duplicates_stored} already stored, {ing.duplicates_within} duplicated within the new "
                     f"shards, {ing.quarantined} quarantined")
        for kind, n in ing.kinds.most_common():
            lines.append(f"  quarantined for {kind}: {n}")
        for reason, n in ing.reasons.most_common():
            lines.append(f"    {n:>5}  {reason}")
        for path in ing.quarantine_files:
            lines.append(f"  quarantine: {path}")
        if ing.profiles_copied or ing.profiles_missing:
            lines.append(f"  profiles: {ing.profiles_copied} copied, {ing.profiles_missing} not found (those rows "
                         "train without layer features)")
        lines.extend(f"  note: {n}" for n in ing.notes)
    lines.append(f"champion: {report.champion or 'none'}; pending rows (not in the champion): {report.pending}")
    if report.exam:
        lines.append(f"exam: {report.exam['rows']} row(s) of the champion's in {len(report.exam['families'])} "
                     f"held-out families ({', '.join(report.exam['families']) or 'none'}), seen by neither fit")
    lines.append(f"rule: {report.rule}")
    if report.scores:
        width = max([len(c["criterion"]) for c in report.checks] + [5])
        lines.append(f"  {'check':<{width}} {'champion':>9} {'challenger':>10}  ok")
        for c in report.checks:
            def fmt(v: Any, pp: bool = "MAE" in c["criterion"]) -> str:
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    return "-"
                return f"{v:.2f} pp" if pp else f"{100 * v:.1f}%"

            lines.append(f"  {c['criterion']:<{width}} {fmt(c.get('champion')):>9} {fmt(c.get('challenger')):>10}  "
                         f"{'yes' if c['ok'] else 'NO'}" + (f"  ({c['note']})" if c.get("note") else ""))
    lines.extend(f"note: {n}" for n in report.notes)
    verdict = {"promoted": f"PROMOTED {report.challenger}: now the champion",
               "rejected": f"REJECTED: champion {report.champion} kept; the challenger is saved as "
                           f"{report.challenger} (not current)",
               "kept": f"KEPT champion {report.champion}"}.get(report.decision, report.decision.upper())
    lines.append(f"{verdict}: {report.reason}" if report.decision in ("promoted", "rejected", "kept")
                 else report.reason)
    return lines
