"""Energy sensors, a background power sampler, and energy per inference.

The method follows the seed study: measure idle (static) power first, sample power at about
1 kHz in a background thread while the model runs, integrate the samples that fall inside each
inference's time window, and deduct the idle power. Where no sensor exists, energy is absent
with a reason; it is never estimated.

Backends, tried in order by `detect_sensor`:

    ina3221  NVIDIA Jetson on-board INA3221 monitors (sysfs: JetPack 4 iio, JetPack 5+ hwmon)
    rapl     Linux powercap RAPL counters (Intel, and AMD on recent kernels)
    nvml     NVIDIA GPUs through pynvml (not on Jetson, where NVML has no power readings)

Stdlib-only and valid Python 3.6 on purpose: the measurement agent ships this file verbatim to
boards such as a Jetson TX2, whose JetPack 4.6 stops at Python 3.6.
"""

import bisect
import collections
import glob
import os
import re
import threading
import time

Sample = collections.namedtuple("Sample", "t watts")
Sample.__doc__ = "One power reading: `t` is time.monotonic() seconds, `watts` the power."

SENSORS = collections.OrderedDict()


def register(cls):
    """Class decorator: add an `EnergySensor` subclass to `SENSORS` under its `name`."""
    if cls.name in SENSORS:
        raise ValueError(f"energy sensor '{cls.name}' is already registered")
    SENSORS[cls.name] = cls
    return cls


class EnergySensor:
    """A power sensor: `available()` says whether it can be read here, `read_power_w()` reads it."""

    name = "base"

    def available(self):
        """(True, description) when readable here, else (False, why not)."""
        return False, "abstract sensor"

    def read_power_w(self):
        """Instantaneous power in watts."""
        raise NotImplementedError

    def describe(self):
        """A JSON-ready description of the sensor (backend, paths, rails)."""
        return {"name": self.name}

    def close(self):
        """Release what the backend holds (nothing for sysfs backends)."""

    def start(self, period_s=0.001):
        """Start sampling in the background (see `PowerSampler`); `stop()` returns the samples."""
        self._sampler = PowerSampler(self, period_s=period_s)
        self._sampler.start()

    def stop(self):
        """Stop the sampling begun by `start()`; returns the list of `Sample`s."""
        sampler, self._sampler = getattr(self, "_sampler", None), None
        if sampler is None:
            raise RuntimeError(f"{self.name} sensor: stop() without start()")
        return sampler.stop()


def _read_text(path):
    with open(path) as f:
        return f.read().strip()


def _read_number(path):
    return float(_read_text(path))


# --- INA3221 (Jetson) ------------------------------------------------------------------------

_Rail = collections.namedtuple("_Rail", "name layout power_path voltage_path current_path")


