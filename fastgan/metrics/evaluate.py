"""The default metrics of a generator against the image or point data it was trained on."""
from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from fastgan.metrics.classes import class_accuracy
from fastgan.metrics.digits_classifier import DigitsClassifier
from fastgan.metrics.features import extractor_cache_name, generator_features, is_packed_dataset, real_image_features
from fastgan.metrics.fid import fid
from fastgan.metrics.inception_score import inception_score
from fastgan.metrics.kid import kid
from fastgan.metrics.modes import mode_coverage
from fastgan.metrics.precision_recall import precision_recall
from fastgan.metrics.stats import FeatureStats

METRICS = ("fid", "kid", "is", "pr", "modes", "acc")
IMAGE_DEFAULT = ("fid", "kid", "is", "pr")
TOY_DEFAULT = ("fid", "kid", "pr", "modes")
EXTRACTORS = ("auto", "digits", "inception")


def _image_extractor(extractor, dataset, resolution: int | None):
    """(feature network, its name in cache keys) for the real images of dataset (a built-in name or a .fgd path)."""
    from fastgan.metrics.digits_classifier import CLASSIFIER_VERSION, digits_classifier
    from fastgan.metrics.inception import InceptionV3, InceptionWeightsNotFound

    if isinstance(extractor, nn.Module):
        return extractor, extractor_cache_name(extractor)
    digits_resolution = _digits_resolution(dataset, resolution)
    if extractor == "auto":
        extractor = "digits" if digits_resolution is not None else "inception"
    if extractor == "digits":
        if digits_resolution is None:
            raise ValueError(f"evaluate: the digits classifier only fits the digits dataset (or a .fgd file that "
                             f"`fastgan prepare digits` wrote), not {dataset!r}; use extractor='inception' or pass "
                             f"extractor=<an nn.Module>")
        return digits_classifier(digits_resolution), f"digitscnn-v{CLASSIFIER_VERSION}"
    try:
        return InceptionV3(), "inception2015"
    except InceptionWeightsNotFound as e:
        raise InceptionWeightsNotFound(
            f"evaluate: no feature network for {os.fspath(dataset)!r}: {e} Or pass a network as "
            f"evaluate_generator(..., extractor=module): InceptionV3(weights=path), or your own with "
            f"module(images (N, C, H, W) in [-1, 1]) -> features (N, D). The digits classifier "
            f"(extractor='digits') fits only the built-in digits."
        ) from None


def _digits_resolution(dataset, resolution: int | None) -> int | None:
    """The resolution dataset holds the built-in digits at, or None when it does not hold them.

    A .fgd file holds them when `fastgan prepare digits` wrote it: its pixels are exactly the
    built-in digits at its size, which one comparison of about 0.5 MB tells.
    """
    from fastgan.data.builtin import DIGITS_RESOLUTIONS, digits

    if not is_packed_dataset(dataset):
        return (16 if resolution is None else resolution) if dataset == "digits" else None
    from fastgan.data.packed import PackedDataset

    data = PackedDataset(dataset, verify=False)
    c, h, w = data.shape
    if c != 1 or h != w or h not in DIGITS_RESOLUTIONS:
        return None
    return h if np.array_equal(data.images, digits(h)[0]) else None


