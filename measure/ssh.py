"""A board reached over SSH: the agent bundle and the job travel to it, the JSON comes back.

Every call is one `ssh` session, self-contained: a tar stream on stdin unpacks the agent
bundle (`agent.py`, `timing.py`, `energy.py`, `fingerprint.py`: stdlib, numpy and a TFLite
interpreter are all they need) and the job's files into a fresh `mktemp -d` folder on the board,
`python3 agent.py ...` runs there, its JSON comes back on stdout, and the folder is removed
when the session ends, however it ends. Nothing stays on the board between calls.

The system OpenSSH client does the work with the user's own keys, agent, ssh_config and
known_hosts: `BatchMode=yes` (no password or passphrase is ever asked for or passed), host keys
are checked as the user's ssh checks them (an unknown host is refused, never added), a connect
time-out, keep-alives that notice a board that dropped off, and an overall time-out per call.

The board's side is POSIX `sh`, `mktemp`, `tar` and Python 3.6 or newer (a Jetson TX2 stops at
JetPack 4.6, Python 3.6): the probe below is kept to that, and a test checks it.
"""

from __future__ import annotations

import io
import json
import math
import shlex
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from advisor import fingerprint
from advisor.devices import SshTarget, save_probe

_HERE = Path(__file__).resolve().parent
#: The agent bundle, by the name each file has on the board (agent.py imports the others side by side).
BUNDLE = {"agent.py": _HERE / "agent.py", "timing.py": _HERE / "timing.py", "energy.py": _HERE / "energy.py",
          "fingerprint.py": _HERE.parent / "advisor" / "fingerprint.py"}

#: What the board says of itself: its fingerprint, which TFLite interpreter it has (found, not
#: imported: TensorFlow takes many seconds to import on a TX2) and its energy sensor. Python 3.6.
PROBE_SOURCE = '''\
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import agent  # noqa: E402 - energy.py, fingerprint.py and timing.py sit beside it

try:
    from importlib import util as _util
except ImportError:
    _util = None


def _interpreter():
    wanted = os.environ.get("ADVISOR_INTERPRETER")
    for name, module in agent.INTERPRETERS:
        if wanted and wanted != name:
            continue
        if _util is not None and _util.find_spec(module.split(".")[0]) is not None:
            return {"name": name, "version": agent._dist_version(name)}, None
    return None, "no TFLite interpreter found (tried {})".format(", ".join(n for n, _ in agent.INTERPRETERS))


interpreter, error = _interpreter()
sensor, why = agent.energy.detect_sensor()
out = {"fingerprint": agent.fingerprint.collect_fingerprint(), "interpreter": interpreter,
       "interpreter_error": error, "energy": {"sensor": sensor.name if sensor is not None else None, "note": why}}
json.dump(out, sys.stdout)
sys.stdout.write("\\n")
'''

# Exit codes of the board-side script for its own steps (the agent's own are 0-2, signals 128+).
_NO_TMPDIR, _NO_UNPACK, _NOT_FOUND = 97, 98, 127
#: The board-side script (POSIX sh): "$@" is the interpreter and its arguments.
REMOTE_SCRIPT = (
    f'd=$(mktemp -d "${{TMPDIR:-/tmp}}/advisor-agent.XXXXXX") || exit {_NO_TMPDIR}\n'
    "trap 'rm -rf \"$d\"' EXIT\n"
    "trap 'exit 129' HUP INT TERM\n"
    f'tar -xf - -C "$d" || exit {_NO_UNPACK}\n'
    f'cd "$d" || exit {_NO_UNPACK}\n'
    '"$@"\n'
)

# ssh's own failures exit 255; the last stderr line says why. Hints by what it says.
_HINTS = (
    (("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED", "host key is known"),
     "its host key is not in your known_hosts or has changed: connect once with plain `ssh` and check the "
     "key it shows (host keys are never accepted blindly)"),
    (("Permission denied", "Too many authentication failures"),
     "your ssh key is not accepted there (ssh-copy-id user@host once; passwords are never used)"),
    (("Could not resolve hostname",), "the host name does not resolve"),
    (("Connection refused",), "nothing listens on that port (is sshd running?)"),
    (("timed out", "Timeout", "No route to host", "Network is unreachable"),
     "the board does not answer (off, asleep or off the network)"),
)

