"""SeqGAN: generator and discriminators, MLE and policy-gradient losses, Monte-Carlo rollouts, the oracle task."""
import pytest
import torch
from torch.nn import functional as F

from fastgan.models.seqgan import (
    PAPER_FILTER_SIZES,
    CNNDiscriminator,
    LSTMDiscriminator,
    OracleLSTM,
    SeqGANGenerator,
    mle_loss,
    oracle_nll,
    policy_gradient_loss,
    rollout_rewards,
    sample_tokens,
    update_rollout_policy,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _small_cnn(vocab=7):
    return CNNDiscriminator(vocab, embed_dim=8, filter_sizes=(1, 2, 3), num_filters=(4, 5, 6), dropout=0.25)


def test_generator_shapes_sampling_and_log_prob():
    torch.manual_seed(0)
    g = SeqGANGenerator(vocab_size=7, embed_dim=8, hidden=8)
    tokens = g.sample(5, 6, torch.Generator().manual_seed(0))
    assert tokens.shape == (5, 6) and tokens.dtype == torch.int64
    assert tokens.min() >= 0 and tokens.max() < 7
    assert g(tokens).shape == (5, 6, 7)
    logp = g.log_prob(tokens)
    assert logp.shape == (5, 6) and (logp <= 0).all()
    prefix = tokens[:, :2]
    continued = g.sample(5, 6, torch.Generator().manual_seed(1), prefix=prefix)
    torch.testing.assert_close(continued[:, :2], prefix)


def test_sampling_follows_the_generator_distribution():
    # With one step the model is a categorical over the vocabulary: sample frequencies match softmax.
    torch.manual_seed(0)
    g = SeqGANGenerator(vocab_size=3, embed_dim=4, hidden=4)
    with torch.no_grad():
        g.out.bias.copy_(torch.tensor([2.0, 0.0, -1.0]))
    tokens = g.sample(20_000, 1, torch.Generator().manual_seed(0))
    probs = g.log_prob(torch.arange(3)[:, None]).exp().squeeze(1)
    freq = torch.bincount(tokens[:, 0], minlength=3).float() / 20_000
    torch.testing.assert_close(freq, probs.detach(), atol=0.015, rtol=0)


def test_log_prob_uses_teacher_forcing_and_matches_step_by_step_scoring():
    torch.manual_seed(0)
    g = SeqGANGenerator(vocab_size=5, embed_dim=4, hidden=6)
    tokens = torch.tensor([[1, 4, 0, 2]])
    expected = []
    for t in range(4):
        logits = g(torch.cat([tokens[:, :t], torch.zeros(1, 1, dtype=torch.int64)], dim=1))[:, t]
        expected.append(F.log_softmax(logits, dim=-1)[0, tokens[0, t]])
    torch.testing.assert_close(g.log_prob(tokens)[0], torch.stack(expected))


def test_mle_pretraining_step_lowers_the_nll():
    torch.manual_seed(0)
    g = SeqGANGenerator(vocab_size=6, embed_dim=8, hidden=8)
    data = torch.tensor([[0, 1, 2, 3, 4, 5]] * 8)
    opt = torch.optim.Adam(g.parameters(), 1e-2)
    first = mle_loss(g, data)
    for _ in range(20):
        loss = mle_loss(g, data)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert mle_loss(g, data) < first - 0.5


@pytest.mark.parametrize("make", [_small_cnn, lambda: LSTMDiscriminator(7, embed_dim=8, hidden=8)])
def test_discriminators_score_sequences_and_take_one_step(make):
    torch.manual_seed(0)
    d = make()
    real, fake = torch.randint(7, (4, 6)), torch.randint(7, (4, 6))
    logits = d(real)
    assert logits.shape == (4,)
    loss = F.binary_cross_entropy_with_logits(d(real), torch.ones(4)) + \
        F.binary_cross_entropy_with_logits(d(fake), torch.zeros(4))
    opt = torch.optim.Adam(d.parameters(), 1e-3)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert loss.isfinite()


def test_cnn_discriminator_defaults_are_the_papers_and_inputs_are_checked():
    d = CNNDiscriminator(vocab_size=10)
    assert [c.kernel_size[0] for c in d.convs] == list(PAPER_FILTER_SIZES)
    assert d.highway.gate.in_features == 1720
    assert d(torch.randint(10, (2, 20))).shape == (2,)
    with pytest.raises(ValueError, match="shorter than the widest filter"):
        d(torch.randint(10, (2, 19)))
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, 10\)"):
        d(torch.full((2, 20), 10))
    with pytest.raises(ValueError, match="int64 tokens"):
        d(torch.zeros(2, 20))


