"""The measurement side: compress real Keras models, convert them to TFLite, measure them.

TensorFlow Model Optimization 0.8 needs Keras 2, so `TF_USE_LEGACY_KERAS=1` is set here,
before anything imports TensorFlow. Import TensorFlow through `measure._tf.tf()` so that
this holds even when `measure` is imported first by something else.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
