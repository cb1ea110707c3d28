"""Energy sensors on fake sysfs trees shaped like a Jetson's and a RAPL machine's; pure integration maths."""

import ast
import glob
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import pytest

from measure import energy
from measure.energy import (
    Ina3221Sensor,
    NvmlSensor,
    PowerSampler,
    RaplSensor,
    Sample,
    detect_sensor,
    energy_between,
    energy_per_inference,
    measure_idle_power,
)

SOURCE = Path(energy.__file__)


# --- fake trees, shaped like the real ones ---------------------------------------------------

def write(path, value):
    """Replace a file atomically, as a sysfs attribute never reads half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{value}\n")
    os.replace(str(tmp), str(path))


# Jetson TX2, L4T R32 (JetPack 4.x): two ina3221x monitors on i2c bus 0.
TX2_RAILS = {
    "0-0040/iio:device0": ["VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_4V0_WIFI"],
    "0-0041/iio:device1": ["VDD_IN", "VDD_SYS_CPU", "VDD_SYS_DDR"],
}


def make_tx2(drivers, mw=None):
    """An `ina3221x` driver directory; `mw` maps rail name -> milliwatts (default 1000 each)."""
    mw = dict(mw or {})
    base = Path(drivers, "ina3221x")
    for f in ("bind", "unbind", "uevent"):
        write(base / f, "")
    for dev, rails in TX2_RAILS.items():
        d = base / dev
        write(d / "name", "ina3221x")
        write(d / "running_mode", 1)
        for ch, rail in enumerate(rails):
            power = mw.get(rail, 1000)
            write(d / f"rail_name_{ch}", rail)
            write(d / f"in_voltage{ch}_input", 19104 if rail == "VDD_IN" else 5000)
            write(d / f"in_current{ch}_input", power * 1000 // (19104 if rail == "VDD_IN" else 5000))
            write(d / f"in_power{ch}_input", power)
            write(d / f"crit_current_limit_{ch}", 3000)
            write(d / f"warn_current_limit_{ch}", 2000)
    return Path(drivers)


def tx2_power_file(drivers, rail="VDD_IN"):
    for dev, rails in TX2_RAILS.items():
        if rail in rails:
            return Path(drivers, "ina3221x", dev, f"in_power{rails.index(rail)}_input")
    raise KeyError(rail)


def make_hwmon(drivers, labels, mv_ma):
    """A JetPack 5+ `ina3221` hwmon device (Orin): inN_label, inN_input (mV), currN_input (mA)."""
    d = Path(drivers, "ina3221", "1-0040", "hwmon", "hwmon3")
    write(d / "name", "ina3221")
    write(d / "update_interval", 1100)
    for n, label in enumerate(labels, start=1):
        mv, ma = mv_ma[label]
        write(d / f"in{n}_label", label)
        write(d / f"in{n}_input", mv)
        write(d / f"curr{n}_input", ma)
        write(d / f"in{n + 3}_input", 40)  # shunt voltage channels: no label, no current
    write(d / "in7_label", "sum of shunt voltages")
    write(d / "in7_input", 120)
    return Path(drivers)


def make_rapl(powercap, zones):
    """`intel-rapl:N` zones: zones maps dir name -> (zone name, energy_uj, max_energy_range_uj)."""
    for d, (name, uj, max_uj) in zones.items():
        z = Path(powercap, d)
        write(z / "name", name)
        write(z / "energy_uj", uj)
        write(z / "max_energy_range_uj", max_uj)
        write(z / "enabled", 1)
        write(z / "constraint_0_name", "long_term")
    return Path(powercap)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


def wait_until(cond, what, limit_s=20.0):
    """Poll cond (a safety limit only: the tests never assert on durations)."""
    end = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("gave up waiting for " + what)
        time.sleep(0.001)


# --- INA3221 ---------------------------------------------------------------------------------

def test_tx2_total_is_vdd_in_and_sub_rails_are_not_summed(tmp_path):
    mw = {"VDD_IN": 4987, "VDD_SYS_CPU": 612, "VDD_SYS_GPU": 1530, "VDD_SYS_SOC": 918, "VDD_SYS_DDR": 765,
          "VDD_4V0_WIFI": 0}
    sensor = Ina3221Sensor(root=str(make_tx2(tmp_path, mw)))
    ok, why = sensor.available()
    assert ok, why
    assert "VDD_IN" in why and "iio" in why
    assert sensor.read_power_w() == pytest.approx(4.987)
    rails = sensor.read_rails_w()
    assert set(rails) == set(mw)
    assert rails == pytest.approx({k: v / 1000.0 for k, v in mw.items()})
    assert sensor.read_power_w() != pytest.approx(sum(rails.values()))
    assert sensor.describe() == {"name": "ina3221", "root": str(tmp_path), "total_rail": "VDD_IN", "layout": "iio",
                                 "rails": ["VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_4V0_WIFI", "VDD_IN", "VDD_SYS_CPU",
                                           "VDD_SYS_DDR"]}


def test_hwmon_layout_power_is_voltage_times_current(tmp_path):
    labels = ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]  # Orin Nano
    root = make_hwmon(tmp_path, labels, {"VDD_IN": (5072, 1400), "VDD_CPU_GPU_CV": (5064, 320),
                                         "VDD_SOC": (5072, 280)})
    sensor = Ina3221Sensor(root=str(root))
    assert sensor.available()[0]
    assert sensor.read_power_w() == pytest.approx(5.072 * 1.4)
    assert list(sensor.read_rails_w()) == labels  # "sum of shunt voltages" is no rail
    assert sensor.describe()["layout"] == "hwmon"


def test_no_input_rail_is_unavailable_until_one_is_named(tmp_path):
    labels = ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]  # AGX Orin: no board-input rail
    root = str(make_hwmon(tmp_path, labels, {k: (5000, 1000) for k in labels}))
    ok, why = Ina3221Sensor(root=root).available()
    assert not ok
    assert "rail=" in why and "VDD_CPU_CV" in why and "never summed" in why
    assert Ina3221Sensor(root=root, rail="VDD_CPU_CV").available()[0]
    ok, why = Ina3221Sensor(root=root, rail="VDD_NOPE").available()
    assert not ok and "VDD_NOPE" in why


def test_unconnected_channel_is_skipped(tmp_path):
    make_tx2(tmp_path)
    write(tmp_path / "ina3221x/0-0040/iio:device0/rail_name_2", "NC")
    assert "NC" not in Ina3221Sensor(root=str(tmp_path)).read_rails_w()


def test_missing_or_unreadable_ina3221_is_unavailable_with_reason(tmp_path):
    ok, why = Ina3221Sensor(root=str(tmp_path / "nothing")).available()
    assert not ok and "no INA3221 monitor" in why and str(tmp_path / "nothing") in why
    make_tx2(tmp_path)
    power = tx2_power_file(tmp_path)
    for f in ("in_power0_input", "in_voltage0_input"):
        power.with_name(f).unlink()
    ok, why = Ina3221Sensor(root=str(tmp_path)).available()
    assert not ok and "cannot read INA3221 rail VDD_IN" in why


# --- the sampler on a changing tree ----------------------------------------------------------

def test_sampler_follows_a_writer_and_energy_integrates(tmp_path):
    make_tx2(tmp_path, {"VDD_IN": 2000})
    power = tx2_power_file(tmp_path)
    sensor = Ina3221Sensor(root=str(tmp_path))
    switch = {}

    with PowerSampler(sensor) as sampler:
        def writer():
            wait_until(lambda: len(sampler.samples) >= 30, "samples at 2 W")
            switch["lo"] = time.monotonic()
            write(power, 5000)
            switch["hi"] = time.monotonic()
            n = len(sampler.samples)
            wait_until(lambda: len(sampler.samples) >= n + 30, "samples at 5 W")

        w = threading.Thread(target=writer)
        w.start()
        w.join()
    samples = sampler.samples

    watts = [s.watts for s in samples]
    assert set(watts) == {2.0, 5.0}
    first5 = watts.index(5.0)
    assert all(v == 2.0 for v in watts[:first5]) and all(v == 5.0 for v in watts[first5:])
    assert sampler.sample_rate_hz > 0
    assert all(b.t > a.t for a, b in itertools.pairwise(samples))

    # A constant stretch integrates exactly to power x time.
    t0, t_last2 = samples[0].t, samples[first5 - 1].t
    assert energy_between(samples, t0, t_last2) == pytest.approx(2.0 * (t_last2 - t0), rel=1e-9)
    # Across the step the error is bounded by the step times the sample gap around it.
    t1 = samples[-1].t
    mid = (switch["lo"] + switch["hi"]) / 2.0
    expected = 2.0 * (mid - t0) + 5.0 * (t1 - mid)
    gap = samples[first5].t - samples[first5 - 1].t
    tol = 3.0 * (gap + switch["hi"] - switch["lo"]) + 1e-9
    assert abs(energy_between(samples, t0, t1) - expected) <= tol


def test_idle_is_deducted_from_a_measured_run(tmp_path):
    make_tx2(tmp_path, {"VDD_IN": 1500})
    sensor = Ina3221Sensor(root=str(tmp_path))
    idle_w = measure_idle_power(sensor, seconds=0.05)
    assert idle_w == pytest.approx(1.5, rel=1e-12)

    write(tx2_power_file(tmp_path), 4000)
    sampler = PowerSampler(sensor).start()
    wait_until(lambda: sampler.samples and sampler.samples[-1].watts == 4.0, "the 4 W reading")
    start = time.monotonic()
    n = len(sampler.samples)
    wait_until(lambda: len(sampler.samples) >= n + 20, "samples during the run")
    end = time.monotonic()
    wait_until(lambda: sampler.samples[-1].t > end, "a sample after the run")
    samples = sampler.stop()

    result = energy_per_inference(samples, [(start, end, 8)], idle_w)
    assert result["energy_mj"] == pytest.approx((4.0 - 1.5) * (end - start) / 8 * 1000.0, rel=1e-9)
    assert result["active_power_w"] == pytest.approx(4.0, rel=1e-9)
    assert result["idle_power_w"] == idle_w
    assert result["samples"] >= 19 and result["inferences"] == 8 and not result["floored"]
    assert len(samples) >= n + 20  # raw samples kept, none dropped


def test_sampler_hands_a_failing_read_to_the_caller_and_keeps_samples(tmp_path):
    make_tx2(tmp_path)
    power = tx2_power_file(tmp_path)
    sensor = Ina3221Sensor(root=str(tmp_path))
    sensor.start()
    wait_until(lambda: len(sensor._sampler.samples) >= 5, "samples")
    sampler = sensor._sampler
    for f in ("in_power0_input", "in_voltage0_input"):
        power.with_name(f).unlink()
    wait_until(lambda: sampler.error is not None, "the read error")
    with pytest.raises(OSError):
        sensor.stop()
    assert len(sampler.samples) >= 5


# --- RAPL ------------------------------------------------------------------------------------

def test_rapl_power_from_counter_differences(tmp_path):
    root = make_rapl(tmp_path, {
        "intel-rapl:0": ("package-0", 1000000, 262143328850),
        "intel-rapl:0:0": ("core", 500000, 262143328850),
        "intel-rapl:0:1": ("uncore", 1000, 262143328850),
        "intel-rapl:1": ("package-1", 2000000, 262143328850),
    })
    clock = FakeClock()
    sensor = RaplSensor(root=str(root), clock=clock, prime_s=0)
    assert sensor.available() == (True, f"RAPL package-0, package-1 under {root}")
    assert sensor.read_power_w() == 0.0  # primed: no energy used between the two reads
    write(root / "intel-rapl:0/energy_uj", 1000000 + 3000000)
    write(root / "intel-rapl:0:0/energy_uj", 500000 + 9000000)  # inside package-0: not added
    write(root / "intel-rapl:1/energy_uj", 2000000 + 1000000)
    clock.t += 0.5
    assert sensor.read_power_w() == pytest.approx(4.0 / 0.5)
    assert sensor.read_energy_j() == pytest.approx(4.0)


def test_rapl_counter_wrap_around(tmp_path):
    max_uj = 65532610987
    root = make_rapl(tmp_path, {"intel-rapl:0": ("package-0", max_uj - 250000, max_uj)})
    clock = FakeClock()
    sensor = RaplSensor(root=str(root), clock=clock, prime_s=0)
    sensor.read_power_w()
    write(root / "intel-rapl:0/energy_uj", 750000)  # passed the range: wrapped to zero
    clock.t += 0.25
    assert sensor.read_power_w() == pytest.approx(1.0 / 0.25)
    assert sensor.read_energy_j() == pytest.approx(1.0)


def test_rapl_psys_only_when_no_package(tmp_path):
    both = make_rapl(tmp_path / "a", {"intel-rapl:0": ("package-0", 1, 10 ** 9), "intel-rapl:1": ("psys", 1, 10 ** 9)})
    assert [z.name for z in RaplSensor(root=str(both)).zones()] == ["package-0"]
    psys = make_rapl(tmp_path / "b", {"intel-rapl:1": ("psys", 1, 10 ** 9)})
    assert [z.name for z in RaplSensor(root=str(psys)).zones()] == ["psys"]


def test_rapl_missing_or_unreadable_is_unavailable_with_reason(tmp_path):
    ok, why = RaplSensor(root=str(tmp_path / "powercap")).available()
    assert not ok and "no RAPL package zone" in why
    root = make_rapl(tmp_path / "pc", {"intel-rapl:0": ("package-0", 1, 10 ** 9)})
    counter = root / "intel-rapl:0/energy_uj"
    counter.unlink()
    counter.symlink_to(tmp_path / "gone")
    ok, why = RaplSensor(root=str(root)).available()
    assert not ok and "cannot read" in why


def _available_as(uid, root):
    """RaplSensor(root).available() in a child process running as `uid` (root cannot be refused a read)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            os.setgid(uid)
            os.setuid(uid)
            os.write(w, json.dumps(RaplSensor(root=root).available()).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return json.loads(out)


def test_rapl_permission_denied_is_unavailable_with_reason():
    # Since Linux 5.10 energy_uj is 0400 root: a real permission error needs a non-root reader.
    top = tempfile.mkdtemp()
    try:
        os.chmod(top, 0o755)
        root = make_rapl(top, {"intel-rapl:0": ("package-0", 123, 10 ** 9)})
        for dirpath, dirs, files in os.walk(top):
            for d in dirs:
                os.chmod(os.path.join(dirpath, d), 0o755)
            for f in files:
                os.chmod(os.path.join(dirpath, f), 0o444)
        os.chmod(str(root / "intel-rapl:0/energy_uj"), 0o400)
        if os.geteuid() == 0:
            ok, why = _available_as(65534, str(root))
        else:
            os.chmod(str(root / "intel-rapl:0/energy_uj"), 0)
            ok, why = RaplSensor(root=str(root)).available()
        assert not ok
        assert "permission denied" in why and "energy_uj" in why
    finally:
        shutil.rmtree(top)


# --- NVML ------------------------------------------------------------------------------------

def fake_pynvml(power_mw=None):
    """A module shaped like nvidia-ml-py's pynvml; power_mw None answers NOT_SUPPORTED (a Jetson)."""
    m = types.ModuleType("pynvml")

    class NVMLError(Exception):
        def __init__(self, value):
            self.value = value

        def __str__(self):
            return {3: "Not Supported"}.get(self.value, "Unknown Error")

    def power(handle):
        if power_mw is None:
            raise NVMLError(m.NVML_ERROR_NOT_SUPPORTED)
        return power_mw

    m.NVMLError, m.NVML_ERROR_NOT_SUPPORTED = NVMLError, 3
    m.nvmlInit = m.nvmlShutdown = lambda: None
    m.nvmlDeviceGetHandleByIndex = lambda i: ("handle", i)
    m.nvmlDeviceGetName = lambda h: b"Orin (nvgpu)" if power_mw is None else b"NVIDIA H100 80GB HBM3"
    m.nvmlDeviceGetPowerUsage = power
    return m


def test_nvml_without_pynvml_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    assert NvmlSensor().available() == (False, "pynvml not installed (pip install nvidia-ml-py)")


def test_nvml_not_supported_is_unavailable_with_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(power_mw=None))
    ok, why = NvmlSensor().available()
    assert not ok and "not supported" in why and "ina3221" in why


