"""Published figures as labelled dataset rows (`source="published"`).

The CSVs under `shared/published/` (see its README) hold figures read from public documentation:
one metric of one configuration per line, uncompressed and compressed. `ingest` turns the
top-1 accuracy figures among them into store rows, so the predictor's accuracy component also
knows how ImageNet-scale networks react to each technique. They are never mixed silently with
measured rows: `source` is "published" (a feature, `source_published`, and a filter,
`Store.read(source=...)`), `fingerprint_id` is "published", `device` is "published" and
`citation` is the CSV's `source` column, whole.

Mapping rules (a line that matches none is skipped and reported with its reason; nothing is
guessed):

* Metric: only top-1 accuracy (`top1`, `top1_accuracy`, `Top-1`, ...). Latency, size, top-5,
  BLEU, WER, F1 ... are skipped: the accuracy target is a top-1 change.
* Unit: `fraction` (x100) or `percent`/`%`. `top1` is the compressed value as a fraction;
  `accuracy_delta_pp` = compressed - baseline, in percentage points. A value written
  "76.80 ± 0.05" keeps its centre; the spread goes into `notes`.
* Technique: a spec of our grammar as written (`tfmot_docs.csv`), or the source's own words
  through `SOURCE_TECHNIQUES` (`more_published.csv`): TFLite hosted '_quant' checkpoints are
  trained with quantization (qat-int8); post-training full-integer int8 -> ptq-int8; coremltools
  8-bit weight-only post-training -> ptq-dynamic, W8A8 training-time -> qat-int8, n-bit
  palettization -> cluster:2^n, magnitude pruning at X% -> prune:X/100. Not mapped: 16x8
  (int16-activation) quantization, which has no spec, and clustering of a subset of layers
  ("cluster:16 (last 3 Conv2D)"): our specs apply to every supported layer.
* Network: `NETWORKS`, a table of name patterns. A name without width or input size is the
  canonical network (width 1.0 at its default size; the published baselines agree, e.g.
  70.6-71.0% for MobileNet v1). TF-slim ResNet v2 (`resnet_v2_50`, `resnet_v2_101`) is
  evaluated at 299x299 (tensorflow/models research/slim README: "ResNet V2 models use
  Inception pre-processing and input image size of 299"), so it is *not* our 224 profile.
  Where a shipped zoo profile is the same network at that width and size, the row carries its
  `profile_digest` (the profile is stored with `Store.put_profile`) and `model` is the zoo key
  (`mobilenet`, `mobilenet@128`, as measured rows name it). Otherwise `profile_digest` is
  empty, `model` is the zoo key the configuration would have (`mobilenet@128-w0.25`,
  `resnet101v2@299`) or the published name for networks outside the zoo, and `macs`/`params`
  are estimated from a shipped width-1.0 profile where possible, saying so in `notes`:
  MobileNet v1 widths scale each layer's channels as Keras does (`int(c x width)`; this gives
  the paper's 41 M / 0.47 M at 0.25-224), an unshipped input size scales MACs by (size/S)^2
  from the nearest shipped size S (parameters do not depend on the input size).
* Identity: `config_id(model, technique, "published", settings)` with settings = the source
  document, the dataset and the source's own model, technique and device names, so each
  published line has its own id and re-ingesting adds nothing (ids already in the store are
  skipped). All rows use the one device "published" (the source's device is in
  `settings_json`): accuracy does not depend on it, and a device split then holds the
  published rows out as one group rather than one pseudo-device per phone.
* `measured_at` is the time of ingestion (the sources carry no dates; the citation names the
  document and the commit it was read from).

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import advisor
from advisor.errors import DatasetError, SpecError
from advisor.profile import ModelProfile
from advisor.store import SCHEMA_VERSION, Store, canonical_json, config_id, utc_now_iso
from advisor.techniques import Pipeline

PROFILES_DIR = Path(__file__).resolve().parent / "data" / "profiles"
#: Where the project keeps the published CSVs, beside the checkout.
DEFAULT_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "published"

#: Columns every published CSV must have (`runtime`, `setting` and `notes` are optional).
REQUIRED_COLUMNS = ("source", "model", "dataset", "task", "device", "technique", "metric",
                    "baseline_value", "compressed_value", "unit")

DEVICE = "published"
_MISSING = {"", "n/a", "na", "none", "not stated", "-"}
_TOP1 = re.compile(r"top[-_ ]?1(?:[-_ ]?acc(?:uracy)?)?")
_UNIT_SCALE = {"fraction": 100.0, "percent": 1.0, "%": 1.0, "pct": 1.0}
_NUMBER = re.compile(r"\s*([-+]?\d+(?:\.\d*)?|[-+]?\.\d+)\s*(?:(?:±|\+/-)\s*(\d+(?:\.\d*)?))?\s*")


class Skip(Exception):
    """A CSV line that does not become a row: `reason` is the category, `detail` the specifics."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


