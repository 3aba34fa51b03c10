"""The declaration of a model family: what everything outside the family's own files reads about it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..base import BaseTrainer


@dataclass(frozen=True)
class Family:
    """One value of `--model`, declared once; the config checks, the CLI, `fastgan sample`, `fastgan eval` and
    `fastgan bench` read this instead of branching on names.

    name: the `--model` value. summary: one line for --help.
    data: the kinds of data it trains on (fastgan.data.KINDS), in order of preference.
    trainer: its BaseTrainer subclass: the step, build_networks, sampling_network, noise_shape, evaluate.
    options: the shared config fields of `OPTIONAL_FIELDS` (read by the shared trainer, implemented by only some
        families) that this family honours; any other such field left off its default is an error.
    fixed: config fields this family needs at one of a few values, with the reason: {field: (values, why)}.
    defaults: config fields whose default differs for this family (a paper's settings): {field: value}; a field
        keeps a value the user gave.
    metrics: what `evaluate` (and so `fastgan eval` and --eval-every) reports by default, for --help.
    settings: the family's own settings: dataclasses of `settings.setting` fields, declared beside the family
        (a group such as the sequence settings may serve several families). A run's TrainConfig holds the shared
        fields and these; giving one of another family is an error naming the families that take it.
    """

    name: str
    summary: str
    data: tuple[str, ...]
    trainer: type[BaseTrainer]
    options: frozenset[str] = frozenset()
    fixed: dict[str, tuple[tuple, str]] = field(default_factory=dict)
    defaults: dict[str, object] = field(default_factory=dict)
    metrics: str = ""
    settings: tuple[type, ...] = ()

    def setting_names(self) -> tuple[str, ...]:
        """The names of the family's own settings, in declaration order."""
        return tuple(f.name for group in self.settings for f in dataclasses.fields(group))

    def networks(self, config, data_shape: tuple[int, ...]):
        """The family's freshly built networks by name."""
        return self.trainer.build_networks(config, data_shape)

    def sampler_from(self, networks: dict):
        """The network of `networks` that maps noise to samples."""
        return networks[self.trainer.sampling_network]


#: shared config fields (read by the shared trainer or commands) that only the families listing them in
#: Family.options honour
OPTIONAL_FIELDS = ("compile", "sync_bn", "conditional")
