"""SeqGAN (Yu et al. 2017, "SeqGAN: Sequence generative adversarial nets with policy gradient").

The generator is an LSTM policy over a vocabulary; the discriminator scores whole token sequences.
Because sampling tokens is not differentiable, the generator is trained by REINFORCE: the reward of
each action (token) is the discriminator's probability of "real" averaged over Monte-Carlo rollouts
that complete the prefix (eq. 4), and the loss is -sum_t log G(y_t | y_<t) * Q_t (sec. 3).
The synthetic oracle task of sec. 5 is here too: a randomly initialised LSTM is the true data
distribution, and the generator is scored by the oracle's NLL of its samples.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# Yu et al. 2017, appendix (Table 5): window sizes and numbers of filters of the CNN discriminator.
PAPER_FILTER_SIZES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20)
PAPER_NUM_FILTERS = (100, 200, 200, 200, 200, 100, 100, 100, 100, 100, 160, 160)


def sample_tokens(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of logits (N, V), drawn from softmax(logits), as int64 (N, 1).

    Inverse-CDF sampling: one uniform number per row against the cumulative unnormalised probabilities. On
    the CPU torch.multinomial costs ~20x more at V = 5000 (236 ms against ~10 ms per 1024 draws), and the
    rollouts draw 190 such batches per step.
    """
    logits = logits.float()
    # One (N, V) buffer: shifted by the row maximum (exp stays finite), exponentiated and summed in place.
    cdf = (logits - logits.amax(dim=1, keepdim=True)).exp_().cumsum_(dim=1)
    u = torch.rand(logits.shape[0], 1, generator=generator, device=logits.device, dtype=cdf.dtype) * cdf[:, -1:]
    # searchsorted finds the first bin whose cumulative weight exceeds u; rounding can put u at the very top.
    return torch.searchsorted(cdf, u, right=True).clamp_(max=logits.shape[1] - 1)


def _check_tokens(tokens: torch.Tensor, vocab_size: int, who: str) -> None:
    if tokens.dim() != 2 or tokens.dtype != torch.int64:
        raise ValueError(f"{who}: expected int64 tokens (N, T); got {tokens.dtype} of shape {tuple(tokens.shape)}")
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"{who}: tokens must lie in [0, {vocab_size}); got values in "
                         f"[{tokens.min().item()}, {tokens.max().item()}]")


class SeqGANGenerator(nn.Module):
    """An LSTM language model G(y_t | y_<t): embedding, LSTM, logits over `vocab_size` tokens.

    A start-of-sequence symbol with its own embedding (index vocab_size) is the first input, so every
    vocabulary token can be generated at every position.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 32, hidden: int = 32):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size + 1, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab_size)

    def _inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        start = tokens.new_full((tokens.shape[0], 1), self.vocab_size)
        return torch.cat([start, tokens[:, :-1]], dim=1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (N, T, V) of y_t given y_<t for every t (teacher forcing)."""
        _check_tokens(tokens, self.vocab_size, type(self).__name__)
        h, _ = self.lstm(self.embedding(self._inputs(tokens)))
        return self.out(h)

    def log_prob(self, tokens: torch.Tensor) -> torch.Tensor:
        """log G(y_t | y_<t) per step, (N, T)."""
        logp = F.log_softmax(self(tokens), dim=-1)
        return logp.gather(2, tokens.unsqueeze(2)).squeeze(2)

    @torch.no_grad()
    def sample(self, n: int, length: int, generator: torch.Generator | None = None,
               prefix: torch.Tensor | None = None) -> torch.Tensor:
        """n sequences (n, length) of int64 tokens; when given, prefix (n, t) is kept and continued."""
        device = self.out.weight.device
        tokens = torch.empty(n, 0, dtype=torch.int64, device=device) if prefix is None else prefix
        if tokens.shape[0] != n or tokens.shape[1] > length:
            raise ValueError(f"{type(self).__name__}.sample: prefix must have shape ({n}, t <= {length}); "
                             f"got {tuple(tokens.shape)}")
        start = torch.full((n, 1), self.vocab_size, dtype=torch.int64, device=device)
        _, state = self.lstm(self.embedding(torch.cat([start, tokens], dim=1)))
        out = [tokens]
        h = state[0][-1]
        for _ in range(length - tokens.shape[1]):
            y = sample_tokens(self.out(h), generator)
            out.append(y)
            step, state = self.lstm(self.embedding(y), state)
            h = step[:, -1]
        return torch.cat(out, dim=1)


