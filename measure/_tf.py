"""Lazy, configured access to TensorFlow, Keras 2 (tf-keras) and TF Model Optimization."""

from __future__ import annotations

import functools
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@functools.cache
def tf():
    """Return the `tensorflow` module, imported once with legacy Keras selected."""
    import tensorflow

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
