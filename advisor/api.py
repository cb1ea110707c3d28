"""The Python API: `Advisor.load().recommend(model=..., device=..., budget_ms=...)`.

This is also what `advisor recommend` runs. The answer path imports numpy and the project's
own light modules only: no TensorFlow (zoo profiles ship with the package; a user's model
file is profiled once, with TensorFlow, and the profile cached by file hash), no xgboost (the
bundle's trees are evaluated with numpy), no pandas.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advisor.candidates import candidate_specs
from advisor.errors import ModelFileError, OptionError
from advisor.profile import PROFILER_REVISION, ModelProfile
from advisor.recommend import TARGETS, Constraints, decide, describe_miss, pessimistic

#: predictor target -> (recommendation target, scale to its unit)
_TARGET_MAP = {"latency": ("latency_ms", 1.0), "energy": ("energy_mj", 1.0), "size": ("size_mb", 1e-6),
               "accuracy_delta": ("accuracy_delta_pp", 1.0)}
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5", ".tflite")


def cache_dir() -> Path:
    """Where profiles of users' model files are cached (`advisor.lookup.cache_root`)."""
    from advisor.lookup import cache_root

    return cache_root()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:20]


def profile_for(model: str, input_size: int | None = None) -> ModelProfile:
    """The profile of a zoo name (shipped), a PROFILE.json, or a model file (profiled once, cached).

    Raises:
        UnknownNameError, ModelFileError, OptionError.
    """
    from advisor.lookup import resolve_profile

    path = Path(model)
    is_model_file = path.exists() and (path.is_dir() or path.suffix.lower() in MODEL_SUFFIXES)
    if not is_model_file:
        return resolve_profile(model, input_size)
    if input_size is not None:
        raise OptionError("--input-size applies to zoo names; a model file has its own input size")
    if path.suffix.lower() == ".tflite":
        raise ModelFileError(f"{model}: a .tflite file has no layer profile to predict from; give the Keras "
                             "model (or measure the .tflite directly with `advisor measure`)")
    cached = cache_dir() / "profiles" / f"{_file_digest(path)}-r{PROFILER_REVISION}.json"
    if cached.exists():
        return ModelProfile.load(cached)
    from advisor.atomic import write_bytes_atomic
    from measure.loading import resolve_model  # the one step that imports TensorFlow
    from measure.profiling import profile_model, with_float_file

    resolved = resolve_model(model)
    profile = profile_model(resolved.keras_model, model=resolved.key, family=resolved.family,
                            domain=resolved.domain)
    # The uncompressed file's size is a fact one conversion gives: known, not predicted.
    profile = with_float_file(profile, resolved.keras_model, "random" if resolved.weights == "random" else "trained")
    write_bytes_atomic(cached, profile.to_json().encode())
    return profile


@dataclass
class Recommendation:
    """The advisor's answer. `to_dict()` is the documented JSON contract of `advisor recommend --json`."""

    model: str
    device: str
    constraints: Constraints
    decision: str  # keep | compress | infeasible
    technique: str | None
    predicted: dict[str, dict[str, float] | None]
    baseline: dict[str, dict[str, float] | None]
    alternatives: list[dict[str, Any]]
    pareto: list[dict[str, Any]]
    explanation: list[str]
    predictor: dict[str, Any]
    nearest: dict[str, Any] | None = None
    rejected: dict[str, str] = field(default_factory=dict)
    search: dict[str, Any] | None = None  # --search layerwise: best layer-wise and whole-model plans

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "device": self.device, "constraints": self.constraints.to_dict(),
                "decision": self.decision, "technique": self.technique, "predicted": self.predicted,
                "baseline": self.baseline, "alternatives": self.alternatives, "pareto": self.pareto,
                "explanation": self.explanation, "rejected": self.rejected, "nearest": self.nearest,
                "predictor": self.predictor, "search": self.search}


