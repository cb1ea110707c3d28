"""A device fingerprint: what hardware a measurement ran on, and a stable id for it.

`collect_fingerprint()` reads /proc, /sys and a few platform facts; `fingerprint_id()` hashes
the fields that identify the hardware, so two runs on one board share an id across Python and
OS upgrades.

Stdlib-only and valid Python 3.6 on purpose: the measurement agent ships this file verbatim to
boards such as a Jetson TX2, whose JetPack 4.6 stops at Python 3.6.
"""

import collections
import hashlib
import json
import os
import platform
import re

FINGERPRINT_VERSION = 1

# Instruction-set extensions that change how fast an inference kernel can be (x86 `flags`,
# ARM `Features`); the rest of /proc/cpuinfo's flags are noise for this purpose.
ISA_FLAGS = frozenset([
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
    "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
    "neon", "vfpv4", "asimd", "asimdhp", "asimddp", "asimdfhm", "fphp", "i8mm", "bf16", "sve", "sve2", "sme",
])

# (CPU implementer, CPU part) from /proc/cpuinfo on ARM, whose `model name` says only "ARMv8 Processor".
ARM_CORES = {
    (0x41, 0xc07): "Cortex-A7", (0x41, 0xc09): "Cortex-A9", (0x41, 0xc0f): "Cortex-A15",
    (0x41, 0xd03): "Cortex-A53", (0x41, 0xd04): "Cortex-A35", (0x41, 0xd05): "Cortex-A55",
    (0x41, 0xd07): "Cortex-A57", (0x41, 0xd08): "Cortex-A72", (0x41, 0xd09): "Cortex-A73",
    (0x41, 0xd0a): "Cortex-A75", (0x41, 0xd0b): "Cortex-A76", (0x41, 0xd0c): "Neoverse-N1",
    (0x41, 0xd0d): "Cortex-A77", (0x41, 0xd40): "Neoverse-V1", (0x41, 0xd41): "Cortex-A78",
    (0x41, 0xd42): "Cortex-A78AE", (0x41, 0xd44): "Cortex-X1", (0x41, 0xd46): "Cortex-A510",
    (0x41, 0xd47): "Cortex-A710", (0x41, 0xd49): "Neoverse-N2", (0x41, 0xd4f): "Neoverse-V2",
    (0x4e, 0x000): "NVIDIA Denver", (0x4e, 0x003): "NVIDIA Denver 2", (0x4e, 0x004): "NVIDIA Carmel",
}

# Jetson SoCs by their device-tree `compatible` entry: steadier than the `model` string,
# which has changed between L4T releases (a TX2 has said both "quill" and "NVIDIA Jetson TX2").
TEGRA_SOCS = {
    "tegra210": "NVIDIA Tegra X1 (Maxwell iGPU)",
    "tegra186": "NVIDIA Tegra X2 (Pascal iGPU)",
    "tegra194": "NVIDIA Xavier (Volta iGPU)",
    "tegra234": "NVIDIA Orin (Ampere iGPU)",
}

# The fields that identify the hardware; python, os and l4t_release change with upgrades.
ID_FIELDS = ("cpu_model", "machine", "logical_cpus", "isa_flags", "accelerator")


def collect_fingerprint(root="/", probe_commands=None, gpu_names=None):
    """Describe the machine this runs on.

    Args:
        root: where /proc, /sys and /etc are read from (a fake tree in tests). `machine`, `os`
            and `python` always describe the running interpreter; other fallbacks to it
            (os.cpu_count, platform.processor) apply only when root is "/".
        probe_commands: run `nvidia-smi` to name a discrete GPU; default only when root is "/".
        gpu_names: what `nvidia_smi_gpus()` said earlier on this machine, to use instead of asking
            it again (the advisor remembers it until the next boot: nvidia-smi can take a second).

    Returns:
        A JSON-ready dict: fingerprint_version, cpu_model, machine, logical_cpus, online_cpus,
        physical_cores, isa_flags, memory_bytes, os, python, accelerator, board, l4t_release,
        cpu_max_mhz (the fastest core's top clock from cpufreq: what a board's throughput is
        estimated from before it is measured; None in most virtual machines).
        A field that cannot be found is None, never guessed.
    """
    host = os.path.abspath(root) == "/"
    if probe_commands is None:
        probe_commands = host
    processors, extra = _parse_cpuinfo(_read(root, "proc/cpuinfo"))
    board = _read(root, "proc/device-tree/model") or _read(root, "sys/devices/virtual/dmi/id/product_name")
    jetson = _jetson(root, board)
    if not probe_commands or jetson is not None:
        gpus = []
    else:
        gpus = list(gpu_names) if gpu_names is not None else nvidia_smi_gpus()
    meminfo = re.search(r"^MemTotal:\s+(\d+)\s*kB", _read(root, "proc/meminfo") or "", re.MULTILINE)
    release = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", _read(root, "etc/nv_tegra_release") or "")
    return {
        "fingerprint_version": FINGERPRINT_VERSION,
        "cpu_model": _cpu_model(processors, extra) or (platform.processor() if host else None) or None,
        "machine": platform.machine() or None,
        "logical_cpus": _count_cpu_list(_read(root, "sys/devices/system/cpu/present"))
        or len(processors) or (os.cpu_count() if host else None),
        "online_cpus": _count_cpu_list(_read(root, "sys/devices/system/cpu/online")) or len(processors) or None,
        "physical_cores": _physical_cores(root, processors),
        "isa_flags": _isa_flags(processors),
        "memory_bytes": int(meminfo.group(1)) * 1024 if meminfo else None,
        "os": " ".join(p for p in (platform.system(), platform.release()) if p) or None,
        "python": platform.python_version(),
        "accelerator": jetson or _summarise(gpus),
        "board": board,
        "l4t_release": f"R{release.group(1)}.{release.group(2)}" if release else None,
        "cpu_max_mhz": _max_mhz(root),
    }


