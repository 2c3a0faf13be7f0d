"""From a spec and its data to the pieces of a run, before anything is trained or written.

The random streams of a seed, the network the spec describes (sized for the data), the
augmenter of training batches, the samples training uses and what it validates on; and the
checks that only the data can make (layer shapes, memory, settings that need a validation
split), each a one-line ``ConfigError``. ``experiment.py`` puts these together into a run.

``network_for`` is the one way from a validated ``model`` section to a Network: a run's
(``network_for_dataset``), ``scratchnn summary``'s (``summarize_network``) and the scikit-learn
estimator's all go through it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from numpy.typing import DTypeLike

from scratchnn_cli.config import ExperimentConfig, ModelConfig
from scratchnn_cli.data import Dataset, load_dataset
from scratchnn_cli.data.augment import Augmenter
from scratchnn_cli.errors import ConfigError
from scratchnn_cli.nn.engines import EngineChoice, EngineError, choose_engine
from scratchnn_cli.nn.layers import Layer, Shape
from scratchnn_cli.nn.network import Network, output_shapes
from scratchnn_cli.nn.optim.optimizers import make_optimizer
from scratchnn_cli.streams import TrainingStreams, training_streams


def augmenter(
    config: ExperimentConfig, dataset: Dataset, rng: np.random.Generator
) -> Augmenter | None:
    """The ``data.augment`` transforms of training batches (None when the spec has none)."""
    if config.data.augment is None:
        return None
    if dataset.image_shape is None:
        raise ConfigError(f"data.augment: {config.data.dataset} is not image data")
    shape = dataset.image_shape
    try:
        return Augmenter(config.data.augment, (*shape, 1) if len(shape) == 2 else shape, rng)
    except ValueError as exc:  # a shift too large for a CSV's data.image_shape
        raise ConfigError(f"data.augment: {str(exc).removeprefix('augment ')}") from None


def data_key(config: ExperimentConfig) -> str:
    """What the loaded data of a spec depends on (its data section, the seed of its split and
    the dtype): specs with equal keys can share one ``load_dataset``."""
    data_seed = config.seed if config.data.seed is None else config.data.seed
    return f"{config.data.model_dump_json()} {data_seed} {config.model.dtype}"


def output_kind(model: ModelConfig, n_classes: int) -> str:
    """'sigmoid' (one output unit) for two classes, 'softmax' for more, unless the spec says."""
    chosen = model.output
    if chosen == "auto":
        return "sigmoid" if n_classes == 2 else "softmax"
    if chosen == "sigmoid" and n_classes != 2:
        raise ConfigError(
            f"model.output: a sigmoid output needs exactly 2 classes, the data has {n_classes}"
        )
    return chosen


def output_units(output: str, n_classes: int) -> int:
    """The units of the output layer: one for a sigmoid output, one per class for softmax."""
    return 1 if output == "sigmoid" else n_classes


def hidden_layers(model: ModelConfig, shape: Shape) -> tuple[list[Layer], list[Shape]]:
    """The hidden layers of ``model`` (new, unbound) and each one's output shape for samples of
    ``shape``; ConfigError when one does not fit its input or the last is not flat (the output
    layer is dense)."""
    layers = model.make_layers()
    try:
        shapes = output_shapes(layers, shape)
    except ValueError as exc:  # a layer that does not fit its input (a window too large...)
        raise ConfigError(f"model.layers: {exc}") from None
    if shapes and len(shapes[-1]) != 1:
        raise ConfigError(
            f"model.layers: the last layer gives {shapes[-1]} per sample; the output layer needs "
            "flat input: end with flatten or global_avgpool"
        )
    return layers, shapes


def network_for(
    model: ModelConfig,
    shape: Shape | int,
    n_classes: int,
    dtype: DTypeLike,
    init_rng: np.random.Generator,
    dropout_rng: np.random.Generator | None = None,
) -> Network:
    """The network a validated ``model`` section describes, for samples of ``shape`` and
    ``n_classes`` classes: its hidden layers (``model.layers`` or the short form), then the
    output layer (``model.output``); arrays of ``dtype``, weights drawn from ``init_rng``
    (``model.init``, ``mu``, ``sigma``), dropout masks from ``dropout_rng``.

    The one way from a spec to a Network (``network_for_dataset`` for a run's spec and data, the
    scikit-learn estimator for its parameters and X): ConfigError, naming the key, for what
    only the data reveals (a layer that does not fit its input, a sigmoid output for more
    than two classes)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    output = output_kind(model, n_classes)
    layers, _ = hidden_layers(model, shape)
    return Network.from_layers(
        layers,
        shape,
        output_units(output, n_classes),
        output=output,
        rng=init_rng,
        mu=model.mu,
        sigma=model.sigma,
        dtype=np.dtype(dtype),
        init=model.init,
        dropout_rng=dropout_rng,
    )


def network_for_dataset(
    config: ExperimentConfig,
    dataset: Dataset,
    rng: np.random.Generator | None = None,
    dropout_rng: np.random.Generator | None = None,
) -> Network:
    """The network the spec describes, sized for the dataset (``network_for``), in the spec's
    dtype; weights from ``rng`` (default: the spec's initial-weight stream), dropout masks from
    ``dropout_rng`` (default: its dropout stream)."""
    streams = training_streams(config.seed)
    return network_for(
        config.model,
        input_shape(config, dataset),
        dataset.n_classes,
        config.model.dtype,
        rng if rng is not None else streams.init,
        dropout_rng if dropout_rng is not None else streams.dropout,
    )


IMAGE_LAYERS = ("conv2d", "maxpool2d", "avgpool2d", "global_avgpool")


