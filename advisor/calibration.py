"""Calibration of a new device: a few reference measurements adapt the predictor to it.

A bundle trained on other machines predicts a new device's latency from its features alone, and
devices differ in ways a few features cannot say: on the same 2-core x86 VM kind, an AMD EPYC ran
a sampled LSTM 1.7x slower than an Intel Xeon but int8 made it 4.8x slower where the Xeon saw 6.8x.
`advisor calibrate --device D` measures a small fixed reference set on D (`data/calibration.toml`:
20 configurations, one network per compute group under every numeric mode) and fits, in log
space, a correction of the bundle's latency prediction (few-shot adaptation in the spirit of
HELP, with a handful of interpretable parameters instead of a meta-learned network):

    log latency_D(x) = log latency_bundle(x) + sum_g w_g(x) * (b_g + sum_m mode_m(x) * c_mg)

where w_g(x) is the share of layer group g (conv, depthwise, dense, recurrent, attention, other,
fixed cost) in the bundle's kernel-sum estimate of x's uncompressed time and mode_m(x) flags the
numeric mode (dynamic-range, float16, full integer). Each b_g is a common offset plus a group
term and each c_mg a per-mode offset plus a group term; ridge penalties shrink the group terms
toward the common ones. Leave-one-network-out on the reference set chooses the strength and says how well the
correction carries over to networks it did not see. The p10-p90 band is the one the bundle gives a
machine it was trained on (its family level: calibrated, the machine is no longer unknown), shifted
with the median and widened, each side, to those held-out residuals' spread. Held out on every
measured machine in turn (`bench/calibration_lomo.py`, 2026-12-07, 5,296 latencies on four
machines): 72% inside the band, against 93% (and bands 3-6x wider) when it started from the
bundle's band for a machine it never saw.
Where the reference rows carry energy (a device with a power sensor), the device's power per
numeric mode is kept too, so energy = latency x power even when the bundle has no energy model.

A calibration is a small JSON file (`models/calibrations/<fingerprint id>-t<threads>.json`)
tied to the bundle version it corrects: after a retraining it is not applied (the answer says
so) until `advisor calibrate --refit` refits it from the stored reference rows. Applying one is
numpy only, on the answer path.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advisor import features as F
from advisor.errors import BundleError, OptionError

CALIBRATION_FORMAT = 1
#: The reference set every calibration measures (a campaign plan; the device is set at run time).
REFERENCE_PLAN = Path(__file__).resolve().parent / "data" / "calibration.toml"
#: Fewest usable reference rows a fit accepts (the shipped set has 20).
MIN_ROWS = 6
#: Ridge strengths tried by leave-one-out (in units of squared log error per unit coefficient).
LAMBDAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1e4)
#: What the numeric-mode flags are called among the features (`advisor.predictor` uses the same).
MODES = ("quant_dynamic", "quant_float16", "quant_full_int")
_N_GROUPS = len(F.GROUPS) + 1  # the layer groups and the fixed per-invoke cost


def calibrations_dir() -> Path:
    """Where calibrations live: $ADVISOR_CALIBRATIONS, else `calibrations/` beside the bundles."""
    from advisor.bundle import MODELS_ROOT

    return Path(os.environ.get("ADVISOR_CALIBRATIONS", MODELS_ROOT / "calibrations"))


def calibration_path(fingerprint_id: str, threads: int, directory: Path | None = None) -> Path:
    """The file of the calibration for a device (by fingerprint id) and thread count."""
    return (directory or calibrations_dir()) / f"{fingerprint_id}-t{int(threads)}.json"


# ---------------------------------------------------------------------------------------------
# The correction's design: group shares and numeric modes.


def group_shares(X: np.ndarray, latency_prior: Any) -> np.ndarray:
    """Per row, each layer group's share of the kernel-sum estimate of its uncompressed time."""
    from advisor.predictor import group_times

    T = group_times(latency_prior, F.as_baseline(X))
    total = T.sum(axis=1, keepdims=True)
    return np.where(total > 0, T / np.maximum(total, 1e-300), 1.0 / T.shape[1])


def mode_flags(X: np.ndarray) -> np.ndarray:
    """Per row, 0/1 for each numeric mode in `MODES` (all 0 for float32 plans)."""
    return (np.nan_to_num(X[:, [F.INDEX[m] for m in MODES]]) > 0).astype(np.float64)


