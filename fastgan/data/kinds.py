"""What kind of samples a dataset holds, from its name: the one place that maps dataset names to kinds.

A run's kind decides how its real batches are read, how its samples are written and which metrics
apply; a model family declares the kinds it trains on.
"""
from __future__ import annotations

from .builtin import IMAGE_DATASETS
from .toy import TOY_DATASETS

#: built-in dataset name of the synthetic token task (SeqGAN's oracle, Yu et al. 2017, sec. 5)
TOKEN_DATASETS = ("oracle",)
#: built-in continuous sequence datasets: RCGAN's sines and TimeGAN's
SEQUENCE_DATASETS = ("sines", "sines-timegan")
KINDS = ("images", "points", "sequences", "tokens")


def dataset_kind(dataset: str) -> str:
    """"images", "points", "sequences" or "tokens" for a built-in dataset name, a .fgd or a .npy path."""
    name = str(dataset)
    if name.endswith(".fgd") or name in IMAGE_DATASETS:
        return "images"
    if name in TOY_DATASETS:
        return "points"
    if name.endswith(".npy") or name in SEQUENCE_DATASETS:
        return "sequences"
    if name in TOKEN_DATASETS:
        return "tokens"
    builtins = ", ".join((*IMAGE_DATASETS, *TOY_DATASETS, *SEQUENCE_DATASETS, *TOKEN_DATASETS))
    raise ValueError(f"unknown dataset {name!r}: use a built-in one ({builtins}), a .fgd file from "
                     f"`fastgan prepare`, or a .npy array (N, T, F) of sequences")