# ---------------------------------------------------------------------------------------------
# Techniques in the sources' own words: (technique pattern, setting pattern) -> spec or a function
# of the setting's match. Matched case-insensitively against the whole text.

@dataclass(frozen=True)
class SourceTechnique:
    technique: str
    setting: str
    spec: str  # a spec, or a format string over the setting's named groups
    why: str

    def match(self, technique: str, setting: str) -> str | None:
        if not re.fullmatch(self.technique, technique, re.IGNORECASE):
            return None
        m = re.fullmatch(self.setting, setting, re.IGNORECASE)
        if m is None:
            return None
        groups = m.groupdict()
        if "bits" in groups:
            groups["clusters"] = str(2 ** int(groups["bits"]))
        if "percent" in groups:
            groups["sparsity"] = f"{float(groups['percent']) / 100:g}"
        return self.spec.format(**groups)


SOURCE_TECHNIQUES: tuple[SourceTechnique, ...] = (
    SourceTechnique(r"8-bit quantized model \(hosted '_quant' variant\)", r".*", "qat-int8",
                    "hosted '_quant' checkpoints are separately trained with quantization"),
    SourceTechnique(r"post-training full-integer quantization", r"int8 weights, int8 activations", "ptq-int8",
                    "post-training full-integer int8"),
    SourceTechnique(r"8-bit linear quantization: weight-only \(post training\)", r"int8", "ptq-dynamic",
                    "8-bit weight-only post-training quantization (float activations)"),
    SourceTechnique(r"8-bit linear quantization: weight & activation \(training time.*\)", r"int8", "qat-int8",
                    "8-bit weights and activations, quantization-aware training"),
    SourceTechnique(r"palettization \(weight clustering\).*", r"(?P<bits>[1-8])[- ]?bits?", "cluster:{clusters}",
                    "n-bit palettization is clustering to 2^n values"),
    SourceTechnique(r"unstructured magnitude pruning.*", r"sparsity (?P<percent>\d+(?:\.\d+)?)\s*%",
                    "prune:{sparsity}", "unstructured magnitude pruning at the stated sparsity"),
)


def map_technique(technique: str, setting: str = "") -> tuple[str, str | None]:
    """(canonical spec, how it was mapped or None when written as a spec) for a source's technique.

    Raises:
        Skip: the technique has no spec in the grammar, or applies to a subset of layers.
    """
    text = technique.strip()
    scoped = re.fullmatch(r"(\S+)\s*\((.+)\)", text)
    if scoped:
        try:
            Pipeline.parse(scoped.group(1))
        except SpecError:
            pass
        else:
            raise Skip("technique applies to a subset of layers", text)
    try:
        return Pipeline.parse(text).spec, None
    except SpecError:
        pass
    for rule in SOURCE_TECHNIQUES:
        spec = rule.match(text, setting.strip())
        if spec is not None:
            try:
                canonical = Pipeline.parse(spec).spec
            except SpecError:  # e.g. 1-bit palettization: 2 clusters is the minimum
                break
            return canonical, f"technique '{text}'" + (f" ({setting.strip()})" if setting.strip() else "") + \
                f" read as {canonical}: {rule.why}"
    raise Skip("technique has no spec in the grammar", text + (f" ({setting.strip()})" if setting.strip() else ""))


