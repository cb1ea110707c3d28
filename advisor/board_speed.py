"""Latency on a board of an architecture no training row came from: scaled by compute throughput.

Trees cannot extrapolate a device feature beyond what training saw. Asked about an ARM board, a
bundle trained on x86 machines answers as if the board were one of them: ResNet-50 at 224 on a
Jetson TX2 came out at 57 ms, where one Cortex-A57 core's FP32 peak (2.0 GHz x 8 FLOPs per cycle,
16 GFLOP/s) cannot do its 8.2 GFLOPs in under half a second. For such a device (no training rows,
no calibration, an architecture absent from the training machines, and a profile that publishes
its clock and FP32 FLOPs per cycle, or a fingerprint that reads its clock and names its cores:
`spec_sheet`), the latency is predicted on the reference machine (the training machine with
most rows) and scaled:

    latency_board = latency_ref(1 thread) x (G_ref / G_board) / t_board ** PARALLEL_EXPONENT

  * G_ref: the reference machine's effective FP32 throughput per thread, read from the bundle
    itself: 2 x MACs of a reference network (ResNet-50 at 224, uncompressed, 1 thread) over its
    predicted latency there;
  * G_board: the board's clock x FP32 FLOPs per cycle per core (its profile's `specs`) x
    `ARM_EFFICIENCY`, the share of NEON peak an inference engine's float kernels reach (an
    assumption, not a measurement: 0.6);
  * t_board: the threads the board runs (at most its cores), speeding it up by t ** 0.85. The
    reference is read at one thread: how its own threads scale is its business (a 2-vCPU VM's
    two threads may share one core), not the board's.

The compression ratios (int8 against float, ...) stay the reference machine's: nothing here knows
how an ARM core's int8 kernels compare. The p10-p90 band is widened to at least `BAND` either
side of the scaled median. It is a spec-sheet estimate, said so in the answer, until the board
is measured (`plans/adapt-device.toml` and a retraining, or `advisor calibrate`). Checked against
published Pixel 2 and Pixel 3 TFLite latencies (`bench/board_scaling.py`): a median 1.00x the
published figure, where the unscaled bundle said 0.088x.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from advisor import features as F

#: Share of the NEON FP32 peak whole-network float inference reaches on an ARM core (assumed).
ARM_EFFICIENCY = 0.6
#: A board's threads (up to its cores) speed it up as threads ** this.
PARALLEL_EXPONENT = 0.85
#: The band is at least this factor either side of the scaled median.
BAND = 2.5
#: The network whose predicted latency on the reference machine gives its throughput.
REFERENCE_NETWORK = "resnet50"
#: FP32 FLOPs per cycle per core (NEON/ASIMD fused multiply-adds: lanes x 2 x pipes) of the ARM
#: cores a fingerprint names (`advisor.fingerprint.ARM_CORES`), for a board no shipped profile
#: describes. The same values as the shipped profiles' `cpu_fp32_flops_per_cycle`.
FP32_FLOPS_PER_CYCLE: dict[str, int] = {
    "Cortex-A53": 4, "Cortex-A55": 4, "Cortex-A35": 4,
    "Cortex-A57": 8, "Cortex-A72": 8, "Cortex-A73": 8, "Cortex-A75": 8, "NVIDIA Denver 2": 8,
    "Cortex-A76": 16, "Cortex-A77": 16, "Cortex-A78": 16, "Cortex-A78AE": 16, "Cortex-X1": 16,
    "Neoverse-N1": 16, "Cortex-A710": 16, "Neoverse-N2": 16, "NVIDIA Carmel": 16,
}


@dataclass(frozen=True)
class SpecSheet:
    """What a board's throughput is estimated from, and where that came from."""

    ghz: float
    flops_per_cycle: float
    cores: int
    source: str  # for the answer's note
    profile: str | None  # the shipped profile it came from, if any


