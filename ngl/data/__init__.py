"""Datasets as in-memory tensors with train / validation / test splits (digits, Fashion-MNIST, CIFAR)."""

from ngl.data.datasets import (
    DataSplits,
    available_datasets,
    find_cifar,
    find_fashion_mnist,
    load_dataset,
    read_cifar,
    read_idx,
)

__all__ = [
    "DataSplits",
    "available_datasets",
    "find_cifar",
    "find_fashion_mnist",
    "load_dataset",
    "read_cifar",
    "read_idx",
]