# ---------------------------------------------------------------------------------------------
# Networks: published names -> zoo identity. Patterns match the whole lower-cased name with
# '-' and spaces as '_'; `width` and `size` groups, where present, override the defaults.

@dataclass(frozen=True)
class Network:
    pattern: str
    family: str
    domain: str
    zoo: str | None = None  # the zoo name of the same architecture, if any
    default_size: int | None = None
    channel_width: bool = False  # width multiplies every layer's channels as int(c x width)
    note: str | None = None


_MOBILENET_V1 = r"mobilenet_?v1(?:_(?P<width>\d\.\d+))?(?:_(?P<size>\d+))?"
NETWORKS: tuple[Network, ...] = (
    Network(_MOBILENET_V1, "mobilenet_v1", "image", "mobilenet", 224, channel_width=True),
    Network(r"mobilenet_?v2(?:_(?P<width>\d\.\d+))?(?:_(?P<size>\d+))?", "mobilenet_v2", "image", "mobilenet_v2",
            224),
    Network(r"inception_?v3", "inception", "image", "inception_v3", 299),
    Network(r"inception_?v4", "inception", "image", None, 299),
    Network(r"resnet(?:_?v1)?_?50", "resnet", "image", "resnet50", 224),
    Network(r"resnet_?v2_?50", "resnet_v2", "image", "resnet50v2", 299,
            note="TF-slim ResNet v2 is evaluated at 299x299"),
    Network(r"resnet_?v2_?101", "resnet_v2", "image", "resnet101v2", 299,
            note="TF-slim ResNet v2 is evaluated at 299x299"),
    Network(r"nasnet_?mobile", "nasnet", "image", "nasnet_mobile", 224),
    Network(r"mobilevit_?v2(?:_(?P<width>\d\.\d+))?", "mobilevit", "image"),
    Network(r"ds_cnn_l", "ds_cnn", "audio", note="DS-CNN-L keyword spotting (speech commands)"),
)


@dataclass(frozen=True)
class Identity:
    """Who a published network is in our terms."""

    model: str
    family: str
    domain: str
    input_size: int | None
    width: float | None
    profile: ModelProfile | None
    macs: int | None
    params: int | None
    notes: tuple[str, ...]


