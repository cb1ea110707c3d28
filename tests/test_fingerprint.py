"""The device fingerprint on this machine and on fake /proc and /sys trees shaped like real boards'."""

import ast
import glob
import json
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from advisor import fingerprint
from advisor.fingerprint import ISA_FLAGS, collect_fingerprint, fingerprint_id

SOURCE = Path(fingerprint.__file__)
KEYS = {"fingerprint_version", "cpu_model", "machine", "logical_cpus", "online_cpus", "physical_cores",
        "isa_flags", "memory_bytes", "os", "python", "accelerator", "board", "l4t_release", "cpu_max_mhz"}


def write(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# Jetson TX2 (L4T R32.7.1): CPU 0 and 3-5 are Cortex-A57, CPU 1-2 Denver 2.
TX2_A57 = """processor\t: {n}
model name\t: ARMv8 Processor rev 3 (v8l)
BogoMIPS\t: 62.50
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: 0xd07
CPU revision\t: 3
MTS version\t: 55637613
"""
TX2_DENVER = """processor\t: {n}
model name\t: ARMv8 Processor rev 0 (v8l)
BogoMIPS\t: 62.50
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32
CPU implementer\t: 0x4e
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0x003
CPU revision\t: 0
MTS version\t: 55637613
"""


def make_tx2(root, model="quill", online=(0, 1, 2, 3, 4, 5)):
    """A TX2's /proc, /sys and /etc: cpuinfo lists the online CPUs only, as the kernel does."""
    root = Path(root)
    cpus = [(TX2_DENVER if n in (1, 2) else TX2_A57).format(n=n) for n in online]
    write(root / "proc/cpuinfo", "\n".join(cpus) + "\n")
    write(root / "proc/meminfo", "MemTotal:        8038504 kB\nMemFree:         5882424 kB\n"
                                 "MemAvailable:    6910396 kB\n")
    write(root / "proc/device-tree/model", model + "\x00")
    write(root / "proc/device-tree/compatible", "nvidia,p2771-0000\x00nvidia,tegra186\x00")
    write(root / "etc/nv_tegra_release", "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t186ref, "
                                         "EABI: aarch64, DATE: Sat Feb 19 17:05:08 UTC 2022\n")
    cpu = root / "sys/devices/system/cpu"
    write(cpu / "present", "0-5\n")
    write(cpu / "possible", "0-5\n")
    write(cpu / "online", ",".join(str(n) for n in online) + "\n")
    for n in online:
        write(cpu / f"cpu{n}/topology/thread_siblings_list", f"{n}\n")
        write(cpu / f"cpu{n}/topology/core_id", f"{n}\n")
        write(cpu / f"cpu{n}/topology/physical_package_id", f"{1 if n in (1, 2) else 0}\n")
        write(cpu / f"cpu{n}/cpufreq/cpuinfo_max_freq", "2035200\n")
        write(cpu / f"cpu{n}/cpufreq/cpuinfo_min_freq", "345600\n")
    return root


def test_real_machine_fingerprint_is_complete_and_stable():
    fp = collect_fingerprint()
    assert set(fp) == KEYS
    json.dumps(fp)
    assert fp["machine"] == platform.machine() and fp["python"] == platform.python_version()
    assert fp["cpu_model"] and fp["logical_cpus"] >= 1 and fp["memory_bytes"] > 0
    assert fp["isa_flags"] == sorted(fp["isa_flags"]) and set(fp["isa_flags"]) <= ISA_FLAGS
    assert re.match(r"^[0-9a-f]{12}$", fingerprint_id(fp))
    assert fingerprint_id(fp) == fingerprint_id(collect_fingerprint())


@pytest.mark.parametrize("model", ["quill", "NVIDIA Jetson TX2"])
def test_fake_jetson_tx2(tmp_path, model):
    fp = collect_fingerprint(root=str(make_tx2(tmp_path, model=model)))
    assert fp["cpu_model"] == "4x Cortex-A57 + 2x NVIDIA Denver 2"
    assert (fp["logical_cpus"], fp["online_cpus"], fp["physical_cores"]) == (6, 6, 6)
    assert fp["isa_flags"] == ["asimd"]
    assert fp["memory_bytes"] == 8038504 * 1024
    assert fp["accelerator"] == "NVIDIA Tegra X2 (Pascal iGPU)"
    assert fp["board"] == model
    assert fp["l4t_release"] == "R32.7.1"
    assert fp["cpu_max_mhz"] == 2035  # the fastest core's cpufreq ceiling (kHz in sysfs)


def test_tx2_id_does_not_depend_on_the_model_string(tmp_path):
    a = collect_fingerprint(root=str(make_tx2(tmp_path / "a", model="quill")))
    b = collect_fingerprint(root=str(make_tx2(tmp_path / "b", model="NVIDIA Jetson TX2")))
    assert fingerprint_id(a) == fingerprint_id(b) != fingerprint_id(collect_fingerprint())


def test_tx2_with_denver_offline(tmp_path):
    fp = collect_fingerprint(root=str(make_tx2(tmp_path, online=(0, 3, 4, 5))))
    assert fp["cpu_model"] == "Cortex-A57"
    assert (fp["logical_cpus"], fp["online_cpus"], fp["physical_cores"]) == (6, 4, 4)


def test_jetson_without_compatible_uses_model_or_l4t(tmp_path):
    root = make_tx2(tmp_path)
    (root / "proc/device-tree/compatible").unlink()
    write(root / "proc/device-tree/model", "NVIDIA Jetson Nano Developer Kit\x00")
    assert collect_fingerprint(root=str(root))["accelerator"] == "NVIDIA Jetson Nano Developer Kit"
    write(root / "proc/device-tree/model", "p3450\x00")
    assert collect_fingerprint(root=str(root))["accelerator"] == "NVIDIA Tegra (L4T)"


def test_raspberry_pi_32bit_cpuinfo(tmp_path):
    core = ("processor\t: {}\nmodel name\t: ARMv7 Processor rev 3 (v7l)\nBogoMIPS\t: 108.00\n"
            "Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32\n"
            "CPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
            "CPU revision\t: 3\n")
    tail = ("Hardware\t: BCM2711\nRevision\t: c03114\nSerial\t\t: 10000000abcdef01\n"
            "Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n")
    write(tmp_path / "proc/cpuinfo", "\n".join(core.format(n) for n in range(4)) + "\n" + tail)
    fp = collect_fingerprint(root=str(tmp_path))
    assert fp["cpu_model"] == "Cortex-A72"
    assert fp["isa_flags"] == ["neon", "vfpv4"]
    assert fp["logical_cpus"] == 4 and fp["accelerator"] is None and fp["physical_cores"] is None
    write(tmp_path / "proc/cpuinfo", re.sub(r"CPU (implementer|part).*\n", "", (tmp_path / "proc/cpuinfo").read_text()))
    assert collect_fingerprint(root=str(tmp_path))["cpu_model"] == "Raspberry Pi 4 Model B Rev 1.4"


def test_unknown_arm_core_is_named_by_its_ids(tmp_path):
    write(tmp_path / "proc/cpuinfo", "processor\t: 0\nCPU implementer\t: 0x51\nCPU part\t: 0x805\n")
    assert collect_fingerprint(root=str(tmp_path))["cpu_model"] == "ARM 0x51:0x805"


def test_x86_cpuinfo_counts_cores_not_threads(tmp_path):
    cpu = ("processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz\n"
           "physical id\t: 0\ncore id\t\t: {core}\n"
           "flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi1 bmi2 adx\n")
    write(tmp_path / "proc/cpuinfo", "\n".join(cpu.format(n=n, core=n % 2) for n in range(4)) + "\n")
    fp = collect_fingerprint(root=str(tmp_path))
    assert fp["cpu_model"] == "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz"
    assert (fp["logical_cpus"], fp["physical_cores"]) == (4, 2)
    assert fp["isa_flags"] == ["avx", "avx2", "f16c", "fma", "sse4_1", "sse4_2"]


def test_empty_tree_gives_none_not_guesses(tmp_path):
    fp = collect_fingerprint(root=str(tmp_path))
    for key in ("cpu_model", "logical_cpus", "online_cpus", "physical_cores", "memory_bytes", "accelerator",
                "board", "l4t_release", "cpu_max_mhz"):
        assert fp[key] is None, key
    assert fp["isa_flags"] == []


def fake_nvidia_smi(bindir, body):
    """An `nvidia-smi` on PATH: no NVIDIA GPU can exist here."""
    exe = Path(bindir, "nvidia-smi")
    write(exe, "#!/bin/sh\n" + body)
    exe.chmod(0o755)


def test_nvidia_smi_names_the_gpus(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path / "bin", '[ "$1" = "--query-gpu=name" ] && [ "$2" = "--format=csv,noheader" ] || exit 2\n'
                                      'printf "NVIDIA H100 80GB HBM3\\nNVIDIA H100 80GB HBM3\\n"\n')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    fp = collect_fingerprint(root=str(tmp_path), probe_commands=True)
    assert fp["accelerator"] == "2x NVIDIA H100 80GB HBM3"
    assert collect_fingerprint(root=str(tmp_path))["accelerator"] is None  # fake roots probe nothing


def test_failing_nvidia_smi_gives_no_accelerator(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path / "bin", 'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the '
                                      'NVIDIA driver."\nexit 9\n')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert collect_fingerprint(root=str(tmp_path), probe_commands=True)["accelerator"] is None


def test_id_ignores_volatile_fields_and_follows_hardware(tmp_path):
    fp = collect_fingerprint(root=str(make_tx2(tmp_path)))
    base = fingerprint_id(fp)
    assert fingerprint_id(dict(fp, python="3.6.9", os="Linux 4.9.253-tegra", l4t_release="R32.6.1")) == base
    assert fingerprint_id(dict(fp, memory_bytes=fp["memory_bytes"] + 100 * 2 ** 20)) == base  # same GiB
    assert fingerprint_id(dict(fp, isa_flags=list(reversed(fp["isa_flags"] + ["sve"])))) != base
    for key, value in [("cpu_model", "Cortex-A57"), ("accelerator", None), ("logical_cpus", 4),
                       ("machine", "armv7l"), ("memory_bytes", 4 * 2 ** 30)]:
        assert fingerprint_id(dict(fp, **{key: value})) != base, key


# --- Python 3.6, stdlib only -----------------------------------------------------------------

ALLOWED_IMPORTS = {"collections", "hashlib", "json", "os", "platform", "re", "shutil", "subprocess"}
POST_36_ATTRS = {"monotonic_ns", "perf_counter_ns", "time_ns", "nullcontext", "removeprefix", "removesuffix",
                 "isascii", "fromisoformat", "cache"}
POST_36_KEYWORDS = {"capture_output", "text"}


def check_py36_source(source, allowed):
    """Problems that would stop `source` on Python 3.6 without third-party packages."""
    tree = ast.parse(source, feature_version=(3, 6))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or "."] if node.level == 0 else ["relative import"]
        else:
            names = []
        problems += ["imports " + n for n in names if n.split(".")[0] not in allowed]
        if isinstance(node, ast.Attribute) and node.attr in POST_36_ATTRS:
            problems.append("uses ." + node.attr)
        if isinstance(node, ast.keyword) and node.arg in POST_36_KEYWORDS:
            problems.append(f"passes {node.arg}=")
    return problems


