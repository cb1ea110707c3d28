"""A board of an architecture no training row came from: latency scaled from the reference machine
by compute, with a band at least x/÷2.5 wide, and said so."""

from __future__ import annotations

import numpy as np
import pytest
from test_predictor import FAST, synthetic_rows

from advisor import board_speed as S
from advisor import bundle as B
from advisor import devices as registry
from advisor.calibration import predict_uncalibrated
from advisor.cli import main
from advisor.features import device_features, feature_matrix
from advisor.lookup import resolve_profile
from advisor.predictor import Predictor


def _bundle(tmp_path_factory, devices):
    rows, profiles = synthetic_rows(devices=devices)
    return B.load(B.save(Predictor(**FAST).fit(rows, profiles), tmp_path_factory.mktemp("models") / "current"))


@pytest.fixture(scope="module")
def x86_only(tmp_path_factory):
    return _bundle(tmp_path_factory, ("sim-x86",))


@pytest.fixture(scope="module")
def with_arm(tmp_path_factory):
    return _bundle(tmp_path_factory, ("sim-x86", "sim-arm"))


def test_an_arm_board_is_scaled_from_the_x86_reference_by_its_spec_sheet(x86_only):
    tx2 = registry.get_profile("jetson_tx2")
    scaling = S.board_scaling(x86_only, tx2.fingerprint, threads=1)
    assert scaling is not None and scaling.board == "jetson_tx2" and scaling.reference == "sim-x86"
    assert scaling.board_gflops == pytest.approx(2.0 * 8 * S.ARM_EFFICIENCY)
    # The reference throughput is the bundle's own: 2 x MACs of ResNet-50 over its predicted latency.
    ref = x86_only.predictor.devices_["sim-x86"]["fingerprint"]
    resnet = resolve_profile(S.REFERENCE_NETWORK)
    ms = x86_only.predict(feature_matrix(resnet, ["none"], device_features(ref, 1)))["latency"][0, 1]
    assert scaling.reference_gflops == pytest.approx(2 * resnet.macs / (ms * 1e-3) / 1e9)

    profile = resolve_profile("mobilenet_v2@96")
    specs = ["none", "ptq-int8", "prune:0.5"]
    on_board = feature_matrix(profile, specs, device_features(tx2.fingerprint, 1))
    on_ref = feature_matrix(profile, specs, device_features(ref, 1))  # the reference at one thread
    got = predict_uncalibrated(x86_only, on_board, tx2.fingerprint, 1)["latency"]
    want = x86_only.predict(on_ref)["latency"][:, 1] * scaling.factor
    np.testing.assert_allclose(got[:, 1], want, rtol=1e-9)
    assert (got[:, 0] <= got[:, 1] / S.BAND * (1 + 1e-9)).all() and (got[:, 2] >= got[:, 1] * S.BAND * (1 - 1e-9)).all()
    # Sizes do not depend on the device: unchanged.
    np.testing.assert_allclose(predict_uncalibrated(x86_only, on_board, tx2.fingerprint, 1)["size"],
                               x86_only.predict(on_board)["size"])


def test_a_boards_threads_speed_it_up_sublinearly_up_to_its_cores(x86_only):
    tx2 = registry.get_profile("jetson_tx2").fingerprint
    one, four = S.board_scaling(x86_only, tx2, 1), S.board_scaling(x86_only, tx2, 4)
    assert four.threads_board == 4
    assert four.factor == pytest.approx(one.factor / 4 ** S.PARALLEL_EXPONENT)
    assert S.board_scaling(x86_only, tx2, 64).threads_board == 6  # the TX2 has 6 cores


def test_no_scaling_where_the_bundle_has_rows_of_the_architecture_or_no_spec_sheet(x86_only, with_arm):
    tx2 = registry.get_profile("jetson_tx2").fingerprint
    assert S.board_scaling(with_arm, tx2, 1) is None  # aarch64 rows were trained on
    assert S.board_scaling(x86_only, x86_only.predictor.devices_["sim-x86"]["fingerprint"], 1) is None
    probed = dict(tx2, cpu_model="some other ARM board", memory_bytes=2**30)  # no profile matches it
    assert S.board_scaling(x86_only, probed, 1) is None


