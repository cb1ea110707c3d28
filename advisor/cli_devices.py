"""Command-line commands for devices: `advisor devices`.

`register(app)` adds them to the `advisor` app. Nothing here imports TensorFlow; `--probe`
reaches the configured boards over SSH (measure/ssh.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from advisor.cli_kit import App, Option, echo
from advisor.cli_predictor import JsonOpt
from advisor.lookup import DEFAULT_STORE


def _probe_all(config) -> list[dict]:
    from measure.devices import DeviceError
    from measure.ssh import SshDevice

    out = []
    for name, entry in config.devices.items():
        device = SshDevice(url=entry.url, name=name, **entry.ssh_options())
        try:
            probe = device.probe(refresh=True)
        except DeviceError as exc:
            out.append({"name": name, "ok": False, "error": str(exc)})
            continue
        interp = probe.get("interpreter") or {}
        out.append({"name": name, "ok": True, "id": device.device_id, "python": probe["fingerprint"].get("python"),
                    "interpreter": interp.get("name"), "interpreter_version": interp.get("version"),
                    "interpreter_error": probe.get("interpreter_error"),
                    "energy": (probe.get("energy") or {}).get("sensor")})
    return out


def devices(
    store: Annotated[Path, Option("--store", help="Dataset store whose rows are counted per device.")]
    = DEFAULT_STORE,
    probe: Annotated[bool, Option("--probe", help="Reach each configured board over SSH now and keep what "
                                                  "it reports (fingerprint, interpreter, energy sensor).")]
    = False,
    as_json: JsonOpt = False,
) -> None:
    """List the known devices: this machine, your configured boards, the shipped board profiles."""
    from advisor import devices as registry

    config = registry.load_config()
    probes = _probe_all(config) if probe else None
    items = registry.list_devices(store, config)
    if as_json:
        from advisor.cli_predictor import _emit

        for item in items:
            if item["kind"] == "profile":
                item["profile"] = registry.get_profile(item["name"]).to_dict()
        _emit({"config": str(config.path), "config_exists": config.path.exists(), "store": str(store),
               "devices": items, **({"probes": probes} if probes is not None else {})})
        return
    for p in probes or []:
        if p["ok"]:
            interp = p["interpreter"] or f"no TFLite interpreter ({p['interpreter_error']})"
            echo(f"probe {p['name']}: reached, {p['id']}, Python {p['python']}, {interp}"
                 f"{' ' + p['interpreter_version'] if p.get('interpreter_version') else ''}, "
                 f"energy {p['energy'] or 'none'}")
        else:
            echo(f"probe {p['name']}: {p['error']}")
    w_name = max(len(i["name"]) for i in items)
    w_reached = max(len(i["reached"]) for i in items)
    w_energy = max(len(i["energy"]) for i in items)
    echo(f"  {'device':<{w_name}}  {'reached':<{w_reached}}  {'energy':<{w_energy}}  {'rows':>6}  description")
    for i in items:
        mark = "*" if i["default"] else " "
        echo(f"{mark} {i['name']:<{w_name}}  {i['reached']:<{w_reached}}  {i['energy']:<{w_energy}}  "
             f"{i['rows']:>6}  {i['description']}")
    notes: dict[str, list[str]] = {}
    for name, prof in registry.profiles().items():
        notes.setdefault(prof.tflite_note, []).append(name)
    for note, names in notes.items():
        echo(f"  {', '.join(names)}: {note}")
    state = "" if config.path.exists() else " (absent: add your boards there as [devices.NAME] url = \"ssh://...\")"
    echo(f"  * = the default --device; rows = measured configurations in {store}")
    echo(f"  config: {config.path}{state}")


def register(app: App) -> None:
    """Add `devices` to the `advisor` app."""
    app.command("devices")(devices)