class Advisor:
    """Loads a predictor bundle once; answers many `recommend` calls."""

    def __init__(self, bundle) -> None:
        self.bundle = bundle
        self._calibrations: dict[tuple[str, int], tuple[Any, str | None]] = {}

    def calibration(self, fp: dict, threads: int = 1) -> tuple[Any, str | None]:
        """(the device's calibration for this bundle or None, a note), looked up once per device."""
        from advisor.calibration import find_calibration
        from advisor.fingerprint import fingerprint_id

        key = (fingerprint_id(fp), int(threads))
        if key not in self._calibrations:
            self._calibrations[key] = find_calibration(fp, threads, self.bundle.version)
        return self._calibrations[key]

    @classmethod
    def load(cls, bundle: str | Path | None = None) -> Advisor:
        """Load the bundle (default models/current). Raises BundleError if missing or mismatched."""
        from advisor.bundle import DEFAULT_BUNDLE, load

        return cls(load(bundle or DEFAULT_BUNDLE))

    def score(self, profile: ModelProfile, specs: list[str] | tuple[str, ...], fp: dict, threads: int = 1
              ) -> dict[str, np.ndarray]:
        """Predicted (n, 3) p10/p50/p90 per recommendation target for candidate `specs`, in one batch."""
        from advisor.calibration import predict_uncalibrated
        from advisor.composition import PlanBatch
        from advisor.features import device_features, feature_matrix

        batch = PlanBatch.of(specs)  # the specs, and the parts a plan's accuracy is composed from
        X = feature_matrix(profile, list(batch.plans), device_features(fp, threads))
        calibration, _ = self.calibration(fp, threads)
        if calibration is not None:
            raw = calibration.predict(self.bundle, X)
        else:
            raw = predict_uncalibrated(self.bundle, X, fp, threads)
        raw = batch.compose(raw)
        out = {}
        for name, q in raw.items():
            if name not in _TARGET_MAP:
                continue
            target, scale = _TARGET_MAP[name]
            q = np.asarray(q, dtype=float) * scale
            # A device without a power meter has no energy at all; an accuracy change is unknown
            # only for plans with a step no accuracy row had (NaN rows: never promised, ranked last).
            if np.isfinite(q).all() or (target == "accuracy_delta_pp" and np.isfinite(q).any()):
                out[target] = q
        return out

    def _network_on_device(self, model: str, device: str, threads: int, input_size: int | None
                           ) -> tuple[ModelProfile, dict, str | None]:
        """(profile, device fingerprint, device note) for a question about `model` on `device`."""
        from advisor.lookup import device_fingerprint

        if threads < 1:
            raise OptionError(f"--threads must be at least 1, got {threads}")
        profile = profile_for(model, input_size)
        fp, device_note = device_fingerprint(device, self.bundle.predictor)
        if self.calibration(fp, threads)[0] is None:
            from advisor.board_speed import board_scaling

            scaling = board_scaling(self.bundle, fp, threads)
            if scaling is not None:
                device_note = scaling.note()  # it says what the extrapolation note said, and how
        return profile, fp, device_note

    def recommend(self, model: str, device: str = "local", *, budget_ms: float | None = None,
                  budget_mj: float | None = None, max_size_mb: float | None = None,
                  max_accuracy_drop: float | None = None, objective: str = "accuracy",
                  confidence: float = 0.9, top: int = 5, threads: int = 1,
                  input_size: int | None = None, search: str = "whole") -> Recommendation:
        """Keep, compress (how) or infeasible, for `model` on `device` under the constraints.

        `search="layerwise"` also searches plans that treat layers differently (`advisor.search`)
        and reports the best of them beside the best whole-model plan."""
        constraints = Constraints(budget_ms, budget_mj, max_size_mb, max_accuracy_drop, objective, confidence)
        if top < 1:
            raise OptionError(f"--top must be at least 1, got {top}")
        profile, fp, device_note = self._network_on_device(model, device, threads, input_size)
        predictor = self.bundle.predictor
        if search not in SEARCH_MODES:
            raise OptionError(f"unknown --search '{search}' (valid: {', '.join(SEARCH_MODES)})")
        specs = list(candidate_specs())
        from advisor.limits import blocked_plans

        cannot = blocked_plans(profile, specs)
        specs = [spec for spec in specs if spec not in cannot]
        searched = None
        if search == "layerwise":
            from advisor.search import search_layerwise

            searched = search_layerwise(profile, lambda batch: self.score(profile, batch, fp, threads), constraints)
            specs += [s for s in searched.specs if s not in set(specs)]
        pred = self.score(profile, specs, fp, threads)
        if "latency_ms" not in pred:
            raise OptionError("the predictor bundle has no latency model for compressed plans: train it on more rows")
        verdict = decide(specs, pred, constraints)
        best = verdict["choice"]

        def bands(i: int) -> dict[str, dict[str, float] | None]:
            return _bands(pred, i)

        feasible = verdict["feasible"]
        order = [i for i in _ranked(pred, verdict["objective"]) if i != best and feasible[i]]
        alternatives = [{"technique": specs[i], "predicted": bands(i)} for i in order[:top]]
        pareto = [{"technique": specs[i], "latency_ms": float(pred["latency_ms"][i, 1]),
                   "accuracy_delta_pp": (float(pred["accuracy_delta_pp"][i, 1])
                                         if "accuracy_delta_pp" in pred
                                         and np.isfinite(pred["accuracy_delta_pp"][i, 1]) else None),
                   "size_mb": float(pred["size_mb"][i, 1]) if "size_mb" in pred else None,
                   "energy_mj": float(pred["energy_mj"][i, 1]) if "energy_mj" in pred else None,
                   "chosen": bool(i == best)} for i in verdict["pareto"]]
        summary = self.bundle.card.get("data_summary") or getattr(predictor, "data_summary_", {}) or {}
        device_rows = _device_rows(predictor, device, fp)
        family_rows = int((summary.get("families") or {}).get(profile.family, 0))
        explanation = _explain(verdict, specs, pred, constraints, best) + list(verdict["explanation"])
        from advisor.calibration import device_notes
        from advisor.coverage import notes as coverage_notes

        calibration, calibration_note = self.calibration(fp, threads)
        explanation += device_notes(device_note, calibration, calibration_note)
        for why, n in Counter(cannot.values()).items():
            explanation.append(f"left out {n} plan(s) the tools cannot apply here: {why}")
        if family_rows == 0:
            explanation.append(f"warning: no measured rows of the {profile.family} family: the prediction "
                               "extrapolates from other architectures")
        explanation += coverage_notes(profile, predictor)
        if "accuracy_delta_pp" not in pred:
            explanation.append("warning: no accuracy model: accuracy changes are unknown")
        elif not np.isfinite(pred["accuracy_delta_pp"][best]).all():
            explanation.append(f"warning: the accuracy change of {specs[best]} is unknown: no training row measured "
                               "the accuracy of a plan with its steps; check it on your data with "
                               "`advisor verify --data`")
        search_out = None
        if searched is not None:
            search_out = _compare_search(specs, pred, constraints, searched, bands)
            explanation += search_out.pop("lines")
        nearest = None
        if verdict["decision"] == "infeasible":
            nearest = {"technique": specs[best], "misses": {t: float(m[best]) for t, m in verdict["misses"].items()
                                                            if m[best] > 0}}
        return Recommendation(
            model=profile.model, device=device, constraints=constraints, decision=verdict["decision"],
            technique=None if verdict["decision"] == "keep" else specs[best],
            predicted=bands(best), baseline=bands(0), alternatives=alternatives, pareto=pareto,
            explanation=explanation, rejected=verdict["reasons"], nearest=nearest, search=search_out,
            predictor={"version": self.bundle.version, "rows_device": device_rows, "rows_family": family_rows,
                       "rows_total": int(summary.get("rows", 0)), "candidates": len(specs),
                       "calibration": None if calibration is None else {
                           "device": calibration.device, "created": calibration.created,
                           "reference_rows": int((calibration.metrics.get("after") or {}).get("n", 0)),
                           "loo_within_10pct": (calibration.metrics.get("after") or {}).get("within_10pct")}},
        )

    def plan(self, model: str, technique: str, device: str = "local", *, budget_ms: float | None = None,
             budget_mj: float | None = None, max_size_mb: float | None = None,
             max_accuracy_drop: float | None = None, threads: int = 1,
             input_size: int | None = None) -> Recommendation:
        """The prediction for one given plan, shaped like a recommendation (what `advisor verify`
        checks on the device): `predicted` is the plan's, `baseline` the uncompressed model's; the
        decision is the plan itself ("keep" for `none`), whatever the constraints say.

        Raises:
            SpecError: a malformed technique; and what `recommend` raises for bad input.
        """
        from advisor.calibration import device_notes
        from advisor.coverage import notes as coverage_notes
        from advisor.techniques import Pipeline

        spec = Pipeline.parse(technique).spec
        constraints = Constraints(budget_ms, budget_mj, max_size_mb, max_accuracy_drop, "accuracy", 0.9)
        profile, fp, device_note = self._network_on_device(model, device, threads, input_size)
        pred = self.score(profile, [spec, "none"], fp, threads)
        calibration, calibration_note = self.calibration(fp, threads)
        keep = spec == "none"
        return Recommendation(
            model=profile.model, device=device, constraints=constraints, decision="keep" if keep else "compress",
            technique=None if keep else spec, predicted=_bands(pred, 0), baseline=_bands(pred, 1), alternatives=[],
            pareto=[],
            explanation=device_notes(device_note, calibration, calibration_note)
            + coverage_notes(profile, self.bundle.predictor),
            predictor={"version": self.bundle.version, "rows_device": _device_rows(self.bundle.predictor, device, fp),
                       "candidates": 2})


