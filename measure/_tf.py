"""Lazy, configured access to TensorFlow, Keras 2 (tf-keras) and TF Model Optimization."""

from __future__ import annotations

import contextlib
import functools
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's oneDNN kernels segfault (an AVX-512 store past a buffer, seen on AMD EPYC with TF
# 2.21) when training some thin networks, e.g. the width-0.5 distillation student of
# sampled:residual:0. Training with the default Eigen kernels is safe; nothing measured depends on
# them (latency, size and accuracy are measured on the converted TFLite model).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence what TensorFlow's C++ side writes straight to file descriptor 2 (absl and
    converter chatter that Python's logging cannot reach). Python exceptions still propagate;
    set ADVISOR_DEBUG=1 to see everything."""
    if os.environ.get("ADVISOR_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@functools.cache
def tf():
    """Return the `tensorflow` module, imported once with legacy Keras selected."""
    with quiet_native_stderr():
        import tensorflow

        tensorflow.config.list_physical_devices("GPU")  # the CUDA probe logs here, silenced

    tensorflow.get_logger().setLevel("ERROR")
    return tensorflow


@functools.cache
def keras():
    """Return Keras 2 (`tf_keras`), the Keras that TF Model Optimization 0.8 works with."""
    tf()
    import tf_keras

    return tf_keras


@functools.cache
def tfmot():
    """Return `tensorflow_model_optimization`."""
    tf()
    import tensorflow_model_optimization

    return tensorflow_model_optimization
