"""Measuring over SSH for real: a throwaway OpenSSH server on 127.0.0.1, a real client, the real agent.

The "board" is this machine reached through sshd, with a Python that cannot import this project
(stub `advisor` and `measure` packages shadow it), so the agent bundle must be self-contained.
"""

from __future__ import annotations

import dataclasses
import getpass
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from advisor.fingerprint import collect_fingerprint, fingerprint_id
from measure import ssh as ssh_mod
from measure.devices import DeviceError, DeviceUnreachableError, get_device
from measure.ssh import PROBE_SOURCE, REMOTE_SCRIPT, SshDevice, ssh_failure

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
TOOLS = {"sshd": SSHD, "ssh": shutil.which("ssh"), "ssh-keygen": shutil.which("ssh-keygen")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class SshServer:
    """One `sshd -D` on 127.0.0.1 as the current user, with the keys in `keys` (see `ssh_keys`)."""

    keys: Path
    port: int
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ssh://{getpass.getuser()}@127.0.0.1:{self.port}"

    def start(self) -> SshServer:
        config = self.keys / f"sshd_config_{self.port}"
        config.write_text(textwrap.dedent(f"""\
            ListenAddress 127.0.0.1
            HostKey {self.keys / 'host_key'}
            PidFile {self.keys / f'sshd_{self.port}.pid'}
            AuthorizedKeysFile {self.keys / 'authorized_keys'}
            StrictModes no
            PubkeyAuthentication yes
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            UsePAM no
            PermitRootLogin prohibit-password
            LogLevel ERROR
            """))
        log = open(self.keys / f"sshd_{self.port}.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config), "-p", str(self.port)],
                                     stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited {self.proc.returncode}: "
                                   f"{(self.keys / f'sshd_{self.port}.log').read_text()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not listen on port {self.port} within 15 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def device(self, **overrides: Any) -> SshDevice:
        """The board as an SshDevice: the throwaway key, the known_hosts written for it, no user ssh_config."""
        options = {"python": str(self.keys / "board-python"), "identity_file": str(self.keys / "client_key"),
                   "known_hosts": str(self.keys / "known_hosts"), "ssh_config": "/dev/null",
                   "connect_timeout_s": 5.0, "timeout_s": 300.0}
        return SshDevice(url=self.url, **{**options, **overrides})

    def config_toml(self, name: str = "board") -> str:
        """The same board as a devices.toml entry."""
        return textwrap.dedent(f"""\
            default = "{name}"
            [devices.{name}]
            url = "{self.url}"
            profile = "jetson_tx2"
            python = "{self.keys / 'board-python'}"
            identity_file = "{self.keys / 'client_key'}"
            known_hosts = "{self.keys / 'known_hosts'}"
            ssh_config = "/dev/null"
            connect_timeout_s = 5
            timeout_s = 300
            """)


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory) -> Path:
    """Throwaway host and client keys, authorized_keys and known_hosts, and a board-side Python
    on which this project is not importable."""
    missing = [name for name, path in TOOLS.items() if not path or not os.access(path, os.X_OK)]
    if missing:
        pytest.skip(f"OpenSSH not installed ({', '.join(missing)} missing): "
                    "apt-get install -y openssh-server openssh-client")
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation folder, as its service makes
    keys = tmp_path_factory.mktemp("ssh")
    for name in ("host_key", "client_key"):
        subprocess.run([TOOLS["ssh-keygen"], "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(keys / name)],
                       check=True)
    shutil.copy(keys / "client_key.pub", keys / "authorized_keys")
    stub = keys / "not-on-the-board"
    for package in ("advisor", "measure"):
        (stub / package).mkdir(parents=True)
        (stub / package / "__init__.py").write_text(f"raise ImportError('{package} is not on the board')\n")
    board_python = keys / "board-python"
    board_python.write_text(f"#!/bin/sh\nPYTHONPATH={stub} exec {sys.executable} \"$@\"\n")
    board_python.chmod(0o755)
    return keys


def _trust(keys: Path, port: int) -> None:
    host_key = " ".join((keys / "host_key.pub").read_text().split()[:2])
    with open(keys / "known_hosts", "a") as fh:
        fh.write(f"[127.0.0.1]:{port} {host_key}\n")


@pytest.fixture(scope="session")
def sshd(ssh_keys):
    """A real OpenSSH server on 127.0.0.1 for the whole session."""
    port = _free_port()
    _trust(ssh_keys, port)
    try:
        server = SshServer(ssh_keys, port).start()
    except RuntimeError as exc:
        pytest.skip(f"cannot start sshd here: {exc}")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ADVISOR_CONFIG", str(tmp_path / "devices.toml"))
    ssh_mod.clear_session_cache()
    yield
    ssh_mod.clear_session_cache()


def _agent_dirs() -> set[str]:
    return {p.name for p in Path("/tmp").glob("advisor-agent.*")}


# ---------------------------------------------------------------------------------------------
# What goes to the board: Python 3.6, stdlib, POSIX sh


def test_everything_shipped_to_the_board_is_python36():
    """agent.py and timing.py are checked for 3.6 syntax and imports in test_timing; fingerprint.py
    and energy.py for post-3.6 attributes and keywords too. Here: the same full check on agent.py,
    timing.py and the probe, which test_timing's syntax check did not cover."""
    from test_fingerprint import check_py36_source

    root = Path(ssh_mod.__file__).parent
    allowed = {"json", "os", "sys", "importlib", "math", "statistics", "time", "resource", "numpy",
               "advisor", "measure", "energy", "fingerprint", "timing", "agent"}
    for name in ("agent.py", "timing.py"):
        assert check_py36_source((root / name).read_text(), allowed) == [], name
    assert check_py36_source(PROBE_SOURCE, allowed) == []
    assert set(ssh_mod.BUNDLE) == {"agent.py", "timing.py", "energy.py", "fingerprint.py"}
    assert all(p.is_file() for p in ssh_mod.BUNDLE.values())


def test_board_side_script_is_posix_sh():
    shells = [s for s in (shutil.which("dash"), shutil.which("sh")) if s]
    if not shells:
        pytest.skip("no POSIX shell here")
    for shell in shells:
        out = subprocess.run([shell, "-n"], input=REMOTE_SCRIPT, text=True, capture_output=True)
        assert out.returncode == 0, (shell, out.stderr)
    assert "[[" not in REMOTE_SCRIPT and "local " not in REMOTE_SCRIPT and "$'" not in REMOTE_SCRIPT


def test_the_board_side_script_cleans_up_and_keeps_the_exit_status(tmp_path):
    """Run it in a local sh exactly as the board would: unpack, run, remove the folder, pass the status."""
    tar = ssh_mod._tar({"hello.py": b"import sys; print(open('hello.py').read()[:6]); sys.exit(3)\n"})
    env = dict(os.environ, TMPDIR=str(tmp_path))
    out = subprocess.run(["sh", "-c", REMOTE_SCRIPT, "advisor-agent", sys.executable, "hello.py"], input=tar,
                         capture_output=True, env=env)
    assert out.returncode == 3 and out.stdout.decode().strip() == "import"
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# ssh's failures, classified (messages as this OpenSSH prints them)


@pytest.mark.parametrize("stderr, unreachable, words", [
    ("ssh: connect to host 127.0.0.1 port 2: Connection refused\n", True, ["unreachable", "sshd running"]),
    ("ssh: connect to host 10.1.2.3 port 22: Connection timed out\n", True, ["does not answer"]),
    ("Host key verification failed.\n", True, ["known_hosts", "never accepted blindly"]),
    ("root@127.0.0.1: Permission denied (publickey).\n", True, ["ssh-copy-id"]),
    ("ssh: Could not resolve hostname tx2.lan: Name or service not known\n", True, ["does not resolve"]),
    ("Timeout, server 10.1.2.3 not responding.\n", True, ["does not answer"]),
])
def test_ssh_failures_are_unreachable(stderr, unreachable, words):
    err = ssh_failure("ssh://u@h", 255, stderr)
    assert isinstance(err, DeviceUnreachableError) is unreachable
    assert all(w in str(err) for w in words), str(err)


def test_board_side_failures_are_device_errors_not_unreachable():
    for code, stderr, words in [(127, "sh: 1: python3: not found\n", "python3 not found"),
                                (98, "tar: can't create folder\n", "could not unpack"),
                                (1, "Traceback ...\nValueError: Could not open 'model0.tflite'\n", "agent failed")]:
        err = ssh_failure("ssh://u@h", code, stderr)
        assert type(err) is DeviceError and words in str(err)


def test_the_ssh_command_checks_host_keys_and_never_takes_a_password():
    device = SshDevice("ssh://nvidia@tx2.lan:2222", known_hosts="/k", identity_file="/id")
    cmd = device.ssh_command(["python3", "agent.py", "run", "job.json"])
    text = " ".join(cmd)
    assert "BatchMode=yes" in cmd and "UserKnownHostsFile=/k" in cmd and "StrictHostKeyChecking" not in text
    assert any(c.startswith("ConnectTimeout=") for c in cmd) and "ServerAliveInterval=15" in cmd
    assert cmd[cmd.index("-p") + 1] == "2222" and cmd[cmd.index("-l") + 1] == "nvidia" and cmd[-2] == "tx2.lan"
    assert "password" not in text.lower()


# ---------------------------------------------------------------------------------------------
# A real server


def test_probe_reads_the_boards_own_fingerprint(sshd, tmp_path):
    from advisor.devices import cached_probe

    device = sshd.device()
    probe = device.probe()
    here = collect_fingerprint()
    assert fingerprint_id(probe["fingerprint"]) == fingerprint_id(here)  # the "board" is this machine
    assert device.device_id == f"ssh:{fingerprint_id(here)}"
    assert probe["interpreter"]["name"] in ("ai-edge-litert", "tflite-runtime", "tensorflow")
    assert probe["energy"]["sensor"] is None and probe["energy"]["note"]
    device.check()
    assert cached_probe(device.url)["fingerprint"] == probe["fingerprint"]  # kept for offline lookups


def test_closed_port_is_unreachable_fast(ssh_keys):
    server = SshServer(ssh_keys, _free_port())  # never started: nothing listens
    started = time.monotonic()
    with pytest.raises(DeviceUnreachableError, match="Connection refused"):
        server.device().probe()
    assert time.monotonic() - started < 30


def test_an_unknown_host_key_is_refused_and_never_added(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(DeviceUnreachableError, match="Host key verification failed"):
        sshd.device(known_hosts=str(empty)).probe()
    assert empty.read_text() == ""


def test_a_missing_interpreter_on_the_board_is_a_device_error(sshd):
    with pytest.raises(DeviceError, match="python9 not found") as info:
        sshd.device(python="python9").probe()
    assert not isinstance(info.value, DeviceUnreachableError)


@pytest.fixture(scope="module")
def tiny_cnn_file(tmp_path_factory, tiny_cnn) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny_cnn.keras"
    tiny_cnn.save(path)
    return path


FAST = {"energy": False, "idle_s": 0.0, "min_runs": 3, "time_cap_s": 2.0, "min_rounds": 2, "max_rounds": 3,
        "finetune_samples": 32}


@pytest.mark.tf
def test_measures_tiny_cnn_through_ssh_end_to_end(sshd, tiny_cnn_file, tmp_path):
    from advisor.store import Store
    from measure.runner import MeasureSettings, measure_many

    device = sshd.device()
    before = _agent_dirs()
    outcome = measure_many(str(tiny_cnn_file), ["ptq-int8"], device, MeasureSettings(**FAST))[0]
    assert not isinstance(outcome, BaseException), outcome
    row, base = outcome.row, outcome.baseline
    fid = fingerprint_id(collect_fingerprint())
    for r in (row, base):
        assert r["status"] == "ok" and r["device"] == f"ssh:{fid}" and r["fingerprint_id"] == fid
        assert r["latency_ms_median"] > 0 and len(r["latency_raw_ms"]) >= 3
        assert r["peak_memory_bytes"] > 0
        assert r["energy_mj"] is None and "no energy sensor" in r["energy_note"]
    assert row["technique"] == "ptq-int8" and row["latency_ratio_to_baseline"] > 0
    assert row["size_bytes"] < base["size_bytes"]  # the int8 file really travelled and ran
    assert json.loads(row["versions_json"])["interpreter"]["name"] == "ai-edge-litert"
    Store(tmp_path / "store").append(outcome.rows())  # the rows are valid dataset rows
    assert _agent_dirs() <= before  # nothing left on the board


# ---------------------------------------------------------------------------------------------
# A board that drops off mid-campaign


@dataclasses.dataclass(frozen=True)
class DropsOffDevice(SshDevice):
    """The ssh board, whose server goes away when job number `at` starts (a real closed port)."""

    at: int = 0
    server: Any = dataclasses.field(default=None, compare=False)
    calls: list = dataclasses.field(default_factory=list, compare=False)

    def run(self, job_dir, job):
        self.calls.append(job_dir)
        if len(self.calls) == self.at:
            self.server.stop()
        return super().run(job_dir, job)


@pytest.mark.tf
def test_campaign_stops_when_the_board_drops_off_and_resumes(ssh_keys, tmp_path, keras):
    from advisor.store import Store
    from measure.campaign import config_key, load_plan, run_campaign

    port = _free_port()
    _trust(ssh_keys, port)
    server = SshServer(ssh_keys, port).start()
    try:
        Path(os.environ["ADVISOR_CONFIG"]).write_text(server.config_toml("board"))
        plan_path = tmp_path / "plan.toml"
        plan_path.write_text(textwrap.dedent("""\
            device = "board"
            [defaults]
            energy = false
            idle_s = 0
            min_runs = 3
            time_cap_s = 2
            min_rounds = 2
            max_rounds = 3
            [[grid]]
            models = ["sampled:dense:7"]
            threads = [1, 2]
            techniques = ["ptq-dynamic"]
            """))
        plan = load_plan(plan_path)  # a configured device name is a valid plan device
        assert plan.device == "board" and len(plan.configs) == 2
        store = Store(tmp_path / "store")
        configured = get_device("board")
        device = DropsOffDevice(**{f.name: getattr(configured, f.name) for f in dataclasses.fields(SshDevice)},
                                at=2, server=server)
        log = io.StringIO()
        report = run_campaign(plan, store=store, device=device, progress=log)
        assert report.stopped and "unreachable" in report.stopped and "Connection refused" in report.stopped
        assert (report.measured, report.failed, report.remaining) == (1, 0, 1)
        assert "campaign stopped" in log.getvalue() and "rerun" in log.getvalue()
        assert len(store.read(status="failed")) == 0  # nothing stored as failed
        first = config_key(plan.configs[0], device.device_id)
        assert set(store.read(status="ok").config_id) >= {first}

        # Still down, now through the plan's device name in a worker process: stops the same way.
        again = run_campaign(plan, store=store, progress=False)
        assert again.stopped and (again.measured, again.failed, again.skipped) == (0, 0, 1)
        assert len(store.read(status="failed")) == 0

        server.start()  # back on the same port
        resumed = run_campaign(plan, store=store, device=get_device("board"), progress=False)
        assert resumed.stopped is None and (resumed.measured, resumed.skipped, resumed.failed) == (1, 1, 0)
        ok = store.read(status="ok")
        assert {config_key(c, device.device_id) for c in plan.configs} <= set(ok.config_id)
        assert set(ok.device) == {device.device_id}
    finally:
        server.stop()
