"""Scores of a trained run from its run directory or checkpoint: the sampling network (EMA where there is one)
evaluated with its family's default metrics, as --eval-every does during training."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .checkpoint import load_checkpoint
from .loop import load_generator, make_trainer

METRICS = "metrics.jsonl"


def evaluate_checkpoint(ckpt, metrics=None, n: int = 10000, batch_size: int = 250, device="cpu", seed: int = 0,
                        extractor="auto", dataset=None) -> dict[str, float]:
    """Metrics of n samples of a run's EMA generator, with "step" (the checkpoint's training step) added.

    Images and points: fastgan.metrics.evaluate_generator against `dataset` (default: the run's own; give
    it when a run's .fgd file has moved since training), with `metrics` and `extractor`; a conditional run's
    generator gets balanced labels, and on the digits its class accuracy is scored too. Sequence and
    token runs are scored with their family's own metrics on the data they were trained on (rebuilt
    from the run's seed); `seed` draws the samples.
    """
    from ..metrics import evaluate_generator
    from .config import MAX_SEED
    from .kinds import data_kind

    for name, value in (("n", n), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"evaluate_checkpoint: {name} must be a whole number >= 1; got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"evaluate_checkpoint: seed must be a whole number between 0 and 2**63 - 1; got {seed!r}")
    generator, config, step = load_generator(ckpt, ema=True, device=device)
    if data_kind(config.dataset).feature_metrics:
        result = evaluate_generator(generator, config.dataset if dataset is None else dataset, config.resolution,
                                    config.z_dim, metrics, n, batch_size, device, seed, extractor,
                                    num_classes=config.num_classes if config.conditional else 0)
        return {"step": step, **result}
    for option, value in (("metrics", metrics), ("dataset", dataset)):
        if value:
            raise ValueError(f"{ckpt}: a {config.model} run is scored with its own metrics on the data it was "
                             f"trained on; --{option} applies to image and point runs")
    trainer = make_trainer(dataclasses.replace(config, device=str(device), progress=False))
    # The trainer needs the whole checkpoint (every network, the EMA), not only the sampler read above.
    trainer.load_state_dict(load_checkpoint(ckpt, map_location=device))
    return {"step": step, **trainer.evaluate(n, seed)}


def run_directory(ckpt) -> Path:
    """The run directory of a run directory or a checkpoint file: the nearest ancestor with metrics.jsonl."""
    path = Path(ckpt)
    if path.is_dir():
        return path
    for parent in (path.parent, path.parent.parent):
        if (parent / METRICS).is_file():
            return parent
    return path.parent
