"""Building blocks for data-parallel training on torch.distributed, launched with torchrun.

One process per device. `Distributed.from_env` joins the process group torchrun describes in the
environment (or stands for a single process when there is none); the functions below keep the
replicas identical: the same starting weights, the same averaged gradients, the same decision to
skip a step, the same evaluation statistics. Every function is a no-op for a single process.

The trainer averages gradients itself (all_reduce_gradients) instead of wrapping the models in
DistributedDataParallel: a GAN step runs D and G through each other, and lazy regularisation (R1
every k steps) gives parameters a gradient on some steps only, which breaks DDP's assumption that
every forward is followed by a backward through the same parameters.
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from itertools import chain

import torch
import torch.distributed as torch_dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from .. import ops
from ..metrics.stats import FeatureStats
from ..nn.layers import BatchNormAct

BACKENDS = {"cpu": "gloo", "cuda": "nccl"}


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: must be an integer (torchrun sets it)") from None


@dataclass
class Distributed:
    """This process's place in the job: rank, world size, the device it owns, and the backend.

    Use as a context manager, or call close() at the end, so a process group opened by from_env is
    destroyed.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_process_group: bool = field(default=False, repr=False)

    @classmethod
    def single(cls, device: str | torch.device = "cpu") -> "Distributed":
        """One process on `device`, no process group."""
        return cls(device=torch.device(device))

    @classmethod
    def from_env(cls, device: str | torch.device = "cpu", backend: str | None = None) -> "Distributed":
        """Read torchrun's RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT.

        With WORLD_SIZE > 1, joins the process group with `backend` (default gloo for a CPU
        device, nccl for CUDA); device "cuda" without an index becomes cuda:LOCAL_RANK (one GPU
        per process) and is made the current CUDA device. A process group that is already
        initialised is used as it is and left open by close(). With WORLD_SIZE unset or 1 nothing
        is initialised and the instance describes a single process.
        """
        device = torch.device(device)
        world_size = _env_int("WORLD_SIZE", 1)
        rank = _env_int("RANK", 0)
        local_rank = _env_int("LOCAL_RANK", 0)
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"RANK={rank}, WORLD_SIZE={world_size}: need WORLD_SIZE >= 1 and 0 <= RANK < WORLD_SIZE")
        if world_size == 1:
            return cls.single(device)
        if device.type == "cuda":
            if device.index is None:
                device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        backend = backend or BACKENDS.get(device.type)
        if backend is None:
            raise ValueError(f"Distributed.from_env: no default backend for device {device}; pass backend=")
        if torch_dist.is_initialized():
            if (torch_dist.get_rank(), torch_dist.get_world_size()) != (rank, world_size):
                raise RuntimeError(f"the initialised process group has rank {torch_dist.get_rank()} of "
                                   f"{torch_dist.get_world_size()}; the environment says {rank} of {world_size}")
            return cls(rank, world_size, local_rank, torch_dist.get_backend(), device)
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
        if missing:
            raise RuntimeError(f"WORLD_SIZE={world_size} but {' and '.join(missing)} not set: launch with torchrun")
        torch_dist.init_process_group(backend, rank=rank, world_size=world_size)
        return cls(rank, world_size, local_rank, backend, device, owns_process_group=True)

    @property
    def enabled(self) -> bool:
        """True when there is more than one process to talk to."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes logs, samples and checkpoints."""
        return self.rank == 0

    def barrier(self) -> None:
        if not self.enabled:
            return
        if self.backend == "nccl":
            # Names the GPU, so NCCL does not have to guess which device this rank uses.
            torch_dist.barrier(device_ids=[self.device.index])
        else:
            torch_dist.barrier()

    def close(self) -> None:
        """Destroy the process group if from_env created it; safe to call twice."""
        if self.owns_process_group and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
        self.owns_process_group = False

    def __enter__(self) -> "Distributed":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _buckets(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """The tensors grouped by (device, dtype), in order: one flat buffer and one collective per group."""
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    return list(groups.values())


def _check_same_tensors(tensors: list[torch.Tensor], dist: Distributed, what: str) -> None:
    """Raise on every rank if the ranks' tensor lists differ, instead of mixing up or hanging."""
    layout = repr([(tuple(t.shape), str(t.dtype)) for t in tensors]).encode()
    mine = torch.tensor([len(tensors), sum(t.numel() for t in tensors), zlib.crc32(layout)],
                        dtype=torch.int64, device=dist.device)
    every = [torch.empty_like(mine) for _ in range(dist.world_size)]
    torch_dist.all_gather(every, mine)
    for rank, theirs in enumerate(every):
        if not torch.equal(theirs, every[0]):
            n0, size0, _ = every[0].tolist()
            n, size, _ = theirs.tolist()
            raise ValueError(f"{what}: rank {rank} has {n} tensors ({size:,} elements), rank 0 has {n0} "
                             f"({size0:,} elements), or their shapes or dtypes differ: build the same model on "
                             "every rank")


@torch.no_grad()
def broadcast_parameters(module: nn.Module, dist: Distributed) -> None:
    """Copy rank 0's parameters and buffers (running statistics, counters) into every rank's module."""
    if not dist.enabled:
        return
    tensors = list(chain(module.parameters(), module.buffers()))
    _check_same_tensors(tensors, dist, "broadcast_parameters")
    for bucket in _buckets(tensors):
        flat = _flatten_dense_tensors(bucket)
        torch_dist.broadcast(flat, src=0)
        for t, value in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
            t.copy_(value)


@torch.no_grad()
def all_reduce_gradients(params, dist: Distributed, ok: torch.Tensor | None = None) -> torch.Tensor:
    """Replace each parameter's .grad by its mean over the ranks, as DDP would; return `ok` AND-ed over ranks.

    `params` must be the same parameters in the same order on every rank. A parameter whose grad
    is None on every rank keeps None. One whose grad is None on some ranks only counts as a zero
    gradient there and gets the averaged grad on every rank: that happens when a loss term (lazy
    R1, a branch that depends on the data) runs on some ranks and not others, and without it the
    ranks' optimizers would update different parameters and the replicas would drift apart.

    `ok` (a bool scalar, default True) is this rank's verdict on its step, e.g. "my loss is finite";
    the return value (a bool scalar on dist.device) is True when it held on every rank. It travels
    in the same collective as the gradients: each (device, dtype) of the parameters costs one
    all_reduce of a flat buffer holding the gradients (zeros where a rank has none), and the first
    float32 or float64 buffer also carries one presence count per parameter and the verdicts. One host
    synchronisation per call.
    """
    params = list(params)
    verdict = torch.ones((), dtype=torch.bool, device=dist.device) if ok is None else ok.detach().reshape(())
    if not dist.enabled:
        return verdict.to(device=dist.device, dtype=torch.bool)
    for p in params:
        if p.grad is not None and p.grad.is_sparse:
            raise ValueError(f"all_reduce_gradients: sparse gradients are not supported (parameter of shape "
                             f"{tuple(p.shape)})")
    presence = torch.tensor([float(p.grad is not None) for p in params], device=dist.device)
    marks = torch.cat([presence, (~verdict.bool()).to(device=dist.device, dtype=torch.float32).reshape(1)])
    groups = _buckets(params)
    # Counts up to world_size and the verdict are exact in float32 and float64; half types carry them
    # only for small worlds, so then they get a float32 collective of their own.
    carrier = next((k for k, group in enumerate(groups) if group[0].dtype in (torch.float32, torch.float64)
                    and group[0].device == dist.device), len(groups))
    flats = []
    for k, group in enumerate(groups):
        parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in group]
        if k == carrier:
            parts.append(marks.to(group[0].dtype))
        flats.append(torch.cat(parts))
    if carrier == len(groups):
        flats.append(marks)
    for flat in flats:
        torch_dist.all_reduce(flat, op=torch_dist.ReduceOp.SUM)
    counts = flats[carrier][-len(marks):].tolist()
    present = {id(p): count > 0 for p, count in zip(params, counts)}
    for group, flat in zip(groups, flats):
        flat.div_(dist.world_size)
        offset = 0
        for p in group:
            mean = flat[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
            if not present[id(p)]:
                continue
            if p.grad is None:
                p.grad = mean.clone()
            else:
                p.grad.copy_(mean)
    return torch.tensor(counts[-1] == 0, device=dist.device)


def merge_feature_stats(stats: FeatureStats, dist: Distributed) -> FeatureStats:
    """The FeatureStats of every rank's features together, identical on every rank.

    Returns a new FeatureStats on dist.device (the input is left as it is; with one process it is
    returned unchanged). Ranks gather each other's (n, mean, M2) and merge them in rank order, so
    the result does not depend on the reduction order of the backend. A rank that saw no features
    must still know their dimension: FeatureStats(dim=D).
    """
    if not dist.enabled:
        return stats
    if stats.dim is None:
        raise ValueError("merge_feature_stats: this rank has no features and no dim; construct FeatureStats(dim=D)")
    merged = FeatureStats.from_arrays(stats.to_arrays(), device=dist.device)
    return merged.all_reduce_()


class SyncBatchNormAct(nn.SyncBatchNorm):
    """torch.nn.SyncBatchNorm followed by BatchNormAct's activation, for multi-GPU training.

    The statistics are synchronised over the process group in training mode (CUDA only: torch's
    SyncBatchNorm refuses CPU tensors once a process group exists; with no process group it is
    plain batch norm). Unlike BatchNormAct the activation runs as a separate fastgan.ops.bias_act
    pass, so the epilogue is no longer one fused kernel. Same parameters, buffers and state dict
    keys as BatchNormAct.
    """

    def __init__(self, num_features: int, act: str = "relu", alpha: float | None = None, eps: float = 1e-5,
                 momentum: float = 0.1, process_group=None):
        super().__init__(num_features, eps=eps, momentum=momentum, process_group=process_group)
        self.act, self.alpha = act, alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.bias_act(super().forward(x), None, self.act, self.alpha)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", act={self.act!r}"


def _to_sync(module: BatchNormAct, process_group) -> SyncBatchNormAct:
    synced = SyncBatchNormAct(module.num_features, module.act, module.alpha, module.eps, module.momentum,
                              process_group)
    # Shared, not copied, as torch's converter does: optimizers built on the original module still
    # see the parameters that train.
    synced.weight, synced.bias = module.weight, module.bias
    synced.running_mean, synced.running_var = module.running_mean, module.running_var
    synced.num_batches_tracked = module.num_batches_tracked
    synced.train(module.training)
    return synced


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Replace every BatchNormAct by SyncBatchNormAct and every other BatchNorm by torch.nn.SyncBatchNorm.

    torch.nn.SyncBatchNorm.convert_sync_batchnorm alone would turn BatchNormAct (a BatchNorm2d
    subclass) into a plain SyncBatchNorm and silently drop its activation. Parameters and running
    statistics are shared with the original layers; layers converted before are kept. Returns the converted module (a new object
    when `module` itself is a batch norm layer), like torch's converter.
    """
    if isinstance(module, SyncBatchNormAct):
        return module
    if isinstance(module, BatchNormAct):
        return _to_sync(module, process_group)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, process_group))
    return module
