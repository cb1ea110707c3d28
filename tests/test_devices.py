"""The device registry: shipped board profiles, the user's devices.toml, `advisor devices`, and
`--device` names on the answer path (profiles and configured boards)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from advisor import devices as registry
from advisor.cli import main
from advisor.errors import OptionError, UnknownNameError
from advisor.features import device_features
from advisor.fingerprint import collect_fingerprint, fingerprint_id
from advisor.lookup import device_fingerprint

REPO = Path(__file__).resolve().parent.parent
SHIPPED_BUNDLE = REPO / "models" / "current"
BOARDS = {"jetson_tx2", "jetson_nano", "jetson_xavier_nx", "jetson_orin_nano", "raspberry_pi_4", "raspberry_pi_5"}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No test sees the user's own config or cache."""
    monkeypatch.setenv("ADVISOR_CONFIG", str(tmp_path / "devices.toml"))
    monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path / "cache"))


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "devices.toml"
    path.write_text(textwrap.dedent(text))
    return path


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------
# Shipped profiles


def test_every_board_ships_with_specs_and_a_fingerprint_shaped_like_a_real_one():
    from test_fingerprint import KEYS

    profiles = registry.profiles()
    assert set(profiles) == BOARDS
    for name, p in profiles.items():
        assert set(p.fingerprint) == KEYS, name  # exactly what collect_fingerprint() returns
        assert p.fingerprint["machine"] == "aarch64" and p.specs["cpu_cores"] == p.fingerprint["logical_cpus"]
        assert p.sources and all(s.startswith("https://") for s in p.sources)
        feats = device_features(p.fingerprint, threads=1)
        for key in ("logical_cpus", "physical_cores", "memory_gib", "arch_aarch64", "isa_asimd", "accelerator"):
            assert feats[key] == feats[key], (name, key)  # known, not NaN
        assert p.energy_sensor in (None, "ina3221")
    assert len({p.fingerprint_id for p in profiles.values()}) == len(profiles)


def test_tx2_profile_matches_a_real_tx2s_fingerprint_and_says_tflite_runs_on_its_cpu(tmp_path):
    from test_fingerprint import make_tx2

    tx2 = registry.get_profile("jetson_tx2")
    real = collect_fingerprint(root=str(make_tx2(tmp_path / "tx2")))
    for key in ("cpu_model", "logical_cpus", "physical_cores", "isa_flags", "accelerator", "l4t_release"):
        assert tx2.fingerprint[key] == real[key], key
    assert round(tx2.fingerprint["memory_bytes"] / 2**30) == round(real["memory_bytes"] / 2**30)
    assert tx2.specs["tflite_runs_on"] == "cpu" and "OpenCL" in tx2.tflite_note and "CPU" in tx2.tflite_note
    assert "VDD_IN" in tx2.energy_note and "never added" in tx2.energy_note
    assert "Denver 2" in tx2.specs["cpu"] and "256-core" in tx2.specs["gpu"] and tx2.specs["memory_gb"] == 8
    assert "AGX" in registry.get_profile("jetson_orin_nano").description  # says which Orin it is


def test_a_broken_profile_file_is_refused_with_its_name(tmp_path):
    data = registry.get_profile("jetson_nano").to_dict()
    (tmp_path / "jetson_nano.json").write_text(json.dumps({**data, "fingerprint": {"cpu_model": "x"}}))
    with pytest.raises(OptionError, match="jetson_nano.json: fingerprint must have exactly the keys"):
        registry.profiles(tmp_path)
    with pytest.raises(UnknownNameError, match="did you mean jetson_tx2"):
        registry.get_profile("jetson_tx3")


# ---------------------------------------------------------------------------------------------
# ssh:// urls and devices.toml


@pytest.mark.parametrize("url, host, user, port", [
    ("ssh://nvidia@192.168.1.20", "192.168.1.20", "nvidia", None),
    ("ssh://nvidia@tx2.lan:2222", "tx2.lan", "nvidia", 2222),
    ("ssh://pi5.local", "pi5.local", None, None),
    ("ssh://root@[fe80::1]:22", "fe80::1", "root", 22),
])
def test_ssh_urls_parse_and_print_back(url, host, user, port):
    target = registry.SshTarget.parse(url)
    assert (target.host, target.user, target.port) == (host, user, port)
    assert registry.SshTarget.parse(target.url) == target


@pytest.mark.parametrize("url, words", [
    ("nvidia@tx2", "write ssh://user@host[:port]"),
    ("ssh://nvidia:secret@tx2", "no passwords"),
    ("ssh://nvidia@tx2:99999", "port must be"),
    ("ssh://nvidia@tx2/path", "write ssh://"),
    ("ssh://-oProxyCommand=x", "host"),
    ("ssh://@tx2", "user before @ is empty"),
])
def test_bad_ssh_urls_are_one_clear_error(url, words):
    with pytest.raises(OptionError, match=None) as info:
        registry.SshTarget.parse(url)
    assert words in str(info.value)


