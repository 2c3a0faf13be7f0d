"""Augmentation inside training: only training batches see it, and a resumed run sees the same
augmented batches as an uninterrupted one (its generator state is part of the snapshot)."""

from __future__ import annotations

import numpy as np

from scratchnn_cli.build import augmenter, build_network, rng_streams, training_set
from scratchnn_cli.config import build_config
from scratchnn_cli.data import load_dataset
from scratchnn_cli.training import Hooks, train

SPEC = {
    "seed": 1,
    "data": {"dataset": "digits", "augment": {"shift": 1, "noise": 0.05, "hflip": True}},
    "model": {
        "layers": [
            {"type": "conv2d", "filters": 4, "kernel": 3, "padding": "same"},
            "relu",
            {"type": "maxpool2d", "size": 2},
            "flatten",
        ],  # fmt: skip
        "init": "he",
    },
    "train": {
        "optimizer": "adam",
        "lr": 0.01,
        "batch_size": 64,
        "sampling": "shuffle",
        "eps": 0,
        "max_epochs": 4,
    },  # fmt: skip
}


def run(resume_from=None, restore_augment: bool = True):
    config = build_config(SPEC, "spec.yaml")
    dataset = load_dataset(config.data, config.seed)
    streams = rng_streams(config.seed)
    net = build_network(config, dataset, streams["init"], streams["dropout"])
    augment = augmenter(config, dataset, streams["augment"])
    if resume_from is not None and not restore_augment:
        resume_from = type(resume_from)(**{**vars(resume_from), "augment_rng": None})
    snaps: list = []
    X, y = training_set(config, dataset)
    seen_val: list = []
    real_forward = net.forward

    def forward(A, training=False):
        if not training:
            seen_val.append(A)
        return real_forward(A, training)

    net.forward = forward
    train(
        net, X, y, 10, config.train, streams["sampling"], dataset.split("val"),
        Hooks(on_checkpoint=snaps.append, checkpoint_every=1), resume_from, augment=augment,
    )  # fmt: skip
    return net, snaps, dataset, seen_val


def test_resumed_augmented_run_equals_the_whole_run() -> None:
    whole, snaps, dataset, seen_val = run()
    at_2 = next(s for s in snaps if s.epochs == 2)
    # the snapshot holds the augmenter's generator as it was after two epochs, not as it started
    assert at_2.augment_rng != rng_streams(SPEC["seed"])["augment"].bit_generator.state
    resumed, *_ = run(resume_from=at_2)
    np.testing.assert_array_equal(resumed.theta, whole.theta)
    # without the augmenter's state the resumed run sees other batches: other weights
    other, *_ = run(resume_from=at_2, restore_augment=False)
    assert not np.array_equal(other.theta, whole.theta)
    # validation batches were the validation data itself, never augmented
    X_val = dataset.split("val")[0]
    assert seen_val and all(np.array_equal(A, X_val) for A in seen_val)
