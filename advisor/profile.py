"""The model profile: the seam between the measurement side and the advisor.

A profile lists, per layer, its type, multiply-accumulates, parameters and shapes. It is
extracted from a Keras model in `measure.profiling` and read here, as plain JSON, so that
the advisor can reason about a network without TensorFlow on the machine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from advisor.errors import ModelFileError

PROFILE_VERSION = 1
#: Revision of how `measure.profiling` reads a Keras model (2: a Bidirectional layer is its two
#: directions; 3: the float file's size is recorded; 4: bilinear up-sampling counts 4 MACs per
#: output element). Part of the key a user's profiled model file
#: is cached under, so a changed reading profiles the file again; the profile format itself is
#: `PROFILE_VERSION`.
PROFILER_REVISION = 4


@dataclass(frozen=True)
class LayerProfile:
    """One layer: its Keras class name, work and shapes (batch dimension dropped)."""

    name: str
    type: str
    macs: int
    params: int
    input_shapes: tuple[tuple[int, ...], ...]
    output_shape: tuple[int, ...]
    # Convolution details where they apply (kernel size, stride, groups); 0 otherwise.
    kernel: int = 0
    stride: int = 0
    groups: int = 0

    @property
    def output_elements(self) -> int:
        n = 1
        for d in self.output_shape:
            n *= int(d)
        return n


_FILE_FIELDS = ("tflite_bytes", "tflite_weights")
TFLITE_WEIGHTS = ("random", "trained")


def _weights_kind(value: object) -> str | None:
    if value is None:
        return None
    if value not in TFLITE_WEIGHTS:
        raise ValueError(f"tflite_weights must be one of {', '.join(TFLITE_WEIGHTS)}, not {value!r}")
    return str(value)


@dataclass(frozen=True)
class ModelProfile:
    """A whole network: identity, input, and its layers in topological order."""

    model: str
    family: str
    input_shape: tuple[int, ...]
    input_dtype: str
    num_classes: int
    domain: str  # "image" | "text" | "audio" | "other"
    layers: tuple[LayerProfile, ...] = field(default_factory=tuple)
    version: int = PROFILE_VERSION
    # The float .tflite file the converter wrote for this network with its own weights, where it
    # was converted when profiled (a user's model file, a shipped zoo profile): the uncompressed
    # size is then known, not predicted, and compressed sizes are predicted as a change from it.
    # "random" weights (a zoo network nobody trained) have zero biases, which the file shares.
    # Not part of `digest`: the network's structure is.
    tflite_bytes: int | None = None
    tflite_weights: str | None = None  # "random" | "trained"

    def __hash__(self) -> int:
        # Hashed often (feature caches key on it) and never changed: compute it once.
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((self.model, self.family, self.input_shape, self.num_classes, self.domain, self.layers,
                           self.tflite_bytes, self.tflite_weights))
            object.__setattr__(self, "_hash", cached)
        return cached

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def depth(self) -> int:
        """Layers that do work (MACs or parameters), the usual meaning of 'depth'."""
        return sum(1 for layer in self.layers if layer.macs or layer.params)

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in _FILE_FIELDS:
            if d[key] is None:
                del d[key]
        d["totals"] = {"macs": self.macs, "params": self.params, "depth": self.depth}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @property
    def digest(self) -> str:
        """A short hash of the structure: equal networks give equal digests, whatever their file."""
        d = self.to_dict()
        for key in _FILE_FIELDS:
            d.pop(key, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> ModelProfile:
        try:
            layers = tuple(
                LayerProfile(
                    name=ly["name"],
                    type=ly["type"],
                    macs=int(ly["macs"]),
                    params=int(ly["params"]),
                    input_shapes=tuple(tuple(int(x) for x in s) for s in ly["input_shapes"]),
                    output_shape=tuple(int(x) for x in ly["output_shape"]),
                    kernel=int(ly.get("kernel", 0)),
                    stride=int(ly.get("stride", 0)),
                    groups=int(ly.get("groups", 0)),
                )
                for ly in d["layers"]
            )
            return cls(
                model=d["model"],
                family=d["family"],
                input_shape=tuple(int(x) for x in d["input_shape"]),
                input_dtype=d["input_dtype"],
                num_classes=int(d["num_classes"]),
                domain=d["domain"],
                layers=layers,
                version=int(d.get("version", PROFILE_VERSION)),
                tflite_bytes=int(d["tflite_bytes"]) if d.get("tflite_bytes") is not None else None,
                tflite_weights=_weights_kind(d.get("tflite_weights")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"malformed model profile: {exc!r}") from exc

    @classmethod
    def load(cls, path: str | Path) -> ModelProfile:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"cannot read model profile {path}: {exc}") from exc
