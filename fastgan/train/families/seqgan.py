"""The SeqGAN family (Yu et al. 2017) on the synthetic oracle task of its sec. 5.

A run's `steps` are generator updates of both kinds: the first seqgan_pretrain_steps are maximum-
likelihood updates (teacher forcing on a batch of oracle data); every later step is one policy-
gradient update with Monte-Carlo rollout rewards, followed by n_critic discriminator updates (real
oracle data vs fresh samples). Before the first adversarial step the discriminator is pre-trained
with seqgan_d_pretrain_steps such updates, which belong to that step. Every seqgan_nll_every steps
(on log steps) the generator's NLL under the oracle (on eval_n samples) is logged as oracle_nll, so a
run shows where maximum likelihood left it and what adversarial training did.

As in the authors' code (github.com/LantaoYu/SeqGAN): the two phases have their own Adam states (the
policy gradient is several times the MLE gradient's scale, so a shared state makes the first adversarial
steps several times lr), the rewards come from a delayed copy of G (seqgan_rollout_delay), and
`fastgan train --model seqgan` defaults to its G settings (Adam 0.01, beta1 0.9, gradients clipped at
global norm 5, batch 64) and D learning rate 1e-4. Its D schedule, five rounds of three epochs over
10,000 fresh negatives and as many real sequences per G step (4,690 updates of 64) after 50 such rounds
of pre-training (46,900), is n_critic 4690 and seqgan_d_pretrain_steps 46900 here (each update on fresh
negatives): hours per step on a CPU, so the defaults are far smaller.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ... import losses
from ...models import (CNNDiscriminator, LSTMDiscriminator, OracleLSTM, SeqGANGenerator, mle_loss, oracle_nll,
                       policy_gradient_loss, rollout_rewards)
from ...models.seqgan import PAPER_FILTER_SIZES, PAPER_NUM_FILTERS, update_rollout_policy
from ..base import BaseTrainer, adam
from ..real_data import TokenData
from .family import Family
from .sequences import SequenceSettings
from .settings import setting

SEQGAN_DISCRIMINATORS = ("lstm", "cnn", "cnn-paper")


@dataclass
class SeqGANSettings:
    """SeqGAN's oracle task, rollouts and discriminator."""

    seqgan_vocab: int = setting(100, "vocabulary of the oracle task (Yu et al. 2017 use 5000, minutes per step on a "
                                     "CPU)", at_least=2)
    seqgan_pretrain_steps: int = setting(1000, "maximum-likelihood G updates before adversarial training (counted "
                                               "in --steps)", at_least=0)
    seqgan_d_pretrain_steps: int = setting(200, "D updates on real vs generated before the first adversarial step "
                                                "(not counted in --steps)", at_least=0)
    seqgan_rollouts: int = setting(16, "Monte-Carlo rollouts per prefix for the rewards", at_least=1)
    seqgan_discriminator: str = setting("lstm", "D over tokens: an LSTM; the paper's CNN with its window sizes up to "
                                                "seq_len and seq_hidden filters each (cnn); or at the paper's size "
                                                "(cnn-paper: 64-dim embedding, 1,720 filters, L2 0.2 on the logit "
                                                "layer, dropout 0.25, one highway layer)", SEQGAN_DISCRIMINATORS)
    seqgan_rollout_delay: float = setting(0.8, "after each adversarial G update the rollout policy's weights move to "
                                               "delay * rollout + (1 - delay) * G, as in the authors' code (0: G "
                                               "itself)", at_least=0, below=1)
    seqgan_nll_every: int = setting(50, "steps between the oracle NLL evaluations logged as oracle_nll (eval_n "
                                        "samples), at log steps that are multiples of it", at_least=1)
    oracle_seed: int = setting(0, "seed of the oracle LSTM and its training data, apart from --seed, so that runs "
                                  "with different seeds learn the same task", at_least=0)

# The oracle of Yu et al. 2017, sec. 5: sequences of 20 tokens from an LSTM with 32-dim embedding and state.
ORACLE_LENGTH = 20
ORACLE_SIZE = 32
# The authors' discriminator: 64-dim embedding, L2 weight 0.2 on its logit layer.
PAPER_D_EMBEDDING = 64
PAPER_D_L2 = 0.2


