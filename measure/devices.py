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
from advisor.errors import AdvisorError, UnknownNameError


class DeviceError(AdvisorError):
    """The device could not run a job (agent crashed, unreachable, bad output)."""


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

    def memory(self, tflite_path: Path, threads: int, runs: int = 5) -> dict:
        return self._agent(["mem", str(tflite_path), str(threads), str(runs)])


DEVICES = {"local": LocalDevice}


def get_device(name: str):
    """A device by name (`local`; remote kinds arrive with the devices issue)."""
    if name not in DEVICES:
        raise UnknownNameError("device", name, DEVICES)
    return DEVICES[name]()
