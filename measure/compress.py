"""Apply a technique pipeline to a Keras model for real, then convert it to TFLite.

Each train-stage technique wraps the layers it supports (what a layer supports is TF Model
Optimization's own registry, not an if-chain here), fine-tunes, and strips its wrappers, so
the next step sees a plain Keras model. Convert-stage techniques are converter options.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from advisor.errors import UnsupportedError
from advisor.techniques import Cluster, Pipeline, Technique
from measure._tf import keras, quiet_native_stderr, tf, tfmot


@dataclass(frozen=True)
class FinetuneSettings:
    """How fine-tuning runs for techniques that need it."""

    epochs: int = 1
    max_samples: int = 1024
    batch_size: int = 32
    learning_rate: float = 1e-3  # Adam's default, as in TF Model Optimization's own guides
    #: A distillation student starts from scratch: it trains this many times `epochs`.
    distill_factor: int = 5
    #: Adam's rate for a student trained from scratch (None: `learning_rate`). Fine-tuning a
    #: trained network wants a smaller rate than training one from nothing.
    student_learning_rate: float | None = None
    #: Decay the rate along a cosine to 5% of it over the run (as a network is usually trained),
    #: instead of holding it constant. Off by default (the campaigns' rows were made without it).
    cosine_decay: bool = False
    #: A name from `measure.augment.AUGMENTATIONS` (e.g. "flip-crop"): every epoch fine-tunes (and a
    #: student trains) on fresh augmented copies of the images, as the network was trained. None: off.
    augment: str | None = None
    #: The fraction of fine-tuning steps over which pruning's sparsity rises to its target; the rest
    #: lets the network recover at the final sparsity.
    prune_ramp: float = 0.7
    #: Seed of the augmentation's random numbers.
    seed: int = 0

    def optimizer(self, rate: float, steps: int):
        """Adam at `rate`, held or cosine-decayed over `steps` optimizer steps."""
        k = keras()
        if self.cosine_decay:
            rate = k.optimizers.schedules.CosineDecay(rate, decay_steps=max(1, steps), alpha=0.05)
        return k.optimizers.Adam(rate)

    def steps(self, n: int, batch: int | None = None) -> int:
        """Optimizer steps fine-tuning takes on `n` samples."""
        return math.ceil(min(n, self.max_samples) / (batch or self.batch_size)) * self.epochs


@dataclass
class TrainData:
    """Fine-tuning and calibration data already shaped for the model, and what it is."""

    x: np.ndarray
    y: np.ndarray
    source: str  # "dataset:<name>" or "random"


@dataclass
class Compressed:
    """The result of the train stage: a plain Keras model and what was done to it."""

    model: object
    pipeline: Pipeline
    finetune: str  # "none" | "random" | "dataset:<name>"
    notes: list[str] = field(default_factory=list)
    state: dict = field(default_factory=dict)  # what the converter must know: pruned, clustered, qat


def _registry_supports(module_path: str, registry: str, layer) -> bool:
    import importlib

    reg = getattr(importlib.import_module(module_path), registry)
    try:
        return bool(reg.supports(layer))
    except Exception:  # noqa: BLE001 - the registry raises on layers it has never heard of
        return False


#: Layers TF Model Optimization 0.8 lists as prunable but cannot wrap under tf-keras 2.21 (its
#: registry is keyed by the older classes: a KeyError naming the class). They stay dense, and the
#: rest of the network (embeddings, dense layers) is pruned.
NOT_WRAPPABLE = ("LSTM", "GRU", "SimpleRNN", "Bidirectional")


def _prunable(layer, structured: bool) -> bool:
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

    if type(layer).__name__ in NOT_WRAPPABLE:
        return False
    reg = prune_registry.PruneRegistry
    if not reg.supports(layer) or not reg._weight_names(layer):  # noqa: SLF001 - tfmot's own table
        return False
    if structured:  # 2:4 needs the reduced dimension to be a multiple of 4 and a plain kernel
        kernel = getattr(layer, "kernel", None)
        kind = type(layer).__name__
        return kind in ("Conv2D", "Dense") and kernel is not None and int(kernel.shape[-2]) % 4 == 0
    return True


def _clusterable(layer, k: int) -> bool:
    from tensorflow_model_optimization.python.core.clustering.keras import clustering_registry

    reg = clustering_registry.ClusteringRegistry
    if not reg.supports(layer):
        return False
    weights = [w for w in layer.trainable_weights if "kernel" in w.name or "embeddings" in w.name]
    return bool(weights) and min(int(np.prod(w.shape)) for w in weights) >= k


def _clone_wrapping(model, should_wrap: Callable, wrap: Callable, what: str):
    wrapped = []

    def clone(layer):
        if should_wrap(layer):
            wrapped.append(layer.name)
            return wrap(layer)
        return layer

    try:
        new = keras().models.clone_model(model, clone_function=clone)
    except Exception as exc:  # noqa: BLE001 - tfmot/keras raise many kinds
        raise UnsupportedError(f"{what} failed on model '{model.name}': {_one_line(exc)}") from exc
    if not wrapped:
        raise UnsupportedError(f"{what}: model '{model.name}' has no layer that supports it")
    return new, wrapped  # weights are shared through the (wrapped) original layers


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def training_passes(x: np.ndarray, settings: FinetuneSettings, epochs: int):
    """(inputs, epochs) pairs to fit on in turn: `x` for all `epochs` at once, or with an
    augmentation, fresh augmented copies of `x` for one epoch each (the optimizer's step, its
    schedule and the pruning step carry over from one fit to the next)."""
    if settings.augment is None:
        yield x, epochs
        return
    from measure.augment import augmentation, check_images

    transform = augmentation(settings.augment)
    check_images(x, settings.augment)
    rng = np.random.default_rng(settings.seed)
    for _ in range(epochs):
        yield transform(x, rng), 1


def _fit(model, data: TrainData, settings: FinetuneSettings, ctx: dict, callbacks=()):
    n = min(len(data.x), settings.max_samples)
    fixed = model.inputs[0].shape[0]  # recurrent networks are built with a fixed batch of 1
    batch = int(fixed or settings.batch_size)
    model.compile(optimizer=settings.optimizer(settings.learning_rate, math.ceil(n / batch) * settings.epochs),
                  loss=keras().losses.SparseCategoricalCrossentropy(from_logits=ctx["from_logits"]),
                  metrics=["accuracy"])
    for x, epochs in training_passes(data.x[:n], settings, settings.epochs):
        model.fit(x, data.y[:n], batch_size=batch, epochs=epochs, verbose=0, callbacks=list(callbacks), shuffle=True)
    return math.ceil(n / settings.batch_size) * settings.epochs


def _outputs_logits(model) -> bool:
    act = getattr(model.layers[-1], "activation", None)
    name = getattr(act, "__name__", "")
    return name not in ("softmax", "sigmoid")


def _taken(model, steps: tuple[Technique, ...]) -> dict[str, Technique] | None:
    """Layer name -> its step, for steps that name their layers; None when one step takes all."""
    if len(steps) == 1 and steps[0].layers == "all":
        return None
    from advisor.layers import assign
    from measure.rebuild import profile_of

    return assign(profile_of(model), list(steps))


def _step_for(taken: dict[str, Technique] | None, steps: tuple[Technique, ...], layer) -> Technique | None:
    return steps[0] if taken is None else taken.get(layer.name)


def _prune_schedule(step: Technique, data: TrainData, settings: FinetuneSettings, model) -> dict:
    sparsity = tfmot().sparsity.keras
    if step.name == "prune-2:4":
        return {"pruning_schedule": sparsity.ConstantSparsity(0.5, begin_step=0, frequency=1),
                "sparsity_m_by_n": (2, 4)}
    # Ramp sparsity up over the first part of fine-tuning (70% by default), then let the network
    # recover: the gradual schedule of the TF Model Optimization guide (a sudden cut costs far more).
    steps = settings.steps(len(data.x), int(model.inputs[0].shape[0] or settings.batch_size))
    ramp = int(steps * settings.prune_ramp)
    frequency = max(1, ramp // 10)
    end = max(1, ramp // frequency * frequency)  # the last pruning step lands on end
    return {"pruning_schedule": sparsity.PolynomialDecay(initial_sparsity=0.0, final_sparsity=step.sparsity,
                                                         begin_step=0, end_step=end, frequency=frequency)}


def _apply_prune(model, steps: tuple[Technique, ...], data: TrainData, settings: FinetuneSettings, ctx: dict):
    sparsity = tfmot().sparsity.keras
    taken = _taken(model, steps)
    params = {st: _prune_schedule(st, data, settings, model) for st in steps}

    def should(ly) -> bool:
        st = _step_for(taken, steps, ly)
        return st is not None and _prunable(ly, st.name == "prune-2:4")

    def wrap(ly):
        return sparsity.prune_low_magnitude(ly, **params[_step_for(taken, steps, ly)])

    spec = "+".join(st.spec for st in steps)
    wrapped_model, names = _clone_wrapping(model, should, wrap, spec)
    _fit(wrapped_model, data, settings, ctx, [sparsity.UpdatePruningStep()])
    ctx["pruned"] = True
    kept = [ly.name for ly in model.layers if type(ly).__name__ in NOT_WRAPPABLE]
    ctx["notes"].append(f"{spec}: pruned {len(names)} layers"
                        + (f"; recurrent layers left dense ({', '.join(kept)}): TF-MOT cannot wrap them"
                           if kept else ""))
    return sparsity.strip_pruning(wrapped_model)


def _apply_cluster(model, steps: tuple[Cluster, ...], data: TrainData, settings: FinetuneSettings, ctx: dict):
    clustering = tfmot().clustering.keras
    taken = _taken(model, steps)

    def params(st: Cluster) -> dict:
        out = {"number_of_clusters": st.clusters,
               "cluster_centroids_init": clustering.CentroidInitialization.KMEANS_PLUS_PLUS}
        if ctx.get("pruned"):
            out["preserve_sparsity"] = True
        return out

    def should(ly) -> bool:
        st = _step_for(taken, steps, ly)
        return st is not None and _clusterable(ly, st.clusters)

    spec = "+".join(st.spec for st in steps)
    wrapped_model, names = _clone_wrapping(
        model, should, lambda ly: clustering.cluster_weights(ly, **params(_step_for(taken, steps, ly))), spec)
    _fit(wrapped_model, data, settings, ctx)
    ctx["clustered"] = True
    ctx["notes"].append(f"{spec}: clustered {len(names)} layers"
                        + (" (sparsity preserved)" if ctx.get("pruned") else ""))
    return clustering.strip_clustering(wrapped_model)


def _apply_qat(model, steps: tuple[Technique, ...], data: TrainData, settings: FinetuneSettings, ctx: dict):
    quant = tfmot().quantization.keras
    step = steps[0]
    taken = _taken(model, steps)
    combine = tfmot().experimental.combine
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    if ctx.get("clustered"):
        scheme = combine.Default8BitClusterPreserveQuantizeScheme(bool(ctx.get("pruned")))
        how = "cluster-preserving QAT"
    elif ctx.get("pruned"):
        scheme, how = combine.Default8BitPrunePreserveQuantizeScheme(), "prune-preserving QAT"
    else:
        scheme, how = quant.default_8bit.Default8BitQuantizeScheme(), "QAT"
    # Whole-model annotation first: quantize_apply then folds Conv+BatchNorm and quantizes the
    # graph end to end. Only if the model holds layers the scheme cannot take, annotate the
    # supported layers alone (the rest stays float, with (de)quantize ops around it: slower).
    try:
        if taken is not None:
            raise ValueError("a layer-wise plan annotates its layers one by one")
        with quant.quantize_scope():
            qat_model = quant.quantize_apply(quant.quantize_annotate_model(model), scheme)
        names, partial = [ly.name for ly in model.layers if ly.weights], False
    except Exception:  # noqa: BLE001 - tfmot raises RuntimeError/ValueError for unsupported layers
        registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
        annotated, names = _clone_wrapping(
            model, lambda ly: (taken is None or ly.name in taken) and registry.supports(ly),
            quant.quantize_annotate_layer, "+".join(st.spec for st in steps))
        try:
            with quant.quantize_scope():
                qat_model = quant.quantize_apply(annotated, scheme)
        except Exception as exc:  # noqa: BLE001
            raise UnsupportedError(f"{step.spec} failed on model '{model.name}': {_one_line(exc)}") from exc
        partial = True
    _fit(qat_model, data, settings, ctx)
    skipped = len([ly for ly in model.layers if ly.weights]) - len(names)
    where = ("the selected layers, " if taken is not None else "supported layers only, " if partial
             else "the whole model, ")
    ctx["notes"].append(f"{'+'.join(st.spec for st in steps)}: {how} on {where}"
                        f"{len(names)} layers"
                        + (f"; {skipped} weighted layers left in float (unsupported)" if skipped > 0 else ""))
    ctx["qat"] = True
    return qat_model


def _apply_lowrank(model, steps: tuple[Technique, ...], data: TrainData, settings: FinetuneSettings, ctx: dict):
    from measure.rebuild import factorise_model

    step = steps[0]
    new, plans = factorise_model(model, step.rank, step.layers)
    before, after = model.count_params(), new.count_params()
    _fit(new, data, settings, ctx)
    ctx["notes"].append(f"{step.spec}: factorised {len(plans)} layers by truncated SVD "
                        f"({before:,} -> {after:,} parameters), fine-tuned")
    return new


def distill_loss(temperature: float, alpha: float, from_logits: bool):
    """Hinton et al.'s loss on y = [label, teacher logits...]: alpha T^2 KL(teacher_T || student_T)
    plus (1 - alpha) cross-entropy with the label."""
    TF = tf()

    def loss(y_true, y_pred):
        labels = TF.cast(y_true[:, 0], TF.int32)
        teacher = y_true[:, 1:]
        logits = y_pred if from_logits else TF.math.log(TF.clip_by_value(y_pred, 1e-7, 1.0))
        soft_t = TF.nn.softmax(teacher / temperature)
        log_s = TF.nn.log_softmax(logits / temperature)
        kl = TF.reduce_sum(soft_t * (TF.math.log(TF.clip_by_value(soft_t, 1e-7, 1.0)) - log_s), axis=-1)
        hard = TF.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        return alpha * temperature**2 * kl + (1.0 - alpha) * hard

    return loss


def _apply_distill(model, steps: tuple[Technique, ...], data: TrainData, settings: FinetuneSettings, ctx: dict):
    from measure.rebuild import student_model

    step = steps[0]
    student = student_model(model, step.width)
    n = min(len(data.x), settings.max_samples)
    fixed = model.inputs[0].shape[0]
    batch = int(fixed or settings.batch_size)
    labels = np.asarray(data.y[:n], dtype=np.float32).reshape(-1, 1)

    def targets(x):  # the label, then the teacher's logits on exactly these inputs
        out = np.asarray(model.predict(x, batch_size=batch, verbose=0), dtype=np.float32)
        return np.concatenate([labels, out if ctx["from_logits"] else np.log(np.clip(out, 1e-7, 1.0))], axis=1)

    epochs = settings.epochs * settings.distill_factor
    rate = settings.learning_rate if settings.student_learning_rate is None else settings.student_learning_rate
    student.compile(optimizer=settings.optimizer(rate, math.ceil(n / batch) * epochs),
                    loss=distill_loss(step.temperature, step.alpha, ctx["from_logits"]))
    for x, k in training_passes(data.x[:n], settings, epochs):  # the teacher labels exactly these inputs
        student.fit(x, targets(x), batch_size=batch, epochs=k, verbose=0, shuffle=True)
    ctx["notes"].append(f"{step.spec}: student of width {step.width:g} ({model.count_params():,} -> "
                        f"{student.count_params():,} parameters), trained from scratch for {epochs} epochs on "
                        f"{n} samples of {data.source} (temperature {step.temperature:g}, soft-target weight "
                        f"{step.alpha:g})")
    return student


#: Train-stage appliers by technique kind; each takes the consecutive steps of its kind.
APPLIERS: dict[str, Callable] = {
    "prune": _apply_prune,
    "cluster": _apply_cluster,
    "quantize": _apply_qat,
    "factorize": _apply_lowrank,
    "distill": _apply_distill,
}


def _groups(steps: tuple[Technique, ...]) -> list[tuple[Technique, ...]]:
    """Consecutive steps of one kind together: a layer-wise plan's steps apply in one pass."""
    out: list[list[Technique]] = []
    for step in steps:
        if out and out[-1][0].kind == step.kind:
            out[-1].append(step)
        else:
            out.append([step])
    return [tuple(g) for g in out]


