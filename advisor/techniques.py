"""Compression techniques: one registry, one spec grammar.

A spec is a `+`-separated list of steps in the order they are applied, for example
`prune:0.8+ptq-int8` or `cluster:16+ptq-dynamic`. Each step is a frozen dataclass with its
parameters; `Pipeline.parse` turns a spec into steps and `Pipeline.spec` prints it back in
canonical form, so equal pipelines have equal specs (the spec is part of the config id).

This module is TensorFlow-free: the advisor enumerates and featurises candidates with it.
How each step is really applied to a Keras model lives in `measure.compress`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from advisor.errors import SpecError

#: When a step acts: "train" steps rewrite and fine-tune the Keras model; "convert" steps
#: are options of the TFLite converter and therefore come last.
TRAIN, CONVERT = "train", "convert"


@dataclass(frozen=True)
class Technique:
    """Base of every technique step. Subclasses set the class-level facts below."""

    name: ClassVar[str]
    kind: ClassVar[str]  # quantize | prune | cluster | none
    stage: ClassVar[str]  # TRAIN | CONVERT
    needs_finetune: ClassVar[bool] = False
    forms: ClassVar[str]  # how the step is written, for error messages
    summary: ClassVar[str]

    @classmethod
    def parse(cls, arg: str | None) -> Technique:
        if arg is not None:
            raise SpecError(f"'{cls.name}' takes no parameter (write '{cls.forms}')")
        return cls()

    @property
    def spec(self) -> str:
        return self.name

    def features(self) -> dict[str, float]:
        """Numbers describing this step for the predictor (missing keys mean 0)."""
        return {}


class _Registry:
    """Technique classes by name; refuses duplicates and names the valid forms on a miss."""

    def __init__(self) -> None:
        self._by_name: dict[str, type[Technique]] = {}

    def register(self, cls: type[Technique]) -> type[Technique]:
        if cls.name in self._by_name:
            raise ValueError(f"technique '{cls.name}' registered twice")
        self._by_name[cls.name] = cls
        return cls

    def __getitem__(self, name: str) -> type[Technique]:
        try:
            return self._by_name[name]
        except KeyError:
            raise SpecError(f"unknown technique '{name}'; valid forms: {self.forms()}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[type[Technique]]:
        return iter(self._by_name.values())

    def names(self) -> list[str]:
        return list(self._by_name)

    def forms(self) -> str:
        return ", ".join(c.forms for c in self) + " (combine with '+', e.g. prune:0.8+ptq-int8)"


TECHNIQUES = _Registry()


def _float_in(arg: str | None, name: str, lo: float, hi: float, form: str) -> float:
    try:
        value = float(arg) if arg is not None else float("nan")
    except ValueError:
        value = float("nan")
    if not lo < value < hi:
        raise SpecError(f"'{name}' needs a number strictly between {lo:g} and {hi:g}, got {arg!r} "
                        f"(write '{form}')")
    return value


@TECHNIQUES.register
@dataclass(frozen=True)
class NoCompression(Technique):
    name = "none"
    kind = "none"
    stage = CONVERT
    forms = "none"
    summary = "the uncompressed float32 model (the baseline)"


@TECHNIQUES.register
@dataclass(frozen=True)
class PtqDynamic(Technique):
    name = "ptq-dynamic"
    kind = "quantize"
    stage = CONVERT
    forms = "ptq-dynamic"
    summary = "post-training dynamic-range quantization: int8 weights, float activations"

    def features(self) -> dict[str, float]:
        return {"weight_bits": 8, "act_bits": 32, "quant_dynamic": 1}


@TECHNIQUES.register
@dataclass(frozen=True)
class PtqFloat16(Technique):
    name = "ptq-float16"
    kind = "quantize"
    stage = CONVERT
    forms = "ptq-float16"
    summary = "post-training float16 quantization of the weights"

    def features(self) -> dict[str, float]:
        return {"weight_bits": 16, "act_bits": 32, "quant_float16": 1}


@TECHNIQUES.register
@dataclass(frozen=True)
class PtqInt8(Technique):
    name = "ptq-int8"
    kind = "quantize"
    stage = CONVERT
    forms = "ptq-int8"
    summary = "post-training full-integer quantization (int8 weights and activations, calibrated)"

    def features(self) -> dict[str, float]:
        return {"weight_bits": 8, "act_bits": 8, "quant_full_int": 1}


@TECHNIQUES.register
@dataclass(frozen=True)
class QatInt8(Technique):
    name = "qat-int8"
    kind = "quantize"
    stage = TRAIN
    needs_finetune = True
    forms = "qat-int8"
    summary = "quantization-aware training, then full-integer int8 conversion"

    def features(self) -> dict[str, float]:
        return {"weight_bits": 8, "act_bits": 8, "quant_full_int": 1, "quant_aware": 1}


@TECHNIQUES.register
@dataclass(frozen=True)
class Prune(Technique):
    sparsity: float = 0.5
    name = "prune"
    kind = "prune"
    stage = TRAIN
    needs_finetune = True
    forms = "prune:S (0<S<1)"
    summary = "unstructured magnitude pruning to sparsity S, fine-tuned"

    @classmethod
    def parse(cls, arg: str | None) -> Technique:
        return cls(round(_float_in(arg, "prune", 0.0, 1.0, "prune:0.8"), 4))

    @property
    def spec(self) -> str:
        return f"prune:{self.sparsity:g}"

    def features(self) -> dict[str, float]:
        return {"sparsity": self.sparsity}


@TECHNIQUES.register
@dataclass(frozen=True)
class Prune24(Technique):
    name = "prune-2:4"
    kind = "prune"
    stage = TRAIN
    needs_finetune = True
    forms = "prune-2:4"
    summary = "structured 2:4 pruning (two of every four weights zero), fine-tuned"

    def features(self) -> dict[str, float]:
        return {"sparsity": 0.5, "structured": 1}


@TECHNIQUES.register
@dataclass(frozen=True)
class Cluster(Technique):
    clusters: int = 16
    name = "cluster"
    kind = "cluster"
    stage = TRAIN
    needs_finetune = True
    forms = "cluster:K (2<=K<=256)"
    summary = "weight clustering to K shared values per layer, fine-tuned"

    @classmethod
    def parse(cls, arg: str | None) -> Technique:
        try:
            k = int(arg) if arg is not None else -1
        except ValueError:
            k = -1
        if not 2 <= k <= 256:
            raise SpecError(f"'cluster' needs an integer number of clusters from 2 to 256, got {arg!r} "
                            "(write 'cluster:16')")
        return cls(k)

    @property
    def spec(self) -> str:
        return f"cluster:{self.clusters}"

    def features(self) -> dict[str, float]:
        return {"clusters": float(self.clusters)}


def _split_step(text: str) -> tuple[str, str | None]:
    """'prune:0.8' -> ('prune', '0.8'); 'prune-2:4' is a name of its own."""
    text = text.strip().lower()
    if text in TECHNIQUES:
        return text, None
    name, sep, arg = text.partition(":")
    return name.strip(), (arg.strip() if sep else None)


@dataclass(frozen=True)
class Pipeline:
    """Technique steps in the order they are applied."""

    steps: tuple[Technique, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, spec: str) -> Pipeline:
        """Parse a spec string; raises `SpecError` listing the valid forms on any mistake."""
        if not isinstance(spec, str) or not spec.strip():
            raise SpecError(f"empty technique spec; valid forms: {TECHNIQUES.forms()}")
        steps = []
        for part in spec.split("+"):
            if not part.strip():
                raise SpecError(f"empty step in '{spec}'; valid forms: {TECHNIQUES.forms()}")
            name, arg = _split_step(part)
            steps.append(TECHNIQUES[name].parse(arg))
        pipeline = cls(tuple(s for s in steps if s.name != "none") if len(steps) > 1 else tuple(steps))
        if len(steps) > 1 and any(s.name == "none" for s in steps):
            raise SpecError(f"'none' cannot be combined with other techniques (in '{spec}')")
        pipeline.check()
        return pipeline

    def check(self) -> None:
        """Refuse combinations that make no sense, saying why."""
        kinds = [s.kind for s in self.steps]
        for kind in ("quantize", "prune", "cluster"):
            if kinds.count(kind) > 1:
                raise SpecError(f"at most one {kind} step per pipeline (in '{self.spec}')")
        seen_convert = False
        for step in self.steps:
            if step.stage == CONVERT and step.name != "none":
                seen_convert = True
            elif seen_convert:
                raise SpecError(f"'{step.spec}' changes the Keras model, so it must come before the "
                                f"conversion step in '{self.spec}'")
        if "cluster" in kinds and "prune" in kinds and kinds.index("cluster") < kinds.index("prune"):
            raise SpecError(f"prune before cluster, not after (sparsity-preserving clustering), in '{self.spec}'")
        if "quantize" in kinds and any(s.name == "qat-int8" for s in self.steps) and kinds[-1] != "quantize":
            raise SpecError(f"qat-int8 must be the last step in '{self.spec}'")

    @property
    def spec(self) -> str:
        return "+".join(s.spec for s in self.steps) or "none"

    @property
    def is_baseline(self) -> bool:
        return self.spec == "none"

    @property
    def needs_finetune(self) -> bool:
        return any(s.needs_finetune for s in self.steps)

    def train_steps(self) -> tuple[Technique, ...]:
        return tuple(s for s in self.steps if s.stage == TRAIN)

    def convert_step(self) -> Technique | None:
        convert = [s for s in self.steps if s.stage == CONVERT and s.name != "none"]
        return convert[0] if convert else None

    def features(self) -> dict[str, float]:
        """The pipeline's technique features: union of its steps' plus kinds present and order."""
        out: dict[str, float] = {"n_steps": float(len([s for s in self.steps if s.name != "none"]))}
        for i, step in enumerate(self.steps):
            if step.name == "none":
                continue
            out[f"has_{step.name.replace('-', '_').replace(':', '_')}"] = 1.0
            out[f"order_{step.kind}"] = float(i + 1)
            out.update(step.features())
        return out

    def __str__(self) -> str:
        return self.spec


def canonical(spec: str) -> str:
    """The canonical form of a spec string (raises `SpecError` if malformed)."""
    return Pipeline.parse(spec).spec