@register
class Ina3221Sensor(EnergySensor):
    """The INA3221 power monitors on NVIDIA Jetson boards, read through sysfs.

    Two layouts exist under `root` (default `/sys/bus/i2c/drivers`):

    * JetPack 4 (TX1, TX2, Nano, Xavier), driver `ina3221x`, iio devices such as
      `ina3221x/0-0041/iio:device1/` with `rail_name_N`, `in_powerN_input` (mW),
      `in_currentN_input` (mA), `in_voltageN_input` (mV) for channels N = 0..2.
    * JetPack 5+ (Xavier, Orin), mainline driver `ina3221`, hwmon devices such as
      `ina3221/1-0040/hwmon/hwmon3/` with `inN_label`, `inN_input` (mV), `currN_input` (mA)
      for N = 1..3; power is V x I.

    The total is one rail that measures the board's input (`VDD_IN` on TX2 and Orin Nano,
    `POM_5V_IN` on Nano), or the rail named by `rail=`. Sub-rails (CPU, GPU, SOC, DDR) are
    inside that input already, so they are reported beside it by `read_rails_w()` and never
    summed into the total.
    """

    name = "ina3221"
    INPUT_RAILS = ("VDD_IN", "POM_5V_IN")

    def __init__(self, root="/sys/bus/i2c/drivers", rail=None):
        self.root = root
        self.rail = rail
        self._rails = None

    def rails(self):
        """The rails found under `root`, in device order (iio layout first)."""
        if self._rails is None:
            self._rails = self._find_iio() + self._find_hwmon()
        return list(self._rails)

    def _find_iio(self):
        found = []
        pattern = os.path.join(self.root, "ina3221x", "*", "iio:device*")
        for dev in sorted(glob.glob(pattern)):
            for label_path in sorted(glob.glob(os.path.join(dev, "rail_name_[0-9]"))):
                ch = label_path[-1]
                name = _read_label(label_path)
                if name is None:
                    continue
                found.append(_Rail(name, "iio", os.path.join(dev, f"in_power{ch}_input"),
                                   os.path.join(dev, f"in_voltage{ch}_input"),
                                   os.path.join(dev, f"in_current{ch}_input")))
        return found

    def _find_hwmon(self):
        found = []
        pattern = os.path.join(self.root, "ina3221", "*", "hwmon", "hwmon*")
        for dev in sorted(glob.glob(pattern)):
            for label_path in sorted(glob.glob(os.path.join(dev, "in[0-9]_label"))):
                ch = os.path.basename(label_path)[2]
                current = os.path.join(dev, f"curr{ch}_input")
                name = _read_label(label_path)
                # in7 is "sum of shunt voltages" and has no current of its own.
                if name is None or not os.path.exists(current):
                    continue
                found.append(_Rail(name, "hwmon", None, os.path.join(dev, f"in{ch}_input"), current))
        return found

    def total_rail(self):
        """The rail read as the total, or None when no input rail exists (and none was named)."""
        by_name = {r.name: r for r in reversed(self.rails())}
        if self.rail is not None:
            return by_name.get(self.rail)
        for name in self.INPUT_RAILS:
            if name in by_name:
                return by_name[name]
        return None

    def available(self):
        rails = self.rails()
        if not rails:
            return False, (f"no INA3221 monitor under {self.root} (looked for ina3221x/*/iio:device*/rail_name_N "
                           "and ina3221/*/hwmon/hwmon*/inN_label)")
        total = self.total_rail()
        names = ", ".join(r.name for r in rails)
        if total is None:
            if self.rail is not None:
                return False, f"INA3221 has no rail '{self.rail}' (rails: {names})"
            return False, ("INA3221 has no board-input rail ({}) among rails {}; pass rail= to choose one "
                           "(sub-rails are never summed into a total)".format(", ".join(self.INPUT_RAILS), names))
        try:
            _rail_power_w(total)
        except (OSError, ValueError) as exc:
            return False, f"cannot read INA3221 rail {total.name}: {exc}"
        return True, f"INA3221 ({total.layout} layout) rail {total.name} under {self.root}"

    def read_power_w(self):
        total = self.total_rail()
        if total is None:
            raise RuntimeError(self.available()[1])
        return _rail_power_w(total)

    def read_rails_w(self):
        """Every rail's power in watts, keyed by rail name (the total rail included, not summed)."""
        return collections.OrderedDict((r.name, _rail_power_w(r)) for r in self.rails())

    def describe(self):
        total = self.total_rail()
        return {"name": self.name, "root": self.root, "total_rail": total.name if total else None,
                "layout": total.layout if total else None, "rails": [r.name for r in self.rails()]}


def _read_label(path):
    try:
        name = _read_text(path)
    except OSError:
        return None
    # Unconnected channels are labelled "NC" on several carrier boards.
    return name if name and name != "NC" else None


def _rail_power_w(rail):
    if rail.power_path is not None and os.path.exists(rail.power_path):
        return _read_number(rail.power_path) / 1000.0
    return _read_number(rail.voltage_path) * _read_number(rail.current_path) / 1e6


# --- RAPL (powercap) -------------------------------------------------------------------------

_Zone = collections.namedtuple("_Zone", "name path max_uj")


