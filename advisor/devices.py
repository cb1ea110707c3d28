"""The device registry: shipped board profiles, the user's own devices, and what is known of each.

Three kinds of names reach `--device`:

- ``local``: this machine, identified by its fingerprint.
- a **profile** (``jetson_tx2``, ``raspberry_pi_5``, ...): a board's published specifications
  and a fingerprint shaped exactly like `advisor.fingerprint.collect_fingerprint()` output, so
  the predictor can take its features; nothing can be measured on a profile.
- a **configured device**: a name the user gives an ``ssh://user@host[:port]`` url in
  ``devices.toml`` (`config_path()`), optionally with the profile it is an instance of.
  ``ssh://...`` urls work directly too.

The config file (TOML)::

    default = "tx2"                      # optional: the default of --device (else "local")

    [devices.tx2]
    url = "ssh://nvidia@192.168.1.20"    # required; port optional (ssh://nvidia@tx2.lan:2222)
    profile = "jetson_tx2"               # optional: the shipped profile this board is
    description = "the lab's TX2"        # optional
    python = "python3"                   # optional: the board's interpreter
    identity_file = "~/.ssh/id_ed25519"  # optional: else ssh's own choice
    known_hosts = "~/.ssh/known_hosts"   # optional: else ssh's own (host keys are always checked)
    ssh_config = "~/.ssh/config"         # optional: an ssh_config file (ssh -F)
    connect_timeout_s = 10               # optional
    timeout_s = 1800                     # optional: the longest one agent call may take

What a board said of itself when last reached (its fingerprint, interpreter, energy sensor) is
cached under ``$ADVISOR_CACHE/devices/`` so that `recommend --device tx2` works offline.

Light on purpose: stdlib only at import (pyarrow only inside `measured_rows`); the answer
path imports this module.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.errors import OptionError, UnknownNameError


def _toml_parser() -> Any:
    """The TOML parser, imported only when a config file exists (6 ms the answer path rarely needs):
    Python 3.11's tomllib, else the tomli package on 3.10, else None."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser as a package, if installed
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            return None
    return tomllib

PROFILES_DIR = Path(__file__).resolve().parent / "data" / "devices"
LOCAL = "local"
SSH_SCHEME = "ssh://"
URL_FORM = "ssh://user@host[:port]"
#: Every key a shipped profile has (the loader refuses others, so a typo cannot hide).
PROFILE_KEYS = ("name", "title", "description", "specs", "energy_sensor", "energy_note", "tflite_note",
                "fingerprint", "sources")
#: The fields `collect_fingerprint()` returns; a profile's fingerprint has exactly these.
FINGERPRINT_KEYS = ("fingerprint_version", "cpu_model", "machine", "logical_cpus", "online_cpus", "physical_cores",
                    "isa_flags", "memory_bytes", "os", "python", "accelerator", "board", "l4t_release",
                    "cpu_max_mhz")
CONFIG_KEYS = ("default", "devices")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_][A-Za-z0-9_.-]*)$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------------------------------------
# Shipped profiles


@dataclass(frozen=True)
class DeviceProfile:
    """A board's published specifications, and the fingerprint the predictor reads for it."""

    name: str
    title: str
    description: str
    specs: dict[str, Any]
    energy_sensor: str | None  # a backend of measure/energy.py, or None where the board has none we read
    energy_note: str
    tflite_note: str
    fingerprint: dict[str, Any]
    sources: tuple[str, ...] = ()

    @property
    def fingerprint_id(self) -> str:
        from advisor.fingerprint import fingerprint_id

        return fingerprint_id(self.fingerprint)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["sources"] = list(self.sources)
        return out