def fingerprint_id(fp):
    """A stable 12-hex id of the hardware a fingerprint describes.

    Hashes `ID_FIELDS` and the memory rounded to GiB, not volatile fields (python, os, L4T).
    """
    key = {f: fp.get(f) for f in ID_FIELDS}
    key["isa_flags"] = sorted(key["isa_flags"] or [])
    mem = fp.get("memory_bytes")
    key["memory_gib"] = round(mem / float(1 << 30)) if mem else None
    key["fingerprint_version"] = fp.get("fingerprint_version", FINGERPRINT_VERSION)
    blob = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def _read(root, rel):
    """A file's text under root, stripped (device-tree strings end in NUL), or None."""
    try:
        with open(os.path.join(root, rel), "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    return text.strip().strip("\x00").strip() or None


def _parse_cpuinfo(text):
    """(one dict per `processor` block, the keys of other blocks such as ARM32's Hardware/Model)."""
    processors, extra = [], {}
    for block in re.split(r"\n\s*\n", text or ""):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "processor" in fields and fields["processor"].isdigit():
            processors.append(fields)
        else:
            extra.update(fields)
    return processors, extra


def _cpu_model(processors, extra):
    cores = [_arm_core(p) for p in processors]
    if cores and all(cores):
        counts = collections.Counter(cores)
        if len(counts) == 1:
            return cores[0]
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return " + ".join(f"{n}x {name}" for name, n in ordered)
    names = []
    for p in processors:
        name = p.get("model name")
        if name and name not in names:
            names.append(name)
    if names and not names[0].startswith("ARMv"):
        return " + ".join(names)
    return extra.get("Model") or extra.get("Hardware") or (names[0] if names else None)


def _arm_core(p):
    try:
        key = (int(p["CPU implementer"], 16), int(p["CPU part"], 16))
    except (KeyError, ValueError):
        return None
    return ARM_CORES.get(key, "ARM {:#x}:{:#05x}".format(*key))


def _isa_flags(processors):
    """The curated flags every processor has (big.LITTLE cores can differ)."""
    common = None
    for p in processors:
        flags = set((p.get("flags") or p.get("Features") or "").split())
        common = flags if common is None else common & flags
    return sorted((common or set()) & ISA_FLAGS)


def _count_cpu_list(text):
    """CPUs in a sysfs list such as "0-3,6" (None when absent)."""
    if not text:
        return None
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi) - int(lo) + 1 if hi else 1
    return n


def _physical_cores(root, processors):
    """Distinct sibling sets in sysfs topology, else distinct (physical id, core id) in cpuinfo."""
    sets = set()
    base = os.path.join(root, "sys/devices/system/cpu")
    try:
        cpus = [d for d in os.listdir(base) if re.match(r"cpu\d+$", d)]
    except OSError:
        cpus = []
    for cpu in cpus:
        siblings = (_read(root, f"sys/devices/system/cpu/{cpu}/topology/core_cpus_list")
                    or _read(root, f"sys/devices/system/cpu/{cpu}/topology/thread_siblings_list"))
        if siblings:
            sets.add(siblings)
    if sets:
        return len(sets)
    pairs = {(p.get("physical id"), p.get("core id")) for p in processors if "core id" in p}
    return len(pairs) or None


def _max_mhz(root):
    """The highest `cpuinfo_max_freq` (kHz) over the CPUs, in MHz; None without cpufreq."""
    base = os.path.join(root, "sys/devices/system/cpu")
    try:
        cpus = [d for d in os.listdir(base) if re.match(r"cpu\d+$", d)]
    except OSError:
        return None
    best = None
    for cpu in cpus:
        text = _read(root, "sys/devices/system/cpu/{}/cpufreq/cpuinfo_max_freq".format(cpu))
        if text and text.isdigit() and (best is None or int(text) > best):
            best = int(text)
    return int(round(best / 1000.0)) if best else None


def _jetson(root, board):
    """The Jetson's SoC and iGPU, or None on anything that is not a Jetson."""
    compatible = (_read(root, "proc/device-tree/compatible") or "").split("\x00")
    for entry in compatible:
        soc = entry.strip().partition("nvidia,")[2]
        if soc in TEGRA_SOCS:
            return TEGRA_SOCS[soc]
    if board and "jetson" in board.lower():
        return board
    if _read(root, "etc/nv_tegra_release"):
        return "NVIDIA Tegra (L4T)"
    return None


def nvidia_smi_gpus(timeout_s=5.0):
    """The names of the discrete NVIDIA GPUs `nvidia-smi` lists; [] without it or on any failure."""
    import shutil

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    import subprocess

    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], check=False,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True, timeout=timeout_s)  # noqa: UP021 - text= is 3.7+
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def _summarise(names):
    """"2x NVIDIA A100" style summary of GPU names, or None for none."""
    if not names:
        return None
    counts = collections.OrderedDict()
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return " + ".join(name if n == 1 else f"{n}x {name}" for name, n in counts.items())
