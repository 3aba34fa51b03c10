"""TimeGAN (Yoon, Jarrett & van der Schaar 2019, "Time-series generative adversarial networks").

Five recurrent networks, each a GRU stack with a linear head, as in the authors' code (jsyoon0823/TimeGAN,
timegan.py): the embedder maps sequences to a latent sequence H, the recovery maps H back; the generator maps
noise to a latent sequence E, the supervisor predicts the next latent step (and turns E into the generated
latent sequence), the discriminator scores every latent step. Every head but the discriminator's ends in a
sigmoid, so latents lie in (0, 1), and so do the recovered values: the data are min-max scaled per feature into
[0, 1] first, as the authors' code does, and the scaling is kept in the module's buffers so that `forward`
returns values in the data's own range.

The losses and the three training phases are the trainer's (fastgan.train.families.timegan).
"""
from __future__ import annotations

import math

import torch
from torch import nn

#: the authors' code guards the min-max scaling of a constant feature with this
SCALE_EPS = 1e-7


class RecurrentHead(nn.Module):
    """(N, T, inputs) -> (N, T, outputs): a GRU stack, then a linear layer on every step's top state, with a
    sigmoid (TimeGAN's embedder, recovery, generator, supervisor) or none (its discriminator's logits)."""

    def __init__(self, inputs: int, hidden: int, num_layers: int, outputs: int, sigmoid: bool = True):
        super().__init__()
        self.gru = nn.GRU(inputs, hidden, num_layers, batch_first=True)
        self.out = nn.Linear(hidden, outputs)
        self.sigmoid = sigmoid
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """TensorFlow 1's initialisation, which the authors' code trains from: tf.nn.rnn_cell.GRUCell draws its
        joint [input, state] kernels glorot-uniform (the reset and update gates' as one (in + h, 2h) matrix, the
        candidate's as one (in + h, h)), sets the gate biases to 1 (start by keeping the state) and the rest to
        0; fully_connected draws glorot-uniform weights and zero biases."""
        h = self.gru.hidden_size
        for layer in range(self.gru.num_layers):
            w_ih, w_hh = getattr(self.gru, f"weight_ih_l{layer}"), getattr(self.gru, f"weight_hh_l{layer}")
            fan_in = w_ih.shape[1] + h
            for rows, fan_out in ((slice(0, 2 * h), 2 * h), (slice(2 * h, 3 * h), h)):
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                w_ih[rows].uniform_(-bound, bound)
                w_hh[rows].uniform_(-bound, bound)
            getattr(self.gru, f"bias_ih_l{layer}").copy_(torch.cat([torch.ones(2 * h), torch.zeros(h)]))
            getattr(self.gru, f"bias_hh_l{layer}").zero_()
        nn.init.xavier_uniform_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.out(self.gru(x)[0])
        return torch.sigmoid(y) if self.sigmoid else y


class TimeGAN(nn.Module):
    """TimeGAN's five networks; forward maps noise z (N, T, noise_dim) ~ N(0, I) to sequences (N, T, features) in
    the data's range.

    features: the data's features per step. noise_dim: the generator's noise per step (the authors: features).
    hidden: every GRU's and every latent's width (their sines runs: 24). num_layers: GRU layers of each network
    but the supervisor, which has one fewer (their code; so at least 2).
    """

    def __init__(self, features: int, noise_dim: int, hidden: int = 24, num_layers: int = 3):
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"TimeGAN: num_layers must be >= 2 (the supervisor has num_layers - 1); got {num_layers}")
        self.features, self.noise_dim = features, noise_dim
        self.embedder = RecurrentHead(features, hidden, num_layers, hidden)
        self.recovery = RecurrentHead(hidden, hidden, num_layers, features)
        self.generator = RecurrentHead(noise_dim, hidden, num_layers, hidden)
        self.supervisor = RecurrentHead(hidden, hidden, num_layers - 1, hidden)
        self.discriminator = RecurrentHead(hidden, hidden, num_layers, 1, sigmoid=False)
        # x_scaled = (x - low) / scale; set from the training data by `fit_scaling`, saved with the weights.
        self.register_buffer("low", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))

    def _check(self, x: torch.Tensor, width: int, what: str) -> None:
        if x.dim() != 3 or x.shape[2] != width:
            raise ValueError(f"TimeGAN: expected {what} (N, T, {width}); got shape {tuple(x.shape)}")

    @torch.no_grad()
    def fit_scaling(self, data: torch.Tensor) -> None:
        """Min-max scaling per feature over all sequences and steps of `data` (N, T, features), as the authors'
        MinMaxScaler: (x - min) / (max - min + 1e-7)."""
        self._check(data, self.features, "sequences")
        low = data.amin(dim=(0, 1))
        self.low.copy_(low)
        self.scale.copy_(data.amax(dim=(0, 1)) - low + SCALE_EPS)

    def scale_in(self, x: torch.Tensor) -> torch.Tensor:
        """Data-range sequences -> [0, 1] per feature."""
        self._check(x, self.features, "sequences")
        return (x - self.low) / self.scale

    def scale_out(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] per feature -> the data's range."""
        return x * self.scale + self.low

    def embed(self, x_scaled: torch.Tensor) -> torch.Tensor:
        """H = embedder(x), x already in [0, 1]."""
        self._check(x_scaled, self.features, "sequences")
        return self.embedder(x_scaled)

    def latent_noise(self, z: torch.Tensor) -> torch.Tensor:
        """E_hat = generator(Z) for z ~ N(0, I). The authors draw Z ~ U(0, 1) per step and feature; Phi(z), the
        normal CDF of a standard normal z, is exactly that, so fastgan's N(0, I) noise serves every family."""
        self._check(z, self.noise_dim, "noise")
        return self.generator(0.5 * (1 + torch.erf(z / math.sqrt(2))))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """X_hat = recovery(supervisor(generator(Z))), in the data's range."""
        return self.scale_out(self.recovery(self.supervisor(self.latent_noise(z))))