def spec_sheet(fp: Mapping[str, Any]) -> SpecSheet | None:
    """A board's clock, FP32 FLOPs per cycle and cores: from the shipped profile whose fingerprint
    this is; else from the fingerprint itself (its fastest core's `cpu_max_mhz` and the FLOPs per
    cycle of the cores `cpu_model` names), as a board reached over SSH reports it; else from a
    shipped profile with the same CPU (a memory variant of a profiled board, probed by an agent
    too old to read the clock). None when none of them says enough."""
    from advisor import devices

    profile = _profile_for(fp)
    if profile is not None and _has_specs(profile.specs):
        return _from_profile(profile, f"the {profile.title} profile's specifications")
    flops = [v for name, v in FP32_FLOPS_PER_CYCLE.items() if _names_core(fp.get("cpu_model"), name)]
    cores = fp.get("logical_cpus") or fp.get("online_cpus")
    if fp.get("cpu_max_mhz") and flops and cores:
        return SpecSheet(ghz=float(fp["cpu_max_mhz"]) / 1000.0, flops_per_cycle=float(max(flops)), cores=int(cores),
                         source=f"the board's fingerprint ({fp.get('cpu_model')} at {fp['cpu_max_mhz']} MHz)",
                         profile=None)
    same_cpu = [p for p in devices.profiles().values() if _has_specs(p.specs) and fp.get("cpu_model")
                and p.fingerprint.get("cpu_model") == fp.get("cpu_model")
                and p.fingerprint.get("machine") == fp.get("machine")]
    if same_cpu:
        return _from_profile(same_cpu[0], f"the {same_cpu[0].title} profile's specifications (the same CPU)")
    return None


def _has_specs(specs: Mapping[str, Any] | None) -> bool:
    return bool(specs and specs.get("cpu_max_ghz") and specs.get("cpu_fp32_flops_per_cycle") and specs.get("cpu_cores"))


def _from_profile(profile: Any, source: str) -> SpecSheet:
    specs = profile.specs
    return SpecSheet(ghz=float(specs["cpu_max_ghz"]), flops_per_cycle=float(specs["cpu_fp32_flops_per_cycle"]),
                     cores=int(specs["cpu_cores"]), source=source, profile=profile.name)


def _names_core(cpu_model: Any, core: str) -> bool:
    """Whether a fingerprint's cpu_model ("Cortex-A72", "4x Cortex-A57 + 2x NVIDIA Denver 2") has `core`."""
    if not cpu_model:
        return False
    parts = [part.strip().split("x ", 1)[-1] if part.strip()[:1].isdigit() else part.strip()
             for part in str(cpu_model).split("+")]
    return core in parts


@dataclass(frozen=True)
class BoardScaling:
    """How one board's latency follows from the reference machine's."""

    board: str
    reference: str
    source: str  # where the board's specifications came from
    board_gflops: float  # effective FP32 GFLOP/s per thread, from the spec sheet
    reference_gflops: float  # effective FP32 GFLOP/s per thread, from the bundle's prediction
    threads_board: int

    @property
    def factor(self) -> float:
        """Board latency over the reference machine's single-thread latency."""
        return self.reference_gflops / self.board_gflops / self.threads_board ** PARALLEL_EXPONENT

    def note(self) -> str:
        return (f"{self.board}: no training row came from this architecture, so the prediction extrapolates: "
                f"latency is the reference machine's ({self.reference}) scaled by compute: "
                f"{self.board_gflops:.1f} GFLOP/s per thread from {self.source} (clock x FP32 FLOPs per cycle x "
                f"{ARM_EFFICIENCY:g} assumed efficiency) against {self.reference_gflops:.0f} on the reference, "
                f"×{self.factor:.3g} at {self.threads_board} thread(s); p10–p90 widened to at least "
                f"÷{BAND:g}/×{BAND:g}. A spec-sheet estimate until the board is measured: run "
                "`advisor calibrate --device NAME` on it (a device in devices.toml), or check the answer with --verify")


def _arch(fp: Mapping[str, Any]) -> str | None:
    machine = fp.get("machine")
    return F.ARCHES.get(str(machine).lower()) if machine is not None else None


def _profile_for(fp: Mapping[str, Any]) -> Any | None:
    """The shipped board profile whose fingerprint this is, if any."""
    from advisor import devices
    from advisor.fingerprint import fingerprint_id

    fid = fingerprint_id(dict(fp))
    return next((p for p in devices.profiles().values() if p.fingerprint_id == fid), None)


#: Matrix units some CPUs have beside their vector units (Intel AMX). Measured on the Xeon
#: 62bed0af3796, which has them, int8 convolutions run far faster against float than on the AMD
#: machines without: with that Xeon as the reference, the 19 published phone figures came out at a
#: median 0.69 of the truth and 16 of 19 in band, int8 ones at 0.2-0.6 (2026-12-06 18:56 UTC), against
#: 0.89 and 18 of 19 with the same bundle and the AMD EPYC bb1a0f0355f1 as reference. A board without
#: such a unit gets a reference without one.
MATRIX_UNITS = frozenset({"amx_tile", "amx_int8", "amx_bf16"})


