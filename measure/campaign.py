"""Campaigns: many configurations from one plan file, measured one by one into the store, resumable.

A plan is a TOML or YAML file (the same keys in both):

    name = "zoo-latency"            # optional; default: the file's stem
    description = "..."             # optional
    device = "local"                # optional; local, ssh://user@host[:port] or a name in devices.toml

    [defaults]                      # optional; settings every [[grid]] block starts from
    threads = 1                     # any MeasureSettings field: input_size, width, num_classes,
    time_cap_s = 20                 #   threads, dataset, data_root, eval_samples, finetune_epochs,
    techniques = ["none"]           #   finetune_samples, energy, idle_s, seed, rel_ci, min_runs,
                                    #   max_runs, time_cap_s, min_rounds, max_rounds; and techniques

    [[grid]]                        # each block expands to the product of its lists
    models = ["mobilenet_v2", "resnet50"]          # zoo names and/or sampled:<block>:<seed>
    input_size = [96, 160]                         # a list expands; a scalar is one value
    techniques = ["none", "ptq-int8", "prune:0.8+ptq-int8"]

    [[grid]]
    sampled = { blocks = ["residual", "lstm"], seeds = "0-49" }   # blocks may be "all";
    techniques = ["none", "ptq-int8"]                             # seeds: 7, "0-49", [1, "5-9"]

A block gives `models`, `sampled` or both, and `techniques` (here or in defaults). Its settings
override the defaults; every list-valued setting, in either place, multiplies. `input_size` and
`width` apply to zoo networks only: a sampled architecture carries its own shape, so in a block
holding both they are ignored for the sampled ones, and a block of sampled architectures alone
that sets them is an error. Within one model and settings, `none` is measured last: every
compressed configuration stores its baseline row too, so `none` is then usually already done.

Everything is checked when the plan loads (unknown keys, bad values, technique specs, zoo names
and their input limits, sampled names, dataset names), with the file, the block and the key in
the message, so a campaign never dies on a typo an hour in.

Resuming: each configuration is keyed, without building anything, by the `config_id` the runner
will store for its compressed row (`config_key`); configurations whose key the store already
holds are skipped. A configuration that fails is stored as a failed row under that same key, so
it is skipped too unless `retry_failed`, and a later success supersedes it in `Store.read()`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import tomllib

from advisor.atomic import write_bytes_atomic
from advisor.errors import AdvisorError, OptionError, SpecError, UnknownNameError
from advisor.store import Store, config_id
from advisor.techniques import Pipeline
from measure import zoo
from measure.devices import DeviceUnreachableError
from measure.runner import MeasureSettings, _settings_key, failure_row
from measure.sampling import BLOCKS, SAMPLED_BLOCKS, is_sampled_name, parse_sampled_name, sample_arch, sampled_name

PLAN_KEYS = ("name", "description", "device", "defaults", "grid")
MODEL_KEYS = ("models", "sampled")
SAMPLED_KEYS = ("blocks", "seeds")
SETTING_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(MeasureSettings))
DEFAULTS_KEYS = ("techniques", *SETTING_FIELDS)
GRID_KEYS = (*MODEL_KEYS, "techniques", *SETTING_FIELDS)
ZOO_ONLY_SETTINGS = ("input_size", "width")
PLAN_SUFFIXES = (".toml", ".yaml", ".yml")


class CampaignWarning(UserWarning):
    """Something a campaign noticed but carried on through (a resume key that did not match)."""


@dataclass(frozen=True)
class Config:
    """One configuration to measure: a model, a canonical technique spec and its settings."""

    model: str  # a zoo name or a canonical sampled:<block>:<seed>
    technique: str
    settings: MeasureSettings
    grid: int = dataclasses.field(default=0, compare=False)  # the [[grid]] block it came from

    def label(self) -> str:
        size = f"@{self.settings.input_size}" if self.settings.input_size else ""
        width = f"-w{self.settings.width:g}" if self.settings.width else ""
        return f"{self.model}{size}{width} {self.technique}"


@dataclass(frozen=True)
class Plan:
    """A loaded, validated plan: every configuration it expands to, in order, without duplicates."""

    name: str
    device: str
    configs: tuple[Config, ...]
    description: str = ""
    path: str | None = None

    def __len__(self) -> int:
        return len(self.configs)


@dataclass(frozen=True)
class CampaignReport:
    """What one `run_campaign` call did."""

    planned: int
    measured: int  # configurations measured and stored this time
    skipped: int  # already in the store
    failed: int  # stored as failed rows this time
    remaining: int  # not attempted (limit reached or interrupted)
    elapsed_s: float
    interrupted: bool = False
    failures: tuple[tuple[str, str, str], ...] = ()  # (model, technique, error)
    stopped: str | None = None  # why the campaign stopped early: the device became unreachable

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["failures"] = [{"model": m, "technique": t, "error": e} for m, t, e in self.failures]
        return out


# ---------------------------------------------------------------------------------------------
# Reading and validating a plan


def _read_plan_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise OptionError(f"plan file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in PLAN_SUFFIXES:
        raise OptionError(f"plan file {path} must be TOML or YAML ({', '.join(PLAN_SUFFIXES)})")
    try:
        if suffix == ".toml":
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        else:
            import yaml

            data = yaml.safe_load(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise OptionError(f"plan file {path} is not valid TOML: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError and its many subclasses
        raise OptionError(f"plan file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise OptionError(f"plan file {path} must hold a table of keys ({', '.join(PLAN_KEYS)})")
    return data


def _check_keys(table: Mapping[str, Any], valid: tuple[str, ...], where: str) -> None:
    unknown = [k for k in table if k not in valid]
    if unknown:
        raise OptionError(f"{where}: unknown key '{unknown[0]}' (valid keys: {', '.join(valid)})")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


# The Python types each MeasureSettings annotation accepts (bool is never a number here).
_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _check_setting(name: str, value: Any, where: str) -> Any:
    annotation = str(next(f.type for f in dataclasses.fields(MeasureSettings) if f.name == name))
    base = annotation.split("|")[0].strip()
    if value is None and "None" in annotation:
        return None
    ok = isinstance(value, _TYPES[base]) and (base == "bool" or not isinstance(value, bool))
    if not ok:
        raise OptionError(f"{where}: {name} = {value!r} must be {'a number' if base == 'float' else 'a ' + base}"
                          + (" (or absent)" if "None" in annotation else ""))
    return float(value) if base == "float" else value


def _techniques(value: Any, where: str) -> list[str]:
    specs = _as_list(value)
    if not specs:
        raise OptionError(f"{where}: techniques is empty")
    out = []
    for spec in specs:
        try:
            out.append(Pipeline.parse(spec).spec)
        except SpecError as exc:
            raise SpecError(f"{where}: techniques: {spec!r}: {exc}") from None
    # `none` last: the compressed configurations store its row as their baseline.
    return sorted(dict.fromkeys(out), key=lambda s: s == "none")


def _seeds(value: Any, where: str) -> list[int]:
    seeds: list[int] = []
    for item in _as_list(value):
        if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            seeds.append(item)
            continue
        for part in str(item).split(",") if isinstance(item, str) else [item]:
            lo, sep, hi = str(part).strip().partition("-")
            if not (lo.isdigit() and (not sep or hi.strip().isdigit())) or (sep and int(lo) > int(hi)):
                raise OptionError(f"{where}: sampled.seeds: {item!r} is not a seed or a range "
                                  "(write 7, \"0-49\" or a list of them)")
            seeds.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    if not seeds:
        raise OptionError(f"{where}: sampled.seeds is empty")
    return list(dict.fromkeys(seeds))


def _sampled_models(table: Any, where: str) -> list[str]:
    if not isinstance(table, Mapping):
        raise OptionError(f"{where}: sampled must be a table with keys {', '.join(SAMPLED_KEYS)}")
    _check_keys(table, SAMPLED_KEYS, f"{where}: sampled")
    for key in SAMPLED_KEYS:
        if key not in table:
            raise OptionError(f"{where}: sampled needs '{key}'")
    blocks = list(SAMPLED_BLOCKS) if table["blocks"] == "all" else _as_list(table["blocks"])
    for block in blocks:
        if block not in BLOCKS:
            unknown = UnknownNameError("sampled block type", str(block), tuple(BLOCKS))
            raise OptionError(f"{where}: sampled.blocks: {unknown} (or \"all\")")
    seeds = _seeds(table["seeds"], where)
    return [sampled_name(block, seed) for block in blocks for seed in seeds]


def _model_names(value: Any, where: str) -> list[str]:
    out = []
    for name in _as_list(value):
        if not isinstance(name, str):
            raise OptionError(f"{where}: models: {name!r} is not a model name")
        try:
            out.append(sampled_name(*parse_sampled_name(name)) if is_sampled_name(name) else zoo.get_entry(name).name)
        except AdvisorError as exc:
            raise OptionError(f"{where}: models: {name!r}: {exc}") from None
    return out


def _check_dataset(name: str, where: str) -> None:
    from measure.datasets import dataset_names

    if name not in dataset_names() and not Path(name).expanduser().exists():
        raise OptionError(f"{where}: dataset '{name}' is neither a built-in dataset "
                          f"({', '.join(dataset_names())}) nor an existing file or folder")


def _settings_grid(table: Mapping[str, Any], where: str) -> dict[str, list[Any]]:
    """Each setting in `table` as the list of its values (checked)."""
    grid = {}
    for name in SETTING_FIELDS:
        if name in table:
            values = _as_list(table[name])
            if not values:
                raise OptionError(f"{where}: {name} is an empty list")
            grid[name] = [_check_setting(name, v, where) for v in values]
            if name == "dataset":
                for v in grid[name]:
                    if v is not None:
                        _check_dataset(v, where)
    return grid


def _expand_block(index: int, block: Mapping[str, Any], default_settings: Mapping[str, list[Any]],
                  default_techniques: list[str] | None, where: str) -> list[Config]:
    _check_keys(block, GRID_KEYS, where)
    if not any(k in block for k in MODEL_KEYS):
        raise OptionError(f"{where}: give 'models' (zoo or sampled names) or 'sampled' (blocks and seeds)")
    if "techniques" in block:
        techniques = _techniques(block["techniques"], where)
    elif default_techniques is not None:
        techniques = default_techniques
    else:
        raise OptionError(f"{where}: no 'techniques' (give them here or in [defaults])")
    models = _model_names(block["models"], where) if "models" in block else []
    if "sampled" in block:
        models += _sampled_models(block["sampled"], where)
    if all(is_sampled_name(m) for m in models):
        for name in ZOO_ONLY_SETTINGS:
            if name in block:
                raise OptionError(f"{where}: {name} does not apply to sampled architectures "
                                  "(each carries its own shape)")
    settings = {**default_settings, **_settings_grid(block, where)}
    names = list(settings)
    configs = []
    for model in models:
        sampled = is_sampled_name(model)
        for values in itertools.product(*(settings[n] for n in names)):
            chosen = dict(zip(names, values))
            if sampled:
                chosen = {k: v for k, v in chosen.items() if k not in ZOO_ONLY_SETTINGS}
            try:
                measure_settings = MeasureSettings(**chosen)
                if not sampled:
                    zoo._validate(zoo.get_entry(model), measure_settings.input_size, measure_settings.width,
                                  measure_settings.num_classes)
            except OptionError as exc:
                raise OptionError(f"{where}: {model} with {chosen}: {exc}") from None
            configs += [Config(model, t, measure_settings, index) for t in techniques]
    return configs


def load_plan(path: str | Path) -> Plan:
    """Read, check and expand a plan file (see the module docstring for its schema).

    Returns:
        The plan with every configuration, duplicates removed (the first kept).

    Raises:
        OptionError: a missing or unparsable file, an unknown key (the valid keys are listed),
            a bad value, an unknown zoo model, sampled name, device or dataset; the message names
            the file, the [[grid]] block and the key.
        SpecError: a malformed technique spec (with the file and block).
    """
    path = Path(path)
    data = _read_plan_file(path)
    _check_keys(data, PLAN_KEYS, str(path))
    name = data.get("name", path.stem)
    description = data.get("description", "")
    device = data.get("device", "local")
    for key, value in (("name", name), ("description", description), ("device", device)):
        if not isinstance(value, str):
            raise OptionError(f"{path}: {key} must be a string, got {value!r}")
    from measure.devices import check_device_name

    try:
        check_device_name(device)
    except AdvisorError as exc:
        raise OptionError(f"{path}: device: {exc}") from None
    defaults = data.get("defaults", {})
    if not isinstance(defaults, Mapping):
        raise OptionError(f"{path}: defaults must be a table of settings")
    _check_keys(defaults, DEFAULTS_KEYS, f"{path}: defaults")
    default_settings = _settings_grid(defaults, f"{path}: defaults")
    default_techniques = _techniques(defaults["techniques"], f"{path}: defaults") if "techniques" in defaults else None
    grids = data.get("grid")
    if not isinstance(grids, list) or not grids or not all(isinstance(g, Mapping) for g in grids):
        raise OptionError(f"{path}: needs at least one [[grid]] block (a list of tables)")
    configs: list[Config] = []
    for index, block in enumerate(grids):
        configs += _expand_block(index, block, default_settings, default_techniques, f"{path}: grid[{index}]")
    return Plan(name, device, tuple(dict.fromkeys(configs)), description, str(path))


# ---------------------------------------------------------------------------------------------
# Resume keys


@dataclass(frozen=True)
class _Identity:
    """What the runner's settings key reads from a resolved model, known without building it."""

    key: str
    input_size: int | None
    width: float | None
    num_classes: int | None