def evaluate_generator(generator, dataset, resolution: int | None, z_dim: int, metrics=None, n: int = 10000,
                       batch_size: int = 250, device="cpu", seed: int = 0, extractor="auto",
                       num_classes: int = 0) -> dict[str, float]:
    """Metrics of n samples of generator against the data it was trained on.

    dataset: a built-in dataset name (images at resolution, or a toy 2D mixture) or the path of a .fgd
    file from `fastgan prepare` (images at the file's own size; resolution is not used).
    Image datasets are compared in the feature space of extractor: "auto" (the digits classifier for
    the digits, built-in or packed into a .fgd file, else the FID Inception network, whose weights
    come from $FASTGAN_INCEPTION_WEIGHTS), "digits", "inception", or any nn.Module mapping images
    (N, C, H, W) in [-1, 1] to features (N, D). Real-data statistics are cached (real_image_features).
    Toy 2D mixtures are compared on the points themselves, against n points drawn from the mixture,
    and "modes" adds mode_coverage. metrics=None picks fid, kid, is, pr for images (is only when the
    extractor has features_and_logits, i.e. gives class logits) and fid, kid, pr, modes for toy data.
    num_classes > 0: generator is class-conditional, generator(z, labels) (and generator(z) draws balanced
    labels); "acc" (in the default metrics when the extractor is the digits classifier) adds class_accuracy and
    class_accuracy_min of n samples (fastgan.metrics.classes.class_accuracy).
    """
    from fastgan.data.toy import TOY_DATASETS, load_toy

    packed = is_packed_dataset(dataset)
    toy = not packed and dataset in TOY_DATASETS
    default_metrics = metrics is None
    metrics = (TOY_DEFAULT if toy else IMAGE_DEFAULT) if default_metrics else tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"evaluate: unknown metrics {unknown}; choose from {', '.join(METRICS)}")
    if not isinstance(extractor, nn.Module) and extractor not in EXTRACTORS:
        raise ValueError(f"evaluate: extractor must be one of {', '.join(EXTRACTORS)} or an nn.Module; got {extractor!r}")
    if toy and "is" in metrics:
        raise ValueError(f"evaluate: 'is' needs class probabilities, which toy 2D data ({dataset}) has none of; use fid,kid,pr,modes")
    if "acc" in metrics and (toy or not num_classes):
        raise ValueError("evaluate: 'acc' scores a class-conditional image generator (num_classes > 0)")
    if not toy and "modes" in metrics:
        raise ValueError(f"evaluate: 'modes' counts the modes of a 2D mixture; {dataset!r} is an image dataset")
    if packed and not os.path.isfile(dataset):
        raise FileNotFoundError(f"evaluate: dataset file {os.fspath(dataset)!r} not found; pass the .fgd file the run "
                                f"was trained on (dataset=, or fastgan eval --dataset)")
    generator.eval()
    logits = None
    if toy:
        mixture = load_toy(dataset)
        real = mixture.sample(n, generator=torch.Generator().manual_seed(seed + 1))
        real_stats = FeatureStats.from_features(real)
        fake = generator_features(generator, n, z_dim, None, batch_size, seed, device)
        if fake.ndim != 2 or fake.shape[1] != 2:
            raise ValueError(f"evaluate: a {dataset} generator must output points (N, 2); got {tuple(fake.shape)}")
    else:
        net, name = _image_extractor(extractor, dataset, resolution)
        if default_metrics and not hasattr(net, "features_and_logits"):
            metrics = tuple(m for m in metrics if m != "is")
        classifies = isinstance(net, DigitsClassifier) and num_classes == net.num_classes
        if default_metrics and classifies:
            metrics += ("acc",)
        if "acc" in metrics and not classifies:
            raise ValueError(f"evaluate: 'acc' needs a classifier of the generator's {num_classes} classes; only the "
                             f"digits classifier (on the digits, 10 classes) is one")
        real, real_stats = real_image_features(dataset, resolution, net, name, batch_size, device)
        out = generator_features(generator, n, z_dim, net, batch_size, seed, device, with_logits="is" in metrics)
        fake, logits = out if "is" in metrics else (out, None)
    result: dict[str, float] = {}
    if "fid" in metrics:
        result["fid"] = fid(real_stats, FeatureStats.from_features(fake))
    if "kid" in metrics:
        result["kid"], result["kid_std"] = kid(real, fake, seed=seed)
    if "is" in metrics:
        result["is"], result["is_std"] = inception_score(logits, from_logits=True)
    if "pr" in metrics:
        result.update(precision_recall(real, fake))
    if "modes" in metrics:
        result.update({k: float(v) for k, v in mode_coverage(fake, mixture.centers, mixture.std).items()})
    if "acc" in metrics:
        result.update(class_accuracy(generator, net, num_classes, n, z_dim, batch_size, seed, device))
    return result