def reference_machine(predictor: Any, by_device: Mapping[str, int],
                      board_flags: Iterable[str] = ()) -> tuple[str, dict] | None:
    """(name, fingerprint) of the training machine whose fingerprint is known with most rows,
    among those with no matrix unit (`MATRIX_UNITS`) the board lacks where there are any."""
    devices = getattr(predictor, "devices_", {}) or {}
    lacking = MATRIX_UNITS - set(board_flags)

    def alike(entry: Mapping[str, Any]) -> bool:
        return not lacking & set(entry["fingerprint"].get("isa_flags") or ())

    known = [(alike(entry), by_device.get(name, 0), name) for name, entry in devices.items()
             if entry.get("fingerprint")]
    if not known:
        return None
    *_, name = max(known)
    return name, dict(devices[name]["fingerprint"])


_GFLOPS: dict[tuple[str, str], float] = {}


def reference_gflops(bundle: Any, reference: str) -> float:
    """Effective FP32 GFLOP/s per thread of the reference machine, from the bundle's own prediction
    (once per bundle version and machine)."""
    key = (bundle.version, reference)
    if key not in _GFLOPS:
        _GFLOPS[key] = _predicted_gflops(bundle, reference)
    return _GFLOPS[key]


def _predicted_gflops(bundle: Any, reference: str) -> float:
    from advisor.lookup import resolve_profile

    devices = bundle.predictor.devices_
    profile = resolve_profile(REFERENCE_NETWORK)
    X = F.feature_matrix(profile, ["none"], F.device_features(devices[reference]["fingerprint"], 1))
    latency_ms = float(bundle.predict(X)["latency"][0, 1])
    return 2.0 * profile.macs / (latency_ms * 1e-3) / 1e9


_SCALINGS: dict[tuple[str, str, int], BoardScaling | None] = {}


def board_scaling(bundle: Any, fp: Mapping[str, Any], threads: int) -> BoardScaling | None:
    """How to scale the reference machine's latency to this device, or None where the bundle's own
    answer stands (a machine it was trained on, an architecture it has rows of, no spec sheet).
    Decided once per bundle version, device and thread count: an answer asks for every batch it
    scores and for its explanation, and a board's answer reads the shipped profiles to decide."""
    from advisor.fingerprint import fingerprint_id

    key = (bundle.version, fingerprint_id(dict(fp)), int(threads))
    if key not in _SCALINGS:
        _SCALINGS[key] = _decide(bundle, fp, threads)
    return _SCALINGS[key]


def _decide(bundle: Any, fp: Mapping[str, Any], threads: int) -> BoardScaling | None:
    predictor = bundle.predictor
    arch = _arch(fp)
    trained = getattr(predictor, "latency_machines_", None)  # columns: the device block less threads
    if arch is None or trained is None or not len(trained):
        return None
    column = [n for n in F.DEVICE_NAMES if n not in ("threads", "thread_share")].index(arch)
    if bool((np.asarray(trained)[:, column] == 1.0).any()):
        return None
    sheet = spec_sheet(fp)
    if sheet is None:
        return None
    by_device = (bundle.card.get("training_data") or {}).get("by_device") or {}
    found = reference_machine(predictor, by_device, fp.get("isa_flags") or ())
    if found is None:
        return None
    name, _ = found
    board = sheet.profile or str(fp.get("board") or fp.get("cpu_model") or "this board")
    return BoardScaling(board=board, reference=name, source=sheet.source,
                        board_gflops=sheet.ghz * sheet.flops_per_cycle * ARM_EFFICIENCY,
                        reference_gflops=reference_gflops(bundle, name),
                        threads_board=max(1, min(threads, sheet.cores)))


def scaled_prediction(bundle: Any, X: np.ndarray, scaling: BoardScaling) -> dict[str, np.ndarray]:
    """The bundle's predictions for rows X (all on the board), latency from the reference machine's
    scaled by `scaling`; energy unknown (no power model for the board)."""
    devices = bundle.predictor.devices_
    ref_features = F.device_features(devices[scaling.reference]["fingerprint"], 1)
    X_ref = np.array(X, dtype=np.float64, copy=True)
    X_ref[:, F.DEVICE_BLOCK] = np.array([ref_features[n] for n in F.DEVICE_NAMES])
    pred = dict(bundle.predict(X))
    latency = np.asarray(bundle.predict(X_ref)["latency"], dtype=np.float64) * scaling.factor
    median = latency[:, 1]
    pred["latency"] = np.column_stack([np.minimum(latency[:, 0], median / BAND), median,
                                       np.maximum(latency[:, 2], median * BAND)])
    if "energy" in pred:
        pred["energy"] = np.full_like(latency, np.nan)
    return pred