@functools.lru_cache(maxsize=32)
def _dataset_facts(name: str, data_root: str | None, seed: int) -> tuple[str, int]:
    """The loaded dataset's own name (it enters `finetune`) and its classes (numpy only, no TensorFlow)."""
    from measure.datasets import load_dataset

    data = load_dataset(name, data_root=data_root, seed=seed)
    return data.name, int(data.num_classes)


def _identity(model: str, input_size: int | None, width: float | None, num_classes: int | None) -> _Identity:
    if is_sampled_name(model):
        spec = sample_arch(*parse_sampled_name(model))
        return _Identity(spec.name, spec.input_size, None, num_classes or spec.num_classes)
    from measure.loading import zoo_key

    entry = zoo.get_entry(model)
    size, w, classes = zoo._validate(entry, input_size, width, num_classes)
    return _Identity(zoo_key(model, size, w, classes), size, w, classes)


def config_key(config: Config, device_id: str) -> str:
    """The `config_id` the runner stores for this configuration's row (its compressed row), without
    building the model: the zoo key and defaults come from the zoo's entry, a sampled
    architecture's shape from its pure-Python spec, and the fine-tuning source from the technique
    and dataset. With a dataset and no num_classes, the dataset is loaded (numpy only) for its
    classes and name.

    Raises:
        AdvisorError: the dataset cannot be loaded, or the model or settings are invalid.
    """
    settings = config.settings
    pipeline = Pipeline.parse(config.technique)
    data_name = classes = None
    if settings.dataset:
        data_name, classes = _dataset_facts(settings.dataset, settings.data_root, settings.seed)
    identity = _identity(config.model, settings.input_size, settings.width, settings.num_classes or classes)
    if not pipeline.train_steps():
        finetune = "none"
    else:
        finetune = f"dataset:{data_name}" if settings.dataset else "random"
    # The runner's own settings key, so that the two cannot drift apart.
    return config_id(identity.key, pipeline.spec, device_id, _settings_key(settings, identity, finetune))


