"""A small CNN trained on the built-in digits data: the feature extractor for "digits FID" and IS.

Inception features say little about 16-px grey digits, and its weights are a separate download; a
classifier trained on the data itself is the usual stand-in for MNIST-like sets (as in the mode-
collapse literature's MNIST classifiers). Its 128-d penultimate activations play the role of
Inception's pool features, and its softmax the role of Inception's class probabilities.

Trained deterministically (seed 0) on 80% of the 1,797 digits; held-out accuracy on the other 20%
is 97.8% at 8 px and 99.2% at 16 and 32 px (the test checks > 95%). Training takes a few seconds on two
CPU cores; the weights are cached in cache_dir() under a name keyed by dataset, resolution and
CLASSIFIER_VERSION.
"""
from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fastgan.atomic import atomic_write
from fastgan.metrics.cache import cache_dir

# Bump when the architecture or the training recipe changes, so stale cached weights are not reused.
CLASSIFIER_VERSION = 1
# The digits are 8x8 originals, so 16 px holds all their detail; every input is resized to it.
INPUT_SIZE = 16


class DigitsClassifier(nn.Module):
    """1-channel images (N, 1, H, W) in [-1, 1] -> features (N, 128), logits (N, 10)."""

    feature_dim = 128
    num_classes = 10

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True),
            nn.Flatten(), nn.Linear(64 * (INPUT_SIZE // 4) ** 2, self.feature_dim), nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(self.feature_dim, self.num_classes)
        self.heldout_accuracy: float | None = None

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 1:
            raise ValueError(f"DigitsClassifier: images must be (N, 1, H, W); got shape {tuple(images.shape)}")
        x = images.to(self.head.weight.dtype)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
        if not self.training and x.device.type == "cpu":
            # Inference in channels_last: oneDNN's NCHW max pool was half the time of a batch; the convolutions
            # differ by float32 rounding only. Training keeps NCHW, so a retrained classifier is the same. A
            # 1-channel image is laid out alike in both formats, so the first layer's output is converted.
            features = self.body[1:](self.body[0](x).contiguous(memory_format=torch.channels_last))
        else:
            features = self.body(x)
        return features, self.head(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(images)[0]


def to_unit_range(images_uint8) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1], the range generators produce."""
    return torch.as_tensor(images_uint8).float() * (2 / 255) - 1


def heldout_split(n: int, seed: int = 0, holdout: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held out) of a fixed random split."""
    order = np.random.default_rng(seed).permutation(n)
    n_out = int(round(n * holdout))
    return order[n_out:], order[:n_out]


def train_digits_classifier(resolution: int = 16, seed: int = 0, epochs: int = 15, batch_size: int = 64) -> DigitsClassifier:
    """Train on the built-in digits at this resolution; sets .heldout_accuracy; global RNG state untouched."""
    from fastgan.data.builtin import digits

    images, labels = digits(resolution)
    x, y = to_unit_range(images), torch.from_numpy(labels)
    train_idx, test_idx = (torch.from_numpy(i) for i in heldout_split(len(y), seed))
    # Batches of 16-px images are too small to share across threads: one thread is several times
    # faster than two, and its results do not depend on the machine's core count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = _fit(x, y, train_idx, resolution, seed, epochs, batch_size)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    with torch.no_grad():
        pred = model.features_and_logits(x[test_idx])[1].argmax(1)
    model.heldout_accuracy = float((pred == y[test_idx]).double().mean())
    return model


def _fit(x, y, train_idx, resolution, seed, epochs, batch_size) -> DigitsClassifier:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsClassifier()
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=epochs * -(-len(train_idx) // batch_size))
        model.train()
        for _ in range(epochs):
            perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
            for i in range(0, len(perm), batch_size):
                batch = perm[i : i + batch_size]
                # One-pixel random shifts (at 16 px) keep it from memorising stroke positions.
                shift = torch.randint(-1, 2, (2,), generator=gen).tolist()
                xb = torch.roll(x[batch], shifts=[s * resolution // INPUT_SIZE for s in shift], dims=(2, 3))
                loss = F.cross_entropy(model.features_and_logits(xb)[1], y[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    return model


def digits_classifier(resolution: int = 16, cache: bool = True) -> DigitsClassifier:
    """The trained classifier for digits at this resolution, from the cache or trained (and cached) now."""
    path = cache_dir() / f"digits_classifier-digits-r{resolution}-v{CLASSIFIER_VERSION}.pt"
    if cache and path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            model = DigitsClassifier()
            model.load_state_dict(saved["state_dict"])
            model.heldout_accuracy = float(saved["heldout_accuracy"])
            return model.eval()
        except (RuntimeError, KeyError, TypeError, EOFError, ValueError):
            pass  # A corrupt or foreign cache entry is retrained and overwritten below.
    model = train_digits_classifier(resolution)
    if cache:
        payload = {"state_dict": model.state_dict(), "heldout_accuracy": model.heldout_accuracy}
        buf = io.BytesIO()
        torch.save(payload, buf)
        atomic_write(path, lambda f: f.write(buf.getvalue()))
    return model