def test_nvml_reads_milliwatts(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(power_mw=71234))
    sensor = NvmlSensor()
    assert sensor.available() == (True, "NVML GPU 0 (NVIDIA H100 80GB HBM3)")
    assert sensor.read_power_w() == pytest.approx(71.234)
    sensor.close()


# --- detection -------------------------------------------------------------------------------

def test_detect_sensor_tries_backends_in_order(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    make_tx2(tmp_path / "drivers")
    rapl = make_rapl(tmp_path / "powercap", {"intel-rapl:0": ("package-0", 1, 10 ** 9)})
    sensor, why = detect_sensor(ina3221=str(tmp_path / "drivers"), rapl=str(rapl))
    assert isinstance(sensor, Ina3221Sensor) and "VDD_IN" in why
    sensor, why = detect_sensor(ina3221=str(tmp_path / "none"), rapl=str(rapl))
    assert isinstance(sensor, RaplSensor)
    sensor, why = detect_sensor(ina3221=str(tmp_path / "none"), rapl=str(tmp_path / "none"))
    assert sensor is None
    assert why.startswith("ina3221: ") and "; rapl: " in why and "; nvml: pynvml not installed" in why
    assert list(energy.SENSORS) == ["ina3221", "rapl", "nvml"]


def test_detect_sensor_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown energy sensor 'ina3220'.*valid: ina3221, rapl, nvml"):
        detect_sensor(names=["ina3220"])
    with pytest.raises(ValueError, match="already registered"):
        energy.register(type("Again", (energy.EnergySensor,), {"name": "rapl"}))


# --- pure integration ------------------------------------------------------------------------

RAMP = [Sample(i / 10.0, 10.0 * i / 10.0) for i in range(11)]  # P(t) = 10 t on [0, 1]


def test_energy_between_interpolates_the_edges():
    assert energy_between(RAMP, 0.25, 0.75) == pytest.approx(5.0 * (0.75 ** 2 - 0.25 ** 2), rel=1e-12)
    assert energy_between(RAMP, 0.0, 1.0) == pytest.approx(5.0, rel=1e-12)
    assert energy_between(RAMP, 0.31, 0.33) == pytest.approx(5.0 * (0.33 ** 2 - 0.31 ** 2), rel=1e-12)
    assert energy_between(RAMP, 0.4, 0.4) == 0.0
    step = [(0.0, 1.0), (1.0, 1.0), (1.0, 3.0), (2.0, 3.0)]  # a step read twice at t = 1
    assert energy_between(step, 0.0, 2.0) == pytest.approx(4.0)


def test_energy_between_refuses_windows_it_cannot_cover():
    with pytest.raises(ValueError, match="outside the sampled span"):
        energy_between(RAMP, -0.1, 0.5)
    with pytest.raises(ValueError, match="outside the sampled span"):
        energy_between(RAMP[:1], 0.0, 0.0)
    with pytest.raises(ValueError, match="ends before it starts"):
        energy_between(RAMP, 0.5, 0.4)


CONST = [Sample(i / 1000.0, 3.0) for i in range(101)]  # 3 W for 100 ms at 1 kHz


def test_energy_per_inference_per_window_and_counted_window():
    per = energy_per_inference(CONST, [(0.010, 0.020), (0.030, 0.040)], idle_w=1.0)
    assert per["energy_mj"] == pytest.approx((3.0 - 1.0) * 0.010 * 1000.0)
    assert per["total_energy_mj"] == pytest.approx(3.0 * 0.010 * 1000.0)
    assert per["active_power_w"] == pytest.approx(3.0)
    assert (per["idle_power_w"], per["samples"], per["inferences"], per["floored"]) == (1.0, 22, 2, False)
    assert per["sample_rate_hz"] == pytest.approx(1000.0)
    assert per["window_s"] == pytest.approx(0.020)
    counted = energy_per_inference(CONST, [(0.0, 0.1, 10)], idle_w=1.0)
    assert counted["energy_mj"] == pytest.approx(20.0)
    assert counted["inferences"] == 10 and counted["samples"] == 101


def test_energy_per_inference_floors_below_idle_with_a_flag():
    r = energy_per_inference(CONST, [(0.0, 0.1, 10)], idle_w=4.0)
    assert r["energy_mj"] == 0.0 and r["floored"] is True and "floored" in r["note"]
    assert r["total_energy_mj"] == pytest.approx(30.0)


@pytest.mark.parametrize("windows, note", [
    ([(0.0101, 0.0105)], "window shorter than the sensor's sampling period"),
    ([(0.05, 0.2, 3)], "outside the sampled span"),
    ([(0.02, 0.01)], "ends before it starts"),
    ([], "no inference windows"),
])
def test_energy_per_inference_is_absent_with_a_reason_never_invented(windows, note):
    r = energy_per_inference(CONST, windows, idle_w=1.0)
    assert r["energy_mj"] is None and note in r["note"]


def test_energy_per_inference_without_idle_gives_total_only():
    r = energy_per_inference(CONST, [(0.0, 0.1, 10)], idle_w=None)
    assert r["energy_mj"] is None and r["total_energy_mj"] == pytest.approx(30.0) and "idle" in r["note"]


# --- Python 3.6, stdlib only -----------------------------------------------------------------

ALLOWED_IMPORTS = {"bisect", "collections", "glob", "os", "re", "threading", "time", "pynvml"}
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
    assert check_py36_source(SOURCE.read_text(), ALLOWED_IMPORTS) == []  # pynvml: lazy and optional
    assert check_py36_source("import numpy\nfrom __future__ import annotations\n", ALLOWED_IMPORTS) == [
        "imports numpy", "imports __future__"]


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
    make_tx2(tmp_path / "drivers", {"VDD_IN": 2500})
    code = """
import json, sys
sys.path.insert(0, sys.argv[1])
import energy
sensor, why = energy.detect_sensor(names=["ina3221"], ina3221=sys.argv[2])
with energy.PowerSampler(sensor) as s:
    while len(s.samples) < 5:
        pass
samples = [(i / 1000.0, 3.0) for i in range(101)]
print(json.dumps({"watts": sorted(set(w for _, w in s.samples)),
                  "energy": energy.energy_per_inference(samples, [(0.0, 0.1, 10)], 1.0)}))
"""
    out = subprocess.run([exe, "-c", code, str(SOURCE.parent), str(tmp_path / "drivers")],
                         check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["watts"] == [2.5]
    assert got["energy"]["energy_mj"] == pytest.approx(20.0)
