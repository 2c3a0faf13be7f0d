"""Datasets: the built-ins, CSV files and Fashion-MNIST, split into train / val / test, scaled.

Every problem a user can cause (a bad CSV, a missing download, an unknown class) is reported as
one :class:`DataError` line. Randomness comes only from the data's own streams (streams.py), so
the same config and seed always give the same arrays.

Modules: ``dataset`` (:class:`Dataset`, :func:`load_dataset`), ``builtin`` (blobs400,
circles500, digits), ``csv`` (CSV files), ``idx`` (IDX files), ``fashion_mnist`` (locations,
verified download, decoding), ``classes`` (``data.classes``), ``splits`` (index-level train /
val / test splitting), ``scaling`` (``data.scale``, fitted on the training rows). This package
imports nothing from the network, training, runs, report or CLI code.
"""

from scratchnn_cli.data.dataset import SPLIT_NAMES, Dataset, fingerprint, load_dataset
from scratchnn_cli.data.fashion_mnist import (
    DOWNLOAD_TIMEOUT_S,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FILES,
    FASHION_MNIST_SHA256,
    FASHION_MNIST_URL,
    cache_dir,
    data_dir,
    load_fashion_mnist,
)
from scratchnn_cli.data.idx import read_idx
from scratchnn_cli.data.scaling import NO_SCALING, SCALE_METHODS, Scaling, fit_scaling
from scratchnn_cli.data.splits import count_for, split_indices, stratified_take

__all__ = [
    "DOWNLOAD_TIMEOUT_S",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_SHA256",
    "FASHION_MNIST_URL",
    "NO_SCALING",
    "SCALE_METHODS",
    "SPLIT_NAMES",
    "Dataset",
    "Scaling",
    "cache_dir",
    "count_for",
    "data_dir",
    "fingerprint",
    "fit_scaling",
    "load_dataset",
    "load_fashion_mnist",
    "read_idx",
    "split_indices",
    "stratified_take",
]