@register
class RaplSensor(EnergySensor):
    """Linux powercap RAPL: cumulative `energy_uj` counters of `intel-rapl:N` zones under `root`.

    The total is the sum of the package zones (`package-N`, disjoint sockets), or the `psys`
    zone where no package exists; psys already contains the packages, so they are never added.
    Power is the counter difference since the previous reading over the elapsed time; a
    counter that passed `max_energy_range_uj` wrapped to zero. Since Linux 5.10 the counters
    are readable by root only: that reports the sensor unavailable with the reason.

    Args:
        root: the powercap directory.
        clock: the monotonic clock (seconds) to time counter differences with.
        prime_s: on the very first reading, how long to wait between two counter reads.
    """

    name = "rapl"

    def __init__(self, root="/sys/class/powercap", clock=time.monotonic, prime_s=0.01):
        self.root = root
        self.clock = clock
        self.prime_s = prime_s
        self._zones = None
        self._last = None  # (t, [raw counter per zone], watts)
        self._energy_j = 0.0
        self._lock = threading.Lock()

    def zones(self):
        """The zones summed into the total."""
        if self._zones is None:
            tops = []
            for path in sorted(glob.glob(os.path.join(self.root, "intel-rapl:*"))):
                if not re.match(r"intel-rapl:\d+$", os.path.basename(path)):
                    continue  # subzones (core, uncore, dram) are inside their package
                try:
                    name = _read_text(os.path.join(path, "name"))
                    max_uj = int(_read_text(os.path.join(path, "max_energy_range_uj")))
                except (OSError, ValueError):
                    continue
                tops.append(_Zone(name, path, max_uj))
            packages = [z for z in tops if z.name.startswith("package")]
            self._zones = packages or [z for z in tops if z.name == "psys"]
        return list(self._zones)

    def available(self):
        zones = self.zones()
        if not zones:
            return False, f"no RAPL package zone under {self.root} (looked for intel-rapl:N/name)"
        for z in zones:
            path = os.path.join(z.path, "energy_uj")
            try:
                int(_read_text(path))
            except PermissionError:
                return False, (f"permission denied reading {path} (root-only since Linux 5.10; run as root "
                               "or make it readable)")
            except (OSError, ValueError) as exc:
                return False, f"cannot read {path}: {exc}"
        return True, "RAPL {} under {}".format(", ".join(z.name for z in zones), self.root)

    def _counters(self):
        return [int(_read_text(os.path.join(z.path, "energy_uj"))) for z in self.zones()]

    def _advance(self):
        """Read the counters; add the energy since the last read (wraps undone); returns (t, watts)."""
        t, raw = self.clock(), self._counters()
        if self._last is None:
            self._last = (t, raw, 0.0)
            return t, None
        t0, raw0, last_w = self._last
        delta_uj = 0
        for z, before, now in zip(self.zones(), raw0, raw):
            delta_uj += now - before if now >= before else now + z.max_uj - before
        self._energy_j += delta_uj / 1e6
        # The counter updates about every millisecond; a read sooner than that repeats the last power.
        watts = delta_uj / 1e6 / (t - t0) if t > t0 else last_w
        self._last = (t, raw, watts)
        return t, watts

    def read_energy_j(self):
        """Joules consumed since this sensor's first reading (counter wraps undone)."""
        with self._lock:
            if self._last is None:
                self._advance()
            self._advance()
            return self._energy_j

    def read_power_w(self):
        """Mean power since the previous reading (the first reading waits `prime_s` for a second one)."""
        with self._lock:
            if self._last is None:
                self._advance()
                time.sleep(self.prime_s)
            return self._advance()[1]

    def describe(self):
        return {"name": self.name, "root": self.root, "zones": [z.name for z in self.zones()]}


# --- NVML ------------------------------------------------------------------------------------

@register
class NvmlSensor(EnergySensor):
    """An NVIDIA GPU's board power through NVML (`pynvml`, from the nvidia-ml-py package).

    `nvmlDeviceGetPowerUsage` reports milliwatts; on recent GPUs (Ampere and newer) the driver
    averages it over about a second, so short windows are smoothed. Jetson boards answer
    "not supported": use the INA3221 sensor there.
    """

    name = "nvml"

    def __init__(self, index=0):
        self.index = index
        self._handle = None
        self._gpu_name = None

    def _open(self):
        import pynvml  # lazy: optional, and absent on most boards

        if self._handle is None:
            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            name = pynvml.nvmlDeviceGetName(self._handle)
            self._gpu_name = name.decode() if isinstance(name, bytes) else name
        return pynvml, self._handle

    def available(self):
        try:
            import pynvml
        except ImportError:
            return False, "pynvml not installed (pip install nvidia-ml-py)"
        try:
            nvml, handle = self._open()
            nvml.nvmlDeviceGetPowerUsage(handle)
        except pynvml.NVMLError as exc:
            if getattr(exc, "value", None) == getattr(pynvml, "NVML_ERROR_NOT_SUPPORTED", object()):
                return False, f"NVML reports power readings not supported on GPU {self.index} (Jetson: use ina3221)"
            return False, f"NVML error on GPU {self.index}: {exc}"
        return True, f"NVML GPU {self.index} ({self._gpu_name})"

    def read_power_w(self):
        nvml, handle = self._open()
        return nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0

    def describe(self):
        return {"name": self.name, "index": self.index, "gpu": self._gpu_name}

    def close(self):
        if self._handle is not None:
            import pynvml

            pynvml.nvmlShutdown()
            self._handle = None