def input_shape(config: ExperimentConfig, dataset: Dataset) -> tuple[int, ...]:
    """The shape of one sample as the network sees it: (H, W, C) images when the model has
    convolution or pooling layers, else (n_features,) rows. ConfigError for images the data
    does not have."""
    kinds = [spec.type for spec in config.model.layer_specs()]
    if not any(kind in IMAGE_LAYERS for kind in kinds):
        return (dataset.n_features,)
    if dataset.image_shape is None:
        first = next(kind for kind in kinds if kind in IMAGE_LAYERS)
        raise ConfigError(
            f"model.layers: {first} needs images, but {config.data.dataset} is tabular data "
            "(a CSV of pixels can say data.image_shape: [channels, height, width])"
        )
    shape = dataset.image_shape
    return (*shape, 1) if len(shape) == 2 else tuple(shape)


def check_memory(config: ExperimentConfig, dataset: Dataset) -> None:
    """Refuse (ConfigError) a network whose training would not fit in this machine's memory."""
    needed = training_bytes(config, dataset)
    total = physical_memory()
    if total is not None and needed > total:
        raise ConfigError(
            f"model: this network and its data need ~{needed / 2**30:.3g} GiB to train, this "
            f"machine has {total / 2**30:.3g} GiB; use fewer or smaller layers"
        )


def training_bytes(config: ExperimentConfig, dataset: Dataset) -> int:
    """An estimate of the memory training needs, from the layer shapes (nothing allocated):

    parameters x (theta, dtheta, the optimizer's moments and scratch, the copies a snapshot,
    a checkpoint and the best weights keep), the activations of one batch forward and back,
    and the data."""
    layers, shapes = hidden_layers(config.model, input_shape(config, dataset))
    n_out = output_units(output_kind(config.model, dataset.n_classes), dataset.n_classes)
    width = shapes[-1][0] if shapes else dataset.n_features
    n_params = sum(math.prod(s) for layer in layers for s in layer.param_shapes().values())
    n_params += (width + 1) * n_out
    rule = config.train.optimizer
    moments = make_optimizer(rule.name, [np.zeros(1)], 1.0, **rule.hyper()).arrays_per_param()
    itemsize = np.dtype(config.model.dtype).itemsize
    n_train = len(dataset.y_train) + len(dataset.y_val)
    batch = config.train.rows_per_update(n_train)
    activations = 3 * batch * (sum(layer.cache_per_sample() for layer in layers) + n_out)
    data = sum(a.nbytes for a in (dataset.X_train, dataset.X_val, dataset.X_test))
    return itemsize * (n_params * (6 + moments) + activations) + data


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def training_set(config: ExperimentConfig, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The samples training uses: train, or train + val when ``data.train_on: train+val``."""
    if config.data.train_on == "train+val":
        return (
            np.concatenate([dataset.X_train, dataset.X_val]),
            np.concatenate([dataset.y_train, dataset.y_val]),
        )
    return dataset.X_train, dataset.y_train


def validation_set(
    config: ExperimentConfig, dataset: Dataset
) -> tuple[np.ndarray, np.ndarray] | None:
    """What training scores every epoch: the val split, or None when it trains on it."""
    return None if config.data.train_on == "train+val" else dataset.split("val")


def check_compatible(config: ExperimentConfig, dataset: Dataset) -> None:
    """Refuse combinations that only the data can reveal (before any folder is created)."""
    kinds = [spec.type for spec in config.model.layer_specs()]
    if "batchnorm" in kinds and config.train.batch_size == 1:
        raise ConfigError(
            "model.layers: batchnorm needs mini-batches (train.batch_size >= 2): the variance "
            "of a batch of one sample is 0"
        )
    augmenter(config, dataset, np.random.default_rng(0))  # its data.augment checks, if any
    if config.train.early_stopping is not None:
        if len(dataset.y_val) == 0:
            raise ConfigError("train.early_stopping: needs a validation split (data.split[1] > 0)")
        if config.data.train_on == "train+val":
            raise ConfigError(
                "train.early_stopping: monitors the validation split, but data.train_on: "
                "train+val trains on it; use train_on: train"
            )


def checked_network(config: ExperimentConfig, dataset: Dataset) -> tuple[TrainingStreams, Network]:
    """Refuse what only the data reveals (shapes, memory), then the run's random generators
    and its initial network."""
    check_compatible(config, dataset)
    check_memory(config, dataset)
    streams = training_streams(config.seed)
    return streams, network_for_dataset(config, dataset, streams.init, streams.dropout)


def choose_run_engine(config: ExperimentConfig, dataset: Dataset, net: Network) -> EngineChoice:
    """The engine that trains this spec (``nn/engines.py``); ConfigError when ``train.engine:
    compiled`` cannot run it."""
    n_fit = len(dataset.y_train)
    if config.data.train_on == "train+val":
        n_fit += len(dataset.y_val)
    try:
        return choose_engine(
            config.train.engine,
            net,
            config.train.optimizer.name,
            config.train.rows_per_update(n_fit),
            config.data.augment is not None,
        )
    except EngineError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class NetworkSummary:
    """What ``scratchnn summary`` shows of a spec: its network, sized for the data with the
    output layer included, and the engine that would train it."""

    net: Network
    engine: EngineChoice


def summarize_network(config: ExperimentConfig) -> NetworkSummary:
    """Load the spec's data (its width and classes size the network) in the spec's dtype, then
    refuse, as training does, a network too large for this machine's memory (ConfigError),
    build it and choose its engine (ConfigError for ``train.engine: compiled`` on a network it
    cannot run). Trains and writes nothing."""
    dataset = load_dataset(config.data, config.seed, config.model.dtype)
    check_memory(config, dataset)
    net = network_for_dataset(config, dataset)
    return NetworkSummary(net, choose_run_engine(config, dataset, net))