def _load_profile(path: Path) -> DeviceProfile:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise OptionError(f"device profile {path} is unreadable: {exc}") from None
    where = f"device profile {path}"
    if not isinstance(data, dict):
        raise OptionError(f"{where} must hold a JSON object")
    unknown = sorted(set(data) - set(PROFILE_KEYS))
    missing = [k for k in PROFILE_KEYS if k not in data]
    if unknown or missing:
        raise OptionError(f"{where}: " + ("unknown key " + unknown[0] if unknown else "missing key " + missing[0]))
    fp = data["fingerprint"]
    if not isinstance(fp, dict) or set(fp) != set(FINGERPRINT_KEYS):
        raise OptionError(f"{where}: fingerprint must have exactly the keys {', '.join(FINGERPRINT_KEYS)}")
    if data["name"] != path.stem:
        raise OptionError(f"{where}: name {data['name']!r} must match the file name")
    return DeviceProfile(**{**data, "sources": tuple(data["sources"])})


@functools.lru_cache(maxsize=4)
def profiles(directory: Path = PROFILES_DIR) -> dict[str, DeviceProfile]:
    """The shipped board profiles by name (JSON files in `advisor/data/devices/`)."""
    return {p.stem: _load_profile(p) for p in sorted(Path(directory).glob("*.json"))}


def get_profile(name: str) -> DeviceProfile:
    """A shipped profile by name.

    Raises:
        UnknownNameError: no such profile (the valid ones are listed).
    """
    known = profiles()
    if name not in known:
        raise UnknownNameError("device profile", name, known)
    return known[name]


# ---------------------------------------------------------------------------------------------
# ssh:// urls


@dataclass(frozen=True)
class SshTarget:
    """Where an ssh device is: user (None: ssh's default), host, port (None: ssh's default)."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, url: str) -> SshTarget:
        """Parse ``ssh://user@host[:port]`` (user optional; IPv6 hosts in brackets).

        Raises:
            OptionError: anything else, naming the url and the form expected.
        """
        bad = f"bad ssh url {url!r}: write {URL_FORM}"
        if not isinstance(url, str) or not url.startswith(SSH_SCHEME):
            raise OptionError(bad)
        rest = url[len(SSH_SCHEME):].rstrip("/")
        if not rest or "/" in rest or "?" in rest or "#" in rest:
            raise OptionError(bad)
        user, sep, hostport = rest.rpartition("@")
        if sep and not user:
            raise OptionError(bad + " (the user before @ is empty)")
        if ":" in user:
            raise OptionError(f"bad ssh url {url!r}: no passwords in the url; the board is reached with your "
                              "ssh keys (ssh-copy-id user@host once)")
        if user and not _USER.match(user):
            raise OptionError(bad + f" (user {user!r})")
        port = None
        host = hostport
        match = re.match(r"^(\[[^\]]+\]|[^:]+)(?::(\d*))?$", hostport)
        if not match:
            raise OptionError(bad)
        host, port_text = match.group(1), match.group(2)
        if port_text is not None:
            if not port_text or not 0 < int(port_text) < 65536:
                raise OptionError(f"bad ssh url {url!r}: the port must be a number from 1 to 65535")
            port = int(port_text)
        if not _HOST.match(host):
            raise OptionError(bad + f" (host {host!r})")
        return cls(host=host.strip("[]"), user=user or None, port=port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return SSH_SCHEME + (f"{self.user}@" if self.user else "") + host + (f":{self.port}" if self.port else "")


# ---------------------------------------------------------------------------------------------
# The user's config


@dataclass(frozen=True)
class ConfiguredDevice:
    """A device the user registered: a name for an ssh url, with how to reach it."""

    name: str
    url: str
    profile: str | None = None
    description: str = ""
    python: str = "python3"
    identity_file: str | None = None
    known_hosts: str | None = None
    ssh_config: str | None = None
    connect_timeout_s: float = 10.0
    timeout_s: float = 1800.0

    @property
    def target(self) -> SshTarget:
        return SshTarget.parse(self.url)

    def ssh_options(self) -> dict[str, Any]:
        """The keyword arguments `measure.ssh.SshDevice` takes for this device."""
        return {"python": self.python, "identity_file": self.identity_file, "known_hosts": self.known_hosts,
                "ssh_config": self.ssh_config, "connect_timeout_s": self.connect_timeout_s,
                "timeout_s": self.timeout_s}


DEVICE_KEYS = tuple(f.name for f in dataclasses.fields(ConfiguredDevice) if f.name != "name")
_PATH_KEYS = ("identity_file", "known_hosts", "ssh_config")


@dataclass(frozen=True)
class DeviceConfig:
    """The user's devices.toml, validated (empty when the file does not exist)."""

    path: Path
    devices: dict[str, ConfiguredDevice] = field(default_factory=dict)
    default: str | None = None