def _design(W: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Columns: common offset, group terms, per-mode offsets, per-mode group terms."""
    per_mode = [W * M[:, [k]] for k in range(M.shape[1])]
    return np.hstack([np.ones((len(W), 1)), W, M, *per_mode])


def _penalties(lam: float, n_groups: int, n_modes: int) -> np.ndarray:
    # The common and per-mode offsets are barely shrunk (every reference network informs them);
    # group terms are, by `lam`, so a group the reference set says little about keeps the common
    # offset. A large `lam` leaves a per-mode offset only.
    return np.concatenate([[1e-4], np.full(n_groups, lam), np.full(n_modes, 1e-3),
                           np.full(n_groups * n_modes, lam)])


def _ridge(Z: np.ndarray, r: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    A = Z.T @ Z + np.diag(penalty)
    return np.linalg.solve(A, Z.T @ r)


def _loo(Z: np.ndarray, r: np.ndarray, penalty: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Leave-one-network-out predictions of r: every row of a network is held out together.

    Holding out single rows would flatter group terms: the other modes of the same network still
    pin its group down, and a calibration is used on networks it has never seen.
    """
    out = np.empty(len(r))
    for g in np.unique(groups):
        held = groups == g
        out[held] = Z[held] @ _ridge(Z[~held], r[~held], penalty)
    return out


def _scores(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    err = np.abs(predicted / measured - 1.0)
    return {"within_10pct": float(np.mean(err <= 0.10)), "within_25pct": float(np.mean(err <= 0.25)),
            "mape": float(np.mean(err)), "n": int(len(err))}


# ---------------------------------------------------------------------------------------------
# The calibration.


@dataclass(frozen=True)
class Calibration:
    """A fitted correction for one device and thread count, tied to one bundle version.

    Attributes:
        device: the device id its reference rows are stored under (e.g. `local:7d0a69e47e87`).
        fingerprint_id: the id of the fingerprint its features were built from.
        fingerprint: that fingerprint (the device block of the reference rows' features).
        threads: the interpreter thread count it was measured with.
        bundle_version: the bundle whose predictions it corrects.
        coef: the correction's coefficients (`_design` order).
        lam: the ridge strength leave-one-out chose.
        band: (lo, hi) leave-one-out residual quantiles (log), the narrowest band it allows.
        power: per numeric mode ("float32" and `MODES`), (p10, p50, p90) of measured power in W,
            where the reference rows had energy; {} otherwise.
        reference: the reference rows' config ids.
        metrics: before (the bundle alone) and after (leave-one-out) on the reference rows.
    """

    device: str
    fingerprint_id: str
    fingerprint: Mapping[str, Any]
    threads: int
    bundle_version: str
    coef: tuple[float, ...]
    lam: float
    band: tuple[float, float]
    power: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)
    reference: tuple[str, ...] = ()
    metrics: Mapping[str, Any] = field(default_factory=dict)
    created: str = ""
    format: int = CALIBRATION_FORMAT

    def correction(self, X: np.ndarray, latency_prior: Any) -> np.ndarray:
        """Per row, the log correction added to the bundle's latency quantiles."""
        return _design(group_shares(X, latency_prior), mode_flags(X)) @ np.asarray(self.coef)

    def predict(self, bundle: Any, X: np.ndarray) -> dict[str, np.ndarray]:
        """The bundle's predictions for X on this device: the bands it gives a calibrated device
        (`Bundle.predict(calibrated=True)`), with this correction applied (`apply`)."""
        return self.apply(X, bundle.predict(X, calibrated=True), bundle.predictor.priors_["latency"])

    def apply(self, X: np.ndarray, predicted: Mapping[str, np.ndarray], latency_prior: Any) -> dict[str, np.ndarray]:
        """The bundle's predictions (natural units, (n, 3) each) with this device's correction.

        Latency's median moves by the correction and its band by as much, widened where the
        leave-one-out residuals were wider. Energy is latency x the device's measured power where
        the calibration has power and the bundle predicted none.
        """
        out = dict(predicted)
        if "latency" not in predicted:
            return out
        q = np.log(np.asarray(predicted["latency"], dtype=np.float64))
        shift = self.correction(X, latency_prior)
        mid = q[:, 1] + shift
        lo = np.minimum(q[:, 0] + shift, mid + self.band[0])
        hi = np.maximum(q[:, 2] + shift, mid + self.band[1])
        latency = np.exp(np.column_stack([np.minimum(lo, mid), mid, np.maximum(hi, mid)]))
        out["latency"] = latency
        if self.power:
            energy = np.asarray(predicted.get("energy", np.full((len(X), 3), np.nan)), dtype=np.float64).copy()
            flags = mode_flags(X)
            for i in range(len(X)):
                if np.isfinite(energy[i]).all():
                    continue
                mode = next((m for k, m in enumerate(MODES) if flags[i, k]), "float32")
                p = self.power.get(mode) or self.power.get("all")
                if p:
                    energy[i] = latency[i] * np.asarray(p)
            out["energy"] = energy
        return out

    def describe(self) -> str:
        """One line for an explanation."""
        after = (self.metrics.get("after") or {}).get("within_10pct")
        before = (self.metrics.get("before") or {}).get("within_10pct")
        tail = ""
        if after is not None and before is not None:
            tail = (f": leave-one-out {after:.0%} of its latencies within ±10% (the bundle alone: "
                    f"{before:.0%})")
        n = (self.metrics.get("after") or {}).get("n", len(self.reference))
        if self.metrics.get("reference_in_training"):
            tail += (f"; the bundle was trained on {self.metrics['reference_in_training']} of these rows, so the "
                     "figures are in-sample")
        if self.metrics.get("no_correction"):
            tail += "; no correction did better on held-out networks, so only the band is widened"
        return (f"calibrated for this device on {n} reference measurements "
                f"({self.created[:10] or 'undated'}){tail}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fingerprint"] = dict(self.fingerprint)
        d["power"] = {k: list(v) for k, v in self.power.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        try:
            if int(d.get("format", 0)) > CALIBRATION_FORMAT:
                raise BundleError(f"calibration format {d.get('format')} is newer than this code reads "
                                  f"({CALIBRATION_FORMAT}): upgrade compression-advisor")
            coef = tuple(float(x) for x in d["coef"])
            if len(coef) != _design(np.zeros((1, _N_GROUPS)), np.zeros((1, len(MODES)))).shape[1]:
                raise BundleError(f"calibration has {len(coef)} coefficients, this code expects another "
                                  "layout: run `advisor calibrate --refit`")
            return cls(device=str(d["device"]), fingerprint_id=str(d["fingerprint_id"]),
                       fingerprint=dict(d["fingerprint"]), threads=int(d["threads"]),
                       bundle_version=str(d["bundle_version"]), coef=coef, lam=float(d["lam"]),
                       band=(float(d["band"][0]), float(d["band"][1])),
                       power={str(k): tuple(float(x) for x in v) for k, v in (d.get("power") or {}).items()},
                       reference=tuple(str(x) for x in d.get("reference", ())),
                       metrics=dict(d.get("metrics") or {}), created=str(d.get("created", "")),
                       format=int(d.get("format", CALIBRATION_FORMAT)))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise BundleError(f"calibration file is malformed ({type(exc).__name__}: {exc})") from exc

    def save(self, directory: Path | None = None) -> Path:
        """Write atomically to `calibration_path(...)`; returns the path."""
        from advisor.atomic import write_bytes_atomic

        path = calibration_path(self.fingerprint_id, self.threads, directory)
        write_bytes_atomic(path, (json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n").encode())
        return path


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration file. Raises BundleError (one line) if unreadable or malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read calibration {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"calibration {path} is not a JSON object")
    return Calibration.from_dict(data)


def find_calibration(fp: Mapping[str, Any], threads: int, bundle_version: str,
                     directory: Path | None = None) -> tuple[Calibration | None, str | None]:
    """(calibration to apply, note) for a device's fingerprint and thread count.

    No file: (None, None). A file for another bundle version, or an unreadable one: (None, a note
    saying why it is not applied and how to fix it).
    """
    from advisor.fingerprint import fingerprint_id

    path = calibration_path(fingerprint_id(dict(fp)), threads, directory)
    if not path.exists():
        return None, None
    try:
        cal = load_calibration(path)
    except BundleError as exc:
        return None, f"warning: calibration not applied: {exc}"
    if cal.bundle_version != bundle_version:
        return None, (f"warning: this device's calibration was fitted for bundle {cal.bundle_version}, not "
                      f"{bundle_version}: it is not applied (refit it with `advisor calibrate --device "
                      f"{cal.device.split(':')[0]} --refit`)")
    return cal, cal.describe()


def fit_calibration(X: np.ndarray, measured_ms: np.ndarray, predicted: Mapping[str, np.ndarray],
                    latency_prior: Any, *, device: str, fingerprint: Mapping[str, Any], threads: int,
                    bundle_version: str, reference: Sequence[str] = (),
                    energy_mj: np.ndarray | None = None, networks: Sequence[str] | None = None,
                    lambdas: Sequence[float] = LAMBDAS, created: str = "", in_training: int = 0) -> Calibration:
    """Fit a device's correction from its reference rows.

    Args:
        X: the reference rows' features, built with the device block the answer path will use.
        measured_ms: their measured median latencies.
        predicted: the bundle's predictions for X (`{"latency": (n, 3), ...}`, natural units).
        latency_prior: the bundle's latency prior (`predictor.priors_["latency"]`).
        energy_mj: measured energies (NaN where none), for the device's power.
        networks: each row's network (model name): cross-validation holds a network out whole.
            Default: the profile part of X identifies it.
        in_training: how many of the reference rows the bundle was trained on (a refit after a
            retraining): its "before" figures are then in-sample, and the answer says so.

    Raises:
        OptionError: fewer than `MIN_ROWS` usable rows.
    """
    from advisor.fingerprint import fingerprint_id

    measured_ms = np.asarray(measured_ms, dtype=np.float64)
    if "latency" not in predicted:
        raise OptionError("the bundle predicts no latency: nothing to calibrate")
    pred = np.asarray(predicted["latency"], dtype=np.float64)
    ok = np.isfinite(measured_ms) & (measured_ms > 0) & np.isfinite(pred).all(axis=1) & (pred > 0).all(axis=1)
    if ok.sum() < MIN_ROWS:
        raise OptionError(f"calibration needs at least {MIN_ROWS} measured reference rows with latency, "
                          f"got {int(ok.sum())}")
    Xo, yo, po = X[ok], measured_ms[ok], pred[ok]
    Z = _design(group_shares(Xo, latency_prior), mode_flags(Xo))
    r = np.log(yo) - np.log(po[:, 1])
    if networks is not None:
        groups = np.asarray([str(n) for n in networks])[ok]
    else:
        groups = np.unique(F.profile_keys(Xo), return_inverse=True)[1].ravel()
    if len(np.unique(groups)) < 2:
        raise OptionError("calibration needs reference rows of at least 2 networks")
    best: tuple[float, float, np.ndarray] | None = None
    for lam in lambdas:
        loo = _loo(Z, r, _penalties(lam, _N_GROUPS, len(MODES)), groups)
        score = float(np.mean(np.abs(r - loo)))
        if best is None or score < best[0] - 1e-12:
            best = (score, float(lam), loo)
    assert best is not None
    score, lam, loo = best
    coef = _ridge(Z, r, _penalties(lam, _N_GROUPS, len(MODES)))
    # "No correction" is a candidate too: where the bundle already knows the device (its rows are
    # in the training data), even the offsets can only add noise, and held-out rows say so.
    no_correction = float(np.mean(np.abs(r))) <= score
    if no_correction:
        lam, loo, coef = 0.0, np.zeros_like(r), np.zeros_like(coef)
    residual = r - loo
    band = (float(np.quantile(residual, 0.1)), float(np.quantile(residual, 0.9)))
    metrics = {"before": _scores(yo, po[:, 1]), "after": _scores(yo, po[:, 1] * np.exp(loo)),
               "after_in_sample": _scores(yo, po[:, 1] * np.exp(Z @ coef)), "lambda": lam,
               "no_correction": no_correction, "reference_in_training": int(in_training)}
    power: dict[str, tuple[float, float, float]] = {}
    if energy_mj is not None:
        e = np.asarray(energy_mj, dtype=np.float64)[ok]
        has = np.isfinite(e) & (e > 0)
        if has.sum() >= MIN_ROWS:
            watts = e / yo  # mJ / ms = W
            flags = mode_flags(Xo)
            groups = {"all": has}
            groups["float32"] = has & (flags.sum(axis=1) == 0)
            for k, m in enumerate(MODES):
                groups[m] = has & (flags[:, k] > 0)
            for name, rows in groups.items():
                if rows.sum() >= 2:
                    power[name] = tuple(float(np.quantile(watts[rows], q)) for q in (0.1, 0.5, 0.9))
            metrics["energy_rows"] = int(has.sum())
    return Calibration(device=device, fingerprint_id=fingerprint_id(dict(fingerprint)),
                       fingerprint=dict(fingerprint), threads=int(threads), bundle_version=bundle_version,
                       coef=tuple(float(c) for c in coef), lam=lam, band=band, power=power,
                       reference=tuple(str(reference[i]) for i in np.flatnonzero(ok)) if len(reference) else (),
                       metrics=metrics, created=created)


def summary_lines(cal: Calibration) -> list[str]:
    """What `advisor calibrate` prints about a fitted calibration."""
    b, a = cal.metrics.get("before", {}), cal.metrics.get("after", {})

    def fmt(m: Mapping[str, Any]) -> str:
        if not m:
            return "-"
        return f"{m['within_10pct']:.0%} within ±10%, {m['within_25pct']:.0%} within ±25%, MAPE {m['mape']:.1%}"

    lines = [f"calibration of {cal.device} ({cal.threads} thread(s)) for bundle {cal.bundle_version}",
             f"  reference rows      {a.get('n', len(cal.reference))}",
             f"  bundle alone        {fmt(b)}",
             f"  calibrated (LOO)    {fmt(a)}"]
    if cal.metrics.get("reference_in_training"):
        lines.append(f"  in-sample           the bundle was trained on {cal.metrics['reference_in_training']} of "
                     "the reference rows (a refit after retraining): the figures above are not held out")
    band = f"x{math.exp(cal.band[0]):.2f} to x{math.exp(cal.band[1]):.2f}"
    if cal.metrics.get("no_correction"):
        lines.append("  no correction       every correction did worse on held-out networks than the bundle "
                     f"alone: medians kept; band {band}")
    else:
        lines.append(f"  ridge strength      {cal.lam:g}; band from leave-one-out residuals {band}")
    if cal.power:
        lines.append("  power (p50)         " + ", ".join(f"{k} {v[1]:.2f} W" for k, v in cal.power.items()))
    else:
        lines.append("  power               no energy in the reference rows (no sensor): no energy model")
    return lines


def device_notes(device_note: str | None, calibration: Calibration | None, calibration_note: str | None
                 ) -> list[str]:
    """The explanation lines about the device: the device's own note, unless a calibration now
    stands in for the extrapolation it warns of, then the calibration's."""
    if calibration is not None and device_note and "extrapolates" in device_note:
        device_note = None
    return [n for n in (device_note, calibration_note) if n]


def predict_for_device(bundle: Any, X: np.ndarray, fp: Mapping[str, Any], threads: int,
                       directory: Path | None = None) -> tuple[dict[str, np.ndarray], Calibration | None, str | None]:
    """The bundle's predictions for X on a device, corrected by its calibration when it has one.

    Returns:
        (predictions, the calibration applied or None, a note for the explanation or None).
    """
    cal, note = find_calibration(fp, threads, bundle.version, directory)
    if cal is not None:
        return cal.predict(bundle, X), cal, note
    return predict_uncalibrated(bundle, X, fp, threads), cal, note


def predict_uncalibrated(bundle: Any, X: np.ndarray, fp: Mapping[str, Any], threads: int) -> dict[str, np.ndarray]:
    """The bundle's predictions for X on a device with no calibration: as they come, except on a
    board of an architecture no training row came from, whose latency is scaled from the reference
    machine's by compute (`advisor.board_speed`)."""
    from advisor.board_speed import board_scaling, scaled_prediction

    scaling = board_scaling(bundle, fp, threads)
    return bundle.predict(X) if scaling is None else scaled_prediction(bundle, X, scaling)
