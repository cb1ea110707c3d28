"""The dataset store: the measurement rows the predictor trains on.

An append-only directory of Parquet shards under `<root>/measurements/`. Each `append` writes
one new shard atomically (temp file in the same directory, fsync, `os.replace`), so a crash
loses at most the shard in flight. Rows are keyed by `config_id`, a stable hash of the
configuration, so a campaign can resume and `read()` never returns a configuration twice.
A failed measurement is a row too (status "failed", with its error). Beside the shards,
`profiles/<digest>.json` holds each row's layer profile and `devices/<fingerprint id>.json` each
measuring device's full fingerprint (a row's `device_fingerprint` key, taken out on append).

Readers ignore leftover `*.tmp` files, and skip (with a `StoreWarning`, never deleting) a
shard that cannot be read. Nothing here imports TensorFlow.

Schema history (`SCHEMA_VERSION`, stored in every row and in each shard's metadata):
  1: the first schema (the `COLUMNS` registry below).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from advisor.atomic import fsync_dir, write_bytes_atomic
from advisor.errors import StoreError
from advisor.profile import ModelProfile

SCHEMA_VERSION = 1

# Key under which each shard records the schema version of its rows (Parquet key-value metadata).
_VERSION_KEY = b"compression_advisor.schema_version"
_SHARD_DIR = "measurements"
_MAX_REPORTED = 20

STATUSES = ("ok", "failed")
SOURCES = ("measured", "published")


class StoreWarning(UserWarning):
    """A shard that could not be read and was skipped (it is left on disk untouched)."""


# ---------------------------------------------------------------------------------------------
# Value checks: each takes a coerced, non-missing value and returns a problem or None.


def _check_hex16(value: object) -> str | None:
    return None if re.fullmatch(r"[0-9a-f]{16}", str(value)) else "must be 16 lowercase hex characters"


def _check_finetune(value: object) -> str | None:
    ok = value in ("none", "random") or re.fullmatch(r"dataset:\S+", str(value))
    return None if ok else "must be 'none', 'random' or 'dataset:<name>'"


def _check_iso_utc(value: object) -> str | None:
    text = str(value)
    try:
        # Python 3.10's fromisoformat does not accept a trailing "Z".
        stamp = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return "must be an ISO-8601 timestamp"
    offset = stamp.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        return "must be in UTC (end in 'Z' or '+00:00')"
    return None


def _check_json_object(value: object) -> str | None:
    try:
        parsed = json.loads(str(value))
    except ValueError:
        return "must be a JSON object (not valid JSON)"
    return None if isinstance(parsed, dict) else "must be a JSON object"


@dataclass(frozen=True)
class Column:
    """One field of the row schema.

    `required` fields must be present in every row; `required_if_ok_measured` ones only in
    rows with status "ok" and source "measured". `lo`/`hi` bound numbers (and each element of
    a list); `choices` limits the values; `json_text` columns also accept a mapping, stored as
    canonical JSON; `check` is any further rule on the value.
    """

    name: str
    kind: str  # "str" | "int" | "float" | "bool" | "list_float"
    required: bool
    doc: str
    required_if_ok_measured: bool = False
    lo: float | None = None
    hi: float | None = None
    choices: tuple[object, ...] = ()
    json_text: bool = False
    check: Callable[[object], str | None] | None = None


def _columns(*cols: Column) -> dict[str, Column]:
    registry: dict[str, Column] = {}
    for col in cols:
        if col.name in registry:
            raise ValueError(f"duplicate column {col.name!r}")
        if col.kind not in _KINDS:
            raise ValueError(f"column {col.name!r}: unknown kind {col.kind!r} (valid: {sorted(_KINDS)})")
        registry[col.name] = col
    return registry


# ---------------------------------------------------------------------------------------------
# Kinds: how a Python value becomes a stored value, and its Arrow type.


class _Bad(Exception):
    """A value of the wrong type (internal)."""


def _is_number(value: object) -> bool:
    numeric = isinstance(value, (int, float, np.integer, np.floating))
    return numeric and not isinstance(value, (bool, np.bool_))


def _as_str(value: object) -> str:
    if not isinstance(value, str):
        raise _Bad(f"expected a string, got {type(value).__name__} {value!r}")
    return value


def _as_int(value: object) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise _Bad(f"expected an integer, got {type(value).__name__} {value!r}")
    return int(value)


def _as_float(value: object) -> float:
    if not _is_number(value):
        raise _Bad(f"expected a number, got {type(value).__name__} {value!r}")
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        raise _Bad(f"must be finite (got {number})")
    return number


def _as_bool(value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise _Bad(f"expected a boolean, got {type(value).__name__} {value!r}")
    return bool(value)


def _as_list_float(value: object) -> list[float]:
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise _Bad(f"expected a list of numbers, got {type(value).__name__}")
    out = []
    for i, item in enumerate(value):
        try:
            out.append(_as_float(item))
        except _Bad as exc:
            raise _Bad(f"element {i}: {exc}") from None
    return out


@dataclass(frozen=True)
class _Kind:
    coerce: Callable[[object], object]
    arrow: pa.DataType


_KINDS: dict[str, _Kind] = {
    "str": _Kind(_as_str, pa.string()),
    "int": _Kind(_as_int, pa.int64()),
    "float": _Kind(_as_float, pa.float64()),
    "bool": _Kind(_as_bool, pa.bool_()),
    "list_float": _Kind(_as_list_float, pa.list_(pa.float64())),
}


COLUMNS: dict[str, Column] = _columns(
    # Identity
    Column("schema_version", "int", True, "Row schema version.", choices=(SCHEMA_VERSION,)),
    Column("config_id", "str", True, "config_id(model, technique, device, settings).", check=_check_hex16),
    Column("baseline_config_id", "str", False, "config_id of the uncompressed baseline row.",
           check=_check_hex16),
    Column("status", "str", True, "'ok' or 'failed'.", choices=STATUSES),
    Column("error", "str", False, "What went wrong (required when status is 'failed')."),
    Column("source", "str", True, "'measured' here or 'published' in a paper.", choices=SOURCES),
    Column("citation", "str", False, "Where a published number comes from."),
    # Model
    Column("model", "str", True, "Canonical model: zoo name, 'file:<name>@<sha>' or a sampled id."),
    Column("model_kind", "str", True, "'zoo', 'file', 'sampled' or 'published'.",
           choices=("zoo", "file", "sampled", "published")),
    Column("family", "str", True, "Architecture family (e.g. mobilenet_v2)."),
    Column("domain", "str", True, "'image', 'text', 'audio' or 'other'."),
    Column("input_size", "int", False, "Input resolution (pixels per side) or length.", lo=1),
    Column("width", "float", False, "Width multiplier.", lo=0.0),
    Column("weights", "str", False, "Where the weights came from.",
           choices=("imagenet-cached", "random", "trained", "file")),
    Column("profile_digest", "str", False, "Digest of the model profile."),
    Column("macs", "int", False, "Multiply-accumulates of one inference.", lo=0),
    Column("params", "int", False, "Parameter count.", lo=0),
    # Configuration
    Column("technique", "str", True, "Canonical technique spec (e.g. 'prune:0.8+ptq-int8')."),
    Column("finetune", "str", False, "'none', 'random' or 'dataset:<name>'.", check=_check_finetune),
    Column("device", "str", True, "Device name."),
    Column("threads", "int", False, "Interpreter threads.", lo=1),
    Column("settings_json", "str", False, "All settings hashed into config_id, as JSON.",
           json_text=True, check=_check_json_object),
    Column("dataset", "str", False, "Evaluation / fine-tuning dataset."),
    # Size
    Column("size_bytes", "int", False, "Size of the .tflite file.", required_if_ok_measured=True, lo=0),
    Column("size_gzip_bytes", "int", False, "Size after gzip.", lo=0),
    # Memory
    Column("peak_memory_bytes", "int", False, "Peak resident memory growth while running.", lo=0),
    Column("arena_bytes", "int", False, "Interpreter tensor arena.", lo=0),
    # Latency (ms)
    Column("latency_ms_mean", "float", False, "Mean latency (ms).", lo=0),
    Column("latency_ms_median", "float", False, "Median latency (ms).", required_if_ok_measured=True,
           lo=0),
    Column("latency_ms_p90", "float", False, "90th percentile latency (ms).", lo=0),
    Column("latency_ms_min", "float", False, "Minimum latency (ms).", lo=0),
    Column("latency_ci95_halfwidth_rel", "float", False, "95% CI half-width / median.", lo=0),
    Column("latency_runs", "int", False, "Timed runs.", lo=0),
    Column("latency_rule_met", "bool", False, "Whether the stopping rule was met."),
    Column("latency_rounds_ms", "list_float", False, "Per-round medians (ms).", lo=0),
    Column("latency_round_spread_rel", "float", False, "(max - min) / median of round medians.", lo=0),
    Column("cpu_other_share", "float", False, "Share of all cores' time other processes used while this was "
           "timed (0 quiet, 1 saturated): a loaded machine measures contention, not the model.", lo=0, hi=1),
    Column("cpu_wait_share", "float", False, "Time the timed threads waited for a CPU, as a share of the timing "
           "window (/proc schedstat; 0: never kept waiting). The contention signal the predictor trusts.", lo=0),
    Column("latency_raw_ms", "list_float", False, "Every timed run (ms).", lo=0),
    Column("latency_ratio_to_baseline", "float", False, "Median / baseline median.", lo=0),
    # Energy
    Column("energy_mj", "float", False, "Energy of one inference (mJ).", lo=0),
    Column("energy_note", "str", False, "Why energy is missing or how it was derived."),
    Column("energy_sensor", "str", False, "Sensor backend."),
    Column("idle_power_w", "float", False, "Idle power (W).", lo=0),
    Column("active_power_w", "float", False, "Power while running (W).", lo=0),
    # Quality (fractions)
    Column("top1", "float", False, "Top-1 accuracy (fraction).", lo=0, hi=1),
    Column("top5", "float", False, "Top-5 accuracy (fraction).", lo=0, hi=1),
    Column("precision", "float", False, "Precision (fraction).", lo=0, hi=1),
    Column("recall", "float", False, "Recall (fraction).", lo=0, hi=1),
    Column("f1", "float", False, "F1 score (fraction).", lo=0, hi=1),
    Column("eval_samples", "int", False, "Samples evaluated.", lo=0),
    Column("accuracy_delta_pp", "float", False, "Compressed minus baseline top-1 (percentage points)."),
    # Provenance
    Column("fingerprint_id", "str", True, "Machine fingerprint id ('published' for published rows)."),
    Column("cpu_model", "str", False, "CPU model name."),
    Column("logical_cpus", "int", False, "Logical CPUs.", lo=1),
    Column("machine", "str", False, "Machine architecture (e.g. aarch64)."),
    Column("os", "str", False, "Operating system."),
    Column("accelerator", "str", False, "Accelerator, if any."),
    Column("versions_json", "str", False, "Library versions, as JSON.",
           json_text=True, check=_check_json_object),
    Column("tool_version", "str", True, "compression-advisor version that wrote the row."),
    Column("measured_at", "str", True, "ISO-8601 UTC timestamp of the measurement.",
           check=_check_iso_utc),
    Column("notes", "str", False, "Free text."),
    Column("extra_json", "str", False, "Keys this schema does not know, as JSON (kept, not lost).",
           json_text=True, check=_check_json_object),
)

ARROW_SCHEMA = pa.schema([pa.field(c.name, _KINDS[c.kind].arrow) for c in COLUMNS.values()])


# ---------------------------------------------------------------------------------------------
# Canonical JSON and the configuration id.


def _plain(value: object) -> object:
    """Make a value JSON-ready and canonical: numpy scalars unwrapped, None keys dropped."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    # 1.0 and 1 are the same setting; hash them the same.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def canonical_json(value: Mapping[str, object]) -> str:
    """Serialise a mapping canonically: sorted keys, no whitespace, None-valued keys dropped.

    Raises:
        StoreError: if a value cannot be written as JSON (NaN, infinity, arbitrary objects).
    """
    try:
        return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot write as JSON: {exc}") from None