def config_path() -> Path:
    """$ADVISOR_CONFIG, else $XDG_CONFIG_HOME/compression-advisor/devices.toml (~/.config by default)."""
    if os.environ.get("ADVISOR_CONFIG"):
        return Path(os.environ["ADVISOR_CONFIG"]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "compression-advisor" / "devices.toml"


def _device_entry(name: str, table: Any, where: str) -> ConfiguredDevice:
    if not _NAME.match(name) or name == LOCAL:
        raise OptionError(f"{where}: device name {name!r} must start with a letter, hold only letters, digits, "
                          "'_', '-' and '.', and not be 'local'")
    if name in profiles():
        raise OptionError(f"{where}: {name!r} is the name of a shipped profile; name your device differently "
                          f"and set profile = \"{name}\"")
    if not isinstance(table, dict):
        raise OptionError(f"{where}: must be a table with keys {', '.join(DEVICE_KEYS)}")
    unknown = [k for k in table if k not in DEVICE_KEYS]
    if unknown:
        raise OptionError(f"{where}: unknown key '{unknown[0]}' (valid keys: {', '.join(DEVICE_KEYS)})")
    if "url" not in table:
        raise OptionError(f"{where}: needs url = \"{URL_FORM}\"")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in ("connect_timeout_s", "timeout_s"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise OptionError(f"{where}: {key} = {value!r} must be a positive number of seconds")
            values[key] = float(value)
            continue
        if not isinstance(value, str) or not value.strip():
            raise OptionError(f"{where}: {key} = {value!r} must be a non-empty string")
        values[key] = str(Path(value).expanduser()) if key in _PATH_KEYS else value
    try:
        values["url"] = SshTarget.parse(values["url"]).url
    except OptionError as exc:
        raise OptionError(f"{where}: url: {exc}") from None
    if values.get("profile") is not None and values["profile"] not in profiles():
        raise OptionError(f"{where}: profile: {UnknownNameError('device profile', values['profile'], profiles())}")
    if any(c in values.get("python", "") for c in "\n;&|`$<>"):
        raise OptionError(f"{where}: python = {values['python']!r} must be an interpreter path or name")
    return ConfiguredDevice(name=name, **values)


def load_config(path: Path | None = None) -> DeviceConfig:
    """Read and validate the user's devices.toml (see the module docstring); no file, no devices.

    Raises:
        OptionError: unparsable TOML, an unknown key (the valid ones listed), a bad url, a
            profile that does not exist, a default that names no device; with the file and key.
    """
    path = Path(path) if path is not None else config_path()
    if not path.exists():
        return DeviceConfig(path=path)
    tomllib = _toml_parser()
    if tomllib is None:
        raise OptionError(f"reading {path} needs Python 3.11 or the tomli package (pip install tomli)")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return DeviceConfig(path=path)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise OptionError(f"device config {path} is not valid TOML: {' '.join(str(exc).split())}") from None
    unknown = [k for k in data if k not in CONFIG_KEYS]
    if unknown:
        raise OptionError(f"{path}: unknown key '{unknown[0]}' (valid keys: {', '.join(CONFIG_KEYS)}; "
                          "each device is a [devices.NAME] table)")
    tables = data.get("devices", {})
    if not isinstance(tables, dict):
        raise OptionError(f"{path}: devices must be tables: [devices.NAME] with url = \"{URL_FORM}\"")
    devices = {name: _device_entry(name, table, f"{path}: devices.{name}") for name, table in tables.items()}
    default = data.get("default")
    if default is not None:
        valid = [LOCAL, *devices, *profiles()]
        if not isinstance(default, str):
            raise OptionError(f"{path}: default = {default!r} must be a device name")
        if default not in valid and not default.startswith(SSH_SCHEME):
            raise OptionError(f"{path}: default: {UnknownNameError('device', default, valid)}")
        if default.startswith(SSH_SCHEME):
            try:
                SshTarget.parse(default)
            except OptionError as exc:
                raise OptionError(f"{path}: default: {exc}") from None
    return DeviceConfig(path=path, devices=devices, default=default)


def default_device() -> str:
    """The default of `--device`: the config's `default`, else 'local'."""
    return load_config().default or LOCAL


# ---------------------------------------------------------------------------------------------
# What a reached board said of itself (cached)


def cache_dir() -> Path:
    """$ADVISOR_CACHE/devices (default ~/.cache/compression-advisor/devices)."""
    from advisor.lookup import cache_root

    return cache_root() / "devices"


def _cache_file(url: str) -> Path:
    return cache_dir() / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}.json"


def cached_probe(url: str) -> dict | None:
    """What the board at `url` reported when last probed (fingerprint, interpreter, energy), or None."""
    try:
        data = json.loads(_cache_file(url).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("url") != url or not isinstance(data.get("fingerprint"), dict):
        return None
    return data


def save_probe(url: str, probe: dict) -> Path:
    """Keep a board's probe (atomically) for later offline lookups."""
    from advisor.atomic import write_bytes_atomic

    return write_bytes_atomic(_cache_file(url), json.dumps({**probe, "url": url}, sort_keys=True).encode())


# ---------------------------------------------------------------------------------------------
# Names to fingerprints (for the predictor)


def unknown_device_error(name: str, known: list[str] | tuple[str, ...], config: DeviceConfig | None = None
                         ) -> UnknownNameError:
    """An UnknownNameError for `--device` that lists the names by kind (known: local and the bundle's)."""
    config = config if config is not None else load_config()
    groups = {"profiles": sorted(profiles()), "configured": sorted(config.devices)}
    everything = [*known, *groups["profiles"], *groups["configured"]]
    err = UnknownNameError("device", name, everything)
    hint = f"; did you mean {', '.join(err.close)}?" if err.close else ""
    extra = "".join(f"; {kind}: {', '.join(names)}" for kind, names in groups.items() if names)
    err.args = (f"unknown device '{name}'{hint} (valid: {', '.join(sorted(known))}{extra}; "
                f"or {URL_FORM} of a board reached before)",)
    return err


def known_fingerprint(name: str, config: DeviceConfig | None = None) -> tuple[dict, str] | None:
    """(fingerprint, where it comes from) for a profile, a configured device or an ssh url; else None.

    A configured device or url gives the fingerprint its board reported when last reached; a
    configured device never reached gives its profile's, if it names one.

    Raises:
        OptionError: a configured device that was never reached and names no profile.
    """
    known = profiles()
    if name in known:
        return dict(known[name].fingerprint), f"the published specifications of the {known[name].title} profile"
    config = config if config is not None else load_config()
    entry = config.devices.get(name)
    url = entry.url if entry is not None else None
    if url is None and name.startswith(SSH_SCHEME):
        url = SshTarget.parse(name).url
    if url is None:
        return None
    probe = cached_probe(url)
    if probe is not None:
        return dict(probe["fingerprint"]), f"the fingerprint {url} reported on {probe.get('probed_at', '?')}"
    if entry is not None and entry.profile:
        return (dict(known[entry.profile].fingerprint),
                f"the {known[entry.profile].title} profile (the board itself was not reached yet)")
    raise OptionError(f"device '{name}' ({url}) has not been reached yet, so its hardware is unknown: run "
                      "`advisor devices --probe` once, or give it a profile in " + str(config.path))


# ---------------------------------------------------------------------------------------------
# Rows in the dataset, per device


def measured_rows(store_root: Path) -> dict[str, dict[str, Any]]:
    """Measured configurations stored with status ok, per `device`: {"rows", "fingerprint_id", "cpu_model"}.

    Reads only the columns it needs from each Parquet shard (not the whole dataset) and counts
    each config id once, as `Store.read()` keeps it. Published rows are not measured rows.
    """
    shards = sorted((Path(store_root) / "measurements").glob("*.parquet"))
    if not shards:
        return {}
    import pyarrow.dataset as pads

    columns = ["config_id", "status", "source", "device", "fingerprint_id", "cpu_model"]
    table = pads.dataset([str(p) for p in shards], format="parquet").to_table(columns=columns).to_pydict()
    seen: dict[str, tuple[str, str, str]] = {}
    for cid, status, source, device, fid, cpu in zip(*(table[c] for c in columns)):
        if status == "ok" and source == "measured":
            seen[cid] = (device, fid, cpu)
    out: dict[str, dict[str, Any]] = {}
    for device, fid, cpu in seen.values():
        entry = out.setdefault(device, {"rows": 0, "fingerprint_id": fid, "cpu_model": cpu})
        entry["rows"] += 1
    return out


def list_devices(store_root: Path | None, config: DeviceConfig | None = None) -> list[dict[str, Any]]:
    """Every known device: local, the configured ones, the profiles, then any other device the
    dataset holds rows for. Each: name, kind, description, reached, energy, rows.
    """
    from advisor.fingerprint import fingerprint_id
    from advisor.lookup import local_fingerprint

    config = config if config is not None else load_config()
    by_device = measured_rows(store_root) if store_root is not None else {}
    counted: set[str] = set()

    def rows_for(fid: str | None, *device_ids: str) -> int:
        """Rows under these device ids, or of this hardware under any name (`local:<id>`, `ssh:<id>`)."""
        ids = {d for d in device_ids if d in by_device}
        if fid:
            ids |= {d for d, e in by_device.items() if e["fingerprint_id"] == fid or d.rpartition(":")[2] == fid}
        counted.update(ids)
        return sum(by_device[d]["rows"] for d in ids)

    out = []
    fp = local_fingerprint()
    fid = fingerprint_id(fp)
    out.append({"name": LOCAL, "kind": "local", "id": f"local:{fid}",
                "description": f"this machine: {fp.get('cpu_model')}, {fp.get('logical_cpus')} logical CPUs"
                               + (f", {fp['accelerator']}" if fp.get("accelerator") else ""),
                "reached": "local", "energy": _local_energy(), "rows": rows_for(fid, f"local:{fid}"),
                "default": (config.default or LOCAL) == LOCAL})
    known = profiles()
    for name, entry in config.devices.items():
        probe = cached_probe(entry.url)
        profile = known.get(entry.profile) if entry.profile else None
        if probe is not None:
            energy = probe.get("energy", {}).get("sensor") or "none"
            pid = fingerprint_id(probe["fingerprint"])
            rows = rows_for(pid, f"ssh:{pid}")
        else:
            energy = (f"{profile.energy_sensor or 'none'} (from its profile; not reached yet)" if profile
                      else "unknown (not reached yet)")
            pid, rows = None, 0
        description = entry.description or (profile.title if profile else "")
        out.append({"name": name, "kind": "configured", "id": f"ssh:{pid}" if pid else None,
                    "description": description, "reached": entry.url, "profile": entry.profile,
                    "energy": energy, "rows": rows, "default": config.default == name,
                    "probed_at": probe.get("probed_at") if probe else None})
    for name, profile in known.items():
        out.append({"name": name, "kind": "profile", "id": None, "description": profile.title,
                    "reached": "profile only", "energy": profile.energy_sensor or "none",
                    "rows": rows_for(profile.fingerprint_id), "default": config.default == name})
    for device in sorted(set(by_device) - counted):
        entry = by_device[device]
        out.append({"name": device, "kind": "dataset", "id": device,
                    "description": f"measured elsewhere: {entry['cpu_model'] or 'unknown CPU'}",
                    "reached": "not configured", "energy": "-", "rows": entry["rows"], "default": False})
    return out


def _local_energy() -> str:
    try:
        from measure import energy
    except ImportError:  # the advisor side installed alone
        return "unknown (the measurement side is not installed)"
    sensor, _why = energy.detect_sensor()
    return sensor.name if sensor is not None else "none"
