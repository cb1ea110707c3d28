"""Versioned predictor bundles in one models folder, the champion pointer, and the run lock.

Layout of a models folder (by default the repository's `models/`, or `$ADVISOR_MODELS`):

    <version>/        one bundle per training (`advisor.bundle`), named by its card's version
    current/          the bundle shipped in the repository (a plain folder; also a version)
    CHAMPION          one line: the folder that `current` stands for. Absent: `current` itself
    .retrain.lock     held (fcntl) by the run that may write here; holds that run's pid

A bundle folder is never changed after it is written: promotion and rollback only rewrite
CHAMPION, atomically (temp file, fsync, rename), so a reader sees the old champion or the new
one, never a mixture, and an interrupted run leaves the champion as it was.

Listing reads only the cards (JSON): nothing here imports pandas or xgboost.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor import bundle as B
from advisor.errors import AdvisorError, BundleError, UnknownNameError

if TYPE_CHECKING:
    from advisor.predictor import Predictor

LOCK = ".retrain.lock"
HISTORY = "history.jsonl"
_VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Leftover temp folders of an interrupted `bundle.save` older than this are removed under the lock.
_STALE_TEMP_S = 3600.0


class BusyError(AdvisorError):
    """Another run holds the models folder's lock (exit code 2)."""


@dataclass(frozen=True)
class BundleInfo:
    """One bundle folder of a models folder, as its card describes it."""

    name: str
    path: Path
    version: str | None
    created: str | None
    rows: int | None
    evaluation: Mapping[str, Any] | None
    retrain: Mapping[str, Any] | None
    current: bool
    problem: str | None = None  # why it cannot be loaded by this code (e.g. another feature schema)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of `advisor models --json` for this bundle."""
        return {"name": self.name, "version": self.version, "path": str(self.path), "created": self.created,
                "rows": self.rows, "current": self.current, "metrics": headline_metrics(self.evaluation),
                "evaluation_split": (self.evaluation or {}).get("split"),
                "retrain": dict(self.retrain) if self.retrain else None, "problem": self.problem}


def headline_metrics(evaluation: Mapping[str, Any] | None) -> dict[str, float | None]:
    """The scores `advisor models` shows, from a card's `evaluation` (None where absent)."""
    targets = (evaluation or {}).get("targets") or {}

    def get(target: str, metric: str) -> float | None:
        value = (targets.get(target) or {}).get(metric)
        return float(value) if isinstance(value, (int, float)) else None

    return {"latency_within_10pct": get("latency", "within_10pct"), "latency_mape": get("latency", "mape"),
            "size_within_5pct": get("size", "within_5pct"), "energy_within_10pct": get("energy", "within_10pct"),
            "accuracy_mae_pp": get("accuracy_drop", "mae_pp")}


def models_root(root: str | Path | None = None) -> Path:
    """The models folder: `root`, else `$ADVISOR_MODELS`, else the repository's `models/`."""
    return Path(root) if root is not None else B.MODELS_ROOT


def champion_name(root: str | Path | None = None) -> str | None:
    """The folder name of the champion (what `current` stands for), or None if there is none."""
    root = models_root(root)
    try:
        folder = B.resolve(root / B.CURRENT)
    except BundleError:
        return None
    return folder.name if folder.is_dir() else None


def list_bundles(root: str | Path | None = None) -> list[BundleInfo]:
    """Every bundle folder (a folder with a card) in the models folder, oldest first."""
    root = models_root(root)
    current = champion_name(root)
    out = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if not path.is_dir() or path.name.startswith(".") or not (path / B.CARD).is_file():
            continue
        problem = None
        try:
            card = B.read_card(path, follow=False)  # `current` itself, not what it stands for
        except BundleError as exc:
            problem = str(exc)
            try:
                card = json.loads((path / B.CARD).read_text())
            except (OSError, ValueError):
                card = {}
        card = card if isinstance(card, dict) else {}
        data = card.get("training_data") or {}
        out.append(BundleInfo(name=path.name, path=path, version=card.get("version"), created=card.get("created"),
                              rows=data.get("rows"), evaluation=card.get("evaluation"), retrain=card.get("retrain"),
                              current=path.name == current, problem=problem))
    return sorted(out, key=lambda b: (str(b.created or ""), b.name))


def find(root: str | Path | None, version: str) -> BundleInfo:
    """The bundle named `version` (its folder name or its card's version).

    Raises:
        UnknownNameError: no such bundle (the message lists the valid ones).
    """
    bundles = list_bundles(root)
    for b in bundles:
        if version in (b.name, b.version):
            return b
    raise UnknownNameError("bundle version", version, [b.name for b in bundles] or ["(none: train one)"])