def test_rollout_rewards_have_the_batch_shape_and_end_with_d_of_the_sequence():
    torch.manual_seed(0)
    g = SeqGANGenerator(vocab_size=7, embed_dim=8, hidden=8)
    d = _small_cnn().eval()
    tokens = g.sample(3, 5, torch.Generator().manual_seed(0))
    q = rollout_rewards(g, d, tokens, n_rollouts=4, generator=torch.Generator().manual_seed(1))
    assert q.shape == (3, 5) and ((q > 0) & (q < 1)).all()
    torch.testing.assert_close(q[:, -1], torch.sigmoid(d(tokens)))


class _FirstTokenIsOne(torch.nn.Module):
    """A discriminator that only looks at y_1: logit +inf-ish when y_1 == 1."""

    def forward(self, tokens):
        return torch.where(tokens[:, 0] == 1, 30.0, -30.0)


def test_rollouts_keep_the_prefix():
    # Every prefix contains y_1, so every Q_t equals D(Y) exactly when the rollouts keep the prefix.
    torch.manual_seed(0)
    g = SeqGANGenerator(vocab_size=4, embed_dim=4, hidden=4)
    tokens = torch.tensor([[1, 0, 2, 3], [2, 1, 1, 0]])
    q = rollout_rewards(g, _FirstTokenIsOne(), tokens, n_rollouts=3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(q, torch.sigmoid(_FirstTokenIsOne()(tokens))[:, None].expand(2, 4))


def _two_token_policy():
    torch.manual_seed(0)
    g = SeqGANGenerator(vocab_size=2, embed_dim=3, hidden=3)
    with torch.no_grad():
        g.out.bias.copy_(torch.tensor([0.4, -0.3]))
    return g


def test_policy_gradient_is_exactly_the_expected_reward_gradient_when_averaged_over_actions():
    # One step, two tokens, reward r for token 1: J = r * p_1, dJ/dlogit_1 = r p_1 p_0 = -dJ/dlogit_0.
    r = 2.0
    g = _two_token_policy()
    actions = torch.tensor([[0], [1]])
    p = g.log_prob(actions).exp().detach()  # (2, 1): p_0, p_1
    rewards = torch.tensor([[0.0], [r]])
    # Weighting each action by its probability turns the batch mean into the exact expectation.
    loss = policy_gradient_loss(g, actions, rewards * p * 2)
    (grad,) = torch.autograd.grad(loss, g.out.bias)
    p0, p1 = p[0, 0].item(), p[1, 0].item()
    torch.testing.assert_close(grad, torch.tensor([r * p1 * p0, -r * p1 * p0]))
    expected_reward = r * g.log_prob(torch.tensor([[1]])).exp().sum()
    (analytic,) = torch.autograd.grad(expected_reward, g.out.bias)
    torch.testing.assert_close(grad, -analytic)


def test_policy_gradient_estimate_has_the_right_sign_and_mean_from_samples():
    r = 2.0
    g = _two_token_policy()
    tokens = g.sample(40_000, 1, torch.Generator().manual_seed(0))
    rewards = r * (tokens == 1).float()
    (grad,) = torch.autograd.grad(policy_gradient_loss(g, tokens, rewards), g.out.bias)
    assert grad[1] < 0 < grad[0]  # a descent step raises the rewarded token's logit
    expected_reward = r * g.log_prob(torch.tensor([[1]])).exp().sum()
    (analytic,) = torch.autograd.grad(expected_reward, g.out.bias)
    torch.testing.assert_close(grad, -analytic, atol=0.02, rtol=0)
    with pytest.raises(ValueError, match="rewards must have the tokens' shape"):
        policy_gradient_loss(g, tokens, rewards[:10])


def test_adversarial_step_on_rollout_rewards_is_finite():
    torch.manual_seed(0)
    g = SeqGANGenerator(vocab_size=7, embed_dim=8, hidden=8)
    d = _small_cnn().eval()
    tokens = g.sample(4, 5, torch.Generator().manual_seed(0))
    q = rollout_rewards(g, d, tokens, n_rollouts=2, generator=torch.Generator().manual_seed(1))
    loss = policy_gradient_loss(g, tokens, q)
    opt = torch.optim.Adam(g.parameters(), 1e-2)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert loss.isfinite() and all(p.grad is not None for p in g.parameters())


def test_oracle_is_frozen_standard_normal_and_scores_its_samples_above_uniform_tokens():
    oracle = OracleLSTM(vocab_size=50, seq_len=12, embed_dim=16, hidden=16, seed=0)
    weights = torch.cat([p.flatten() for p in oracle.parameters()])
    assert not any(p.requires_grad for p in oracle.parameters())
    assert abs(weights.mean().item()) < 0.05 and abs(weights.std().item() - 1) < 0.05
    own = oracle.generate(256, torch.Generator().manual_seed(0))
    assert own.shape == (256, 12)
    uniform = torch.randint(50, (256, 12), generator=torch.Generator().manual_seed(1))
    nll_own, nll_uniform = oracle_nll(oracle, own), oracle_nll(oracle, uniform)
    assert nll_own.dim() == 0 and nll_own < nll_uniform


def test_oracle_defaults_are_the_papers():
    oracle = OracleLSTM()
    assert oracle.vocab_size == 5000 and oracle.seq_len == 20
    assert oracle.embedding.embedding_dim == 32 and oracle.lstm.hidden_size == 32


def test_oracle_has_one_bias_per_gate_as_the_authors_target_lstm():
    oracle = OracleLSTM(vocab_size=20, seq_len=5, embed_dim=8, hidden=8, seed=3)
    assert torch.count_nonzero(oracle.lstm.bias_hh_l0) == 0
    assert oracle.lstm.bias_ih_l0.std() > 0.5
    same = OracleLSTM(vocab_size=20, seq_len=5, embed_dim=8, hidden=8, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(oracle.parameters(), same.parameters()))


def test_inverse_cdf_sampling_follows_softmax_of_the_logits():
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0, -30.0], [50.0, 0.0, 0.0, 0.0, 0.0]])
    draws = sample_tokens(logits.repeat_interleave(40000, dim=0), torch.Generator().manual_seed(0)).view(2, -1)
    assert draws.dtype == torch.int64
    for row, tokens in zip(logits, draws):
        freq = torch.bincount(tokens, minlength=5).double() / tokens.numel()
        torch.testing.assert_close(freq, F.softmax(row.double(), 0), atol=0.008, rtol=0)
    assert (draws[1] == 0).all()  # the max shift keeps a 50-logit finite


