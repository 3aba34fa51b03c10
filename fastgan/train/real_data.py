"""A run's real data, one class per kind of sample: its shape, its endless resumable batches, and real
samples to compare generated ones with.

Every kind resumes by count: a trainer's `batches_seen` real batches are skipped without being read,
so a resumed run reads on from the batch the interrupted one would have read next.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data import (ArrayDataset, Loader, PackedDataset, SequenceLoader, load_image_dataset,
                    load_sequences, load_toy, sines, timegan_sines)

SINES_LENGTH = 30  # RCGAN's sine waves have 30 steps (Esteban et al. 2017, sec. 4.1)
TIMEGAN_SINES_LENGTH, TIMEGAN_SINES_FEATURES = 24, 5  # TimeGAN's sines (Yoon et al. 2019, sec. 5.1)


class ImageData:
    """A built-in image dataset or a .fgd file, read by fastgan.data.Loader (this process's shard)."""

    def __init__(self, config, dist, device):
        if config.dataset.endswith(".fgd"):
            self.dataset = PackedDataset(config.dataset)
        else:
            self.dataset = ArrayDataset(*load_image_dataset(config.dataset, config.resolution))
        self.shape = tuple(self.dataset.shape)
        if self.shape[0] not in (1, 3):
            raise ValueError(f"{config.dataset}: images have {self.shape[0]} channels; fastgan trains on greyscale "
                             f"(1) or RGB (3) images: repack it with `fastgan prepare`")
        # On a GPU the batches cross as uint8, a quarter of the bytes to pin and copy, and are normalised there
        # (the same bits); on the CPU the C++ loader's own conversion is the faster one.
        self.loader = Loader(self.dataset, config.batch_size, shuffle=True, seed=config.seed, drop_last=True,
                             hflip=config.hflip, device=device, rank=dist.rank, world_size=dist.world_size,
                             normalise_on_device=torch.device(device).type == "cuda")

    @property
    def labels(self):
        """The int64 class labels (N,) of every image, or None when the data has none."""
        return self.dataset.labels

    def batches(self, trainer):
        for images, _ in self.labelled_batches(trainer):
            yield images

    def labelled_batches(self, trainer):
        """Endless (images, int64 labels) batches, resuming as batches does."""
        epoch, skip = divmod(trainer.batches_seen, len(self.loader))
        while True:
            self.loader.set_epoch(epoch)
            for i, batch in enumerate(self.loader):
                if i >= skip:
                    yield batch
            skip, epoch = 0, epoch + 1


class PointData:
    """A toy 2D Gaussian mixture (ring8, grid25): fresh points every batch from the loop's generator, whose
    state the checkpoint keeps."""

    shape = (2,)

    def __init__(self, config, dist, device):
        self.mixture = load_toy(config.dataset)
        self.centers = self.mixture.centers

    def batches(self, trainer):
        n = trainer.config.batch_size * trainer.dist.world_size
        while True:
            yield trainer.slice_for_rank(self.mixture.sample(n, trainer.rng))


class SequenceData:
    """Continuous sequences (N, T, F): the built-in sines (RCGAN's) or sines-timegan (TimeGAN's), or a user's .npy
    array (any real multivariate series cut into windows of equal length, e.g. TimeGAN's stock and energy sets,
    scaled to the generator's output range)."""

    def __init__(self, config, dist, device):
        if config.dataset == "sines":
            self.array = sines(config.seq_n, config.seq_len or SINES_LENGTH, config.sines_features, seed=config.seed)
        elif config.dataset == "sines-timegan":
            if config.sines_features != 1:
                raise ValueError(f"sines_features applies to sines; sines-timegan has TimeGAN's "
                                 f"{TIMEGAN_SINES_FEATURES} features (got sines_features={config.sines_features})")
            self.array = timegan_sines(config.seq_n, config.seq_len or TIMEGAN_SINES_LENGTH, TIMEGAN_SINES_FEATURES,
                                       seed=config.seed)
        else:
            self.array = load_sequences(config.dataset)
            if config.seq_len not in (0, self.array.shape[1]):
                raise ValueError(f"{config.dataset}: the sequences have {self.array.shape[1]} time steps but seq_len "
                                 f"is {config.seq_len}; leave seq_len at 0 to use the file's length")
        # Recorded in the run's config, so that samplers know the length without the data.
        config.seq_len = self.array.shape[1]
        self.shape = tuple(self.array.shape[1:])
        self.loader = SequenceLoader(self.array, config.batch_size, config.seed, dist.rank, dist.world_size, device)

    def batches(self, trainer):
        return self.loader.batches(trainer.batches_seen)

    def real_sample(self, n: int, seed: int) -> torch.Tensor:
        """n distinct training sequences drawn with seed (at most the whole set)."""
        n = min(n, len(self.array))
        return torch.from_numpy(self.array[np.random.default_rng(seed).choice(len(self.array), n, replace=False)])


class TokenData:
    """Token sequences (N, T) that a family made itself (SeqGAN's oracle samples)."""

    def __init__(self, tokens: torch.Tensor, config, dist, device):
        self.tokens = tokens
        self.shape = (tokens.shape[1],)
        self.loader = SequenceLoader(tokens.numpy(), config.batch_size, config.seed, dist.rank, dist.world_size,
                                     device)

    def batches(self, trainer):
        return self.loader.batches(trainer.batches_seen)
