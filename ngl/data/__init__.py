"""Datasets as in-memory tensors with train / validation / test splits (digits, Fashion-MNIST, CIFAR).

* :mod:`ngl.data.loading` -- the front door: :func:`load_dataset`, :func:`load_cached`,
  :func:`available_datasets` (and scikit-learn's digits).
* :mod:`ngl.data.splits` -- the :class:`DataSplits` container, stratified hold-outs and
  subsets, train-split normalisation.
* :mod:`ngl.data.fashion_mnist` -- idx files (:func:`read_idx`) and finding Fashion-MNIST.
* :mod:`ngl.data.cifar` -- the CIFAR python pickles (:func:`read_cifar`, :func:`find_cifar`).
* :mod:`ngl.data.locations` -- ``root``, ``$NGL_DATA_DIR`` and the cache folder.
"""

from ngl.data.cifar import find_cifar, read_cifar
from ngl.data.fashion_mnist import find_fashion_mnist, read_idx
from ngl.data.loading import available_datasets, load_cached, load_dataset, missing_dataset
from ngl.data.splits import DataSplits

__all__ = [
    "DataSplits",
    "available_datasets",
    "find_cifar",
    "find_fashion_mnist",
    "load_cached",
    "load_dataset",
    "missing_dataset",
    "read_cifar",
    "read_idx",
]