def model_facts(model: str) -> tuple[str, str, str]:
    """(model_kind, family, domain) of a plan model, without building it."""
    if is_sampled_name(model):
        spec = sample_arch(*parse_sampled_name(model))
        return "sampled", spec.family, spec.domain
    entry = zoo.get_entry(model)
    return "zoo", entry.family, entry.domain


# ---------------------------------------------------------------------------------------------
# Progress


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class CampaignProgress:
    """A campaign's progress on a stream: one redrawn line on a terminal, one line per
    configuration otherwise. Shows done / failed / skipped / remaining and an ETA from the mean
    time per configuration so far."""

    def __init__(self, total: int, skipped: int, stream: TextIO | None = None, quiet: bool = False):
        self.total, self.skipped, self.quiet = total, skipped, quiet
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = self.failed = 0
        self.spent = 0.0
        self.current = ""
        self._started = time.monotonic()

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed

    def _head(self) -> str:
        attempted = self.done + self.failed
        filled = int(20 * attempted / self.total) if self.total else 20
        eta = _duration(self.spent / attempted * self.remaining) if attempted else "?"
        return (f"[{'#' * filled}{'.' * (20 - filled)}] {attempted}/{self.total}  ok {self.done}  "
                f"failed {self.failed}  skipped {self.skipped}  left {self.remaining}  ETA {eta}")

    def _write(self, line: str, final: bool) -> None:
        if self.quiet:
            return
        if self.tty:
            width = shutil.get_terminal_size((120, 20)).columns - 1
            self.stream.write("\r\033[K" + line[:width])
        elif final:
            self.stream.write(line + "\n")
        self.stream.flush()

    def start(self, config: Config) -> None:
        """A configuration begins."""
        self.current = config.label()
        self._started = time.monotonic()
        self._write(f"{self._head()}  {self.current}", final=False)

    def stage(self, message: str) -> None:
        """The runner's stage messages (shown on a terminal only)."""
        self._write(f"{self._head()}  {self.current}: {message}", final=False)

    def finish(self, ok: bool, error: str | None = None, config: Config | None = None) -> None:
        """The current configuration ended (stored as ok or failed); `config`: which one, where a
        group measured together ends one configuration after another."""
        if config is not None:
            self.current = config.label()
        now = time.monotonic()
        took = now - self._started
        # Configurations measured together (one model's group) finish one after another: the
        # group's time counts once, so the ETA is not that time multiplied by the group's size.
        self.spent += took
        self._started = now
        if ok:
            self.done += 1
        else:
            self.failed += 1
        outcome = "ok" if ok else f"FAILED: {error}"
        if self.tty and not ok and not self.quiet:
            self.stream.write("\r\033[K" + f"failed {self.current}: {error}\n")
        self._write(f"{self._head()}  {self.current} {outcome} ({took:.1f}s)", final=True)

    def skip(self) -> None:
        """A configuration turned out to be stored already (by an earlier one's baseline)."""
        self.total -= 1
        self.skipped += 1

    def close(self) -> None:
        """Write the final counts (and end the redrawn line on a terminal)."""
        if self.quiet:
            return
        line = (f"campaign: ok {self.done}, failed {self.failed}, skipped {self.skipped}, "
                f"left {self.remaining}, measuring took {_duration(self.spent)}")
        self.stream.write(("\r\033[K" if self.tty else "") + line + "\n")
        self.stream.flush()