def build_discriminator(config, length: int) -> nn.Module:
    size, vocab = config.seq_hidden, config.seqgan_vocab
    if config.seqgan_discriminator == "lstm":
        return LSTMDiscriminator(vocab, size, size)
    sizes = [(w, f) for w, f in zip(PAPER_FILTER_SIZES, PAPER_NUM_FILTERS) if w <= length]
    if config.seqgan_discriminator == "cnn-paper":
        return CNNDiscriminator(vocab, PAPER_D_EMBEDDING, *zip(*sizes), l2_reg=PAPER_D_L2)
    return CNNDiscriminator(vocab, size, tuple(w for w, _ in sizes), (size,) * len(sizes))


class SeqGANTrainer(BaseTrainer):
    """MLE pre-training, D pre-training, then policy-gradient G updates and D updates (Algorithm 1)."""

    def __init__(self, config, dist=None):
        super().__init__(config, dist)
        torch.manual_seed(config.seed)
        networks = self.build_networks(config, self.data_shape)
        self.generator = self.add_network("generator", networks["generator"], config.lr_g)
        self.discriminator = self.add_network("discriminator", networks["discriminator"], config.lr_d)
        # The policy gradient's own Adam state (see the module's docstring); "generator" is the MLE phase's.
        self.optimizers["generator_adversarial"] = adam(self.generator.parameters(), config.lr_g,
                                                        (config.beta1, config.beta2))
        self.scalers["generator_adversarial"] = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        # G_beta, the rollout policy: G as it was at the first adversarial step, then trailing it.
        self.rollout = self.add_network("rollout", copy.deepcopy(self.generator).requires_grad_(False))

    def open_data(self) -> TokenData:
        """The oracle's sequences. The task comes from oracle_seed alone (not from the run's seed or self.rng):
        the same oracle_seed gives the same oracle and data."""
        config = self.config
        # Recorded in the run's config, so that samplers know the length without the oracle.
        config.seq_len = config.seq_len or ORACLE_LENGTH
        oracle = OracleLSTM(config.seqgan_vocab, config.seq_len, ORACLE_SIZE, ORACLE_SIZE, seed=config.oracle_seed)
        tokens = oracle.generate(config.seq_n, torch.Generator().manual_seed(config.oracle_seed + 1))
        self.oracle = oracle.to(self.device)
        return TokenData(tokens, config, self.dist, self.device)

    @staticmethod
    def build_networks(config, data_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        return {"generator": SeqGANGenerator(config.seqgan_vocab, config.seq_hidden, config.seq_hidden),
                "discriminator": build_discriminator(config, data_shape[0])}

    @staticmethod
    def draw_samples(sampler: nn.Module, config, n: int, seed: int, device) -> torch.Tensor:
        """n token sequences (N, T), sampled with a generator on `device` seeded with seed, 1000 at a time."""
        rng = torch.Generator(device).manual_seed(seed)
        with torch.no_grad():
            return torch.cat([sampler.sample(min(1000, n - start), config.seq_len, rng)
                              for start in range(0, n, 1000)])

    # -- one step -----------------------------------------------------------------------------

    def train_step(self, batches) -> dict[str, torch.Tensor]:
        cfg = self.config
        if self.step < cfg.seqgan_pretrain_steps:
            stats = self._mle_update(batches)
        else:
            if self.step == cfg.seqgan_pretrain_steps:
                self.rollout.load_state_dict(self.generator.state_dict())
                for _ in range(cfg.seqgan_d_pretrain_steps):
                    self._d_update(batches)
            stats = self._policy_gradient_update()
            update_rollout_policy(self.rollout, self.generator, cfg.seqgan_rollout_delay)
            for _ in range(cfg.n_critic):
                d_stats = self._d_update(batches)
            stats.update(d_stats)
        self.end_step()
        if self.step % cfg.log_every == 0 and self.step % cfg.seqgan_nll_every == 0:
            stats["oracle_nll"] = self.generated_oracle_nll(cfg.eval_n)
        return stats

    def _fake(self) -> torch.Tensor:
        """This process's share of a batch of generated sequences drawn for all processes."""
        cfg = self.config
        return self.slice_for_rank(self.generator.sample(cfg.batch_size * self.dist.world_size, cfg.seq_len,
                                                         self.rng))

    def _mle_update(self, batches) -> dict[str, torch.Tensor]:
        tokens = next(batches)
        self.batches_seen += 1
        with self.autocast():
            loss = mle_loss(self.generator, tokens).float()
        self.update("generator", loss)
        return {"mle_loss": loss.detach()}

    def _policy_gradient_update(self) -> dict[str, torch.Tensor]:
        tokens = self._fake()
        # D in eval mode keeps dropout out of the rewards.
        self.discriminator.eval()
        with self.autocast():
            rewards = rollout_rewards(self.rollout, self.discriminator, tokens, self.config.seqgan_rollouts,
                                      self.rank_rng).float()
        self.discriminator.train()
        with self.autocast():
            loss = policy_gradient_loss(self.generator, tokens, rewards).float()
        self.update("generator_adversarial", loss)
        return {"pg_loss": loss.detach(), "reward": rewards.mean()}

    def _d_update(self, batches) -> dict[str, torch.Tensor]:
        real = next(batches)
        self.batches_seen += 1
        fake = self._fake()
        with self.autocast():
            real_logits, fake_logits = self.discriminator(real).float(), self.discriminator(fake).float()
        loss = losses.d_loss(real_logits, fake_logits, "bce", self.config.label_smoothing)
        stats = {"d_loss": loss.detach()}
        if isinstance(self.discriminator, CNNDiscriminator) and self.discriminator.l2_reg:
            loss = loss + self.discriminator.l2_penalty()
        self.update("discriminator", loss)
        return {**stats, "real_prob": torch.sigmoid(real_logits.detach()).mean(),
                "fake_prob": torch.sigmoid(fake_logits.detach()).mean()}

    # -- outputs ------------------------------------------------------------------------------

    def generated_oracle_nll(self, n: int, seed: int | None = None) -> torch.Tensor:
        """NLL_oracle of n generated sequences (Yu et al. 2017, sec. 5), nats per sequence; by default the same
        seed every time, so that changes between log steps are the generator's, not the sample's."""
        return oracle_nll(self.oracle, self.generate(n, (self.config.seed if seed is None else seed) + 3))

    def evaluate(self, n: int | None = None, seed: int | None = None, **options) -> dict[str, float]:
        """oracle_nll of n (default eval_n) generated sequences (per sequence and per token) and data_oracle_nll,
        the oracle's NLL of as many of its own sequences (the floor a perfect generator would reach), and "n",
        the number generated. `seed` draws the generated ones (default: the run's seed, as during training)."""
        if options:
            raise ValueError(f"{', '.join(options)}: a seqgan run is scored with its own metric (the oracle's NLL)")
        cfg = self.config
        n = cfg.eval_n if n is None else n
        nll = float(self.generated_oracle_nll(n, seed))
        data_nll = float(oracle_nll(self.oracle, self.data.tokens[:n].to(self.device)))
        return {"n": n, "oracle_nll": nll, "oracle_nll_per_token": nll / cfg.seq_len, "data_oracle_nll": data_nll}


SEQGAN = Family(
    "seqgan", "SeqGAN on the synthetic oracle's tokens (Yu et al. 2017)", ("tokens",), SeqGANTrainer,
    settings=(SequenceSettings, SeqGANSettings),
    fixed={"d_loss": (("bce",), "its rewards use D's probability of real"),
           "g_loss": (("ns",), "its generator is trained by policy gradient")},
    # The authors' code: G's Adam at 0.01 (default betas) with gradients clipped at global norm 5, batch 64;
    # D's Adam at 1e-4.
    defaults={"lr_g": 1e-2, "lr_d": 1e-4, "beta1": 0.9, "clip_grad": 5.0, "batch_size": 64},
    metrics="oracle_nll, oracle_nll_per_token, data_oracle_nll")
