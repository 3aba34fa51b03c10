"""The TimeGAN family on continuous sequences (N, T, F) (Yoon, Jarrett & van der Schaar 2019).

The schedule and losses of the authors' code (jsyoon0823/TimeGAN, timegan.py), in three phases that split
`--steps`:

1. embedding (timegan_embed_steps): embedder and recovery learn to reconstruct, loss 10 sqrt(MSE(x, x~));
2. supervised (timegan_supervised_steps): the supervisor learns to predict the next latent step of embedded
   real data, loss MSE(H[:, 1:], S(H)[:, :-1]);
3. joint (the rest): per step, twice (a fresh batch each time) a generator + supervisor update on
   G_loss = BCE(D(H^), 1) + gamma BCE(D(E^), 1) + 100 sqrt(supervised loss) + 100 moment loss, then an embedder +
   recovery update on 10 sqrt(MSE(x, x~)) + 0.1 supervised loss; then, on a third batch, a discriminator update
   on BCE(D(H), 1) + BCE(D(H^), 0) + gamma BCE(D(E^), 0), taken only when that loss is above 0.15.

gamma is 1; the discriminator scores every latent step; the supervisor turns the generator's latents E^ into
H^ = S(E^), and samples are recovery(H^). Each of the authors' five Adam optimizers (their E0, E, GS, G and D
solvers) keeps its own state here too. The phase follows from the step (checkpointed), and a checkpoint also
records it by name. Samples and evaluation are those of every sequence family (BaseTrainer). With several
processes, the moment loss compares each process's share of the batch (as rgan's does), so such a run is not
exactly the one-process run with the global batch; the discriminator's decision uses the loss averaged over
processes, so all of them take or skip its update together.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ... import functional
from ...models import TimeGAN
from ..base import BaseTrainer, adam
from .family import Family
from .rgan import moment_loss
from .sequences import SequenceSettings, SinesSettings
from .settings import setting


@dataclass
class TimeGANSettings:
    """TimeGAN's networks and phases."""

    timegan_layers: int = setting(3, "GRU layers of its embedder, recovery, generator and discriminator (the "
                                     "supervisor has one fewer; Yoon et al.'s sines: 3)", at_least=1)
    timegan_embed_steps: int = setting(1000, "steps (counted in --steps) that train embedder and recovery on "
                                             "reconstruction alone, the first of its three phases", at_least=0)
    timegan_supervised_steps: int = setting(1000, "steps (counted in --steps) after those that train the "
                                                  "supervisor on the next-step loss alone; the rest of --steps are "
                                                  "joint training", at_least=0)