def detect_sensor(names=None, **roots):
    """The first available sensor, trying the backends in `SENSORS` order.

    Args:
        names: backends to try, in order (default: all of `SENSORS`).
        **roots: a sysfs root per backend name, e.g. `ina3221="/tmp/fake/drivers"`.

    Returns:
        (sensor, description) for the first available one, else (None, every backend's reason).

    Raises:
        ValueError: an unknown backend name, listing the valid ones.
    """
    order = list(SENSORS) if names is None else list(names)
    unknown = sorted((set(order) | set(roots)) - set(SENSORS))
    if unknown:
        raise ValueError("unknown energy sensor '{}' (valid: {})".format(unknown[0], ", ".join(SENSORS)))
    reasons = []
    for name in order:
        sensor = SENSORS[name](root=roots[name]) if name in roots else SENSORS[name]()
        ok, why = sensor.available()
        if ok:
            return sensor, why
        reasons.append(f"{name}: {why}")
    return None, "; ".join(reasons) if reasons else "no sensor backend tried"


# --- Sampling --------------------------------------------------------------------------------

class PowerSampler:
    """Samples `sensor.read_power_w()` in a background thread every `period_s` seconds.

    Use as `with PowerSampler(sensor) as s: ...` or `start()` ... `stop()`. Every reading is
    kept in `samples` as `Sample(t, watts)` with `t` from time.monotonic(), the midpoint of the
    read; `sample_rate_hz` is the rate achieved. A reading that raises stops the sampling; `stop()`
    then raises it, and the samples read before it stay in `samples`.
    """

    def __init__(self, sensor, period_s=0.001):
        self.sensor = sensor
        self.period_s = period_s
        self.samples = []
        self.sample_rate_hz = None
        self.error = None
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        """Begin sampling; returns self."""
        if self._thread is not None:
            raise RuntimeError("PowerSampler already started")
        self._thread = threading.Thread(target=self._run, name="power-sampler")
        self._thread.daemon = True
        self._thread.start()
        return self

    def _run(self):
        read, out, period = self.sensor.read_power_w, self.samples, self.period_s
        deadline = time.monotonic()
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                watts = read()
            except Exception as exc:  # noqa: BLE001 - any failure reaches the caller through stop()
                self.error = exc
                return
            t1 = time.monotonic()
            out.append(Sample((t0 + t1) / 2.0, watts))
            deadline += period
            if deadline < t1:
                deadline = t1  # fell behind (a busy core): resume the period, do not burst to catch up
            else:
                time.sleep(deadline - t1)

    def stop(self):
        """End sampling; returns the list of samples (raises the sensor's error if it failed)."""
        if self._thread is None:
            raise RuntimeError("PowerSampler stopped before start()")
        self._stop.set()
        self._thread.join()
        self.sample_rate_hz = sample_rate_hz(self.samples)
        if self.error is not None:
            raise self.error
        return self.samples

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        else:
            self._stop.set()
            self._thread.join()
        return False


def sample_rate_hz(samples):
    """Samples per second achieved over a list of samples (None for fewer than two)."""
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        return None
    return (len(samples) - 1) / (samples[-1][0] - samples[0][0])


def measure_idle_power(sensor, seconds=2.0, period_s=0.001):
    """Mean power (W) while this process sleeps, sampled as during a measurement.

    The sampler thread runs while idling too, so its own cost is in the idle power and is
    deducted with it.
    """
    with PowerSampler(sensor, period_s=period_s) as sampler:
        time.sleep(seconds)
    samples = sampler.samples
    if not samples:
        raise RuntimeError(f"{sensor.name} sensor gave no sample in {seconds} s")
    if len(samples) == 1 or samples[-1][0] <= samples[0][0]:
        return float(samples[0][1])
    return energy_between(samples, samples[0][0], samples[-1][0]) / (samples[-1][0] - samples[0][0])


