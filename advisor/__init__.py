"""compression-advisor: should you compress this network for that device, and how?

The decision side. Nothing under `advisor` imports TensorFlow; the measurement side
lives in `measure` and is imported lazily by the command line.
"""

__version__ = "0.1.0"