def mle_loss(generator: SeqGANGenerator, tokens: torch.Tensor) -> torch.Tensor:
    """Pre-training loss: the mean per-token negative log-likelihood under teacher forcing (sec. 4)."""
    return -generator.log_prob(tokens).mean()


class Highway(nn.Module):
    """y = t * relu(W_H x) + (1 - t) * x, t = sigmoid(W_T x) (Srivastava et al. 2015), as in SeqGAN's D."""

    def __init__(self, dim: int):
        super().__init__()
        self.transform = nn.Linear(dim, dim)
        self.gate = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.gate(x))
        return t * F.relu(self.transform(x)) + (1 - t) * x


class CNNDiscriminator(nn.Module):
    """tokens (N, T) -> logits (N,): the paper's CNN classifier (sec. 4, after Kim 2014 / Zhang & LeCun 2015).

    Embedding, one convolution per window size with ReLU and max-over-time pooling, the pooled
    features concatenated, a highway layer, dropout and a linear logit. The defaults are the paper's
    window sizes and filter counts; sequences must be at least as long as the widest window.
    l2_reg: weight of `l2_penalty`, the L2 loss of the logit layer (0.2 in the authors' code); add it to D's loss.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 64, filter_sizes=PAPER_FILTER_SIZES,
                 num_filters=PAPER_NUM_FILTERS, dropout: float = 0.25, l2_reg: float = 0.0):
        super().__init__()
        if len(filter_sizes) != len(num_filters) or not filter_sizes:
            raise ValueError(f"CNNDiscriminator: filter_sizes and num_filters must be non-empty and of equal "
                             f"length; got {len(filter_sizes)} and {len(num_filters)}")
        self.vocab_size, self.max_width = vocab_size, max(filter_sizes)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, f, w) for w, f in zip(filter_sizes, num_filters))
        self.highway = Highway(sum(num_filters))
        self.dropout = nn.Dropout(dropout)  # the paper keeps units with probability 0.75
        self.out = nn.Linear(sum(num_filters), 1)
        self.l2_reg = l2_reg

    def l2_penalty(self) -> torch.Tensor:
        """l2_reg * (|W|^2 + |b|^2) / 2 of the logit layer, as the authors' code adds tf.nn.l2_loss of both."""
        return self.l2_reg * 0.5 * (self.out.weight.square().sum() + self.out.bias.square().sum())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _check_tokens(tokens, self.vocab_size, "CNNDiscriminator")
        if tokens.shape[1] < self.max_width:
            raise ValueError(f"CNNDiscriminator: sequences of length {tokens.shape[1]} are shorter than the "
                             f"widest filter ({self.max_width}); use smaller filter_sizes")
        e = self.embedding(tokens).transpose(1, 2)
        pooled = torch.cat([F.relu(conv(e)).amax(dim=2) for conv in self.convs], dim=1)
        return self.out(self.dropout(self.highway(pooled))).squeeze(1)


class LSTMDiscriminator(nn.Module):
    """tokens (N, T) -> logits (N,) from the last hidden state of an LSTM over the embeddings."""

    def __init__(self, vocab_size: int, embed_dim: int = 64, hidden: int = 64):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _check_tokens(tokens, self.vocab_size, "LSTMDiscriminator")
        _, (h, _) = self.lstm(self.embedding(tokens))
        return self.out(h[-1]).squeeze(1)