def test_source_is_python36_and_stdlib_only():
    assert check_py36_source(SOURCE.read_text(), ALLOWED_IMPORTS) == []
    assert check_py36_source("from advisor import errors\nsubprocess.run(['x'], capture_output=True)\n",
                             ALLOWED_IMPORTS) == ["imports advisor", "passes capture_output="]


def find_python36():
    """A working Python 3.6 interpreter, or None."""
    candidates = [os.environ.get("ADVISOR_PYTHON36")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.6*/bin/python3.6")))
    candidates.append(shutil.which("python3.6"))
    for exe in candidates:
        if not exe or not os.access(exe, os.X_OK):
            continue
        try:
            out = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2] == (3, 6))"],
                                 check=False, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            continue
        if out.stdout.strip() == "True":
            return exe
    return None


def test_runs_on_a_real_python36(tmp_path):
    exe = find_python36()
    if exe is None:
        pytest.skip("no Python 3.6 interpreter here (set ADVISOR_PYTHON36)")
    make_tx2(tmp_path / "tx2")
    code = """
import json, sys
sys.path.insert(0, sys.argv[1])
import fingerprint
tx2 = fingerprint.collect_fingerprint(root=sys.argv[2])
here = fingerprint.collect_fingerprint()
print(json.dumps({"tx2": tx2, "tx2_id": fingerprint.fingerprint_id(tx2), "here_id": fingerprint.fingerprint_id(here)}))
"""
    out = subprocess.run([exe, "-c", code, str(SOURCE.parent), str(tmp_path / "tx2")],
                         check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    tx2 = collect_fingerprint(root=str(tmp_path / "tx2"))
    assert got["tx2"] == dict(tx2, python=got["tx2"]["python"])
    assert got["tx2_id"] == fingerprint_id(tx2)
    assert got["here_id"] == fingerprint_id(collect_fingerprint())  # same machine, other Python: same id


def test_the_advisor_asks_nvidia_smi_once_per_boot(tmp_path, monkeypatch):
    from advisor import lookup

    calls = tmp_path / "calls"
    fake_nvidia_smi(tmp_path / "bin", f'echo x >> "{calls}"\nprintf "NVIDIA H100 80GB HBM3\\n"\n')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path / "cache"))
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    first, second = lookup.local_fingerprint(), lookup.local_fingerprint()
    assert first["accelerator"] == second["accelerator"] == "NVIDIA H100 80GB HBM3"
    assert first == second == dict(collect_fingerprint(), accelerator="NVIDIA H100 80GB HBM3")
    assert calls.read_text().count("x") == 2  # the direct collect_fingerprint() above asked once more
    cached = tmp_path / "cache" / "gpus.json"
    assert json.loads(cached.read_text()) == {"boot_id": boot, "gpus": ["NVIDIA H100 80GB HBM3"]}
    cached.write_text(json.dumps({"boot_id": "another boot", "gpus": []}))
    assert lookup.local_fingerprint()["accelerator"] == "NVIDIA H100 80GB HBM3"
    assert calls.read_text().count("x") == 3
    cached.write_text("{not json")
    assert lookup.local_fingerprint()["accelerator"] == "NVIDIA H100 80GB HBM3"
    assert calls.read_text().count("x") == 4