PHASES = ("embedding", "supervised", "joint")
GAMMA = 1.0  # weight of the adversarial terms on the generator's own latents E^ (the authors' gamma)
D_LOSS_THRESHOLD = 0.15  # the discriminator is updated only while its loss is above this
G_UPDATES_PER_D_UPDATE = 2
# Loss weights of the authors' code
RECONSTRUCTION_WEIGHT, SUPERVISED_IN_G, MOMENT_WEIGHT, SUPERVISED_IN_E = 10.0, 100.0, 100.0, 0.1


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    logits = logits.float()
    return functional.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class TimeGANTrainer(BaseTrainer):
    """TimeGAN's three phases (see the module docstring), one authors' iteration per step."""

    sampling_network = "timegan"

    def __init__(self, config, dist=None):
        super().__init__(config, dist)
        pretraining = config.timegan_embed_steps + config.timegan_supervised_steps
        if pretraining >= config.steps:
            # Not an error: a run may stop in pre-training and be resumed with more steps.
            warnings.warn(f"timegan: timegan_embed_steps + timegan_supervised_steps ({pretraining}) leave none of "
                          f"--steps ({config.steps}) for joint training: the run ends in its {self.phase(config.steps - 1)} "
                          f"phase and its generator is untrained; raise --steps (or resume with more) or lower them",
                          stacklevel=2)
        torch.manual_seed(config.seed)
        model = self.build_networks(config, self.data_shape)[self.sampling_network]
        # TimeGAN scales each feature into [0, 1] over the whole training set (the array every process holds).
        model.fit_scaling(torch.from_numpy(self.data.array).float())
        self.model = self.add_network(self.sampling_network, model)
        m = self.model
        for name, parts, lr in (("embedding", (m.embedder, m.recovery), config.lr_g),  # E0_solver
                                ("supervised", (m.supervisor,), config.lr_g),  # GS_solver: G_loss_S reaches S only
                                ("generator", (m.generator, m.supervisor), config.lr_g),  # G_solver
                                ("autoencoder", (m.embedder, m.recovery), config.lr_g),  # E_solver
                                ("discriminator", (m.discriminator,), config.lr_d)):  # D_solver
            params = [p for part in parts for p in part.parameters()]
            self.optimizers[name] = adam(params, lr, (config.beta1, config.beta2))
            self.scalers[name] = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        self.add_ema(self.sampling_network)

    @staticmethod
    def build_networks(config, data_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        if len(data_shape) != 2:
            raise ValueError(f"timegan trains on sequences (N, T, F); the data's samples have shape {data_shape}")
        return {"timegan": TimeGAN(data_shape[1], config.z_dim, config.seq_hidden, config.timegan_layers)}

    @staticmethod
    def noise_shape(config) -> tuple[int, ...]:
        return (config.seq_len, config.z_dim)

    def phase(self, step: int | None = None) -> str:
        """The phase that step (default: the next one) belongs to."""
        cfg = self.config
        step = self.step if step is None else step
        if step < cfg.timegan_embed_steps:
            return "embedding"
        return "supervised" if step < cfg.timegan_embed_steps + cfg.timegan_supervised_steps else "joint"

    # -- one step -----------------------------------------------------------------------------

    def train_step(self, batches) -> dict[str, torch.Tensor]:
        phase = self.phase()
        if phase == "embedding":
            stats = self._embedding_step(batches)
        elif phase == "supervised":
            stats = self._supervised_step(batches)
        else:
            stats = self._joint_step(batches)
        self.end_step()
        return stats

    def _real(self, batches) -> torch.Tensor:
        """The next real batch, scaled into [0, 1] per feature."""
        x = next(batches)
        self.batches_seen += 1
        return self.model.scale_in(x.float())

    def _noise(self) -> torch.Tensor:
        return self.shared_noise(self.config.batch_size, *self.noise_shape(self.config))

    def _supervised_loss(self, h: torch.Tensor) -> torch.Tensor:
        """G_loss_S: the supervisor's one-step-ahead error on a latent sequence."""
        return F.mse_loss(self.model.supervisor(h)[:, :-1].float(), h[:, 1:].float())

    def _reconstruction(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(MSE of x and recovery(embedder(x)), the embedding H)."""
        h = self.model.embed(x)
        return F.mse_loss(self.model.recovery(h).float(), x), h

    def _embedding_step(self, batches) -> dict[str, torch.Tensor]:
        x = self._real(batches)
        with self.autocast():
            recon, _ = self._reconstruction(x)
        self.update("embedding", RECONSTRUCTION_WEIGHT * torch.sqrt(recon))
        # The authors log the root of each mean squared error.
        return {"e_loss": recon.detach().sqrt()}

    def _supervised_step(self, batches) -> dict[str, torch.Tensor]:
        x = self._real(batches)
        with self.autocast():
            with torch.no_grad():
                h = self.model.embed(x)
            loss = self._supervised_loss(h)
        self.update("supervised", loss)
        return {"s_loss": loss.detach().sqrt()}

    def _joint_step(self, batches) -> dict[str, torch.Tensor]:
        m = self.model
        for _ in range(G_UPDATES_PER_D_UPDATE):
            x, z = self._real(batches), self._noise()
            with self.autocast():
                # Embedder and recovery are not changed by the generator's update: this pass serves both updates.
                recon, h_grad = self._reconstruction(x)
                h = h_grad.detach()
                e_hat = m.latent_noise(z)
                # One pass of the supervisor over real and generated latents (and of D over both of G's), as a
                # batch twice as large: the samples do not interact, and it halves the calls into the GRUs.
                h_hat, s_real = m.supervisor(torch.cat([e_hat, h])).chunk(2)
                x_hat = m.recovery(h_hat).float()
                y_fake, y_fake_e = m.discriminator(torch.cat([h_hat, e_hat])).chunk(2)
                g_u, g_u_e = _bce(y_fake, 1.0), _bce(y_fake_e, 1.0)
                g_s = F.mse_loss(s_real[:, :-1].float(), h[:, 1:].float())
            g_v = moment_loss(x, x_hat)
            self.update("generator", g_u + GAMMA * g_u_e + SUPERVISED_IN_G * torch.sqrt(g_s) + MOMENT_WEIGHT * g_v)
            # The supervisor's term is computed anew, as in the authors' separate session run: it sees the
            # supervisor just updated.
            with self.autocast():
                e_s = self._supervised_loss(h_grad)
            self.update("autoencoder", RECONSTRUCTION_WEIGHT * torch.sqrt(recon) + SUPERVISED_IN_E * e_s)
        x, z = self._real(batches), self._noise()
        with self.autocast():
            with torch.no_grad():
                h = m.embed(x)
                e_hat = m.latent_noise(z)
                h_hat = m.supervisor(e_hat)
            y_real, y_fake, y_fake_e = m.discriminator(torch.cat([h, h_hat, e_hat])).chunk(3)
            d_loss = _bce(y_real, 1.0) + _bce(y_fake, 0.0) + GAMMA * _bce(y_fake_e, 0.0)
        d_updated = self._mean_over_processes(d_loss.detach()) > D_LOSS_THRESHOLD
        if d_updated:
            self.update("discriminator", d_loss)
        return {"d_loss": d_loss.detach(), "d_updated": torch.tensor(float(d_updated)), "g_loss_u": g_u.detach(),
                "g_loss_s": g_s.detach().sqrt(), "g_loss_v": g_v.detach(), "e_loss": recon.detach().sqrt()}

    def _mean_over_processes(self, value: torch.Tensor) -> float:
        """value's mean over processes, so that all of them take or skip the discriminator's update together."""
        if self.dist.world_size > 1:
            import torch.distributed as td

            value = value.clone()
            td.all_reduce(value)
            value /= self.dist.world_size
        return value.item()

    def samples_per_step(self) -> int:
        # Real batches the last step read: three per joint step.
        batches = G_UPDATES_PER_D_UPDATE + 1 if self.phase(self.step - 1) == "joint" else 1
        return self.config.batch_size * batches * self.dist.world_size

    # -- checkpoints --------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {**super().state_dict(), "timegan_phase": self.phase()}

    def load_state_dict(self, state: dict) -> None:
        from ..checkpoint import CheckpointError

        super().load_state_dict(state)
        if state.get("timegan_phase") != self.phase():
            raise CheckpointError(f"checkpoint at step {self.step} records timegan phase "
                                  f"{state.get('timegan_phase')!r}; this run's settings put that step in "
                                  f"{self.phase()!r}")


TIMEGAN = Family(
    "timegan", "TimeGAN on sequences: embedding, supervised and joint adversarial training (Yoon et al. 2019)",
    ("sequences",), TimeGANTrainer, settings=(SequenceSettings, SinesSettings, TimeGANSettings),
    fixed={"n_critic": ((1,), "its schedule is TimeGAN's: two generator and embedder updates per discriminator "
                              "update"),
           "d_loss": (("bce",), "its losses are TimeGAN's"),
           "g_loss": (("ns",), "its losses are TimeGAN's"),
           "label_smoothing": ((0.0,), "its losses are TimeGAN's")},
    # The authors' sines settings: batch 128, Adam at TensorFlow's defaults (1e-3, beta1 0.9), 24-wide GRUs,
    # noise of the data's width (5 features on sines), no weight averaging.
    # --steps: the three phases in about 15 minutes on one CPU thread (docs/results.md).
    defaults={"batch_size": 128, "lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.9, "seq_hidden": 24, "z_dim": 5,
              "ema_decay": 0.0, "steps": 4200},
    metrics="fid, kid on the values; freq_w1, amp_w1, sine_r2 on sines; TimeGAN's discriminative and "
            "predictive scores")