@torch.no_grad()
def rollout_rewards(rollout_policy: SeqGANGenerator, discriminator: nn.Module, tokens: torch.Tensor,
                    n_rollouts: int = 16, generator: torch.Generator | None = None) -> torch.Tensor:
    """Action values Q(s = y_<t, a = y_t), (N, T), by Monte-Carlo search (Yu et al. 2017, eq. 4).

    For t < T: the mean of D(Y^n) over n_rollouts completions Y^n of the prefix y_1..y_t sampled from
    rollout_policy (the paper's G_beta; pass the generator itself or a delayed copy). For t = T: D(Y),
    the finished sequence's own score. D's output is the probability of "real", sigmoid(logit).
    Put the discriminator in eval mode first so that dropout does not add noise to the rewards.
    """
    if n_rollouts < 1:
        raise ValueError(f"rollout_rewards: n_rollouts must be at least 1; got {n_rollouts}")
    n, length = tokens.shape
    repeated = tokens.repeat(n_rollouts, 1)
    rewards = []
    for t in range(1, length):
        completed = rollout_policy.sample(n * n_rollouts, length, generator, prefix=repeated[:, :t])
        rewards.append(torch.sigmoid(discriminator(completed)).view(n_rollouts, n).mean(dim=0))
    rewards.append(torch.sigmoid(discriminator(tokens)))
    return torch.stack(rewards, dim=1)


@torch.no_grad()
def update_rollout_policy(rollout_policy: SeqGANGenerator, generator: SeqGANGenerator, delay: float) -> None:
    """The delayed copy G_beta of Yu et al. 2017 (sec. 4): its LSTM and output weights move to
    delay * rollout + (1 - delay) * generator (the authors' code: delay 0.8, after every G update); its
    embedding is the generator's own, as in that code. delay 0 makes it a copy of the generator."""
    if not 0 <= delay < 1:
        raise ValueError(f"update_rollout_policy: delay must be in [0, 1); got {delay}")
    for (name, r), g in zip(rollout_policy.named_parameters(), generator.parameters()):
        r.copy_(g if name.startswith("embedding.") else torch.lerp(g, r, delay))


def policy_gradient_loss(generator: SeqGANGenerator, tokens: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """-mean over sequences of sum_t log G(y_t | y_<t) * Q_t: its gradient is minus the REINFORCE
    estimate of the gradient of the expected reward J(theta) (Yu et al. 2017, sec. 3); rewards get no gradient."""
    if rewards.shape != tokens.shape:
        raise ValueError(f"policy_gradient_loss: rewards must have the tokens' shape {tuple(tokens.shape)}; "
                         f"got {tuple(rewards.shape)}")
    return -(generator.log_prob(tokens) * rewards.detach()).sum(dim=1).mean()


class OracleLSTM(SeqGANGenerator):
    """The synthetic data distribution of Yu et al. 2017, sec. 5: an LSTM whose parameters are drawn
    from N(0, 1) and then frozen. The paper's setting is vocab_size=5000, seq_len=20, 32-dim embedding
    and hidden state; smaller settings run in tests. Like the authors' target LSTM, each gate has one bias
    (torch's second one, bias_hh, is zero), so the gates' biases are N(0, 1) rather than N(0, 2)."""

    def __init__(self, vocab_size: int = 5000, seq_len: int = 20, embed_dim: int = 32, hidden: int = 32,
                 seed: int = 0):
        super().__init__(vocab_size, embed_dim, hidden)
        self.seq_len = seq_len
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
            self.lstm.bias_hh_l0.zero_()
        self.requires_grad_(False)

    def generate(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n data sequences (n, seq_len) drawn from the oracle."""
        return self.sample(n, self.seq_len, generator)


@torch.no_grad()
def oracle_nll(oracle: OracleLSTM, samples: torch.Tensor) -> torch.Tensor:
    """NLL_oracle = -E_Y[sum_t log G_oracle(y_t | y_<t)] over the samples (Yu et al. 2017, sec. 5): a
    per-sequence sum, averaged over sequences."""
    return -oracle.log_prob(samples).sum(dim=1).mean()
