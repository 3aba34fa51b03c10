"""Evaluate a trained generator from its run directory or checkpoint; the `fastgan eval` command."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from fastgan.metrics.features import generator_features, real_image_features
from fastgan.metrics.fid import fid
from fastgan.metrics.inception_score import inception_score
from fastgan.metrics.kid import kid
from fastgan.metrics.modes import mode_coverage
from fastgan.metrics.precision_recall import precision_recall
from fastgan.metrics.stats import FeatureStats

METRICS = ("fid", "kid", "is", "pr", "modes")
IMAGE_DEFAULT = ("fid", "kid", "is", "pr")
TOY_DEFAULT = ("fid", "kid", "pr", "modes")
EXTRACTORS = ("auto", "digits", "inception")


def _image_extractor(name: str, dataset: str, resolution: int):
    from fastgan.metrics.digits_classifier import CLASSIFIER_VERSION, digits_classifier
    from fastgan.metrics.inception import InceptionV3

    if name == "auto":
        name = "digits" if dataset == "digits" else "inception"
    if name == "digits":
        if dataset != "digits":
            raise ValueError(f"evaluate: the digits classifier only fits the digits dataset, not {dataset!r}; use extractor='inception'")
        return digits_classifier(resolution), f"digitscnn-v{CLASSIFIER_VERSION}"
    return InceptionV3(), "inception2015"


def evaluate_generator(generator, dataset: str, resolution: int | None, z_dim: int, metrics=None, n: int = 10000,
                       batch_size: int = 250, device="cpu", seed: int = 0, extractor: str = "auto") -> dict[str, float]:
    """Metrics of n samples of generator against the built-in dataset it was trained on.

    Image datasets are compared in the feature space of extractor ("auto": the digits classifier for
    digits, else the FID Inception network). Toy 2D mixtures are compared on the points themselves,
    against n points drawn from the mixture, and "modes" adds mode_coverage. metrics=None picks
    fid, kid, is, pr for images and fid, kid, pr, modes for toy data.
    """
    from fastgan.data.toy import TOY_DATASETS, load_toy

    toy = dataset in TOY_DATASETS
    metrics = tuple(metrics) if metrics is not None else (TOY_DEFAULT if toy else IMAGE_DEFAULT)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"evaluate: unknown metrics {unknown}; choose from {', '.join(METRICS)}")
    if extractor not in EXTRACTORS:
        raise ValueError(f"evaluate: extractor must be one of {', '.join(EXTRACTORS)}; got {extractor!r}")
    if toy and "is" in metrics:
        raise ValueError(f"evaluate: 'is' needs class probabilities, which toy 2D data ({dataset}) has none of; use fid,kid,pr,modes")
    if not toy and "modes" in metrics:
        raise ValueError(f"evaluate: 'modes' counts the modes of a 2D mixture; {dataset!r} is an image dataset")
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
    return result


def evaluate_checkpoint(ckpt, metrics=None, n: int = 10000, batch_size: int = 250, device="cpu", seed: int = 0,
                        extractor: str = "auto") -> dict[str, float]:
    """Load the EMA generator of a run directory or checkpoint and evaluate it (see evaluate_generator).

    Returns the metrics with "step" (the checkpoint's training step) added.
    """
    from fastgan.train import load_generator

    generator, config, step = load_generator(ckpt, ema=True)
    result = evaluate_generator(generator, config.dataset, getattr(config, "resolution", None), config.z_dim, metrics,
                                n, batch_size, device, seed, extractor)
    return {"step": step, **result}


def run_directory(ckpt) -> Path:
    """The run directory of a run directory or a checkpoint file: the nearest ancestor with metrics.jsonl."""
    path = Path(ckpt)
    if path.is_dir():
        return path
    for parent in (path.parent, path.parent.parent):
        if (parent / "metrics.jsonl").is_file():
            return parent
    return path.parent


def add_eval_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--ckpt", required=True, help="run directory or checkpoint file")
    parser.add_argument("--metrics", default=None,
                        help=f"comma-separated, from {','.join(METRICS)} (default: {','.join(IMAGE_DEFAULT)} for images, "
                             f"{','.join(TOY_DEFAULT)} for toy 2D data)")
    parser.add_argument("--n", type=int, default=10000, help="number of generated samples")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extractor", default="auto", choices=EXTRACTORS,
                        help="feature network for images: the digits classifier or the FID Inception network "
                             "(weights from $FASTGAN_INCEPTION_WEIGHTS)")
    return parser


def run_eval(args: argparse.Namespace) -> dict[str, float]:
    """Evaluate, print a table, and append {"step": ..., "eval": {...}} to the run's metrics.jsonl."""
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    result = evaluate_checkpoint(args.ckpt, metrics, n=args.n, batch_size=args.batch_size, device=args.device,
                                 seed=args.seed, extractor=args.extractor)
    step = result.pop("step")
    width = max(len(k) for k in result)
    print(f"{'step':<{width}}  {step}")
    for key, value in result.items():
        print(f"{key:<{width}}  {value:.6g}")
    log = run_directory(args.ckpt) / "metrics.jsonl"
    line = json.dumps({"step": step, "eval": {"n": args.n, **result}})
    with open(log, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    return {"step": step, **result}
