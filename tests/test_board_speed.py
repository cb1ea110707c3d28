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
