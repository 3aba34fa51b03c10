"""Datasets: the packed .fgd format, the fast batch loader, the dataset tool, built-in and toy datasets, sequences."""
from .builtin import IMAGE_DATASETS, digits, load_image_dataset
from .kinds import KINDS, dataset_kind
from .loader import Loader, epoch_permutation, normalise
from .packed import ArrayDataset, PackedDataset
from .prepare import prepare
from .sequences import SequenceLoader, load_sequences
from .sines import sines, timegan_sines, validate_sequences
from .toy import TOY_DATASETS, ToyMixture, grid25, load_toy, ring8

__all__ = [
    "ArrayDataset",
    "IMAGE_DATASETS",
    "KINDS",
    "Loader",
    "PackedDataset",
    "SequenceLoader",
    "TOY_DATASETS",
    "ToyMixture",
    "dataset_kind",
    "digits",
    "epoch_permutation",
    "grid25",
    "load_image_dataset",
    "load_sequences",
    "load_toy",
    "normalise",
    "prepare",
    "ring8",
    "sines",
    "timegan_sines",
    "validate_sequences",
]