def test_the_answer_says_it_is_a_spec_sheet_estimate(capsys, x86_only):
    code = main(["recommend", "--model", "mobilenet_v2@96", "--device", "raspberry_pi_4", "--budget-ms", "5",
                 "--bundle", str(x86_only.path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "scaled by compute" in out and "raspberry_pi_4" in out and "advisor calibrate" in out


def _probed_pi(root, max_khz):
    """A Raspberry Pi 4 (8 GB, so no shipped profile's fingerprint) as the agent reads it over SSH."""
    from test_fingerprint import write

    core = ("processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
            "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n")
    cpus = "\n".join(core.format(n=n) for n in range(4))
    write(root / "proc/cpuinfo", cpus + "\nModel\t\t: Raspberry Pi 4 Model B Rev 1.5\n")
    write(root / "proc/meminfo", "MemTotal:        7999788 kB\n")
    write(root / "proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.5\x00")
    write(root / "sys/devices/system/cpu/present", "0-3\n")
    for n, khz in enumerate(max_khz):
        if khz:
            write(root / f"sys/devices/system/cpu/cpu{n}/cpufreq/cpuinfo_max_freq", f"{khz}\n")
    from advisor.fingerprint import collect_fingerprint

    return dict(collect_fingerprint(root=str(root)), machine="aarch64")  # `machine` is the interpreter's


def test_a_probed_board_without_a_profile_is_scaled_from_its_own_fingerprint(x86_only, tmp_path):
    fp = _probed_pi(tmp_path / "pi", [1800000, 1800000, 1500000, 1800000])
    assert fp["cpu_model"] == "Cortex-A72" and fp["cpu_max_mhz"] == 1800
    assert S._profile_for(fp) is None  # 8 GB: not the shipped raspberry_pi_4 (4 GB) fingerprint
    scaling = S.board_scaling(x86_only, fp, threads=2)
    assert scaling is not None and scaling.threads_board == 2
    assert scaling.board_gflops == pytest.approx(1.8 * S.FP32_FLOPS_PER_CYCLE["Cortex-A72"] * S.ARM_EFFICIENCY)
    assert "fingerprint" in scaling.source and "1800 MHz" in scaling.note()


def test_without_a_clock_a_probed_board_takes_the_specs_of_a_profile_with_its_cpu(x86_only, tmp_path):
    fp = _probed_pi(tmp_path / "pi", [None] * 4)  # no cpufreq (an old kernel, or a VM)
    assert fp["cpu_max_mhz"] is None
    scaling = S.board_scaling(x86_only, fp, threads=1)
    pi4 = registry.get_profile("raspberry_pi_4").specs
    assert scaling.board == "raspberry_pi_4" and "the same CPU" in scaling.source
    peak = pi4["cpu_max_ghz"] * pi4["cpu_fp32_flops_per_cycle"]
    assert scaling.board_gflops == pytest.approx(peak * S.ARM_EFFICIENCY)


def test_a_mixed_cpu_is_rated_by_its_fastest_cores():
    assert S._names_core("4x Cortex-A57 + 2x NVIDIA Denver 2", "NVIDIA Denver 2")
    assert S._names_core("4x Cortex-A55 + 4x Cortex-A76", "Cortex-A76")
    assert not S._names_core("4x Cortex-A55 + 4x Cortex-A76", "Cortex-A7")
    sheet = S.spec_sheet({"cpu_model": "4x Cortex-A55 + 4x Cortex-A76", "cpu_max_mhz": 2400, "logical_cpus": 8,
                          "machine": "aarch64"})
    assert sheet.flops_per_cycle == S.FP32_FLOPS_PER_CYCLE["Cortex-A76"] and sheet.ghz == 2.4 and sheet.cores == 8


def test_the_reference_for_a_board_has_no_matrix_unit_the_board_lacks():
    """A machine with AMX runs int8 matrix work far faster than its vector units: a board without
    one is scaled from the machine with most rows among those without, where there is one."""
    from types import SimpleNamespace

    def machine(*flags):
        return {"fingerprint": {"machine": "x86_64", "isa_flags": ["avx2", "fma", *flags]}}

    predictor = SimpleNamespace(devices_={"xeon": machine("avx512f", "amx_tile", "amx_int8"), "epyc": machine(),
                                          "old": machine()})
    rows = {"xeon": 500, "epyc": 400, "old": 10}
    assert S.reference_machine(predictor, rows, ["neon", "asimd"])[0] == "epyc"
    assert S.reference_machine(predictor, rows, ["amx_tile", "amx_int8"])[0] == "xeon"  # a board with one
    assert S.reference_machine(predictor, rows)[0] == "epyc"
    only = SimpleNamespace(devices_={"xeon": machine("amx_tile")})
    assert S.reference_machine(only, {"xeon": 5}, ["neon"])[0] == "xeon"  # nothing else to take
