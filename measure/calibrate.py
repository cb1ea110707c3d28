"""`advisor calibrate`: measure the reference set on a device and fit its calibration.

The measuring is an ordinary campaign (`advisor/data/calibration.toml`, the device and thread
count set here), so its rows go into the dataset like any others, a rerun resumes it, and a
later retraining learns from them; the fit itself is `advisor.calibration.fit_calibration`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from advisor.calibration import REFERENCE_PLAN, Calibration, fit_calibration
from advisor.errors import BundleError, OptionError
from advisor.store import Store, utc_now_iso


@dataclasses.dataclass(frozen=True)
class CalibrationRun:
    """What `calibrate` did: the fitted calibration, where it was saved, and the campaign's counts."""

    calibration: Calibration
    path: Path
    campaign: Any = None  # measure.campaign.CampaignReport, or None for --refit
    probes: int = 0  # the device's own single-layer probes the store holds (`advisor train` learns from them)

    def to_dict(self) -> dict[str, Any]:
        return {"calibration": self.calibration.to_dict(), "path": str(self.path),
                "campaign": self.campaign.to_dict() if self.campaign is not None else None, "probes": self.probes}


def reference_plan(threads: int = 1, plan_path: str | Path = REFERENCE_PLAN):
    """The reference plan with every configuration's thread count set to `threads`."""
    from measure.campaign import Config, load_plan

    if threads < 1:
        raise OptionError(f"--threads must be at least 1, got {threads}")
    plan = load_plan(plan_path)
    configs = tuple(Config(c.model, c.technique, dataclasses.replace(c.settings, threads=threads), c.grid)
                    for c in plan.configs)
    return dataclasses.replace(plan, configs=configs)


def reference_rows(rows: Any, plan: Any, device_id: str):
    """The successful rows of the plan's configurations on `device_id`, among stored `rows`
    (`Store.read()`: a large store takes tens of seconds to read, so callers read it once)."""
    from measure.campaign import config_key

    keys = {config_key(c, device_id) for c in plan.configs}
    if len(rows) == 0:
        return rows
    return rows[rows["config_id"].isin(keys) & (rows["status"] == "ok")].reset_index(drop=True)


def own_probes(rows: Any, fingerprint_id: str) -> int:
    """How many successful single-layer probes of this fingerprint are among stored `rows`."""
    from advisor.predictor import is_probe

    if len(rows) == 0 or "fingerprint_id" not in rows.columns:
        return 0
    mine = (rows["fingerprint_id"].astype(str) == fingerprint_id) & (rows["status"] == "ok")
    return int((mine & is_probe(rows["family"].astype(str).to_numpy())).sum())


def calibrate(device_name: str, *, store: Store, bundle_dir: str | Path | None = None, threads: int = 1,
              plan_path: str | Path = REFERENCE_PLAN, refit: bool = False, progress: bool | TextIO = True,
              in_process: bool = False, out_dir: Path | None = None, device: Any = None) -> CalibrationRun:
    """Measure the reference set on a device (unless `refit`), fit its calibration, save it.

    Args:
        device_name: the device as `--device` names it (`local`, a configured or ssh device; with
            `refit`, also a device the bundle was trained on, as its rows name it).
        store: the dataset the reference rows go to and are read from.
        bundle_dir: the bundle to calibrate (default the current one).
        refit: fit from the rows already stored, measuring nothing (after a retraining).
        in_process: measure every reference model in this process (faster; see `advisor campaign`).
        device: the device object, when the caller has one already (default `get_device(device_name)`).

    Raises:
        OptionError: too few reference rows (for --refit: none stored yet), bad thread count.
        BundleError: no usable bundle.
    """
    from advisor.bundle import DEFAULT_BUNDLE, load
    from advisor.features import device_features, feature_matrix
    from advisor.lookup import device_fingerprint
    from advisor.model_versions import training_ids
    from measure.campaign import run_campaign
    from measure.devices import get_device

    bundle = load(bundle_dir or DEFAULT_BUNDLE)
    plan = reference_plan(threads, plan_path)
    trained_on = getattr(bundle.predictor, "devices_", {}) or {}
    if refit and device is None and device_name in trained_on:
        # A device as the training data names it (`local:<fingerprint>` of another machine): its
        # stored rows and fingerprint are all a refit needs, and it may not be reachable from here.
        device_id = device_name
    else:
        device = device if device is not None else get_device(device_name)
        device_id = getattr(device, "device_id", device_name)
    report = None
    if not refit:
        report = run_campaign(plan, store=store, device=device, progress=progress, isolate=not in_process)
        if report.interrupted:
            raise OptionError("calibration interrupted: the measured reference rows are stored; run it again "
                              "to finish")
    stored = store.read()
    rows = reference_rows(stored, plan, device_id)
    if len(rows) == 0:
        hint = " (run it without --refit to measure them)" if refit else ""
        raise OptionError(f"no reference rows of {device_id} at {threads} thread(s) in {store.root}{hint}")
    fp, _ = device_fingerprint(device_name, bundle.predictor)
    feats = device_features(fp, threads)
    X = np.vstack([_row_features(store, r, feats, feature_matrix) for r in rows.to_dict("records")])
    predicted = bundle.predict(X)
    energy = rows["energy_mj"].to_numpy(dtype=float) if "energy_mj" in rows else None
    reference = list(rows["config_id"].astype(str))
    try:
        trained_on_ids = training_ids(bundle.path) or frozenset()
    except BundleError:  # an unreadable ids file only costs the in-sample note
        trained_on_ids = frozenset()
    cal = fit_calibration(X, rows["latency_ms_median"].to_numpy(dtype=float), predicted,
                          bundle.predictor.priors_["latency"], device=device_id, fingerprint=fp, threads=threads,
                          bundle_version=bundle.version, reference=reference,
                          energy_mj=energy, networks=list(rows["model"].astype(str)), created=utc_now_iso(),
                          in_training=sum(cid in trained_on_ids for cid in reference))
    return CalibrationRun(cal, cal.save(out_dir), report, own_probes(stored, cal.fingerprint_id))


def _row_features(store: Store, row: dict, feats: dict, feature_matrix: Any) -> np.ndarray:
    profile = store.get_profile(str(row["profile_digest"])) if row.get("profile_digest") else None
    if profile is None:
        raise OptionError(f"reference row {row['config_id']} ({row['model']}) has no stored layer profile "
                          f"in {store.root}")
    return feature_matrix(profile, [str(row["technique"])], feats)
