"""Settings shared by the sequence families (rgan, rvae, timegan, seqgan): the built-in sequence data and the
recurrent networks' width."""
from __future__ import annotations

from dataclasses import dataclass

from .settings import setting


@dataclass
class SequenceSettings:
    """The built-in sequences and the recurrent networks' width."""

    seq_len: int = setting(0, "time steps of the built-in sines and oracle data (0: 30 for sines, 24 for "
                              "sines-timegan, 20 for oracle; a .npy has its own); the run records the length it used",
                           at_least=0)
    seq_n: int = setting(10000, "sequences in the built-in sines or oracle training set", at_least=1)
    seq_hidden: int = setting(32, "hidden size of every LSTM (seqgan: and its embedding size); timegan: of every GRU "
                                  "and latent step", at_least=1)


@dataclass
class SinesSettings:
    """RCGAN's built-in sines."""

    sines_features: int = setting(1, "features per time step of the built-in sines (sines-timegan has 5)",
                                  at_least=1)