def finetune_plain(model, data: TrainData, settings: FinetuneSettings = FinetuneSettings()):
    """A copy of `model` trained exactly as the techniques fine-tune, with no compression: the fair
    accuracy reference for them (otherwise their extra training counts as compression's merit)."""
    ref = keras().models.clone_model(model)
    ref.set_weights(model.get_weights())
    _fit(ref, data, settings, {"from_logits": _outputs_logits(model)})
    return ref


def compress(model, pipeline: Pipeline, data: TrainData | None,
             settings: FinetuneSettings = FinetuneSettings()) -> Compressed:
    """Run the train stage of `pipeline` on a copy of `model`.

    Raises:
        UnsupportedError: a technique does not apply to this model's layers.
    """
    ctx: dict = {"notes": [], "from_logits": _outputs_logits(model)}
    steps = pipeline.train_steps()
    if not steps:
        return Compressed(model, pipeline, "none", [])
    if data is None:
        raise ValueError("techniques that fine-tune need data (a dataset or random data)")
    current = keras().models.clone_model(model)
    current.set_weights(model.get_weights())
    for group in _groups(steps):
        current = APPLIERS[group[0].kind](current, group, data, settings, ctx)
    if settings.augment is not None:
        ctx["notes"].append(f"every training epoch saw fresh '{settings.augment}' augmented copies of the data")
    return Compressed(current, pipeline, data.source, list(ctx["notes"]), state=ctx)