def test_config_names_devices_with_their_options_and_a_default(tmp_path):
    path = write_config(tmp_path, """
        default = "tx2"
        [devices.tx2]
        url = "ssh://nvidia@192.168.1.20"
        profile = "jetson_tx2"
        description = "the lab's TX2"
        python = "/usr/bin/python3.6"
        identity_file = "~/.ssh/id_tx2"
        connect_timeout_s = 4
        [devices.pi]
        url = "ssh://pi@pi5.local:2200"
        """)
    config = registry.load_config(path)
    assert config.default == "tx2" and registry.default_device() == "tx2"
    tx2 = config.devices["tx2"]
    assert tx2.profile == "jetson_tx2" and tx2.python == "/usr/bin/python3.6" and tx2.connect_timeout_s == 4.0
    assert tx2.identity_file == str(Path.home() / ".ssh" / "id_tx2")
    assert config.devices["pi"].target.port == 2200 and config.devices["pi"].timeout_s == 1800.0


def test_no_config_file_means_no_devices_and_local_by_default(tmp_path):
    config = registry.load_config(tmp_path / "absent.toml")
    assert config.devices == {} and config.default is None
    assert registry.default_device() == "local"


@pytest.mark.parametrize("text, words", [
    ("[devices.tx2]\nurl = 'ssh://a@b'\npassword = 'x'\n", ["devices.tx2", "unknown key 'password'", "valid keys"]),
    ("[devices.tx2]\nprofile = 'jetson_tx2'\n", ["devices.tx2", "needs url"]),
    ("[devices.tx2]\nurl = 'tx2.lan'\n", ["devices.tx2: url", "ssh://user@host"]),
    ("[devices.tx2]\nurl = 'ssh://a@b'\nprofile = 'jetson_tx9'\n", ["profile", "jetson_tx2"]),
    ("[devices.jetson_tx2]\nurl = 'ssh://a@b'\n", ["name of a shipped profile", "profile = \"jetson_tx2\""]),
    ("[devices.local]\nurl = 'ssh://a@b'\n", ["not be 'local'"]),
    ("[devices.tx2]\nurl = 'ssh://a@b'\ntimeout_s = -1\n", ["timeout_s", "positive"]),
    ("[devices.tx2]\nurl = 'ssh://a@b'\npython = 'python3; rm -rf ~'\n", ["python", "interpreter path"]),
    ("default = 'tx3'\n[devices.tx2]\nurl = 'ssh://a@b'\n", ["default", "unknown device 'tx3'", "tx2"]),
    ("devices = 3\n", ["[devices.NAME]"]),
    ("defualt = 'local'\n", ["unknown key 'defualt'"]),
    ("[devices.tx2\nurl = 1\n", ["not valid TOML"]),
])
def test_bad_configs_name_the_file_the_device_and_the_key(tmp_path, text, words):
    path = write_config(tmp_path, text)
    with pytest.raises(OptionError) as info:
        registry.load_config(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert all(w in message for w in words), message


def test_get_device_takes_urls_configured_names_and_refuses_profiles(tmp_path):
    from measure.devices import LocalDevice, check_device_name, get_device
    from measure.ssh import SshDevice

    write_config(tmp_path, """
        [devices.tx2]
        url = "ssh://nvidia@tx2.lan:2222"
        python = "python3.6"
        known_hosts = "/etc/advisor/known_hosts"
        """)
    assert isinstance(get_device("local"), LocalDevice)
    by_url = get_device("ssh://pi@pi5.local")
    assert isinstance(by_url, SshDevice) and by_url.name == "ssh://pi@pi5.local"
    tx2 = get_device("tx2")
    assert (tx2.url, tx2.name, tx2.python, tx2.known_hosts) == ("ssh://nvidia@tx2.lan:2222", "tx2", "python3.6",
                                                              "/etc/advisor/known_hosts")
    with pytest.raises(OptionError, match="'jetson_tx2' is a device profile.*url ="):
        get_device("jetson_tx2")
    with pytest.raises(UnknownNameError, match=r"unknown device 'tx3'; did you mean tx2\?.*ssh://user@host"):
        check_device_name("tx3")
    with pytest.raises(OptionError, match="bad ssh url"):
        get_device("ssh://a:b@c")


def test_a_campaign_plan_takes_a_configured_device(tmp_path):
    from measure.campaign import load_plan

    write_config(tmp_path, "[devices.tx2]\nurl = 'ssh://nvidia@tx2.lan'\n")
    grid = "\n[[grid]]\nmodels = ['resnet50']\ntechniques = ['none']\n"
    for device in ("tx2", "ssh://nvidia@10.0.0.2:22", "local"):
        (tmp_path / "plan.toml").write_text(f"device = '{device}'" + grid)
        assert load_plan(tmp_path / "plan.toml").device == device
    (tmp_path / "plan.toml").write_text("device = 'raspberry_pi_5'" + grid)
    with pytest.raises(OptionError, match="plan.toml: device: 'raspberry_pi_5' is a device profile"):
        load_plan(tmp_path / "plan.toml")


# ---------------------------------------------------------------------------------------------
# --device names to fingerprints (the answer path)


def bundle_with(**devices):
    return SimpleNamespace(devices_={name: {"fingerprint": fp, "fingerprint_id": fingerprint_id(fp)}
                                     for name, fp in devices.items()})


def test_a_profile_name_gives_its_fingerprint_and_says_it_extrapolates():
    fp, note = device_fingerprint("jetson_tx2", bundle_with())
    assert fp == registry.get_profile("jetson_tx2").fingerprint
    assert "no measured rows" in note and "extrapolates" in note and "Jetson TX2" in note


def test_a_machine_the_bundle_never_saw_is_told_how_to_calibrate():
    fp, note = device_fingerprint("local", bundle_with())
    assert fingerprint_id(fp) == fingerprint_id(collect_fingerprint())
    assert "no measurements" in note and "extrapolates" in note and "advisor calibrate" in note


def test_a_profile_the_bundle_has_rows_for_is_described_as_in_training():
    tx2 = registry.get_profile("jetson_tx2").fingerprint
    trained = dict(tx2, python="3.6.15")  # the same hardware, another Python: the same id
    fp, note = device_fingerprint("jetson_tx2", bundle_with(**{"ssh:abc": trained}))
    assert fp == trained and "is 'ssh:abc' in the training data" in note


def test_a_configured_board_uses_what_it_reported_else_its_profile(tmp_path):
    write_config(tmp_path, """
        [devices.tx2]
        url = "ssh://nvidia@tx2.lan"
        profile = "jetson_tx2"
        [devices.bare]
        url = "ssh://x@bare.lan"
        """)
    fp, note = device_fingerprint("tx2", bundle_with())
    assert fp == registry.get_profile("jetson_tx2").fingerprint and "not reached yet" in note
    reported = dict(registry.get_profile("jetson_tx2").fingerprint, memory_bytes=4 * 2**30)
    registry.save_probe("ssh://nvidia@tx2.lan", {"fingerprint": reported, "probed_at": "2026-11-24T10:00:00Z"})
    fp, note = device_fingerprint("tx2", bundle_with())
    assert fp == reported and "reported on 2026-11-24" in note
    with pytest.raises(OptionError, match="has not been reached yet.*advisor devices --probe"):
        device_fingerprint("bare", bundle_with())


def test_an_unknown_device_lists_every_valid_name_by_kind(tmp_path):
    write_config(tmp_path, "[devices.tx2]\nurl = 'ssh://a@b'\n")
    with pytest.raises(UnknownNameError) as info:
        device_fingerprint("jetson", bundle_with(**{"sim-x86": {"cpu_model": "x"}}))
    message = str(info.value)
    assert "unknown device 'jetson'" in message and "valid: local, sim-x86" in message
    assert "profiles: jetson_nano" in message and "configured: tx2" in message


@pytest.mark.skipif(not SHIPPED_BUNDLE.is_dir(), reason="no shipped bundle in models/current")
def test_recommend_and_predict_take_a_profile_without_heavy_imports(tmp_path):
    from test_api import BLOCK_HEAVY

    program = BLOCK_HEAVY + textwrap.dedent(f"""
        import contextlib, io, json
        from advisor.cli import main
        out = {{}}
        for argv in (["recommend", "--model", "mobilenet_v2@96", "--device", "jetson_tx2", "--json"],
                     ["predict", "--model", "mobilenet_v2@96", "-t", "ptq-int8", "--json"]):
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                code = main(argv + ["--bundle", {str(SHIPPED_BUNDLE)!r}])
            out[argv[0]] = (code, json.loads(buf.getvalue()))
        print(json.dumps(out))
        """)
    write_config(tmp_path, "default = 'raspberry_pi_5'\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    code, rec = out["recommend"]
    assert code == 0 and rec["device"] == "jetson_tx2"
    assert any("extrapolates" in line for line in rec["explanation"])
    code, pred = out["predict"]
    assert code == 0 and pred["device"] == "raspberry_pi_5"  # the configured default


@pytest.mark.skipif(not SHIPPED_BUNDLE.is_dir(), reason="no shipped bundle in models/current")
def test_unknown_device_on_the_command_line_is_one_line_and_exit_2(capsys):
    code, out, err = run(capsys, "recommend", "--model", "mobilenet_v2", "--device", "jetson_tx3",
                         "--bundle", SHIPPED_BUNDLE)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "unknown device 'jetson_tx3'; did you mean jetson_tx2" in err and "profiles:" in err


# ---------------------------------------------------------------------------------------------
# advisor devices


def test_rows_are_counted_per_device_reading_only_the_needed_columns(tmp_path, monkeypatch):
    import pyarrow.dataset as pads
    from test_store import failed_row, ok_row

    from advisor.store import Store

    store = Store(tmp_path / "store")
    here = fingerprint_id(collect_fingerprint())
    store.append([ok_row("mobilenet_v2", "ptq-int8", device=f"local:{here}", fingerprint_id=here),
                  ok_row("resnet50", "ptq-int8", device=f"local:{here}", fingerprint_id=here)])
    store.append([ok_row("mobilenet_v2", "ptq-int8", device=f"local:{here}", fingerprint_id=here,
                         measured_at="2026-01-01T00:00:00Z")])  # the same configuration again: counted once
    store.append([ok_row("mobilenet_v2", "none", device="ssh:0123456789ab", fingerprint_id="0123456789ab",
                         cpu_model="4x Cortex-A57 + 2x NVIDIA Denver 2"),
                  failed_row("resnet50", "none", device="ssh:0123456789ab", fingerprint_id="0123456789ab")])
    asked: list = []
    real_dataset = pads.dataset

    class Spy:
        def __init__(self, *args, **kwargs):
            self.inner = real_dataset(*args, **kwargs)

        def to_table(self, columns=None, **kwargs):
            asked.append(columns)
            return self.inner.to_table(columns=columns, **kwargs)

    monkeypatch.setattr(pads, "dataset", Spy)
    counts = registry.measured_rows(store.root)
    assert asked and all(cols is not None and len(cols) <= 6 for cols in asked)
    assert counts[f"local:{here}"]["rows"] == 2 and counts["ssh:0123456789ab"]["rows"] == 1
    assert registry.measured_rows(tmp_path / "empty") == {}


def test_devices_lists_local_configured_profiles_and_dataset_devices(capsys, tmp_path):
    from test_store import ok_row

    from advisor.store import Store

    store = Store(tmp_path / "store")
    here = fingerprint_id(collect_fingerprint())
    store.append([ok_row("mobilenet_v2", "ptq-int8", device=f"local:{here}", fingerprint_id=here),
                  ok_row("resnet50", "none", device="local:feedfeedfeed", fingerprint_id="feedfeedfeed",
                         cpu_model="Intel(R) Xeon(R) Processor")])
    write_config(tmp_path, """
        default = "tx2"
        [devices.tx2]
        url = "ssh://nvidia@tx2.lan"
        profile = "jetson_tx2"
        """)
    code, out, err = run(capsys, "devices", "--store", store.root, "--json")
    assert code == 0, err
    items = {i["name"]: i for i in json.loads(out)["devices"]}
    assert items["local"]["reached"] == "local" and items["local"]["rows"] == 1 and not items["local"]["default"]
    assert items["tx2"]["reached"] == "ssh://nvidia@tx2.lan" and items["tx2"]["default"]
    assert "ina3221" in items["tx2"]["energy"] and "not reached yet" in items["tx2"]["energy"]
    assert items["jetson_tx2"]["reached"] == "profile only" and items["jetson_tx2"]["energy"] == "ina3221"
    assert "OpenCL" in items["jetson_tx2"]["profile"]["tflite_note"]
    assert items["raspberry_pi_5"]["energy"] == "none"
    assert items["local:feedfeedfeed"]["rows"] == 1 and "Xeon" in items["local:feedfeedfeed"]["description"]
    assert set(items) >= BOARDS

    code, out, err = run(capsys, "devices", "--store", store.root)
    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith("* tx2 ") for line in lines)
    assert any("jetson_tx2" in line and "profile only" in line for line in lines)
    assert "OpenCL" in out and "config:" in out


def test_devices_probe_reports_an_unreachable_board_plainly(capsys, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_config(tmp_path, f"[devices.gone]\nurl = 'ssh://nobody@127.0.0.1:{port}'\nssh_config = '/dev/null'\n")
    code, out, err = run(capsys, "devices", "--probe", "--store", tmp_path / "none")
    assert code == 0, err
    assert f"probe gone: device ssh://nobody@127.0.0.1:{port} is unreachable" in out
    assert "Connection refused" in out
