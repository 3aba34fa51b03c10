"""The declaration of a model family: what everything outside the family's own files reads about it."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..base import BaseTrainer


@dataclass(frozen=True)
class Family:
    """One value of `--model`, declared once; the config checks, the CLI, `fastgan sample`, `fastgan eval` and
    `fastgan bench` read this instead of branching on names.

    name: the `--model` value. summary: one line for --help.
    data: the kinds of data it trains on (fastgan.data.KINDS), in order of preference.
    trainer: its BaseTrainer subclass: the step, build_networks, sampling_network, noise_shape, evaluate.
    options: the config fields of `OPTIONAL_FIELDS` (training techniques that only some families implement)
        that this family honours; any other such field left off its default is an error.
    fixed: config fields this family needs at one of a few values, with the reason: {field: (values, why)}.
    defaults: config fields whose default differs for this family (a paper's settings): {field: value}; a field
        keeps a value the user gave.
    metrics: what `evaluate` (and so `fastgan eval` and --eval-every) reports by default, for --help.
    """

    name: str
    summary: str
    data: tuple[str, ...]
    trainer: type[BaseTrainer]
    options: frozenset[str] = frozenset()
    fixed: dict[str, tuple[tuple, str]] = field(default_factory=dict)
    defaults: dict[str, object] = field(default_factory=dict)
    metrics: str = ""

    def networks(self, config, data_shape: tuple[int, ...]):
        """The family's freshly built networks by name."""
        return self.trainer.build_networks(config, data_shape)

    def sampler_from(self, networks: dict):
        """The network of `networks` that maps noise to samples."""
        return networks[self.trainer.sampling_network]


#: config fields that only the families listing them in Family.options honour
OPTIONAL_FIELDS = ("spectral_norm", "mbstd", "pac", "diffaug", "instance_noise", "r1_gamma", "gp_weight", "compile",
                   "sync_bn", "conditional")