def _bands(pred: dict[str, np.ndarray], i: int) -> dict[str, dict[str, float] | None]:
    """Candidate i's p10/p50/p90 per target; None where the predictor has no model, or no evidence
    for this candidate (an unknown accuracy change)."""
    return {t: ({"p10": float(pred[t][i, 0]), "p50": float(pred[t][i, 1]), "p90": float(pred[t][i, 2])}
                if t in pred and np.isfinite(pred[t][i]).all() else None) for t in TARGETS}

SEARCH_MODES = ("whole", "layerwise")


def _compare_search(specs: list[str], pred: dict[str, np.ndarray], constraints: Constraints, searched,
                    bands) -> dict[str, Any]:
    """The best layer-wise plan against the best whole-model plan, each decided on its own."""
    from advisor.techniques import Pipeline

    layerwise = [Pipeline.parse(s).is_layerwise for s in specs]
    out: dict[str, Any] = {"mode": "layerwise", **searched.to_dict()}
    lines = [f"layer-wise search: {searched.evaluated} plans scored in {searched.seconds:.1f} s"]
    for kind, members in (("whole_model", [i for i, lw in enumerate(layerwise) if not lw]),
                          ("layerwise", [0] + [i for i, lw in enumerate(layerwise) if lw])):
        sub = {t: q[members] for t, q in pred.items()}
        v = decide([specs[i] for i in members], sub, constraints)
        i = members[v["choice"]]
        out[kind] = {"technique": specs[i], "decision": v["decision"], "predicted": bands(i)}
        lat = pred["latency_ms"][i, 1]
        acc = pred["accuracy_delta_pp"][i, 1] if "accuracy_delta_pp" in pred else float("nan")
        acc_text = f"{acc:+.2f} pp median" if np.isfinite(acc) else "accuracy change unknown"
        lines.append(f"best {kind.replace('_', '-')} plan: {specs[i]} ({v['decision']}; {lat:.3g} ms, {acc_text})")
    return {**out, "lines": lines}


