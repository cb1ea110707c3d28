"""compression-advisor: should you compress this network for that device, and how?

The decision side. Nothing under `advisor` imports TensorFlow; the measurement side
lives in `measure` and is imported lazily by the command line.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `from advisor import Advisor` without importing numpy-heavy modules on `import advisor`.
    if name in ("Advisor", "Recommendation"):
        from advisor import api

        return getattr(api, name)
    raise AttributeError(f"module 'advisor' has no attribute {name!r}")
