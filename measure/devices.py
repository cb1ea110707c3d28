"""Devices that run measurement jobs: the agent runs next to the model, wherever that is.

`Device.run(job_dir, job)` takes a folder holding the `.tflite` files (and evaluation data)
and a job description, runs the agent there, and returns its parsed JSON. Parsing what a
device returns is a pure function (`parse_agent_output`), tested on captured output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from advisor import fingerprint
from advisor.errors import AdvisorError, OptionError, UnknownNameError


class DeviceError(AdvisorError):
    """The device could not run a job (agent crashed, unreachable, bad output)."""


class DeviceUnreachableError(DeviceError):
    """No session with the device could be opened (refused, timed out, host key, authentication).

    Says nothing about the configuration being measured: a campaign stops on it, without storing
    the configuration as failed, so that a rerun resumes it once the board is back."""


def parse_agent_output(stdout: str) -> dict:
    """The agent prints one JSON object as its last line; anything before it is noise."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError as exc:
                raise DeviceError(f"the agent's output is not valid JSON: {exc}") from exc
    raise DeviceError("the agent printed no JSON result")


@dataclass(frozen=True)
class LocalDevice:
    """This machine, identified by its fingerprint. The agent runs in a fresh subprocess
    (no TensorFlow in it), so the memory and time it measures are the interpreter's alone."""

    name: str = "local"
    timeout_s: float = 1800.0

    def describe(self) -> dict:
        fp = fingerprint.collect_fingerprint()
        return {"name": self.name, "id": self.device_id, "reached": "in process (subprocess agent)",
                "fingerprint": fp}

    @property
    def device_id(self) -> str:
        """The name rows are stored under: `local` qualified by the hardware fingerprint."""
        return f"local:{fingerprint.fingerprint_id(fingerprint.collect_fingerprint())}"

    def check(self) -> None:
        from measure.agent import load_interpreter_class

        try:
            load_interpreter_class()
        except RuntimeError as exc:
            raise DeviceError(str(exc)) from exc

    def _agent(self, args: list[str]) -> dict:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        try:
            proc = subprocess.run([sys.executable, "-m", "measure.agent", *args], capture_output=True,
                                  text=True, env=env, timeout=self.timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise DeviceError(f"the agent took longer than {self.timeout_s:.0f} s") from exc
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise DeviceError(f"the agent failed (exit {proc.returncode}): {tail}")
        return parse_agent_output(proc.stdout)

    def run(self, job_dir: Path, job: dict) -> dict:
        job_path = Path(job_dir) / "job.json"
        job_path.write_text(json.dumps(job))
        return self._agent(["run", str(job_path)])

    def memory(self, tflite_path: Path, threads: int, runs: int = 5, token_max: int | None = None) -> dict:
        """Peak memory of a fresh agent process holding only this model (`token_max`: token ids fed
        to an integer input stay below it; None: the agent's default)."""
        return self._agent(["mem", str(tflite_path), str(threads), str(runs), *agent_token_arg(token_max)])


def agent_token_arg(token_max: int | None) -> list[str]:
    """The agent `mem` command's optional TOKEN_MAX argument."""
    return [] if token_max is None else [str(int(token_max))]


from measure.ssh import SshDevice  # noqa: E402 - it imports DeviceError from here

#: Device kinds: `local`, and `ssh` for ssh://user@host[:port] urls and the names configured in
#: devices.toml (see advisor/devices.py).
DEVICES = {"local": LocalDevice, "ssh": SshDevice}


def check_device_name(name: str) -> str:
    """Validate a device name without reaching the device; returns it.

    Raises:
        OptionError: a bad ssh url, or a profile name (profiles cannot be measured on).
        UnknownNameError: anything else, listing local, the configured devices and the url form.
    """
    from advisor import devices as registry

    if name == "local":
        return name
    if name.startswith(registry.SSH_SCHEME):
        registry.SshTarget.parse(name)
        return name
    config = registry.load_config()
    if name in config.devices:
        return name
    if name in registry.profiles():
        raise OptionError(f"'{name}' is a device profile (published specifications), not a device to measure on: "
                          f"add your board to {config.path} as [devices.NAME] with url = \"{registry.URL_FORM}\" "
                          f"and profile = \"{name}\", then use --device NAME")
    raise UnknownNameError("device", name, ["local", *config.devices, registry.URL_FORM])


def get_device(name: str):
    """A device by name: 'local', an ssh://user@host[:port] url, or a device configured in devices.toml.

    Nothing is reached yet: the device connects when it is first used.
    """
    from advisor import devices as registry

    check_device_name(name)
    if name == "local":
        return LocalDevice()
    if name.startswith(registry.SSH_SCHEME):
        return SshDevice(url=registry.SshTarget.parse(name).url, name=name)
    entry = registry.load_config().devices[name]
    return SshDevice(url=entry.url, name=name, **entry.ssh_options())