def _ranked(pred: dict[str, np.ndarray], objective: str) -> list[int]:
    key = pred[objective][:, 1]
    return [int(i) for i in (np.argsort(-key, kind="stable") if objective == "accuracy_delta_pp"
                             else np.argsort(key, kind="stable"))]


def _device_rows(predictor, device: str, fp: dict) -> int:
    """Training rows measured on `device` ('local' means this machine, by the id of `fp`, the
    fingerprint `device_fingerprint` resolved for it)."""
    counts = (getattr(predictor, "data_summary_", {}) or {}).get("by_device", {}) or {}
    if device != "local":
        return int(counts.get(device, 0))
    from advisor.fingerprint import fingerprint_id

    fid = fingerprint_id(fp)
    devices = getattr(predictor, "devices_", {}) or {}
    return int(sum(n for name, n in counts.items() if devices.get(name, {}).get("fingerprint_id") == fid))


def _fmt_band(q: np.ndarray, unit: str) -> str:
    return f"{q[1]:.3g} {unit} (p10–p90 {q[0]:.3g}–{q[2]:.3g})"


def _explain(verdict: dict, specs: list[str], pred: dict[str, np.ndarray], c: Constraints, best: int) -> list[str]:
    lines = []
    lat = pred["latency_ms"]
    if verdict["decision"] == "keep":
        lines.append("keep the model as it is: " + ("it meets the constraints and no compression is predicted "
                                                     "to be better enough to be worth it"
                                                     if c.any else "no compression is predicted to help enough"))
    elif verdict["decision"] == "compress":
        lines.append(f"compress with {specs[best]}: latency {_fmt_band(lat[best], 'ms')} against "
                     f"{_fmt_band(lat[0], 'ms')} uncompressed")
    else:
        what = " and ".join(describe_miss(t, m[best], c.confidence) for t, m in verdict["misses"].items()
                            if m[best] > 0)
        lines.append(f"nothing meets the constraints at {c.confidence:.0%} confidence; nearest is "
                     f"{specs[best]}, which {what}")
    if "latency_ms" in c.limits() and verdict["decision"] != "infeasible":
        p = pessimistic(pred, "latency_ms", c.confidence)[best]
        lines.append(f"latency at the {c.confidence:.0%} bound: {p:.3g} ms against a budget of {c.budget_ms:g} ms")
    return lines
