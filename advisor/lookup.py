"""Where the advisor finds what it reasons about, without TensorFlow or pandas: a network's
profile (the packaged zoo profiles, or a PROFILE.json), a device's fingerprint (this machine, or
one the bundle was trained on), and the default dataset store. Used by the Python API and the
command line alike."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from advisor.errors import ModelFileError, OptionError, UnknownNameError

PROFILES_DIR = Path(__file__).resolve().parent / "data" / "profiles"
#: The repository's training_data/ (in a checkout or an editable install), unless $ADVISOR_STORE is set.
DEFAULT_STORE = Path(os.environ.get("ADVISOR_STORE", Path(__file__).resolve().parent.parent / "training_data"))


def cache_root() -> Path:
    """Where the advisor caches what it derives ($ADVISOR_CACHE, else ~/.cache/compression-advisor):
    profiles of users' model files, compiled predictor forests, probed boards."""
    return Path(os.environ.get("ADVISOR_CACHE", Path.home() / ".cache" / "compression-advisor"))


def local_fingerprint() -> dict:
    """This machine's fingerprint (`advisor.fingerprint.collect_fingerprint()`), with nvidia-smi's
    answer remembered in the cache until the next boot: on a GPU workstation it can take longer
    than the rest of an answer, and GPUs do not change while the machine runs."""
    from advisor.fingerprint import collect_fingerprint, nvidia_smi_gpus

    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return collect_fingerprint()
    path = cache_root() / "gpus.json"
    try:
        cached = json.loads(path.read_text())
        if isinstance(cached, dict) and cached.get("boot_id") == boot and isinstance(cached.get("gpus"), list):
            return collect_fingerprint(gpu_names=[str(g) for g in cached["gpus"]])
    except (OSError, ValueError):
        pass
    gpus = nvidia_smi_gpus()
    from advisor.atomic import write_bytes_atomic

    try:
        write_bytes_atomic(path, (json.dumps({"boot_id": boot, "gpus": gpus}) + "\n").encode())
    except OSError:
        pass  # an unwritable cache only costs asking again
    return collect_fingerprint(gpu_names=gpus)


def zoo_index(directory: Path = PROFILES_DIR) -> dict[str, dict]:
    """The packaged profile index: "<name>@<size>" -> entry (file, model, input_size, default)."""
    path = directory / "index.json"
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"profile index {path} is unreadable: {exc}") from None
    return index if isinstance(index, dict) else {}


def resolve_profile(model: str, input_size: int | None = None, directory: Path = PROFILES_DIR):
    """A ModelProfile from a PROFILE.json path or a zoo name (its packaged profile, no TensorFlow).

    Raises:
        ModelFileError: an unreadable profile file; UnknownNameError: an unknown zoo name;
        OptionError: an input size the index has no profile for.
    """
    from advisor.profile import ModelProfile

    path = Path(model)
    if model.endswith(".json") or path.is_file():
        if input_size is not None:
            raise OptionError("--input-size applies to zoo names; a profile file has its own input size")
        return ModelProfile.load(path)
    index = zoo_index(directory)
    names = sorted({key.split("@")[0] for key in index})
    name = model.split("@")[0]
    if "@" in model:
        try:
            size_from_name = int(model.split("@")[1])
        except ValueError:
            raise OptionError(f"bad model name {model!r}: write NAME or NAME@SIZE") from None
        if input_size is not None and input_size != size_from_name:
            raise OptionError(f"{model} names input size {size_from_name} but --input-size is {input_size}")
        input_size = size_from_name
    entries = {key: e for key, e in index.items() if key.split("@")[0] == name}
    if not entries:
        if not index:
            raise ModelFileError(f"no packaged profiles at {directory} (give a PROFILE.json instead)")
        raise UnknownNameError("model", name, names)
    if input_size is None:
        chosen = [k for k, e in entries.items() if e.get("default")] or sorted(entries)
        key = chosen[0]
    else:
        key = f"{name}@{input_size}"
        if key not in entries:
            sizes = sorted(int(e.get("input_size", k.split("@")[1])) for k, e in entries.items())
            raise OptionError(f"no profile of {name} at input size {input_size} (available: "
                              f"{', '.join(map(str, sizes))})")
    return ModelProfile.load(directory / entries[key]["file"])


def device_fingerprint(device: str, predictor: Any) -> tuple[dict, str | None]:
    """(fingerprint, note) for `--device`: 'local', a device the bundle was trained on, a shipped
    board profile (`jetson_tx2`, ...), a device configured in devices.toml, or an ssh:// url of a
    board reached before (its cached fingerprint).

    For 'local', a machine the bundle knows (same fingerprint id) is described exactly as in
    training, so its rows and this prediction see the same features; the same holds for a
    profile or configured board whose fingerprint the bundle has rows for. Otherwise the note
    says that the prediction extrapolates from other devices.

    Raises:
        UnknownNameError: no such device (the valid names are listed by kind).
        OptionError: a configured board never reached, with no profile to stand in for it.
    """
    devices = getattr(predictor, "devices_", {}) or {}
    from advisor.fingerprint import fingerprint_id

    def known_as(fid: str) -> str | None:
        return next((name for name, entry in devices.items() if entry.get("fingerprint_id") == fid), None)

    if device == "local":
        fp = local_fingerprint()
        name = known_as(fingerprint_id(fp))
        if name is not None:
            return dict(devices[name]["fingerprint"]), f"this machine is '{name}' in the training data"
        return fp, ("this machine has no measurements in the training data: the prediction extrapolates from "
                    "the machines it has (`advisor calibrate` measures 20 reference configurations here, a few "
                    "minutes, and adapts the predictor to this machine; --verify measures one answer)")
    if device in devices:
        return dict(devices[device]["fingerprint"]), None
    from advisor import devices as registry

    found = registry.known_fingerprint(device)
    if found is None:
        raise registry.unknown_device_error(device, ["local", *devices])
    fp, source = found
    name = known_as(fingerprint_id(fp))
    if name is not None:
        return dict(devices[name]["fingerprint"]), f"{device} is '{name}' in the training data"
    how = (f"add your board to devices.toml with profile = \"{device}\" and run `advisor calibrate --device NAME`"
           if device in registry.profiles() else f"run `advisor calibrate --device {device}`")
    return fp, (f"{device}: the predictor has no measured rows for this device; it reads {source} and the "
                "prediction extrapolates from other devices (its p10–p90 band is widened by how far the "
                "predictor missed each measured machine when that machine was held out; a board unlike all of "
                f"them can still fall outside it: {how}, or check the answer with --verify)")