def config_id(model: str, technique: str, device: str, settings: Mapping[str, object]) -> str:
    """The stable id of one configuration: first 16 hex of sha256 over canonical JSON.

    Settings whose value is None are dropped first, so adding an optional setting later
    does not change the ids of existing rows; key order does not matter.

    Raises:
        StoreError: on an empty model, technique or device, or settings that are not JSON.
    """
    for name, value in (("model", model), ("technique", technique), ("device", device)):
        if not isinstance(value, str) or not value:
            raise StoreError(f"config_id: {name} must be a non-empty string (got {value!r})")
    payload = canonical_json(
        {"model": model, "technique": technique, "device": device, "settings": dict(settings)}
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def utc_now_iso() -> str:
    """The current time as an ISO-8601 UTC string (for `measured_at`)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# Row validation.


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and math.isnan(value))


def _bound_problem(col: Column, value: object) -> str | None:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if col.lo is not None and item < col.lo:  # type: ignore[operator]
            return f"must be >= {col.lo:g} (got {item!r})"
        if col.hi is not None and item > col.hi:  # type: ignore[operator]
            return f"must be <= {col.hi:g} (got {item!r})"
    return None


def _field(col: Column, value: object, required: bool) -> tuple[object, str | None]:
    """Coerce one field to its stored form; return (value, problem)."""
    if _is_missing(value):
        if not required:
            return None, None
        if value is None or value is pd.NA:
            return None, "is required"
        return None, "is NaN; a number is required"
    if col.json_text and isinstance(value, Mapping):
        try:
            value = canonical_json(value)
        except StoreError as exc:
            return None, str(exc)
    try:
        value = _KINDS[col.kind].coerce(value)
    except _Bad as exc:
        return None, str(exc)
    if col.choices and value not in col.choices:
        return None, f"must be one of {', '.join(map(repr, col.choices))} (got {value!r})"
    problem = _bound_problem(col, value) or (col.check(value) if col.check else None)
    return (None, problem) if problem else (value, None)


def _rule_failed_has_error(row: Mapping[str, object]) -> str | None:
    if row.get("status") == "failed" and not row.get("error"):
        return "field 'error': is required when status is 'failed'"
    return None


def _rule_published_fingerprint(row: Mapping[str, object]) -> str | None:
    if row.get("fingerprint_id") == "published" and row.get("source") != "published":
        return "field 'fingerprint_id': 'published' is only valid for rows with source 'published'"
    return None


# Rules that span several fields, checked after each field is valid on its own.
_ROW_RULES: tuple[Callable[[Mapping[str, object]], str | None], ...] = (
    _rule_failed_has_error,
    _rule_published_fingerprint,
)


def _normalise(row: Mapping[str, object]) -> tuple[dict[str, object], list[str]]:
    """The row in stored form (every column present, extras folded into extra_json) and its problems."""
    if not isinstance(row, Mapping):
        return {}, [f"row must be a mapping, got {type(row).__name__}"]
    problems: list[str] = []
    ok_measured = row.get("status") == "ok" and row.get("source") == "measured"
    out: dict[str, object] = {}
    for name, col in COLUMNS.items():
        required = col.required or (col.required_if_ok_measured and ok_measured)
        value, problem = _field(col, row.get(name), required)
        if problem:
            problems.append(f"field {name!r}: {problem}")
        out[name] = value

    extra = {str(k): v for k, v in row.items() if k not in COLUMNS}
    if extra:
        try:
            merged = json.loads(out["extra_json"]) if out["extra_json"] else {}  # type: ignore[arg-type]
            merged.update(extra)
            out["extra_json"] = canonical_json(merged)
        except StoreError as exc:
            problems.append(f"field 'extra_json': unknown keys {sorted(extra)}: {exc}")

    if not problems:
        problems.extend(p for rule in _ROW_RULES if (p := rule(out)))
    return out, problems


def validate_row(row: Mapping[str, object]) -> list[str]:
    """Every problem with one row against the schema; an empty list means the row is valid.

    Unknown keys are not problems: `Store.append` keeps them in `extra_json`. A NaN in an
    optional number counts as missing; in a required one it is a problem.
    """
    return _normalise(row)[1]


# ---------------------------------------------------------------------------------------------
# Files.


def _write_atomic(directory: Path, table: pa.Table) -> Path:
    """Write `table` as a new shard: temp file, fsync, rename. Returns the shard path."""
    directory.mkdir(parents=True, exist_ok=True)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), _VERSION_KEY: str(SCHEMA_VERSION).encode()}
    )
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    data = buffer.getvalue().to_pybytes()

    while True:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        final = directory / f"shard-{stamp}-{secrets.token_hex(4)}.parquet"
        if not final.exists():
            break
    return write_bytes_atomic(final, data)


def _conform(table: pa.Table) -> pa.Table:
    """Give a shard every known column with its schema type; unknown columns are kept after them."""
    arrays, fields = [], []
    for field in ARROW_SCHEMA:
        if field.name in table.column_names:
            arrays.append(table.column(field.name).cast(field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, field.type))
        fields.append(field)
    for name in table.column_names:
        if name not in COLUMNS:
            arrays.append(table.column(name))
            fields.append(table.schema.field(name))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _winners(table: pa.Table) -> np.ndarray:
    """Row indices that survive de-duplication, in their original order.

    Per config_id: an "ok" row beats a "failed" one; then the newest measured_at wins; then
    the row written last.
    """
    keys = table.select(["config_id", "status", "measured_at"]).to_pandas()
    keys["_ok"] = (keys["status"] == "ok").to_numpy(dtype=bool, na_value=False)
    keys["_at"] = pd.to_datetime(keys["measured_at"], utc=True, format="ISO8601", errors="coerce")
    keys["_seq"] = np.arange(len(keys))
    ranked = keys.sort_values(["_ok", "_at", "_seq"], na_position="first", kind="stable")
    return np.sort(ranked.drop_duplicates("config_id", keep="last")["_seq"].to_numpy())


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    # Nullable integer/boolean dtypes, so a missing size is <NA> rather than turning ints into floats.
    mapping = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    return table.to_pandas(types_mapper=mapping.get)


def _choice(name: str, value: str | None, valid: tuple[str, ...]) -> None:
    if value is not None and value not in valid:
        raise StoreError(f"unknown {name} {value!r} (valid: {', '.join(valid)})")


#: A row key that is not a column: the measuring device's full fingerprint (see `Store.append`).
DEVICE_FINGERPRINT_KEY = "device_fingerprint"
_HEX12 = re.compile(r"[0-9a-f]{12}")


class Store:
    """An append-only, schema-versioned store of measurement rows under `root/measurements/`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.directory = self.root / _SHARD_DIR

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def shards(self) -> list[Path]:
        """The shard files, oldest first (leftover `*.tmp` files are not shards)."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob("*.parquet") if p.is_file())

    def append(self, rows: Sequence[Mapping[str, object]]) -> Path:
        """Validate every row, then write them all as one new shard; returns its path.

        Raises:
            StoreError: if there are no rows or any row is invalid (naming the row index, the
                field and the problem); nothing is written then.
        """
        if isinstance(rows, Mapping):
            raise StoreError("append takes a sequence of rows, not a single row")
        normalised: list[dict[str, object]] = []
        problems: list[str] = []
        fingerprints: dict[str, Mapping[str, object]] = {}
        for index, row in enumerate(rows):
            if isinstance(row, Mapping) and DEVICE_FINGERPRINT_KEY in row:
                row = dict(row)
                fp = row.pop(DEVICE_FINGERPRINT_KEY)
                if isinstance(fp, Mapping) and row.get("fingerprint_id"):
                    fingerprints[str(row["fingerprint_id"])] = fp
            stored, row_problems = _normalise(row)
            problems.extend(f"row {index}: {p}" for p in row_problems)
            normalised.append(stored)
        if not normalised:
            raise StoreError("no rows to append")
        if problems:
            shown = problems[:_MAX_REPORTED]
            more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
            raise StoreError(
                f"{len(problems)} problem(s) in rows to append; nothing was written:\n  "
                + "\n  ".join(shown) + more
            )
        for fid, fp in fingerprints.items():
            self.put_fingerprint(fid, fp)
        return _write_atomic(self.directory, pa.Table.from_pylist(normalised, schema=ARROW_SCHEMA))

    # Devices: each measuring device's full fingerprint (ISA flags, cores, memory), once per
    # fingerprint id; rows keep only the id and a few fields.
    def put_fingerprint(self, fingerprint_id: str, fp: Mapping[str, object]) -> Path:
        """Store a device fingerprint under its id (idempotent; the first one stays)."""
        if not _HEX12.fullmatch(str(fingerprint_id)):
            raise StoreError(f"fingerprint id must be 12 hex digits, got {fingerprint_id!r}")
        path = self.root / "devices" / f"{fingerprint_id}.json"
        if not path.exists():
            write_bytes_atomic(path, (json.dumps(dict(fp), sort_keys=True, default=str, indent=1) + "\n").encode())
        return path

    def fingerprints(self) -> dict[str, dict]:
        """Every stored device fingerprint, by fingerprint id (unreadable files are skipped)."""
        out: dict[str, dict] = {}
        folder = self.root / "devices"
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                out[path.stem] = data
        return out

    def _load(self) -> tuple[pa.Table, list[Path]]:
        """All readable shards, conformed and concatenated, and the paths that were read."""
        tables, read = [], []
        for path in self.shards():
            try:
                table = pq.read_table(path)
                version = (table.schema.metadata or {}).get(_VERSION_KEY)
                if version is None or "config_id" not in table.column_names:
                    raise ValueError("not a store shard (no schema version or config_id)")
                if int(version) > SCHEMA_VERSION:
                    raise StoreError(
                        f"shard {path} has schema version {int(version)}, newer than this code's "
                        f"{SCHEMA_VERSION}; upgrade compression-advisor to read it"
                    )
                table = _conform(table)
            except (pa.ArrowException, OSError, ValueError) as exc:
                warnings.warn(f"skipping unreadable shard {path}: {exc}", StoreWarning, stacklevel=3)
                continue
            tables.append(table)
            read.append(path)
        if not tables:
            return ARROW_SCHEMA.empty_table(), read
        return pa.concat_tables(tables, promote_options="permissive"), read

    def read(
        self, *, status: str | None = None, source: str | None = None, device: str | None = None
    ) -> pd.DataFrame:
        """All rows, one per config_id, optionally filtered (after de-duplication).

        Unreadable shards are skipped with a `StoreWarning`. Integers and booleans use
        pandas' nullable dtypes; lists come back as arrays.

        Raises:
            StoreError: on an unknown status or source, or a shard from a newer schema.
        """
        _choice("status", status, STATUSES)
        _choice("source", source, SOURCES)
        table, _ = self._load()
        frame = _to_pandas(table.take(_winners(table)))
        for name, value in (("status", status), ("source", source), ("device", device)):
            if value is not None:
                frame = frame[frame[name] == value]
        return frame.reset_index(drop=True)

    def ids(self, status: str | None = "ok") -> set[str]:
        """The config_ids stored whose final status is `status` (None: any): what a resumed campaign skips."""
        return set(self.read(status=status)["config_id"])

    def __len__(self) -> int:
        """The number of distinct configurations stored."""
        return len(self.read())

    # Profiles: the per-layer structure behind each row's `profile_digest`, one JSON file each,
    # so the predictor can featurise rows without rebuilding any model.
    def put_profile(self, profile: ModelProfile) -> Path:
        """Store a model profile under its digest (idempotent)."""
        path = self.root / "profiles" / f"{profile.digest}.json"
        if not path.exists():
            write_bytes_atomic(path, profile.to_json().encode())
        return path

    def get_profile(self, digest: str) -> ModelProfile | None:
        """The profile stored under `digest`, or None."""
        path = self.root / "profiles" / f"{digest}.json"
        return ModelProfile.load(path) if path.exists() else None

    def compact(self) -> Path | None:
        """Merge every readable shard into one new, de-duplicated shard; returns it (None if no shards).

        The old shards are removed only after the new one is in place, so a crash leaves either
        the old shards or both (which read the same). Unreadable shards are left alone.
        """
        table, read = self._load()
        if not read:
            return None
        merged = _write_atomic(self.directory, table.take(_winners(table)))
        for path in read:
            path.unlink(missing_ok=True)
        fsync_dir(self.directory)
        return merged
