"""Networks by name: a registry of Keras 2 image networks and small text networks.

Nothing here ever downloads. ImageNet weights are used only when Keras already has the file
in its cache and the configuration is the one those weights were trained for (standard input
size, 1000 classes, the published width); every other build is seeded random initialisation,
and `BuiltModel.weights` says which one happened.

Importing this module does not import TensorFlow; `build` does.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from advisor.errors import OptionError, UnknownNameError

TEXT_VOCAB_SIZE = 10000
TEXT_DEFAULT_LENGTH = 64
IMAGE_MAX_INPUT_SIZE = 1024
TEXT_MAX_INPUT_SIZE = 4096
DEFAULT_CLASSES = {"image": 1000, "text": 2}
IMAGENET_CLASSES = 1000
CUSTOM_OBJECTS_PACKAGE = "compression_advisor"


@dataclass(frozen=True)
class WidthRule:
    """The width (alpha) multipliers a network accepts: a fixed set, or a closed range."""

    choices: tuple[float, ...] = ()
    low: float = 0.0
    high: float = 0.0

    def allows(self, width: float) -> bool:
        if self.choices:
            return any(abs(width - c) < 1e-9 for c in self.choices)
        return self.low <= width <= self.high

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(f"{c:g}" for c in self.choices)
        return f"in [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class BuildSpec:
    """What a builder gets: a validated configuration and, maybe, a local weights file."""

    input_size: int
    width: float
    num_classes: int
    weights_path: str | None


@dataclass(frozen=True)
class ZooEntry:
    """One network the zoo can build.

    `builder(keras, spec)` returns the Keras model. `imagenet_weights` maps the
    `(input_size, width)` configurations that published ImageNet weights exist for to the
    file name `keras.applications` caches them under (top included, 1000 classes).
    """

    name: str
    family: str
    domain: str  # "image" | "text"
    default_input_size: int
    min_input_size: int
    description: str
    builder: Callable[[Any, BuildSpec], Any] = field(repr=False, compare=False)
    width_rule: WidthRule | None = None
    max_input_size: int = IMAGE_MAX_INPUT_SIZE
    imagenet_weights: Mapping[tuple[int, float], str] = field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )
    notes: tuple[str, ...] = ()

    @property
    def has_width(self) -> bool:
        """Whether a width (alpha) multiplier other than 1.0 is supported."""
        return self.width_rule is not None

    @property
    def default_num_classes(self) -> int:
        return DEFAULT_CLASSES[self.domain]

    @property
    def profile_sizes(self) -> tuple[int, ...]:
        """The input sizes the shipped profiles cover: the default and a few common ones."""
        common = (32, 64, 128) if self.domain == "text" else (96, 128, 160, 224)
        sizes = {self.default_input_size, *(s for s in common if s >= self.min_input_size)}
        return tuple(sorted(sizes))


@dataclass(frozen=True, eq=False)
class BuiltModel:
    """A freshly built zoo network and the configuration it was built with.

    Compared by identity: it holds a live Keras model.
    """

    model: Any
    name: str
    family: str
    domain: str
    input_size: int
    width: float
    num_classes: int
    weights: str  # "imagenet-cached" | "random"
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# Builders


def _application(fn_name: str, *, alpha: bool = False, **fixed: Any) -> Callable[[Any, BuildSpec], Any]:
    """A builder that calls `keras.applications.<fn_name>` with the top included."""

    def build(keras: Any, spec: BuildSpec) -> Any:
        kwargs = dict(
            include_top=True,
            weights=spec.weights_path,  # None or a local file: never the string "imagenet"
            input_shape=(spec.input_size, spec.input_size, 3),
            classes=spec.num_classes,
            classifier_activation="softmax",
            **fixed,
        )
        if alpha:
            kwargs["alpha"] = spec.width
        return getattr(keras.applications, fn_name)(**kwargs)

    return build


def _scaled(base: int, width: float, minimum: int = 4) -> int:
    return max(minimum, round(base * width))


def _recurrent_text(cell: str) -> Callable[[Any, BuildSpec], Any]:
    def build(keras: Any, spec: BuildSpec) -> Any:
        hidden = _scaled(64, spec.width)
        # Fixed batch 1: the TFLite converter only fuses LSTM/GRU into its builtin sequence ops
        # when every dimension but the sequence is static.
        tokens = keras.Input(shape=(spec.input_size,), batch_size=1, dtype="int32", name="tokens")
        x = keras.layers.Embedding(TEXT_VOCAB_SIZE, hidden, name="embedding")(tokens)
        x = getattr(keras.layers, cell)(hidden, name=cell.lower())(x)
        out = keras.layers.Dense(spec.num_classes, activation="softmax", name="classifier")(x)
        return keras.Model(tokens, out, name=f"{cell.lower()}_text")

    return build


@functools.cache
def position_embedding_class() -> type:
    """The learned position-embedding layer of `transformer_text`, registered for loading.

    Defined lazily so that importing the zoo does not import TensorFlow. `get_prunable_weights`
    returning nothing lets TF-MOT wrap the layer without pruning the positions.
    """
    from measure._tf import keras as _keras

    keras = _keras()

    @keras.utils.register_keras_serializable(package=CUSTOM_OBJECTS_PACKAGE)
    class PositionEmbedding(keras.layers.Layer):
        """Adds a learned embedding of each position to a (batch, length, dim) sequence."""

        def __init__(self, sequence_length: int, output_dim: int, **kwargs: Any):
            super().__init__(**kwargs)
            self.sequence_length = int(sequence_length)
            self.output_dim = int(output_dim)

        def build(self, input_shape: Any) -> None:
            self.position_embeddings = self.add_weight(
                name="position_embeddings",
                shape=(self.sequence_length, self.output_dim),
                initializer="uniform",
            )
            super().build(input_shape)

        def call(self, inputs: Any) -> Any:
            return inputs + self.position_embeddings

        def get_prunable_weights(self) -> list:
            return []

        def get_config(self) -> dict:
            return {
                **super().get_config(),
                "sequence_length": self.sequence_length,
                "output_dim": self.output_dim,
            }

    return PositionEmbedding


def custom_objects() -> dict[str, type]:
    """The custom layers zoo models use, for `keras.models.load_model(custom_objects=...)`."""
    cls = position_embedding_class()
    return {"PositionEmbedding": cls, f"{CUSTOM_OBJECTS_PACKAGE}>PositionEmbedding": cls}


def _transformer_text(keras: Any, spec: BuildSpec) -> Any:
    d_model = _scaled(64, spec.width, minimum=8)
    key_dim = _scaled(32, spec.width)
    layers = keras.layers
    tokens = keras.Input(shape=(spec.input_size,), dtype="int32", name="tokens")
    x = layers.Embedding(TEXT_VOCAB_SIZE, d_model, name="embedding")(tokens)
    x = position_embedding_class()(spec.input_size, d_model, name="position_embedding")(x)
    for i in range(2):
        attended = layers.MultiHeadAttention(num_heads=2, key_dim=key_dim, name=f"block{i}_attention")(x, x)
        x = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm1")(
            layers.Add(name=f"block{i}_add1")([x, attended])
        )
        ff = layers.Dense(2 * d_model, activation="relu", name=f"block{i}_ffn1")(x)
        ff = layers.Dense(d_model, name=f"block{i}_ffn2")(ff)
        x = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm2")(
            layers.Add(name=f"block{i}_add2")([x, ff])
        )
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    out = layers.Dense(spec.num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(tokens, out, name="transformer_text")


# ---------------------------------------------------------------------------------------------
# ImageNet weight file names, exactly as keras.applications caches them


def _fixed(size: int, file_name: str) -> Mapping[tuple[int, float], str]:
    return MappingProxyType({(size, 1.0): file_name})


def _keras_kernels(stem: str, size: int = 224) -> Mapping[tuple[int, float], str]:
    return _fixed(size, f"{stem}_weights_tf_dim_ordering_tf_kernels.h5")


_MOBILENET_ALPHA_TEXT = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}
_MOBILENET_V1 = MappingProxyType(
    {
        (size, alpha): f"mobilenet_{text}_{size}_tf.h5"
        for alpha, text in _MOBILENET_ALPHA_TEXT.items()
        for size in (128, 160, 192, 224)
    }
)
_MOBILENET_V2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
_MOBILENET_V2 = MappingProxyType(
    {
        (size, alpha): f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{size}.h5"
        for alpha in _MOBILENET_V2_ALPHAS
        for size in (96, 128, 160, 192, 224)
    }
)


def _mobilenet_v3(kind: str) -> Mapping[tuple[int, float], str]:
    return MappingProxyType(
        {(224, alpha): f"weights_mobilenet_v3_{kind}_224_{alpha}_float.h5" for alpha in (0.75, 1.0)}
    )


# ---------------------------------------------------------------------------------------------
# The registry


def _image(
    name: str,
    family: str,
    fn_name: str,
    weights: Mapping[tuple[int, float], str],
    description: str,
    *,
    default: int = 224,
    minimum: int = 32,
    width_rule: WidthRule | None = None,
    notes: tuple[str, ...] = (),
) -> ZooEntry:
    return ZooEntry(
        name=name,
        family=family,
        domain="image",
        default_input_size=default,
        min_input_size=minimum,
        description=description,
        builder=_application(fn_name, alpha=width_rule is not None),
        width_rule=width_rule,
        imagenet_weights=weights,
        notes=notes,
    )


def _text(name: str, family: str, builder: Callable[[Any, BuildSpec], Any], description: str,
          notes: tuple[str, ...] = ()) -> ZooEntry:
    return ZooEntry(
        name=name,
        family=family,
        domain="text",
        default_input_size=TEXT_DEFAULT_LENGTH,
        min_input_size=4,
        max_input_size=TEXT_MAX_INPUT_SIZE,
        description=description,
        builder=builder,
        width_rule=WidthRule(low=0.125, high=4.0),
        notes=notes,
    )


_FIXED_BATCH_NOTE = (
    "built with a fixed batch size of 1: the TFLite converter needs a static batch to turn "
    "the recurrent layer into its builtin sequence op"
)

_ENTRIES = (
    _image("resnet50", "resnet", "ResNet50", _keras_kernels("resnet50"), "ResNet-50 (v1), 25.6 M params"),
    _image("resnet101", "resnet", "ResNet101", _keras_kernels("resnet101"), "ResNet-101 (v1)"),
    _image("resnet152", "resnet", "ResNet152", _keras_kernels("resnet152"), "ResNet-152 (v1)"),
    _image("resnet50v2", "resnet_v2", "ResNet50V2", _keras_kernels("resnet50v2"),
           "ResNet-50 v2 (pre-activation)"),
    _image("resnet101v2", "resnet_v2", "ResNet101V2", _keras_kernels("resnet101v2"),
           "ResNet-101 v2 (pre-activation)"),
    _image("vgg16", "vgg", "VGG16", _keras_kernels("vgg16"), "VGG-16, 138 M params"),
    _image("vgg19", "vgg", "VGG19", _keras_kernels("vgg19"), "VGG-19, 144 M params"),
    _image("inception_v3", "inception", "InceptionV3", _keras_kernels("inception_v3", 299),
           "Inception v3", default=299, minimum=75),
    _image("inception_resnet_v2", "inception", "InceptionResNetV2",
           _keras_kernels("inception_resnet_v2", 299), "Inception-ResNet v2", default=299, minimum=75),
    _image("xception", "xception", "Xception", _keras_kernels("xception", 299),
           "Xception (depthwise-separable Inception)", default=299, minimum=71),
    _image("mobilenet", "mobilenet_v1", "MobileNet", _MOBILENET_V1, "MobileNet v1",
           width_rule=WidthRule(choices=tuple(_MOBILENET_ALPHA_TEXT))),
    _image("mobilenet_v2", "mobilenet_v2", "MobileNetV2", _MOBILENET_V2, "MobileNet v2",
           width_rule=WidthRule(choices=_MOBILENET_V2_ALPHAS)),
    _image("mobilenet_v3_small", "mobilenet_v3", "MobileNetV3Small", _mobilenet_v3("small"),
           "MobileNet v3 small (includes a Rescaling preprocessing layer)",
           width_rule=WidthRule(choices=(0.5, 0.75, 1.0, 1.25))),
    _image("mobilenet_v3_large", "mobilenet_v3", "MobileNetV3Large", _mobilenet_v3("large"),
           "MobileNet v3 large (includes a Rescaling preprocessing layer)",
           width_rule=WidthRule(choices=(0.5, 0.75, 1.0, 1.25))),
    _image("densenet121", "densenet", "DenseNet121", _keras_kernels("densenet121"), "DenseNet-121"),
    _image("densenet169", "densenet", "DenseNet169", _keras_kernels("densenet169"), "DenseNet-169"),
    _image("nasnet_mobile", "nasnet", "NASNetMobile", _fixed(224, "nasnet_mobile.h5"), "NASNet-A mobile"),
    _image("efficientnet_b0", "efficientnet", "EfficientNetB0", _fixed(224, "efficientnetb0.h5"),
           "EfficientNet-B0 (includes Rescaling and Normalization preprocessing layers)"),
    _image("efficientnet_b1", "efficientnet", "EfficientNetB1", _fixed(240, "efficientnetb1.h5"),
           "EfficientNet-B1 (includes Rescaling and Normalization preprocessing layers)", default=240),
    _text("lstm_text", "rnn", _recurrent_text("LSTM"),
          "Embedding(10000, 64) -> LSTM(64) -> Dense; int32 token ids", notes=(_FIXED_BATCH_NOTE,)),
    _text("gru_text", "rnn", _recurrent_text("GRU"),
          "Embedding(10000, 64) -> GRU(64) -> Dense; int32 token ids", notes=(_FIXED_BATCH_NOTE,)),
    _text("transformer_text", "transformer", _transformer_text,
          "Embedding + learned positions, 2 encoder blocks (2-head attention, key_dim 32), "
          "mean pool, Dense; int32 token ids"),
)

ZOO: Mapping[str, ZooEntry] = MappingProxyType({e.name: e for e in _ENTRIES})


def get_entry(name: str) -> ZooEntry:
    """Return the zoo entry called `name`.

    Raises:
        UnknownNameError: no such network (the message suggests close names).
    """
    try:
        return ZOO[name]
    except KeyError:
        raise UnknownNameError("model", name, ZOO) from None


def keras_cache_dirs() -> tuple[Path, ...]:
    """Where Keras keeps downloaded weights, in the order `keras.utils.get_file` looks."""
    if os.environ.get("KERAS_HOME"):
        base = [Path(os.environ["KERAS_HOME"])]
    else:
        base = [Path.home() / ".keras", Path("/tmp/.keras")]  # get_file falls back to /tmp
    return tuple(b / "models" for b in base)


def cached_imagenet_weights(entry: ZooEntry, input_size: int, width: float, num_classes: int) -> Path | None:
    """The cached ImageNet weights file for this configuration, or None if it has none here."""
    if num_classes != IMAGENET_CLASSES:
        return None
    file_name = next(
        (f for (size, w), f in entry.imagenet_weights.items()
         if size == input_size and abs(w - width) < 1e-9),
        None,
    )
    if file_name is None:
        return None
    for directory in keras_cache_dirs():
        if (directory / file_name).is_file():
            return directory / file_name
    return None


def _validate(entry: ZooEntry, input_size: Any, width: Any, num_classes: Any) -> tuple[int, float, int]:
    size = entry.default_input_size if input_size is None else input_size
    if isinstance(size, bool) or not isinstance(size, int) or not (
        entry.min_input_size <= size <= entry.max_input_size
    ):
        raise OptionError(
            f"input_size {input_size!r} is not valid for {entry.name}: "
            f"must be an integer in [{entry.min_input_size}, {entry.max_input_size}]"
        )
    w = 1.0 if width is None else width
    if isinstance(w, bool) or not isinstance(w, (int, float)):
        raise OptionError(f"width {width!r} is not a number")
    w = float(w)
    if entry.width_rule is None:
        if w != 1.0:
            raise OptionError(f"{entry.name} has no width multiplier: width must be 1.0 (got {width!r})")
    elif not entry.width_rule.allows(w):
        raise OptionError(
            f"width {width!r} is not valid for {entry.name}: must be {entry.width_rule.describe()}"
        )
    classes = entry.default_num_classes if num_classes is None else num_classes
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise OptionError(f"num_classes {num_classes!r} is not valid: must be an integer >= 1")
    return size, w, classes


def build(
    name: str,
    *,
    input_size: int | None = None,
    width: float | None = None,
    num_classes: int | None = None,
    seed: int = 0,
) -> BuiltModel:
    """Build the zoo network `name`, never downloading anything.

    Args:
        name: a key of `ZOO`.
        input_size: image side in pixels, or text length in tokens; the entry's default if None.
        width: width (alpha) multiplier; 1.0 if None. Only networks with `has_width` accept others.
        num_classes: classifier outputs; 1000 for image networks and 2 for text ones if None.
        seed: seed for random initialisation (`keras.utils.set_random_seed`).

    Returns:
        The model and its configuration; `weights` is "imagenet-cached" when a cached ImageNet
        file matched the configuration, else "random".

    Raises:
        UnknownNameError: `name` is not in the zoo.
        OptionError: input_size, width or num_classes out of the network's range.
    """
    from measure._tf import keras as _keras

    entry = get_entry(name)
    size, w, classes = _validate(entry, input_size, width, num_classes)
    keras = _keras()
    notes = list(entry.notes)
    weights_file = cached_imagenet_weights(entry, size, w, classes)
    keras.utils.set_random_seed(seed)
    if weights_file is not None:
        try:
            model = entry.builder(keras, BuildSpec(size, w, classes, str(weights_file)))
            notes.append(f"ImageNet weights from the Keras cache: {weights_file}")
            if entry.family == "efficientnet":
                notes.append("weights loaded from a file path: Keras adds its ImageNet input "
                             "rescaling only for weights='imagenet', so the input scaling differs")
            return BuiltModel(model, name, entry.family, entry.domain, size, w, classes,
                              "imagenet-cached", tuple(notes))
        except (OSError, ValueError, KeyError) as exc:  # a truncated or foreign cache file
            notes.append(f"cached weights {weights_file} failed to load ({type(exc).__name__}); "
                         "random initialisation instead")
            keras.utils.set_random_seed(seed)
    model = entry.builder(keras, BuildSpec(size, w, classes, None))
    return BuiltModel(model, name, entry.family, entry.domain, size, w, classes, "random", tuple(notes))
