"""The kinds of samples a run trains on (fastgan.data.KINDS), one record each: how its real data is read, how its
samples are drawn, written and scored, and which options apply. Everything that depends on the kind reads the
record of config.dataset (`data_kind`) instead of comparing names."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..atomic import atomic_write_bytes
from ..data import dataset_kind, load_toy
from .real_data import ImageData, PointData, SequenceData
from .samples import npy_bytes, save_image_grid, save_scatter, save_sequence_plots, save_token_text


@dataclass(frozen=True)
class DataKind:
    """name: fastgan.data's name of the kind. reader: the class that reads config.dataset (None: the family makes
    its data, as SeqGAN's oracle does). suffixes: of the files written for a batch of samples, the picture or text
    first. grid_samples: the samples a run's grid shows (None: config.n_samples). history: a copy of each grid
    goes to samples/stepN. panel_pixels: the fewest pixels one sample takes in a PNG grid (bounds `fastgan sample
    --n`; None: no grid). flips: --hflip applies. feature_metrics: scored by fastgan.metrics.evaluate_generator
    (FID, KID, ... on features), else by the family's trainer. vae_likelihood: a VAE's likelihood for "auto".
    board_images: TensorBoard gets the grid as an image. centers: dataset -> the centres drawn on a scatter plot.
    """

    name: str
    reader: type | None
    save: Callable[..., None]
    suffixes: tuple[str, ...]
    grid_samples: int | None = None
    history: bool = True
    panel_pixels: int | None = None
    flips: bool = False
    feature_metrics: bool = False
    vae_likelihood: str = "gaussian"
    board_images: bool = False
    centers: Callable[[str], torch.Tensor] | None = None

    def write(self, samples: torch.Tensor, path: str | Path, centers: torch.Tensor | None = None,
              values: bool = False, nrow: int | None = None) -> list[Path]:
        """Write samples to path with this kind's first suffix; with values, also the raw values to the file of
        the second suffix where the kind has one (sequences: float32 (N, T, F) as .npy). The files written."""
        path = Path(path).with_suffix(self.suffixes[0])
        self.save(samples, path, centers=centers, nrow=nrow)
        if not (values and len(self.suffixes) > 1):
            return [path]
        atomic_write_bytes(path.with_suffix(self.suffixes[1]), npy_bytes(samples.detach().float().cpu().numpy()))
        return [path, path.with_suffix(self.suffixes[1])]


def _images(samples, path, centers=None, nrow=None):
    save_image_grid(samples, path, nrow)


def _points(samples, path, centers=None, nrow=None):
    save_scatter(samples, path, centers)


def _sequences(samples, path, centers=None, nrow=None):
    save_sequence_plots(samples, path)


def _tokens(samples, path, centers=None, nrow=None):
    save_token_text(samples, path)


IMAGES = DataKind("images", ImageData, _images, (".png",), panel_pixels=64 * 64, flips=True, feature_metrics=True,
                  vae_likelihood="bernoulli", board_images=True)
# A scatter of 2,000 points shows a mixture's modes; it is redrawn, not kept per step.
POINTS = DataKind("points", PointData, _points, (".png",), grid_samples=2000, history=False, feature_metrics=True,
                  centers=lambda dataset: load_toy(dataset).centers)
SEQUENCES = DataKind("sequences", SequenceData, _sequences, (".png", ".npy"), panel_pixels=164 * 84)
TOKENS = DataKind("tokens", None, _tokens, (".txt",))

#: fastgan.data's kind name -> its record
KINDS = {kind.name: kind for kind in (IMAGES, POINTS, SEQUENCES, TOKENS)}


def data_kind(dataset: str) -> DataKind:
    """The record of the kind of samples `dataset` holds (a ValueError naming the choices for an unknown one)."""
    return KINDS[dataset_kind(dataset)]
