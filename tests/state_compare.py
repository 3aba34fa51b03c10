"""What resume tests compare: a run's resumable state bit for bit, and its logged rows."""
import json

import torch

from fastgan.train import load_checkpoint

RESUMABLE = ("networks", "ema", "optimizers", "scalers", "rng", "batches_seen")


def resumable_state(run, extra=()):
    """The checkpoint entries a resumed run must reproduce (and any extra keys a family adds)."""
    state = load_checkpoint(run)
    return {k: state[k] for k in RESUMABLE + tuple(extra)}


def logged_rows(run):
    """metrics.jsonl's rows without the throughput, which differs between runs."""
    return [{k: v for k, v in json.loads(line).items() if k != "img_per_s"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same(a, b, path=""):
    """Assert a and b are equal bit for bit, naming the first differing entry by its path."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}/{i}")
    else:
        assert a == b, path
