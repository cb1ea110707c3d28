"""Compression techniques: one registry, one spec grammar.

A spec is a `+`-separated list of steps in the order they are applied, for example
`prune:0.8+ptq-int8`, `cluster:16+ptq-dynamic` or `distill:0.5+prune:0.8+ptq-int8`. Each step is
a frozen dataclass with its parameters; `Pipeline.parse` turns a spec into steps and
`Pipeline.spec` prints it back in canonical form, so equal pipelines have equal specs (the spec
is part of the config id).

Structural steps (`distill:W`, `lowrank:R`) build a different float network (a thinner student,
factorised layers) and come first; the numeric steps after them (prune, cluster, quantize) act on
that network. A step may be given to some layers only, with a selector after `@` (see
`advisor.layers`): `prune:0.9@dense+prune:0.5@conv+qat-int8@mid` is a layer-wise plan. Of several
steps of one kind, each layer takes the first whose selector matches it.

This module is TensorFlow-free: the advisor enumerates and featurises candidates with it.
How each step is really applied to a Keras model lives in `measure.compress`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
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
    #: Structural steps rebuild the network (its profile changes); numeric steps keep its shape.
    structural: ClassVar[bool] = False
    #: Whether the step may be limited to some layers with `@selector`.
    layerwise: ClassVar[bool] = False
    forms: ClassVar[str]  # how the step is written, for error messages
    summary: ClassVar[str]
    #: The layers the step applies to (`advisor.layers` grammar); "all" is the whole model.
    layers: str = field(default="all", kw_only=True)

    @classmethod
    def parse(cls, arg: str | None) -> Technique:
        if arg is not None:
            raise SpecError(f"'{cls.name}' takes no parameter (write '{cls.forms}')")
        return cls()

    @property
    def spec(self) -> str:
        return self.name + self.at

    @property
    def at(self) -> str:
        """The selector suffix of the spec ('' for the whole model)."""
        return "" if self.layers == "all" else f"@{self.layers}"

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
    layerwise = True
    forms = "qat-int8[@layers]"
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
    layerwise = True
    forms = "prune:S[@layers] (0<S<1)"
    summary = "unstructured magnitude pruning to sparsity S, fine-tuned"

    @classmethod
    def parse(cls, arg: str | None) -> Technique:
        return cls(round(_float_in(arg, "prune", 0.0, 1.0, "prune:0.8"), 4))

    @property
    def spec(self) -> str:
        return f"prune:{self.sparsity:g}{self.at}"

    def features(self) -> dict[str, float]:
        return {"sparsity": self.sparsity}


@TECHNIQUES.register
@dataclass(frozen=True)
class Prune24(Technique):
    name = "prune-2:4"
    kind = "prune"
    stage = TRAIN
    needs_finetune = True
    layerwise = True
    forms = "prune-2:4[@layers]"
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
    layerwise = True
    forms = "cluster:K[@layers] (2<=K<=256)"
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
        return f"cluster:{self.clusters}{self.at}"

    def features(self) -> dict[str, float]:
        return {"clusters": float(self.clusters)}


@TECHNIQUES.register
@dataclass(frozen=True)
class LowRank(Technique):
    rank: float = 0.25
    name = "lowrank"
    kind = "factorize"
    stage = TRAIN
    needs_finetune = True
    structural = True
    layerwise = True
    forms = "lowrank:R[@layers] (0<R<1)"
    summary = ("truncated-SVD factorisation of dense layers and convolutions (a kxk convolution to rank "
               "r, then a 1x1 one) at rank R of full rank, fine-tuned")

    @classmethod
    def parse(cls, arg: str | None) -> Technique:
        return cls(round(_float_in(arg, "lowrank", 0.0, 1.0, "lowrank:0.25"), 4))

    @property
    def spec(self) -> str:
        return f"lowrank:{self.rank:g}{self.at}"

    def features(self) -> dict[str, float]:
        return {"rank": self.rank}


#: Distillation options: name -> (default, lowest, highest), written `distill:W,t=4,a=0.9`.
DISTILL_OPTIONS = {"t": (4.0, 1.0, 20.0), "a": (0.9, 0.0, 1.0)}


@TECHNIQUES.register
@dataclass(frozen=True)
class Distill(Technique):
    width: float = 0.5
    temperature: float = DISTILL_OPTIONS["t"][0]
    alpha: float = DISTILL_OPTIONS["a"][0]
    name = "distill"
    kind = "distill"
    stage = TRAIN
    needs_finetune = True
    structural = True
    forms = "distill:W[,t=T][,a=A] (0<W<1; temperature T, soft-target weight A)"
    summary = ("knowledge distillation into a student of the same family at width W (channels and units "
               "times W), trained from scratch on the task's data with the teacher's soft targets")

    @classmethod
    def parse(cls, arg: str | None) -> Technique:
        head, *options = (arg or "").split(",")
        width = round(_float_in(head or None, "distill", 0.0, 1.0, "distill:0.5"), 4)
        values = {k: v[0] for k, v in DISTILL_OPTIONS.items()}
        for option in options:
            key, sep, text = option.partition("=")
            key = key.strip()
            if not sep or key not in DISTILL_OPTIONS:
                raise SpecError(f"unknown distill option {option.strip()!r}; options: t=T (temperature), "
                                "a=A (weight of the soft targets), e.g. 'distill:0.5,t=4,a=0.9'")
            _, lo, hi = DISTILL_OPTIONS[key]
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
            if not lo <= value <= hi:
                raise SpecError(f"distill option {key} needs a number from {lo:g} to {hi:g}, got {text.strip()!r}")
            values[key] = round(value, 4)
        return cls(width, values["t"], values["a"])

    @property
    def spec(self) -> str:
        extra = "".join(f",{k}={v:g}" for k, v in (("t", self.temperature), ("a", self.alpha))
                        if v != DISTILL_OPTIONS[k][0])
        return f"distill:{self.width:g}{extra}"

    def features(self) -> dict[str, float]:
        return {"width": self.width, "distill_t": self.temperature, "distill_a": self.alpha}


def _split_step(text: str) -> tuple[str, str | None, str | None]:
    """'prune:0.8@dense' -> ('prune', '0.8', 'dense'); 'prune-2:4' is a name of its own."""
    text, at, layers = text.strip().lower().partition("@")
    layers = layers.strip() if at else None
    text = text.strip()
    if text in TECHNIQUES:
        return text, None, layers
    name, sep, arg = text.partition(":")
    return name.strip(), (arg.strip() if sep else None), layers


def _parse_step(part: str) -> Technique:
    from advisor.layers import canonical_selector

    name, arg, layers = _split_step(part)
    step = TECHNIQUES[name].parse(arg)
    if layers is None:
        return step
    if not step.layerwise:
        raise SpecError(f"'{step.name}' applies to the whole model and takes no '@layers' "
                        f"(layer-wise steps: {', '.join(c.name for c in TECHNIQUES if c.layerwise)})")
    return replace(step, layers=canonical_selector(layers))


@dataclass(frozen=True)
class Pipeline:
    """Technique steps in the order they are applied."""

    steps: tuple[Technique, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, spec: str) -> Pipeline:
        """Parse a spec string; raises `SpecError` listing the valid forms on any mistake."""
        return _parse_pipeline(spec) if isinstance(spec, str) else cls._parse(spec)

    @classmethod
    def _parse(cls, spec: str) -> Pipeline:
        if not isinstance(spec, str) or not spec.strip():
            raise SpecError(f"empty technique spec; valid forms: {TECHNIQUES.forms()}")
        steps = []
        for part in spec.split("+"):
            if not part.strip():
                raise SpecError(f"empty step in '{spec}'; valid forms: {TECHNIQUES.forms()}")
            steps.append(_parse_step(part))
        pipeline = cls(tuple(s for s in steps if s.name != "none") if len(steps) > 1 else tuple(steps))
        if len(steps) > 1 and any(s.name == "none" for s in steps):
            raise SpecError(f"'none' cannot be combined with other techniques (in '{spec}')")
        pipeline.check()
        return pipeline

    def check(self) -> None:
        """Refuse combinations that make no sense, saying why."""
        kinds = [s.kind for s in self.steps]
        for kind in ("quantize", "prune", "cluster", "factorize", "distill"):
            same = [s for s in self.steps if s.kind == kind]
            if len(same) > 1 and (same[0].structural
                                  or not all(s.layerwise and s.layers != "all" for s in same[:-1])):
                if same[0].structural:
                    raise SpecError(f"at most one {same[0].name} step per pipeline (in '{self.spec}')")
                raise SpecError(f"at most one {kind} step per pipeline unless each but the last names its "
                                f"layers with '@' (in '{self.spec}')")
            if len({s.name for s in same}) > 1 and kind == "quantize":
                raise SpecError(f"one quantization scheme per pipeline (in '{self.spec}')")
        numeric_seen = False
        for step in self.steps:
            if not step.structural:
                numeric_seen = True
            elif numeric_seen:
                raise SpecError(f"'{step.spec}' rebuilds the network, so it must come before the steps that "
                                f"prune, cluster or quantize it (in '{self.spec}')")
        if "factorize" in kinds and "distill" in kinds and kinds.index("factorize") < kinds.index("distill"):
            raise SpecError(f"distill before lowrank, not after (the student is what gets factorised), "
                            f"in '{self.spec}'")
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
        if kinds.count("quantize") > 1 and any(kinds[i] != "quantize" for i in range(kinds.index("quantize"),
                                                                                      len(kinds))):
            raise SpecError(f"the qat-int8 steps of a layer-wise plan must come last (in '{self.spec}')")

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

    @property
    def structure(self) -> Pipeline:
        """The structural steps alone: the float network the numeric steps act on."""
        steps = tuple(s for s in self.steps if s.structural)
        return Pipeline(steps or (NoCompression(),))

    @property
    def numerics(self) -> Pipeline:
        """The numeric steps alone (prune, cluster, quantize), 'none' if there are none."""
        steps = tuple(s for s in self.steps if not s.structural and s.name != "none")
        return Pipeline(steps or (NoCompression(),))

    @property
    def is_structural(self) -> bool:
        return any(s.structural for s in self.steps)

    @property
    def is_layerwise(self) -> bool:
        return any(s.layers != "all" for s in self.steps)

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


@functools.lru_cache(maxsize=4096)
def _parse_pipeline(spec: str) -> Pipeline:
    """A pipeline is frozen: a spec string is parsed once (scoring parses each candidate several times)."""
    return Pipeline._parse(spec)


def canonical(spec: str) -> str:
    """The canonical form of a spec string (raises `SpecError` if malformed)."""
    return Pipeline.parse(spec).spec