def convert(compressed: Compressed, representative: np.ndarray | None) -> bytes:
    """Convert to a TFLite flatbuffer with the pipeline's converter options.

    Raises:
        UnsupportedError: the converter rejects the model under these options.
    """
    TF = tf()
    model = compressed.model
    pipeline = compressed.pipeline
    ctx = compressed.state
    converter = TF.lite.TFLiteConverter.from_keras_model(model)
    opts = set()
    step = pipeline.convert_step()
    float_input = model.inputs[0].dtype.is_floating
    if ctx.get("pruned") and step is None and not ctx.get("qat"):
        # Sparse tensor encoding lets XNNPACK run pruned float models sparsely; its int8
        # kernels refuse sparse weights ("failed to delegate FULLY_CONNECTED"), so quantized
        # pipelines keep dense encoding and pay off only under gzip.
        opts.add(TF.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if ctx.get("qat"):
        opts.add(TF.lite.Optimize.DEFAULT)
    if step is not None:
        opts.add(TF.lite.Optimize.DEFAULT)
        if step.name == "ptq-float16":
            converter.target_spec.supported_types = [TF.float16]
        elif step.name == "ptq-int8":
            if representative is None or not len(representative):
                raise ValueError("ptq-int8 needs representative data")
            rep = representative

            def gen():
                for i in range(min(len(rep), 100)):
                    yield [rep[i : i + 1]]

            converter.representative_dataset = gen
            converter.target_spec.supported_ops = [TF.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if float_input:
                converter.inference_input_type = TF.int8
                converter.inference_output_type = TF.int8
    if ctx.get("qat") and float_input:
        converter.inference_input_type = TF.int8
        converter.inference_output_type = TF.int8
    converter.optimizations = list(opts)
    try:
        with quiet_native_stderr(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return converter.convert()
    except Exception as exc:  # noqa: BLE001 - the converter raises many kinds
        raise UnsupportedError(f"TFLite conversion with '{pipeline.spec}' failed: {_one_line(exc)}") from exc