@lru_cache(maxsize=1)
def _zoo_index() -> dict[str, dict]:
    try:
        index = json.loads((PROFILES_DIR / "index.json").read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


@cache
def _profile(key: str) -> ModelProfile:
    return ModelProfile.load(PROFILES_DIR / _zoo_index()[key]["file"])


def _zoo_key(name: str, size: int | None, width: float, default_size: int | None) -> str:
    # The key measured rows use (measure.loading.zoo_key), without importing the measure side.
    key = name + (f"@{size}" if size is not None and size != default_size else "")
    return key + (f"-w{width:g}" if width != 1.0 else "")


def width_scaled(profile: ModelProfile, width: float) -> tuple[int, int]:
    """(MACs, params) of `profile` with every channel count c scaled to int(c x width).

    The image channels and the class count stay; a depthwise layer scales with its channels, a
    convolution or dense layer with its input and output channels, anything else with its output.
    """
    fixed = {profile.input_shape[-1] if profile.input_shape else None, profile.num_classes}

    def factor(channels: int | None) -> float:
        if not channels or channels in fixed:
            return 1.0
        return int(channels * width) / channels

    macs = params = 0.0
    for layer in profile.layers:
        f_in = factor(layer.input_shapes[0][-1] if layer.input_shapes and layer.input_shapes[0] else None)
        f_out = factor(layer.output_shape[-1] if layer.output_shape else None)
        if layer.type.startswith("Depthwise"):
            f = f_in
        elif layer.kernel or layer.type in ("Dense", "EinsumDense"):
            f = f_in * f_out
        else:
            f = f_out
        macs += layer.macs * f
        params += layer.params * f
    return int(round(macs)), int(round(params))


def identify(name: str) -> Identity:
    """Map a published network name to our zoo identity (see the module docstring).

    Raises:
        Skip: a network `NETWORKS` does not know.
    """
    text = re.sub(r"[\s\-]+", "_", name.strip().lower())
    for net in NETWORKS:
        m = re.fullmatch(net.pattern, text)
        if m is not None:
            break
    else:
        raise Skip("network not in published.NETWORKS", name)
    groups = m.groupdict()
    # An unqualified zoo network is the canonical width 1.0; outside the zoo, width is what is stated.
    width = float(groups["width"]) if groups.get("width") else (1.0 if net.zoo else None)
    size = int(groups["size"]) if groups.get("size") else net.default_size
    notes = [net.note] if net.note else []
    if net.zoo is None:
        return Identity(text, net.family, net.domain, size, width, None, None, None, tuple(notes))

    index = _zoo_index()
    entries = {k: e for k, e in index.items() if k.split("@")[0] == net.zoo}
    shipped = {int(e["input_size"]): k for k, e in entries.items()}
    zoo_default = next((int(e["input_size"]) for e in entries.values() if e.get("default")), None)
    width = 1.0 if width is None else width
    model = _zoo_key(net.zoo, size, width, zoo_default)
    if width == 1.0 and size in shipped:
        profile = _profile(shipped[size])
        notes.append(f"zoo profile {shipped[size]}")
        return Identity(profile.model, net.family, net.domain, size, width, profile, profile.macs, profile.params,
                        tuple(notes))
    macs = params = None
    if shipped and size is not None and (width == 1.0 or net.channel_width):
        near = min(shipped, key=lambda s: (abs(s - size), -s))
        base = _profile(shipped[near])
        macs, params = width_scaled(base, width) if width != 1.0 else (base.macs, base.params)
        how = [f"macs/params estimated from zoo profile {shipped[near]} (not a profile of this network)"]
        if width != 1.0:
            how.append(f"channels scaled to int(c x {width:g})")
        if near != size:
            macs = int(round(macs * (size / near) ** 2))
            if len({int(index[k]["params"]) for k in shipped.values()}) != 1:
                params = None  # parameters depend on the input size here: no estimate
            how.append(f"MACs x ({size}/{near})^2")
        notes.append(", ".join(how))
    elif width != 1.0:
        notes.append(f"width {width:g}: no estimate of macs/params")
    return Identity(model, net.family, net.domain, size, width, None, macs, params, tuple(notes))


# ---------------------------------------------------------------------------------------------
# Values.


def _number(text: str, what: str) -> tuple[float, float | None]:
    m = _NUMBER.fullmatch(text or "")
    if m is None:
        raise Skip("value is not a number", f"{what} {text!r}")
    value = float(m.group(1))
    if not math.isfinite(value):
        raise Skip("value is not a number", f"{what} {text!r}")
    return value, float(m.group(2)) if m.group(2) else None


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _present(value: str) -> str | None:
    return None if value.strip().lower() in _MISSING else value.strip()


# ---------------------------------------------------------------------------------------------
# Reading and mapping.


def read_csv(path: str | Path) -> list[tuple[int, dict[str, str]]]:
    """The lines of one published CSV as (line number, fields), header checked.

    Raises:
        DatasetError: a missing or unreadable file, missing columns, or a line with the wrong
            number of fields.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"published CSV {path} does not exist (pass the path of a CSV from shared/published/)")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise DatasetError(
                    f"{path}: not a published-figures CSV: missing column(s) {', '.join(missing)} "
                    f"(needs: {', '.join(REQUIRED_COLUMNS)}; found: {', '.join(header) or 'no header'})")
            reader.fieldnames = header
            lines = []
            for record in reader:
                if None in record or any(record.get(c) is None for c in REQUIRED_COLUMNS):
                    raise DatasetError(f"{path}, line {reader.line_num}: {len(header)} fields expected "
                                       "(a stray or missing comma?)")
                lines.append((reader.line_num, {k: v for k, v in record.items() if k is not None}))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read published CSV {path}: {exc}") from None
    return lines


def map_line(record: Mapping[str, str], measured_at: str) -> tuple[dict[str, object], ModelProfile | None]:
    """One CSV line -> (store row, the zoo profile it points at or None).

    Raises:
        Skip: the line is not a top-1 accuracy figure, or its technique, unit, values or
            network do not map (the reason says which).
    """
    metric = _text(record.get("metric"))
    if not _TOP1.fullmatch(metric.lower()):
        raise Skip("metric is not top-1 accuracy", metric)
    technique, how = map_technique(_text(record.get("technique")), _text(record.get("setting")))
    unit = _text(record.get("unit")).lower()
    if unit not in _UNIT_SCALE:
        raise Skip("unit is not fraction or percent", unit or "(empty)")
    scale = _UNIT_SCALE[unit]
    base, base_spread = _number(_text(record.get("baseline_value")), "baseline")
    comp, comp_spread = _number(_text(record.get("compressed_value")), "compressed")
    if not (0.0 <= base * scale <= 100.0 and 0.0 <= comp * scale <= 100.0):
        raise Skip("value out of range for its unit", f"{base:g} -> {comp:g} {unit}")
    ident = identify(_text(record.get("model")))

    source = _text(record.get("source"))
    if not source:
        raise Skip("no source to cite")
    dataset = _present(_text(record.get("dataset")))
    dataset = dataset.lower() if dataset else None
    device = _present(_text(record.get("device")))
    settings = {"source_doc": source, "dataset": dataset, "published_model": _text(record.get("model")),
                "published_technique": _text(record.get("technique")),
                "published_setting": _present(_text(record.get("setting"))), "published_device": device}
    notes = [n for n in (_text(record.get("notes")),) if n]
    if how:
        notes.append(how)
    notes.extend(ident.notes)
    for label, spread in (("baseline", base_spread), ("compressed", comp_spread)):
        if spread is not None:
            notes.append(f"{label} reported with a spread of ±{spread:g} {unit}; the centre is used")
    if dataset is None:
        notes.append("dataset not stated by the source")
    row: dict[str, object] = {
        "schema_version": SCHEMA_VERSION,
        "config_id": config_id(ident.model, technique, DEVICE, settings),
        "status": "ok", "source": "published", "citation": source,
        "model": ident.model, "model_kind": "published", "family": ident.family, "domain": ident.domain,
        "input_size": ident.input_size, "width": ident.width,
        "profile_digest": ident.profile.digest if ident.profile else None,
        "macs": ident.macs, "params": ident.params,
        "technique": technique, "device": DEVICE, "settings_json": canonical_json(settings), "dataset": dataset,
        "top1": round(comp * scale / 100.0, 8),
        "accuracy_delta_pp": round((comp - base) * scale, 6),
        "fingerprint_id": "published", "tool_version": advisor.__version__, "measured_at": measured_at,
        "notes": "; ".join(notes) or None,
    }
    return row, ident.profile


@dataclass(frozen=True)
class Skipped:
    """A line that was not ingested, and why."""

    file: str
    line: int
    model: str
    metric: str
    reason: str
    detail: str

    def to_dict(self) -> dict[str, object]:
        return dict(vars(self))


@dataclass
class IngestReport:
    """What `ingest` read, mapped, skipped and wrote."""

    files: list[str]
    lines: int = 0
    rows: list[dict[str, object]] = field(default_factory=list)  # every mapped row
    skipped: list[Skipped] = field(default_factory=list)
    new: int = 0  # mapped rows not yet in the store (written unless dry_run)
    already_present: int = 0
    profiles: list[str] = field(default_factory=list)  # zoo profiles the rows point at
    store: str | None = None
    dry_run: bool = False

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(s.reason for s in self.skipped).most_common())

    def mapped_by(self, column: str) -> dict[str, int]:
        return dict(Counter(str(r.get(column)) for r in self.rows).most_common())

    def to_dict(self) -> dict[str, object]:
        return {"files": self.files, "store": self.store, "dry_run": self.dry_run, "lines": self.lines,
                "mapped": len(self.rows), "new": self.new, "already_present": self.already_present,
                "skipped": len(self.skipped), "skipped_by_reason": self.skipped_by_reason(),
                "mapped_by_technique": self.mapped_by("technique"), "mapped_by_family": self.mapped_by("family"),
                "profiles": self.profiles, "skipped_lines": [s.to_dict() for s in self.skipped]}


def collect(paths: Sequence[str | Path], measured_at: str | None = None
            ) -> tuple[IngestReport, dict[str, ModelProfile]]:
    """Read and map every line of `paths` (no store involved): the report and profiles by digest.

    Raises:
        DatasetError: a missing or malformed CSV (nothing is mapped then).
    """
    if not paths:
        raise DatasetError("no published CSVs given")
    stamp = measured_at or utc_now_iso()
    report = IngestReport(files=[str(p) for p in paths])
    profiles: dict[str, ModelProfile] = {}
    seen: set[str] = set()
    parsed = [(Path(p), read_csv(p)) for p in paths]  # every file checked before any is mapped
    for path, lines in parsed:
        for number, record in lines:
            report.lines += 1
            try:
                row, profile = map_line(record, stamp)
                if row["config_id"] in seen:
                    raise Skip("duplicate of an earlier line", str(row["config_id"]))
            except Skip as skip:
                report.skipped.append(Skipped(path.name, number, _text(record.get("model")),
                                              _text(record.get("metric")), skip.reason, skip.detail))
                continue
            seen.add(str(row["config_id"]))
            report.rows.append(row)
            if profile is not None:
                profiles[profile.digest] = profile
    report.profiles = sorted({str(r["model"]) for r in report.rows if r["profile_digest"]})
    return report, profiles


def ingest(paths: Sequence[str | Path], store: Store, *, dry_run: bool = False,
           measured_at: str | None = None) -> IngestReport:
    """Map the published CSVs and append the rows the store does not hold yet (idempotent).

    The zoo profiles the new rows point at are stored first (`Store.put_profile`), so the
    predictor can featurise them. With `dry_run`, nothing is written.

    Raises:
        DatasetError: a missing or malformed CSV; StoreError: a row the schema refuses (a bug
            here: nothing is written then).
    """
    report, profiles = collect(paths, measured_at)
    report.store, report.dry_run = str(store.root), dry_run
    have = store.ids(status=None)
    fresh = [r for r in report.rows if r["config_id"] not in have]
    report.new, report.already_present = len(fresh), len(report.rows) - len(fresh)
    if dry_run or not fresh:
        return report
    for digest in sorted({str(r["profile_digest"]) for r in fresh if r["profile_digest"]}):
        store.put_profile(profiles[digest])
    store.append(fresh)
    return report


def default_paths(directory: Path | None = None) -> list[Path]:
    """The CSVs in `directory` (default: the project's shared/published/), empty if there is none."""
    directory = DEFAULT_DIR if directory is None else directory
    return sorted(directory.glob("*.csv")) if directory.is_dir() else []


def summary_lines(report: IngestReport) -> Iterable[str]:
    """The report for people."""
    verb = "would add" if report.dry_run else "added"
    yield (f"read {report.lines} lines from {len(report.files)} file(s): {len(report.rows)} top-1 figures "
           f"mapped, {len(report.skipped)} skipped")
    yield f"  {verb} {report.new} row(s) to {report.store} ({report.already_present} already there)"
    if report.rows:
        yield "  by technique: " + ", ".join(f"{k} {v}" for k, v in report.mapped_by("technique").items())
        yield "  by family: " + ", ".join(f"{k} {v}" for k, v in report.mapped_by("family").items())
    if report.profiles:
        yield "  zoo profiles: " + ", ".join(report.profiles)
    for reason, count in report.skipped_by_reason().items():
        yield f"  skipped {count:>3}: {reason}"