def _power_at(samples, i, t):
    """Power at time t, linearly interpolated between samples i-1 and i."""
    (ta, wa), (tb, wb) = samples[i - 1][:2], samples[i][:2]
    if tb == ta:
        return wb
    return wa + (wb - wa) * (t - ta) / (tb - ta)


def _integrate(samples, times, t0, t1):
    i0 = max(1, bisect.bisect_right(times, t0))
    i1 = max(1, bisect.bisect_left(times, t1))
    points = [(t0, _power_at(samples, i0, t0))]
    points.extend((s[0], s[1]) for s in samples[i0:i1])
    points.append((t1, _power_at(samples, i1, t1)))
    pairs = zip(points, points[1:])  # noqa: RUF007 - itertools.pairwise is Python 3.10+
    return sum((tb - ta) * (wa + wb) / 2.0 for (ta, wa), (tb, wb) in pairs)


def energy_between(samples, t0, t1):
    """Joules in [t0, t1] by trapezoidal integration, the edges interpolated.

    Args:
        samples: (t, watts) pairs sorted by t.
        t0, t1: the window, inside the span of the samples.

    Raises:
        ValueError: a window that is reversed or not covered by the samples.
    """
    if t1 < t0:
        raise ValueError(f"window ends before it starts ({t1} < {t0})")
    if len(samples) < 2 or t0 < samples[0][0] or t1 > samples[-1][0]:
        raise ValueError(f"window [{t0}, {t1}] is outside the sampled span")
    return _integrate(samples, [s[0] for s in samples], t0, t1)


def energy_per_inference(samples, windows, idle_w, min_samples=2):
    """Dynamic energy of one inference from power samples and the inferences' time windows.

    Args:
        samples: (t, watts) pairs sorted by t (time.monotonic() seconds).
        windows: (t_start, t_end) per inference, or (t_start, t_end, n) for n back-to-back
            inferences.
        idle_w: idle power to deduct (W), from `measure_idle_power`; None gives no `energy_mj`.
        min_samples: fewer samples inside the windows than this gives no energy.

    Returns:
        dict with `energy_mj` (active minus idle energy per inference, mJ; floored at 0 with
        `floored` True; None when it cannot be measured), `total_energy_mj` (per inference,
        idle included), `active_power_w`, `idle_power_w`, `samples` (inside the windows),
        `sample_rate_hz`, `inferences`, `window_s` and `note` (why energy is absent, or how it
        was derived).
    """
    result = {"energy_mj": None, "total_energy_mj": None, "active_power_w": None,
              "idle_power_w": idle_w, "samples": 0, "sample_rate_hz": sample_rate_hz(samples),
              "inferences": 0, "window_s": 0.0, "floored": False, "note": None}
    spans = [(float(w[0]), float(w[1]), int(w[2]) if len(w) > 2 else 1) for w in windows]
    result["inferences"] = sum(n for _, _, n in spans)
    result["window_s"] = sum(t1 - t0 for t0, t1, _ in spans)
    if not spans or result["inferences"] <= 0:
        result["note"] = "no inference windows"
        return result
    if any(t1 < t0 for t0, t1, _ in spans):
        result["note"] = "an inference window ends before it starts"
        return result
    if not samples or min(s[0] for s in spans) < samples[0][0] or max(s[1] for s in spans) > samples[-1][0]:
        result["note"] = "inference windows fall outside the sampled span"
        return result
    times = [s[0] for s in samples]
    inside = sum(bisect.bisect_right(times, t1) - bisect.bisect_left(times, t0) for t0, t1, _ in spans)
    result["samples"] = inside
    if inside < min_samples:
        result["note"] = f"window shorter than the sensor's sampling period ({inside} sample(s) inside)"
        return result
    joules = sum(_integrate(samples, times, t0, t1) for t0, t1, _ in spans)
    seconds, n = result["window_s"], result["inferences"]
    result["active_power_w"] = joules / seconds if seconds > 0 else None
    result["total_energy_mj"] = joules / n * 1000.0
    if idle_w is None:
        result["note"] = "no idle power measured: only total energy (idle included) is known"
        return result
    dynamic_j = joules - idle_w * seconds
    result["floored"] = dynamic_j < 0
    result["energy_mj"] = max(dynamic_j, 0.0) / n * 1000.0
    result["note"] = "trapezoid over {} samples, idle {:.3f} W deducted{}".format(
        inside, idle_w, "; active power below idle, floored at 0" if dynamic_j < 0 else "")
    return result
