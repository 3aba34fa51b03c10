"""discriminative_score and predictive_score: TimeGAN's two scores of generated sequences."""
import numpy as np
import pytest
import torch

from fastgan.metrics import discriminative_score, predictive_score
from fastgan.metrics.timeseries import BatchedGRU

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Small runs of the protocol: TimeGAN's sines at 400 sequences, half TimeGAN's updates (batch 64).
SMALL = dict(repeats=2, batch_size=64)


def timegan_sines(n: int, seed: int, length: int = 24, features: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f, phase = rng.uniform(0, 0.1, (n, 1, features)), rng.uniform(0, 0.1, (n, 1, features))
    return ((np.sin(f * np.arange(length)[None, :, None] + phase) + 1) / 2).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    real, held_out = timegan_sines(400, 0), timegan_sines(400, 1)
    rng = np.random.default_rng(2)
    shuffled = np.stack([x[rng.permutation(len(x))] for x in held_out])  # each sequence's steps in random order
    constant = np.full_like(real, real.mean())
    return {"real": real, "held_out": held_out, "shuffled": shuffled, "constant": constant}


def test_held_out_real_data_is_indistinguishable_and_time_shuffled_or_constant_data_is_not(data):
    scores = {name: discriminative_score(data["real"], data[name], iterations=1000, **SMALL)[0]
              for name in ("held_out", "shuffled", "constant")}
    assert scores["held_out"] < 0.08
    assert scores["shuffled"] > 0.35 and scores["constant"] > 0.35


def test_predictive_score_of_held_out_real_data_is_at_the_floor_and_of_bad_data_above_it(data):
    scores = {name: predictive_score(data["real"], data[name], iterations=1000, **SMALL)[0]
              for name in ("held_out", "shuffled", "constant")}
    # TimeGAN reports 0.093 for real sines (10,000 sequences, 5,000 updates); this smaller run is near it.
    assert 0.08 < scores["held_out"] < 0.105
    assert scores["shuffled"] > scores["held_out"] + 0.025 and scores["constant"] > scores["held_out"] + 0.025


def test_scores_are_seeded_and_return_mean_and_std(data):
    run = dict(repeats=3, iterations=20, batch_size=16)
    first = discriminative_score(data["real"], data["held_out"], seed=5, **run)
    assert first == discriminative_score(torch.from_numpy(data["real"]), data["held_out"], seed=5, **run)
    assert len(first) == 2 and 0 <= first[0] <= 0.5 and first[1] >= 0
    assert predictive_score(data["real"], data["held_out"], seed=5, **run) == \
        predictive_score(data["real"], data["held_out"], seed=5, **run)
    assert predictive_score(data["real"], data["held_out"], seed=5, **run) != \
        predictive_score(data["real"], data["held_out"], seed=6, **run)


def test_one_feature_sequences_are_scored():
    x = timegan_sines(50, 0, length=10, features=1)
    for score in (discriminative_score, predictive_score):
        mean, std = score(x, x[::-1].copy(), repeats=2, iterations=5, batch_size=8)
        assert np.isfinite(mean) and np.isfinite(std)


@pytest.mark.parametrize("score", [discriminative_score, predictive_score])
@pytest.mark.parametrize("real, fake, message", [
    (np.zeros((10, 24)), np.zeros((10, 24, 1)), r"real must be sequences \(N, T, F\); got shape \(10, 24\)"),
    (np.zeros((10, 24, 2)), np.zeros((10, 24, 3)), r"real and fake sequences differ in \(T, F\)"),
    (np.zeros((10, 1, 2)), np.zeros((10, 1, 2)), "need at least 2 time steps"),
    (np.zeros((10, 4, 2)), np.full((10, 4, 2), np.nan), "fake contains NaN or infinite values"),
    (np.zeros((10, 4, 2)), np.zeros((10, 4, 2), dtype=bool), "fake must hold real numbers"),
    (np.zeros((0, 4, 2)), np.zeros((10, 4, 2)), "need at least"),
])
def test_bad_input_is_named(score, real, fake, message):
    with pytest.raises(ValueError, match=message):
        score(real, fake, repeats=1, iterations=1)


@pytest.mark.parametrize("score", [discriminative_score, predictive_score])
def test_bad_settings_are_named(score):
    x = np.zeros((10, 4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="repeats must be a whole number >= 1; got 0"):
        score(x, x, repeats=0)
    with pytest.raises(ValueError, match="iterations must be a whole number >= 1; got 1.5"):
        score(x, x, iterations=1.5)


@pytest.mark.parametrize("style", ["keras", "tf1"])
def test_batched_gru_runs_independent_reset_before_gru_cells(style):
    net = BatchedGRU(3, 4, 2, 1, style, torch.Generator().manual_seed(0))
    x = torch.randn(3, 5, 6, 4, generator=torch.Generator().manual_seed(1))
    states = net.states(x)
    assert states.shape == (3, 5, 6, 2)
    torch.testing.assert_close(net.states(x, every_step=False), states[:, :, -1])
    for r in range(3):
        # TensorFlow 1's GRU: the reset gate scales the state before the recurrent product.
        w, u, b = net.w[r], net.u[r], net.b[r, 0]
        h = torch.zeros(5, 2)
        for t in range(6):
            gates = torch.sigmoid(x[r, :, t] @ w[:, :4] + h @ u[:, :4] + b[:4])
            reset, update = gates[:, :2], gates[:, 2:]
            candidate = torch.tanh(x[r, :, t] @ w[:, 4:] + (reset * h) @ u[:, 4:] + b[4:])
            h = update * h + (1 - update) * candidate
            torch.testing.assert_close(states[r, :, t], h)
    # Each repeat's loss moves its own weights only.
    states[1].sum().backward()
    assert net.w.grad[[0, 2]].abs().max() == 0 and net.w.grad[1].abs().max() > 0
    if style == "tf1":
        torch.testing.assert_close(net.b[:, 0, :4], torch.ones(3, 4))  # tf.nn.rnn_cell.GRUCell's gate bias


def test_sequence_runs_report_both_scores_from_500_sequences(tmp_path):
    from fastgan.train import TrainConfig, make_trainer

    small = dict(model="rvae", dataset="sines", seq_len=4, seq_hidden=4, z_dim=2, batch_size=16, progress=False,
                 out_dir=str(tmp_path), eval_ts_repeats=1)
    trainer = make_trainer(TrainConfig(seq_n=500, **small))
    result = trainer.evaluate(500)
    assert {"discriminative", "discriminative_std", "predictive", "predictive_std"} <= set(result)
    assert 0 <= result["discriminative"] <= 0.5 and result["discriminative_std"] == 0
    # Too few sequences for a held-out accuracy, or the scores switched off: sequence_metrics alone.
    assert "discriminative" not in trainer.evaluate(499)
    assert "predictive" not in make_trainer(TrainConfig(seq_n=500, **{**small, "eval_ts_repeats": 0})).evaluate(500)