@contextlib.contextmanager
def exclusive(root: str | Path | None = None, what: str = "retrain") -> Iterator[Path]:
    """Hold the models folder's lock for one run; a second run gets `BusyError` at once.

    The lock is `fcntl.flock` on `<models>/.retrain.lock`: the kernel releases it when the
    process ends, however it ends, so a crashed run never leaves the folder locked.
    """
    root = models_root(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").split()
        os.close(fd)
        pid = holder[0] if holder else "unknown"
        raise BusyError(f"another retrain is running (pid {pid}) on {root}; {what} refused, try again when it "
                        "has finished") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
        _remove_stale_temps(root)
        yield root
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor releases the lock


def _remove_stale_temps(root: Path) -> None:
    now = time.time()
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith(".") and p.name.endswith((".tmp", ".old")):
            with contextlib.suppress(OSError):
                if now - p.stat().st_mtime > _STALE_TEMP_S:
                    shutil.rmtree(p, ignore_errors=True)


def set_champion(root: str | Path | None, name: str, by: str = "models use") -> Path:
    """Point `current` at the bundle folder `name`, atomically; returns the pointer file.

    The caller holds the lock (`exclusive`). The folder is loaded first (every hash checked),
    so the pointer never names a bundle this code cannot use. After the switch, the change is
    appended to `history.jsonl` (which bundles have been the champion, and who chose them).
    """
    from advisor.store import utc_now_iso, write_bytes_atomic  # lazy: pandas

    root = models_root(root)
    if not _VERSION_NAME.fullmatch(name) or not (root / name).is_dir():
        raise BundleError(f"no bundle folder {name!r} in {root}")
    B.load(root / name, follow=False)
    previous = champion_name(root)
    pointer = write_bytes_atomic(root / B.POINTER, f"{name}\n".encode())
    entry = json.dumps({"at": utc_now_iso(), "champion": name, "previous": previous, "by": by})
    old = (root / HISTORY).read_bytes() if (root / HISTORY).is_file() else b""
    write_bytes_atomic(root / HISTORY, old + entry.encode() + b"\n")
    return pointer


def history(root: str | Path | None = None) -> list[dict[str, Any]]:
    """Every change of champion in this models folder, oldest first (unreadable lines skipped)."""
    path = models_root(root) / HISTORY
    out = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            if isinstance(item, dict):
                out.append(item)
    return out


def use(root: str | Path | None, version: str) -> BundleInfo:
    """Make the bundle `version` the champion (roll back or forward); returns it.

    Raises:
        UnknownNameError: no such version; BusyError: a retrain is running; BundleError: the
            bundle cannot be loaded by this code.
    """
    root = models_root(root)
    find(root, version)  # an unknown version fails before anything is created (the lock file)
    with exclusive(root, "models use"):
        chosen = find(root, version)
        if chosen.problem:
            raise BundleError(f"bundle {chosen.name} cannot be used: {chosen.problem}")
        set_champion(root, chosen.name, by="models use")
    return find(root, chosen.name)


def new_version(root: Path, data_hash: str, now: datetime | None = None) -> str:
    """A version name not yet used in `root`: UTC time and the training data's hash."""
    now = now or datetime.now(timezone.utc)
    base = f"{now:%Y%m%dT%H%M%SZ}-{str(data_hash)[:8] or 'nodata'}"
    name, n = base, 1
    while (root / name).exists():
        n += 1
        name = f"{base}.{n}"
    return name


def publish(predictor: Predictor, root: str | Path | None = None, card_extra: Mapping[str, Any] | None = None,
            training_ids: Iterable[str] | None = None, promote: bool = True, by: str = "retrain",
            considered_ids: Iterable[str] | None = None) -> Path:
    """Save a fitted predictor as a new version in the models folder; if `promote`, make it the champion.

    The caller holds the lock (`exclusive`). The bundle is written under a temporary name and
    renamed (`bundle.save`), then the pointer is switched last, so an interruption at any point
    leaves the previous champion in place.
    """
    root = models_root(root)
    root.mkdir(parents=True, exist_ok=True)
    version = new_version(root, predictor.data_summary_.get("hash", ""))
    path = B.save(predictor, root / version, card_extra, version=version, training_ids=training_ids,
                  considered_ids=considered_ids)
    if promote:
        set_champion(root, version, by=by)
    return path


def training_ids(path: str | Path, considered: bool = False) -> frozenset[str] | None:
    """The config_ids the bundle folder `path` (never resolved) was fitted on, or None if it does not record them.

    With `considered`, also the rows its retrain weighed without fitting on them (its exam).

    Raises:
        BundleError: the file is there but corrupt or does not match the card's hash.
    """
    path = Path(path)
    card = B.read_card(path, follow=False)
    entry = card.get("training_ids")
    if not entry:
        return None
    try:
        raw = (path / str(entry.get("file", B.TRAINING_IDS))).read_bytes()
    except OSError as exc:
        raise BundleError(f"bundle {path}: cannot read its training ids ({exc.strerror or exc})") from None
    if B._sha256(raw) != entry.get("sha256"):
        raise BundleError(f"bundle {path}: {B.TRAINING_IDS} does not match the card's hash (corrupt or replaced)")
    content = json.loads(raw)
    return frozenset(content["config_ids"]) | (frozenset(content.get("considered", ())) if considered else frozenset())


def train_lock(out: Path | None) -> contextlib.AbstractContextManager:
    """For `advisor train`: the models folder's lock when it will publish a version there, else nothing."""
    return exclusive(B.MODELS_ROOT, "train") if _publishes(out) else contextlib.nullcontext()


def _publishes(out: Path | None) -> bool:
    return out is None and "ADVISOR_BUNDLE" not in os.environ


def save_trained(predictor: Predictor, out: Path | None, card_extra: Mapping[str, Any],
                 training_ids: Iterable[str]) -> Path:
    """For `advisor train`: with `--out`, that folder (as before); else a new champion version in models/.

    With `$ADVISOR_BUNDLE` set and no `--out`, that folder is written, as before versioning.
    """
    if not _publishes(out):
        return B.save(predictor, out or B.DEFAULT_BUNDLE, card_extra, training_ids=training_ids)
    with exclusive(B.MODELS_ROOT, "train") as root:
        return publish(predictor, root, card_extra, training_ids=training_ids, promote=True, by="train")