_PROBES: dict[str, dict] = {}  # what each board said of itself this session, by url
_PROBES_LOCK = threading.Lock()


def clear_session_cache() -> None:
    """Forget the boards probed in this process (the next call asks them again)."""
    with _PROBES_LOCK:
        _PROBES.clear()


def ssh_failure(url: str, returncode: int, stderr: str, python: str = "python3") -> DeviceError:
    """The error for a failed `ssh` call: `DeviceUnreachableError` when ssh itself failed (exit
    255: refused, timed out, host key, authentication), a `DeviceError` when the board-side
    script or the agent did. Pure, so it is tested on captured messages."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    tail = lines[-1] if lines else "(no output)"
    if returncode == 255:
        text = " ".join(lines)
        hint = next((h for needles, h in _HINTS if any(n in text for n in needles)), "ssh could not open a session")
        return DeviceUnreachableError(f"device {url} is unreachable: {tail} ({hint})")
    if returncode in (_NO_TMPDIR, _NO_UNPACK):
        return DeviceError(f"could not unpack the agent in a temporary folder on {url}: {tail}")
    if returncode == _NOT_FOUND and "not found" in stderr:
        return DeviceError(f"{python} not found on {url}: set python = \"/path/to/python3\" for this device in "
                           "devices.toml")
    return DeviceError(f"the agent failed on {url} (exit {returncode}): {tail}")


def _tar(files: dict[str, Path | bytes]) -> bytes:
    """A ustar archive (what every tar reads, busybox's too) of `files`: name on the board -> source."""
    buf = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, source in files.items():
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = now, 0o644
            if isinstance(source, bytes):
                info.size = len(source)
                tar.addfile(info, io.BytesIO(source))
            else:
                info.size = Path(source).stat().st_size
                with open(source, "rb") as fh:
                    tar.addfile(info, fh)
    return buf.getvalue()


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class SshDevice:
    """A board at an ``ssh://user@host[:port]`` url, measured by the agent run there.

    `name` is what `measure.devices.get_device` resolves back to this device (a configured name,
    or the url), so a campaign's worker processes reach the same board. The other fields are
    how to reach it (see advisor/devices.py); `ssh` is the client to run.
    """

    url: str
    name: str = ""
    python: str = "python3"
    identity_file: str | None = None
    known_hosts: str | None = None
    ssh_config: str | None = None
    connect_timeout_s: float = 10.0
    timeout_s: float = 1800.0
    ssh: str = "ssh"

    def __post_init__(self) -> None:
        target = SshTarget.parse(self.url)  # a bad url fails here, before anything runs
        object.__setattr__(self, "url", target.url)
        if not self.name:
            object.__setattr__(self, "name", target.url)

    @property
    def target(self) -> SshTarget:
        return SshTarget.parse(self.url)

    def ssh_command(self, argv: list[str]) -> list[str]:
        """The `ssh` command line that runs `argv` on the board inside a fresh, self-removing folder."""
        target = self.target
        cmd = [self.ssh]
        if self.ssh_config:
            cmd += ["-F", self.ssh_config]
        cmd += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, math.ceil(self.connect_timeout_s))}",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4", "-o", "LogLevel=ERROR"]
        if self.identity_file:
            cmd += ["-i", self.identity_file, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts:
            cmd += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        if target.port:
            cmd += ["-p", str(target.port)]
        if target.user:
            cmd += ["-l", target.user]
        # The board's login shell parses this line: hand everything to sh, each word quoted.
        remote = " ".join(shlex.quote(w) for w in ["sh", "-c", REMOTE_SCRIPT, "advisor-agent", *argv])
        return [*cmd, target.host, remote]

    def _call(self, files: dict[str, Path | bytes], argv: list[str], what: str) -> dict:
        payload = _tar({**BUNDLE, **files})
        try:
            proc = subprocess.run(self.ssh_command([self.python, *argv]), input=payload, capture_output=True,
                                  timeout=self.timeout_s, check=False)
        except FileNotFoundError:
            raise DeviceError(f"no ssh client '{self.ssh}' on this machine (install openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{what} on {self.url} took longer than {self.timeout_s:.0f} s (stopped)") from None
        stderr = proc.stderr.decode("utf-8", "replace")
        if proc.returncode != 0:
            raise ssh_failure(self.url, proc.returncode, stderr, self.python)
        return parse_agent_output(proc.stdout.decode("utf-8", "replace"))

    def probe(self, refresh: bool = False) -> dict:
        """What the board says of itself: fingerprint, interpreter, energy sensor (asked once a session,
        and kept in the device cache for offline lookups).

        Raises:
            DeviceUnreachableError: no session could be opened; DeviceError: the board could not run it.
        """
        with _PROBES_LOCK:
            known = None if refresh else _PROBES.get(self.url)
        if known is not None:
            return known
        out = self._call({"probe.py": PROBE_SOURCE.encode()}, ["probe.py"], "the probe")
        if not isinstance(out.get("fingerprint"), dict):
            raise DeviceError(f"the probe on {self.url} returned no fingerprint")
        out["probed_at"] = _utc_now()
        with _PROBES_LOCK:
            _PROBES[self.url] = out
        try:
            save_probe(self.url, out)
        except OSError:  # the cache is a convenience; measuring does not need it
            pass
        return out

    @property
    def device_id(self) -> str:
        """The name rows are stored under: `ssh:` and the board's own fingerprint id (so one board
        reached by two names, or two identical boards, share their measurements)."""
        return f"ssh:{fingerprint.fingerprint_id(self.probe()['fingerprint'])}"

    def describe(self) -> dict:
        probe = self.probe()
        return {"name": self.name, "id": self.device_id, "reached": self.url, "fingerprint": probe["fingerprint"],
                "interpreter": probe.get("interpreter"), "energy": probe.get("energy")}

    def check(self) -> None:
        """Reach the board and make sure it has a TFLite interpreter.

        Raises:
            DeviceUnreachableError, DeviceError.
        """
        probe = self.probe()
        if probe.get("interpreter") is None:
            raise DeviceError(f"no TFLite interpreter on {self.url}: {probe.get('interpreter_error')}; install "
                              "ai-edge-litert, tflite-runtime or TensorFlow there")

    def run(self, job_dir: Path, job: dict) -> dict:
        """Send the job's `.tflite` files (and evaluation data) with the agent, run it, return its JSON."""
        expected = self.probe()["fingerprint"]
        files: dict[str, Path | bytes] = {}
        remote = dict(job)
        remote["models"] = []
        for i, model in enumerate(job["models"]):
            files[f"model{i}.tflite"] = Path(model["path"])
            remote["models"].append(dict(model, path=f"model{i}.tflite"))
        if job.get("eval"):
            files["eval.npz"] = Path(job["eval"]["npz"])
            remote["eval"] = dict(job["eval"], npz="eval.npz")
        files["job.json"] = json.dumps(remote).encode()
        result = self._call(files, ["agent.py", "run", "job.json"], "the measurement")
        got = result.get("fingerprint") or {}
        if fingerprint.fingerprint_id(got) != fingerprint.fingerprint_id(expected):
            raise DeviceError(f"the board at {self.url} is not the one probed at the start of this session "
                              f"(fingerprint {fingerprint.fingerprint_id(expected)}, now "
                              f"{fingerprint.fingerprint_id(got)}): measure again")
        return result

    def memory(self, tflite_path: Path, threads: int, runs: int = 5, token_max: int | None = None) -> dict:
        """Peak memory of a fresh agent process on the board holding only this model."""
        return self._call({"model.tflite": Path(tflite_path)},
                          ["agent.py", "mem", "model.tflite", str(int(threads)), str(int(runs)),
                           *agent_token_arg(token_max)], "reading peak memory")


# At the end, not the top: measure.devices registers SshDevice by importing this module, and
# this module's functions need its errors; either module may be imported first.
from measure.devices import DeviceError, DeviceUnreachableError, agent_token_arg, parse_agent_output  # noqa: E402
