"""Recurrent models for continuous sequences (N, T, F).

RCGAN (Esteban et al. 2017, "Real-valued (medical) time series generation with recurrent conditional
GANs"): an LSTM generator fed fresh noise at every time step, and an LSTM discriminator that scores
every time step (the paper's choice) or the whole sequence; both optionally conditioned on a vector
that is appended to the input of every step. Options for smooth data (TimeGAN's sines): one noise vector
per sequence given at every step instead of fresh noise per step (fresh noise enters every output
through a single layer, and shows as step-to-step jitter), stacked layers (TimeGAN uses 3), and a
sigmoid output for data in [0, 1].

VRAE (Fabius & van Amersfoort 2014, "Variational recurrent auto-encoders"): an LSTM encoder whose
last hidden state gives q(z|x), and an LSTM decoder whose initial state is computed from z.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..fused.bce_with_logits import binary_cross_entropy_with_logits
from .vae import LIKELIHOODS, gaussian_kl, gaussian_nll, reparameterize

OUTPUT_ACTS = ("linear", "tanh", "sigmoid")
#: noise of the recurrent generator: fresh at every step (RCGAN), or one vector per sequence at every step
NOISE_KINDS = ("step", "sequence")
_ACTS = {"linear": lambda y: y, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


def _check_sequences(x: torch.Tensor, features: int, who: str) -> None:
    if x.dim() != 3 or x.shape[2] != features:
        raise ValueError(f"{who}: expected sequences (N, T, {features}); got shape {tuple(x.shape)}")


def _with_condition(x: torch.Tensor, cond: torch.Tensor | None, cond_dim: int, who: str) -> torch.Tensor:
    if cond_dim == 0:
        if cond is not None:
            raise ValueError(f"{who}: built with cond_dim=0 but given a condition")
        return x
    if cond is None or cond.shape != (x.shape[0], cond_dim):
        got = None if cond is None else tuple(cond.shape)
        raise ValueError(f"{who}: expected a condition of shape ({x.shape[0]}, {cond_dim}); got {got}")
    # RCGAN conditions by concatenating the same vector to the input of every time step (sec. 3).
    return torch.cat([x, cond[:, None, :].expand(-1, x.shape[1], -1).to(x.dtype)], dim=2)


class RCGANGenerator(nn.Module):
    """noise (N, T, noise_dim) [+ condition (N, cond_dim)] -> sequences (N, T, features).

    noise "step": z_t drives step t (RCGAN); "sequence": z_1 drives every step (the rest of z is unread), so a
    sequence's randomness is one vector and its steps follow from it.
    """

    def __init__(self, features: int = 1, noise_dim: int = 5, hidden: int = 100, num_layers: int = 1,
                 cond_dim: int = 0, out_act: str = "tanh", noise: str = "step"):
        super().__init__()
        if out_act not in OUTPUT_ACTS:
            raise ValueError(f"RCGANGenerator: out_act must be one of {', '.join(OUTPUT_ACTS)}; got {out_act!r}")
        if noise not in NOISE_KINDS:
            raise ValueError(f"RCGANGenerator: noise must be one of {', '.join(NOISE_KINDS)}; got {noise!r}")
        self.features, self.noise_dim, self.cond_dim, self.out_act = features, noise_dim, cond_dim, out_act
        self.noise = noise
        self.lstm = nn.LSTM(noise_dim + cond_dim, hidden, num_layers, batch_first=True)
        self.out = nn.Linear(hidden, features)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        _check_sequences(z, self.noise_dim, "RCGANGenerator")
        if self.noise == "sequence":
            z = z[:, :1].expand(-1, z.shape[1], -1)
        h, _ = self.lstm(_with_condition(z, cond, self.cond_dim, "RCGANGenerator"))
        return _ACTS[self.out_act](self.out(h))

    def sample(self, n: int, length: int, generator: torch.Generator | None = None,
               cond: torch.Tensor | None = None) -> torch.Tensor:
        """n sequences of `length` steps from noise z_t ~ N(0, I) (per step, or its first step's per sequence)."""
        device = self.out.weight.device
        return self(torch.randn(n, length, self.noise_dim, generator=generator, device=device), cond)


class RCGANDiscriminator(nn.Module):
    """sequences (N, T, features) [+ condition] -> logits (N, T) when per_step, else (N,).

    per_step=True is RCGAN's discriminator: a logit for every time step, trained with the
    cross-entropy averaged over steps (flatten the logits into fastgan.losses.d_loss / g_loss).
    per_step=False scores the sequence by the logit of its last step, which has seen all of it.
    """

    def __init__(self, features: int = 1, hidden: int = 100, num_layers: int = 1, cond_dim: int = 0,
                 per_step: bool = True):
        super().__init__()
        self.features, self.cond_dim, self.per_step = features, cond_dim, per_step
        self.lstm = nn.LSTM(features + cond_dim, hidden, num_layers, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        _check_sequences(x, self.features, "RCGANDiscriminator")
        h, _ = self.lstm(_with_condition(x, cond, self.cond_dim, "RCGANDiscriminator"))
        logits = self.out(h).squeeze(2)
        return logits if self.per_step else logits[:, -1]


class VRAE(nn.Module):
    """Variational recurrent autoencoder on sequences (N, T, features).

    Encoder: LSTM over x; (mu, logvar) = linear(h_T), the last hidden state (Fabius & van Amersfoort
    2014, eq. 5). Decoder: h_0 = tanh(W_z z + b_z) (eq. 6), c_0 = 0; each step reads the previous
    step's output mean (zero at t = 1), as the paper's decoder reads x_t, so it generates without data.
    likelihood "gaussian": N(mean_t, sigma^2) per value (sigma fixed), mean_t = out_act(output) (sigmoid keeps
    samples of data in [0, 1] inside it); "bernoulli": the decoder outputs logits of values in [0, 1] (the
    paper's binary music data).
    """

    def __init__(self, features: int = 1, hidden: int = 64, z_dim: int = 16, likelihood: str = "gaussian",
                 sigma: float = 0.1, beta: float = 1.0, out_act: str = "linear"):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"VRAE: likelihood must be one of {', '.join(LIKELIHOODS)}; got {likelihood!r}")
        if out_act not in OUTPUT_ACTS:
            raise ValueError(f"VRAE: out_act must be one of {', '.join(OUTPUT_ACTS)}; got {out_act!r}")
        if likelihood == "bernoulli" and out_act != "linear":
            raise ValueError(f"VRAE: the bernoulli likelihood's outputs are logits; out_act {out_act!r} applies to "
                             f"the gaussian one")
        if sigma <= 0:
            raise ValueError(f"VRAE: sigma must be positive; got {sigma!r}")
        self.features, self.hidden, self.z_dim = features, hidden, z_dim
        self.likelihood, self.beta, self.out_act = likelihood, beta, out_act
        self.encoder = nn.LSTM(features, hidden, batch_first=True)
        self.to_latent = nn.Linear(hidden, 2 * z_dim)
        self.from_latent = nn.Linear(z_dim, hidden)
        self.decoder = nn.LSTMCell(features, hidden)
        self.out = nn.Linear(hidden, features)
        self.register_buffer("log_sigma", torch.tensor(math.log(sigma)))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_sequences(x, self.features, "VRAE")
        _, (h, _) = self.encoder(x)
        mu, logvar = self.to_latent(h[-1]).chunk(2, dim=1)
        return mu, logvar

    def to_values(self, output: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z) from a decoder output."""
        return torch.sigmoid(output) if self.likelihood == "bernoulli" else _ACTS[self.out_act](output)

    def decode(self, z: torch.Tensor, length: int) -> torch.Tensor:
        """Decoder outputs (N, length, features): means (gaussian) or logits (bernoulli)."""
        h = torch.tanh(self.from_latent(z))
        c = torch.zeros_like(h)
        step_in = z.new_zeros(z.shape[0], self.features)
        outputs = []
        for _ in range(length):
            h, c = self.decoder(step_in, (h, c))
            y = self.out(h)
            outputs.append(y)
            step_in = self.to_values(y)
        return torch.stack(outputs, dim=1)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(decoder output for z ~ q(z|x), mu, logvar); eps as in reparameterize."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar, generator, eps), x.shape[1]), mu, logvar

    def reconstruction_nll(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """-log p(x|z) per sequence, summed over steps and features."""
        if self.likelihood == "bernoulli":
            return binary_cross_entropy_with_logits(output, x, reduction="none").flatten(1).sum(dim=1)
        return gaussian_nll(x, self.to_values(output), self.log_sigma)

    def elbo_terms(self, x: torch.Tensor, generator: torch.Generator | None = None,
                   eps: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Batch means of recon = -log p(x|z), kl = KL(q(z|x) || N(0, I)) and loss = recon + beta * kl."""
        output, mu, logvar = self(x, generator, eps)
        recon = self.reconstruction_nll(x, output).mean()
        kl = gaussian_kl(mu, logvar).mean()
        return {"recon": recon, "kl": kl, "loss": recon + self.beta * kl}

    @torch.no_grad()
    def sample(self, n: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n sequences (n, length, features): the means of p(x|z) for z ~ N(0, I)."""
        z = torch.randn(n, self.z_dim, generator=generator, device=self.out.weight.device)
        return self.to_values(self.decode(z, length))