# ---------------------------------------------------------------------------------------------
# Running


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    kind = "" if isinstance(exc, AdvisorError) else f"unexpected {type(exc).__name__}: "
    return kind + (text or type(exc).__name__)


@contextmanager
def _scratch() -> Iterator[None]:
    """Send the temporary files of one configuration to a folder removed afterwards.

    The runner leaves its `.tflite` files in a `mkdtemp` folder; over a campaign of large
    networks that would fill the disk.
    """
    before = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="advisor-campaign-") as folder:
        tempfile.tempdir = folder
        try:
            yield
        finally:
            tempfile.tempdir = before


def _failed_row(config: Config, device_id: str, key: str | None, error: str) -> dict[str, Any]:
    kind, family, domain = model_facts(config.model)
    row = failure_row(config.model, config.technique, device_id, config.settings, error, family, domain)
    row["model_kind"] = kind
    if key is not None:
        # The key of the row a success would store, so Store.read() lets a later success win.
        row["config_id"] = key
    return row


@dataclasses.dataclass
class _Outcome:
    """A measurement as a worker process reports it (the parts the campaign stores)."""

    row: dict
    _rows: list[dict]
    profile: Any

    def rows(self) -> list[dict]:
        return self._rows


def _run_worker(model: str, techniques: list[str], device_name: str, settings: MeasureSettings,
                stage) -> list[Any] | None:
    """Run one worker; None if it died (a signal, or no result)."""
    import subprocess
    import sys

    with tempfile.TemporaryDirectory(prefix="advisor-worker-") as folder:
        job, out = Path(folder) / "job.json", Path(folder) / "out.json"
        job.write_text(json.dumps({"model": model, "techniques": techniques, "device": device_name,
                                   "settings": dataclasses.asdict(settings)}))
        env = dict(os.environ, TMPDIR=folder)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.Popen([sys.executable, "-m", "measure.campaign_worker", str(job), str(out)],
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        try:
            for line in proc.stderr:
                if line.startswith("stage: "):
                    stage(line[7:].strip())
            proc.wait()
        except BaseException:  # Ctrl-C: the worker stops with the campaign
            proc.kill()
            proc.wait()
            raise
        if proc.returncode != 0 or not out.exists():
            return None
        results = json.loads(out.read_text())
    return _parse_results(results)


def _parse_results(results: list[dict]) -> list[Any]:
    """The outcomes of a worker's JSON (`measure.campaign_worker`'s OUT): `_Outcome`s and errors.

    Raises:
        DeviceUnreachableError: the worker could not reach the device.
    """
    from advisor.profile import ModelProfile

    outcomes: list[Any] = []
    for r in results:
        if r.get("unreachable"):
            raise DeviceUnreachableError(r["error"])
        if "error" in r:
            outcomes.append(AdvisorError(r["error"]))
        else:
            prof = ModelProfile.from_dict(r["profile"]) if r.get("profile") else None
            row = next(x for x in r["rows"] if x["config_id"] == r["row_id"])
            outcomes.append(_Outcome(row, r["rows"], prof))
    return outcomes


def _measure_isolated(model: str, techniques: list[str], device_name: str, settings: MeasureSettings,
                      stage) -> list[Any]:
    """All techniques in one worker; if it crashes, each technique alone, to isolate the culprit."""
    outcomes = _run_worker(model, techniques, device_name, settings, stage)
    if outcomes is not None:
        return outcomes
    if len(techniques) == 1:
        return [AdvisorError(f"the measurement process crashed (native code) measuring {techniques[0]}")]
    stage("the worker crashed: measuring each technique alone")
    out: list[Any] = []
    for t in techniques:
        one = _run_worker(model, [t], device_name, settings, stage)
        out.append(one[0] if one else AdvisorError(f"the measurement process crashed (native code) measuring {t}"))
    return out


def _inflight_path(store: Store, plan: Plan) -> Path:
    """Where an in-process campaign notes the model it is measuring (see `run_campaign`)."""
    return store.root / f".inflight-{hashlib.sha256(plan.name.encode()).hexdigest()[:12]}.json"


def _crashed_keys(store: Store, plan: Plan) -> set[str]:
    """The config ids an in-process run was measuring when its process died, if it did."""
    path = _inflight_path(store, plan)
    try:
        return set(json.loads(path.read_text())["config_ids"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _release_models() -> None:
    """Free the Keras graphs of the model just measured: without it a long campaign's memory
    grows by every network it has built (gigabytes after a hundred)."""
    import gc

    from measure._tf import keras

    keras().backend.clear_session()
    gc.collect()


def _groups(todo: list) -> Iterator[list]:
    """Consecutive configurations of one model and settings: measured together in one device run."""
    group: list = []
    for item in todo:
        if group and (item[0].model, item[0].settings) != (group[0][0].model, group[0][0].settings):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def _todo(plan: Plan, device_id: str, done: set[str]) -> tuple[list[tuple[Config, str | None, Exception | None]], int]:
    """The configurations of `plan` whose keys are not in `done`, each with its key (None and the
    problem when it has none: it fails when its turn comes), and how many were skipped."""
    todo: list[tuple[Config, str | None, Exception | None]] = []
    skipped = 0
    for config in plan.configs:
        try:
            key, problem = config_key(config, device_id), None
        except AdvisorError as exc:  # e.g. its dataset is missing: it fails when its turn comes
            key, problem = None, exc
        known = key if key is not None else _failed_row(config, device_id, None, "")["config_id"]
        if known in done:
            skipped += 1
        else:
            todo.append((config, key, problem))
    return todo, skipped


def _store_group(store: Store, group: list, outcomes: list[Any], ok_ids: set[str], fail, bar: CampaignProgress
                 ) -> None:
    """Store one measured group's rows (and its profile) in one shard; its errors as failed rows."""
    config0 = group[0][0]
    rows: dict[str, dict] = {}
    kind = model_facts(config0.model)[0]
    for (config, key, _), outcome in zip(group, outcomes):
        if isinstance(outcome, BaseException):
            fail(config, key, _one_line(outcome))
            continue
        for row in outcome.rows():
            row["model_kind"] = kind
            rows[row["config_id"]] = row
        if key is not None and outcome.row["config_id"] != key:
            warnings.warn(f"{config.label()}: stored under {outcome.row['config_id']} but its resume key "
                          f"is {key}; a resumed campaign will measure it again", CampaignWarning,
                          stacklevel=3)
    if rows:
        first = next(o for o in outcomes if not isinstance(o, BaseException))
        if first.profile is not None:
            store.put_profile(first.profile)
        store.append(list(rows.values()))
        ok_ids.update(rows)
    for (config, _, _), outcome in zip(group, outcomes):
        if not isinstance(outcome, BaseException):
            bar.finish(True, config=config)


@dataclass
class CampaignRun:
    """One run of a plan, in process or on a Dask farm: its progress, where failures are stored,
    and how it ended (`report`)."""

    plan: Plan
    store: Store
    device_id: str
    bar: CampaignProgress
    stream: TextIO | None
    began: float
    failures: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    interrupted: bool = False
    stopped: str | None = None  # why it stopped early (the device or the cluster went away)

    def fail(self, config: Config, key: str | None, error: str) -> None:
        """Store `config` as failed with `error` and count it."""
        self.store.append([_failed_row(config, self.device_id, key, error)])
        self.failures.append((config.model, config.technique, error))
        self.bar.finish(False, error, config=config)

    def report(self) -> CampaignReport:
        """The counts, after saying how to resume if the run stopped early."""
        bar = self.bar
        if self.stopped is not None:
            (self.stream or sys.stderr).write(
                f"campaign stopped: {self.stopped}\n  {bar.done} configuration(s) measured and stored; "
                f"{bar.remaining} not measured (nothing stored for them): rerun the same command to resume\n")
        return CampaignReport(
            planned=len(self.plan.configs), measured=bar.done, skipped=bar.skipped, failed=bar.failed,
            remaining=bar.remaining, elapsed_s=time.monotonic() - self.began, interrupted=self.interrupted,
            failures=tuple(self.failures), stopped=self.stopped,
        )


def run_campaign(plan: Plan, *, store: Store, device: Any = None, progress: bool | TextIO = True,
                 limit: int | None = None, retry_failed: bool = False, isolate: bool | None = None
                 ) -> CampaignReport:
    """Measure every configuration of `plan` not already in `store`, storing rows as each finishes.

    Args:
        plan: a loaded plan (`load_plan`).
        store: where rows are appended, one shard per model (its techniques are timed together).
        device: the device to measure on; default `get_device(plan.device)`.
        progress: True for a progress bar on stderr, False for none, or a stream to write it to.
        limit: measure at most this many configurations this time (skipped ones do not count).
        retry_failed: measure configurations stored as failed again (default: skip them).
        isolate: measure each model in a child process (default: yes when the device comes from
            the plan by name), so a native crash fails that model's configurations and the
            campaign goes on.

    Returns:
        The counts; `interrupted` is True when Ctrl-C stopped it (everything finished is stored);
        `stopped` says why when the device became unreachable.

    A configuration that raises (an `AdvisorError` or anything unexpected) becomes a failed row
    and the campaign goes on, except when the device cannot be reached (`DeviceUnreachableError`):
    that says nothing about the configuration, so the campaign stops there, keeps what finished,
    stores nothing for the rest, and a rerun resumes them.
    """
    from measure.devices import get_device
    from measure.runner import measure_many

    if limit is not None and limit < 0:
        raise OptionError(f"limit must be at least 0, got {limit}")
    began = time.monotonic()
    if isolate is None:
        isolate = device is None
    device = device if device is not None else get_device(plan.device)
    device_id = getattr(device, "device_id", device.name)
    ok_ids = store.ids("ok")
    failed_ids = set() if retry_failed else store.ids("failed")
    # An in-process campaign whose process died (a native crash in the converter) left a note of
    # the model it was measuring: those configurations are stored as failed, and the rest goes on.
    crashed = _crashed_keys(store, plan) - ok_ids

    todo, skipped = _todo(plan, device_id, ok_ids | failed_ids)
    stream = progress if not isinstance(progress, bool) else None
    bar = CampaignProgress(len(todo), skipped, stream=stream, quiet=progress is False)
    run = CampaignRun(plan, store, device_id, bar, stream, began)
    fail = run.fail

    inflight = _inflight_path(store, plan)
    if crashed:
        for config, key, _ in [t for t in todo if t[1] in crashed]:
            fail(config, key, "the campaign process died measuring this model in-process (a native crash); "
                              "rerun without --in-process and with --retry-failed to find which technique")
        todo = [t for t in todo if t[1] not in crashed]
    inflight.unlink(missing_ok=True)

    try:
        for group in _groups(todo):
            if limit is not None:
                group = group[: max(0, limit - bar.done - bar.failed)]
                if not group:
                    break
            group = [g for g in group if g[1] is None or g[1] not in ok_ids]
            if not group:
                continue
            config0 = group[0][0]
            bar.start(config0)
            try:
                problem = next((p for _, _, p in group if p is not None), None)
                if problem is not None:
                    raise problem
                techniques = [c.technique for c, _, _ in group]
                if isolate:
                    outcomes = _measure_isolated(config0.model, techniques, device.name, config0.settings,
                                                 bar.stage)
                else:
                    write_bytes_atomic(inflight, json.dumps(
                        {"model": config0.model, "config_ids": [k for _, k, _ in group if k]}).encode())
                    try:
                        with _scratch():
                            outcomes = measure_many(config0.model, techniques, device, config0.settings,
                                                    progress=bar.stage)
                    finally:  # runs on any Python exit (Ctrl-C included); a native crash skips it
                        inflight.unlink(missing_ok=True)
            except KeyboardInterrupt:
                run.interrupted = True
                break
            except DeviceUnreachableError as exc:
                run.stopped = _one_line(exc)
                break
            except Exception as exc:  # noqa: BLE001 - one model's failure must not end the campaign
                error = _one_line(exc)
                for config, key, _ in group:
                    fail(config, key, error)
                continue
            _store_group(store, group, outcomes, ok_ids, fail, bar)
            if not isolate:
                _release_models()
    except KeyboardInterrupt:
        run.interrupted = True
    finally:
        bar.close()
    return run.report()


def plan_summary(plan: Plan) -> dict[str, Any]:
    """Counts of a plan's configurations by model kind, block/family and technique (for `--dry-run`)."""
    by_technique: dict[str, int] = {}
    by_family: dict[str, int] = {}
    for config in plan.configs:
        by_technique[config.technique] = by_technique.get(config.technique, 0) + 1
        family = model_facts(config.model)[1]
        by_family[family] = by_family.get(family, 0) + 1
    models = {c.model for c in plan.configs}
    return {"name": plan.name, "device": plan.device, "configurations": len(plan.configs),
            "models": len(models), "sampled_models": sum(is_sampled_name(m) for m in models),
            "by_technique": by_technique, "by_family": by_family}