def test_inverse_cdf_sampling_is_reproducible_and_stays_in_range():
    logits = torch.randn(64, 1000, generator=torch.Generator().manual_seed(1)) * 5
    a = sample_tokens(logits, torch.Generator().manual_seed(2))
    assert torch.equal(a, sample_tokens(logits, torch.Generator().manual_seed(2)))
    assert a.shape == (64, 1) and 0 <= a.min() and a.max() < 1000


def test_rollout_policy_trails_the_generator_at_the_delay_and_shares_its_embedding():
    g, rollout = SeqGANGenerator(9, 4, 5), SeqGANGenerator(9, 4, 5)
    before = {n: p.clone() for n, p in rollout.named_parameters()}
    update_rollout_policy(rollout, g, 0.8)
    for (name, r), p in zip(rollout.named_parameters(), g.parameters()):
        want = p if name.startswith("embedding.") else 0.8 * before[name] + 0.2 * p
        torch.testing.assert_close(r, want, rtol=1e-6, atol=1e-7)
    update_rollout_policy(rollout, g, 0.0)
    assert all(torch.equal(r, p) for r, p in zip(rollout.parameters(), g.parameters()))
    with pytest.raises(ValueError, match=r"delay must be in \[0, 1\)"):
        update_rollout_policy(rollout, g, 1.0)


def test_cnn_l2_penalty_is_the_authors_l2_loss_of_the_logit_layer():
    d = CNNDiscriminator(7, embed_dim=8, filter_sizes=(1, 2), num_filters=(3, 4), l2_reg=0.2)
    want = 0.2 * 0.5 * (d.out.weight.square().sum() + d.out.bias.square().sum())
    torch.testing.assert_close(d.l2_penalty(), want)
    assert _small_cnn().l2_penalty() == 0
