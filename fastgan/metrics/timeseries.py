"""The two scores of the time-series generation literature (TimeGAN, TimeVAE, Diffusion-TS, ...), as TimeGAN's
code computes them (Yoon et al. 2019; jsyoon0823/TimeGAN, metrics/discriminative_metrics.py and
metrics/predictive_metrics.py).

discriminative_score: a post-hoc classifier, a one-layer GRU of hidden size dim // 2 whose last state feeds a
linear logit, is trained for 2,000 Adam updates (batches of 128 real and 128 generated sequences) on 80% of the
real and 80% of the generated sequences; the score is |accuracy - 0.5| on the other 20% of each. 0 means the
classifier cannot tell them apart; 0.5 means it always can.

predictive_score ("train on synthetic, test on real"): a one-layer GRU of hidden size dim // 2 with a linear
layer and a sigmoid on each step reads features 0..dim-2 at steps 0..T-2 and predicts the last feature at
steps 1..T-1; it is trained for 5,000 Adam updates (batches of 128, mean absolute error) on the generated
sequences alone, and the score is its mean absolute error on all the real sequences. Held-out real data
trained on gives the floor (about 0.093 on TimeGAN's sines).

Both are repeated (TimeGAN: 10 times) with fresh networks, splits and batches, and reported as mean and
standard deviation over the repeats. The repeats train together: each GRU weight carries a leading repeat
axis and each step is one batched matrix product, so R repeats cost little more than one. As in TimeGAN's
code (TensorFlow 1.15): the classifier is Keras's GRUCell (reset gate before the recurrent product, glorot
input kernel, orthogonal recurrent kernel, zero biases), the predictor tf.nn.rnn_cell.GRUCell (glorot on
the joint input-recurrent kernel, gate biases 1), both trained by Adam at TensorFlow's defaults (lr 1e-3,
eps 1e-8), and dense layers are glorot-initialised with zero bias.

Two extensions, for data TimeGAN did not meet: the hidden size is at least 1 (dim // 2 is 0 for one
feature), and with one feature the predictor reads that feature at steps 0..T-2 (there are no other
features to read) to predict it at steps 1..T-1.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from torch import nn

#: TimeGAN's settings for each score: Adam updates, batch size, share of each set the classifier trains on
DISCRIMINATIVE = {"iterations": 2000, "batch_size": 128, "train_share": 0.8}
PREDICTIVE = {"iterations": 5000, "batch_size": 128}
LEARNING_RATE, ADAM_EPS = 1e-3, 1e-8  # tf.compat.v1.train.AdamOptimizer()'s defaults


def _glorot(generator: torch.Generator, repeats: int, fan_in: int, fan_out: int) -> torch.Tensor:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return (torch.rand(repeats, fan_in, fan_out, generator=generator) * 2 - 1) * bound


def _orthogonal(generator: torch.Generator, repeats: int, rows: int, cols: int) -> torch.Tensor:
    """Keras's orthogonal initializer: Q of the QR of a normal matrix, sign-corrected, of shape (rows, cols)."""
    big, small = max(rows, cols), min(rows, cols)
    a = torch.randn(repeats, big, small, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]
    return (q if rows >= cols else q.transpose(1, 2)).float()


class BatchedGRU(nn.Module):
    """`repeats` independent one-layer GRUs with a linear head, run as one: input (R, N, T, inputs).

    The reset gate acts on the state before the recurrent product (TensorFlow 1's GRU cells):
    r, u = sigmoid(x W_g + h U_g + b_g), c = tanh(x W_c + (r * h) U_c + b_c), h' = u * h + (1 - u) * c.
    style "keras": orthogonal U, zero biases (tf.keras.layers.GRUCell); "tf1": glorot on the stacked
    [W; U] of each of the gate and candidate kernels, gate biases 1 (tf.nn.rnn_cell.GRUCell).
    """

    def __init__(self, repeats: int, inputs: int, hidden: int, outputs: int, style: str, generator: torch.Generator):
        super().__init__()
        self.hidden = hidden
        if style == "keras":
            w = _glorot(generator, repeats, inputs, 3 * hidden)
            u = _orthogonal(generator, repeats, hidden, 3 * hidden)
            b = torch.zeros(repeats, 1, 3 * hidden)
        else:
            gates = _glorot(generator, repeats, inputs + hidden, 2 * hidden)
            candidate = _glorot(generator, repeats, inputs + hidden, hidden)
            joint = torch.cat([gates, candidate], dim=2)
            w, u = joint[:, :inputs], joint[:, inputs:]
            b = torch.cat([torch.ones(repeats, 1, 2 * hidden), torch.zeros(repeats, 1, hidden)], dim=2)
        self.w, self.u, self.b = nn.Parameter(w), nn.Parameter(u.contiguous()), nn.Parameter(b)
        self.head_w = nn.Parameter(_glorot(generator, repeats, hidden, outputs))
        self.head_b = nn.Parameter(torch.zeros(repeats, 1, outputs))

    def states(self, x: torch.Tensor, every_step: bool = True) -> torch.Tensor:
        """The hidden state after every step, (R, N, T, hidden), or after the last one, (R, N, hidden)."""
        repeats, n, steps, inputs = x.shape
        hid = self.hidden
        # The input's part of every gate at every step at once: one product instead of T.
        xw = torch.baddbmm(self.b, x.reshape(repeats, n * steps, inputs), self.w).view(repeats, n, steps, 3 * hid)
        x_gates, x_cand = xw[..., :2 * hid].unbind(2), xw[..., 2 * hid:].unbind(2)
        u_gates, u_cand = self.u[:, :, :2 * hid], self.u[:, :, 2 * hid:]
        h = x.new_zeros(repeats, n, hid)
        out = []
        # Tiny products, so the time goes to per-operation overhead: as few operations per step as possible.
        for t in range(steps):
            r, u = torch.sigmoid(torch.baddbmm(x_gates[t], h, u_gates)).chunk(2, dim=2)
            h = torch.lerp(torch.tanh(torch.baddbmm(x_cand[t], r * h, u_cand)), h, u)  # u * h + (1 - u) * c
            if every_step:
                out.append(h)
        return torch.stack(out, dim=2) if every_step else h

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """The linear head on states (R, N, hidden) or (R, N, T, hidden)."""
        shape = h.shape
        y = torch.baddbmm(self.head_b, h.reshape(shape[0], -1, shape[-1]), self.head_w)
        return y.view(*shape[:-1], -1)


def _as_sequences(x, name: str, who: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.dim() != 3:
        raise ValueError(f"{who}: {name} must be sequences (N, T, F); got shape {tuple(t.shape)}")
    if t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"{who}: {name} must hold real numbers; got {t.dtype}")
    t = t.detach().to("cpu", torch.float32).contiguous()
    if not torch.isfinite(t).all():
        raise ValueError(f"{who}: {name} contains NaN or infinite values")
    return t


def _check_pair(real, fake, who: str, min_real: int, min_fake: int) -> tuple[torch.Tensor, torch.Tensor]:
    real, fake = _as_sequences(real, "real", who), _as_sequences(fake, "fake", who)
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"{who}: real and fake sequences differ in (T, F): real {tuple(real.shape)}, "
                         f"fake {tuple(fake.shape)}")
    if real.shape[1] < 2 or real.shape[2] < 1:
        raise ValueError(f"{who}: need at least 2 time steps and 1 feature; got (T, F) = {tuple(real.shape[1:])}")
    if len(real) < min_real or len(fake) < min_fake:
        raise ValueError(f"{who}: need at least {min_real} real and {min_fake} fake sequences; got {len(real)} "
                         f"and {len(fake)}")
    return real, fake


def _check_settings(who: str, repeats: int, iterations: int, batch_size: int) -> None:
    for name, value in (("repeats", repeats), ("iterations", iterations), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{who}: {name} must be a whole number >= 1; got {value!r}")


def _batches(rng: np.random.Generator, sizes, iterations: int, batch_size: int) -> torch.Tensor:
    """(iterations, R, batch) indices: each batch a fresh draw without replacement from its repeat's set
    (TimeGAN's batch_generator: the first batch_size of a random permutation, the whole set if smaller)."""
    out = np.empty((iterations, len(sizes), min(batch_size, min(sizes))), dtype=np.int64)
    for r, size in enumerate(sizes):
        for i in range(iterations):
            out[i, r] = rng.choice(size, out.shape[2], replace=False)
    return torch.from_numpy(out)


def _gather(sets: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows idx (R, B) of sets (R, N, ...), per repeat."""
    return sets[torch.arange(len(sets))[:, None], idx]


@contextlib.contextmanager
def _one_thread():
    # A few hundred tiny products per update: extra threads cost more in synchronisation than they save.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


def discriminative_score(real, fake, repeats: int = 10, seed: int = 0, iterations: int = 2000,
                         batch_size: int = 128) -> tuple[float, float]:
    """TimeGAN's discriminative score of fake against real sequences, both (N, T, F): mean and standard deviation
    (over `repeats`) of |accuracy - 0.5| of a post-hoc GRU classifier on held-out sequences. Lower is better.

    Each repeat splits real and fake 80/20 at random and trains its own classifier; seeded by `seed`.
    """
    who = "discriminative_score"
    _check_settings(who, repeats, iterations, batch_size)
    real, fake = _check_pair(real, fake, who, 2, 2)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    share = DISCRIMINATIVE["train_share"]
    n_real, n_fake = int(len(real) * share), int(len(fake) * share)
    if min(n_real, n_fake, len(real) - n_real, len(fake) - n_fake) < 1:
        raise ValueError(f"{who}: need at least 2 real and 2 fake sequences for an 80/20 split; got {len(real)} "
                         f"and {len(fake)}")
    order_real = torch.from_numpy(np.stack([rng.permutation(len(real)) for _ in range(repeats)]))
    order_fake = torch.from_numpy(np.stack([rng.permutation(len(fake)) for _ in range(repeats)]))
    train_real, test_real = real[order_real[:, :n_real]], real[order_real[:, n_real:]]
    train_fake, test_fake = fake[order_fake[:, :n_fake]], fake[order_fake[:, n_fake:]]
    idx_real = _batches(rng, [n_real] * repeats, iterations, batch_size)
    idx_fake = _batches(rng, [n_fake] * repeats, iterations, batch_size)
    features = real.shape[2]
    with _one_thread(), torch.enable_grad():
        net = BatchedGRU(repeats, features, max(1, features // 2), 1, "keras", generator)
        opt = torch.optim.Adam(net.parameters(), LEARNING_RATE, eps=ADAM_EPS)
        for i in range(iterations):
            xr, xf = _gather(train_real, idx_real[i]), _gather(train_fake, idx_fake[i])
            logits = net.head(net.states(torch.cat([xr, xf], dim=1), every_step=False)).squeeze(2)
            target = torch.zeros_like(logits)
            target[:, :xr.shape[1]] = 1
            bce = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
            # mean over real plus mean over fake (TimeGAN's d_loss_real + d_loss_fake), summed over repeats,
            # whose weights are disjoint: each repeat's gradient is its own
            loss = (bce[:, :xr.shape[1]].mean(1) + bce[:, xr.shape[1]:].mean(1)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            logits = net.head(net.states(torch.cat([test_real, test_fake], dim=1), every_step=False)).squeeze(2)
    correct = torch.cat([logits[:, :test_real.shape[1]] > 0, logits[:, test_real.shape[1]:] <= 0], dim=1)
    accuracy = correct.double().mean(1).numpy()
    return _mean_std(np.abs(accuracy - 0.5))


def predictive_score(real, fake, repeats: int = 10, seed: int = 0, iterations: int = 5000,
                     batch_size: int = 128) -> tuple[float, float]:
    """TimeGAN's predictive score ("train on synthetic, test on real") of fake against real sequences, both
    (N, T, F): mean and standard deviation (over `repeats`) of the mean absolute error, on all of real, of a
    GRU trained on fake to predict the last feature one step ahead. Lower is better; seeded by `seed`.
    """
    who = "predictive_score"
    _check_settings(who, repeats, iterations, batch_size)
    real, fake = _check_pair(real, fake, who, 1, 1)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    features = real.shape[2]
    inputs = max(1, features - 1)

    def split(x):  # the predictor's input (steps 0..T-2) and target (the last feature at steps 1..T-1)
        return x[:, :-1, :inputs], x[:, 1:, features - 1:]

    fake_x, fake_y = split(fake)
    idx = _batches(rng, [len(fake)] * repeats, iterations, batch_size)
    with _one_thread(), torch.enable_grad():
        net = BatchedGRU(repeats, inputs, max(1, features // 2), 1, "tf1", generator)
        opt = torch.optim.Adam(net.parameters(), LEARNING_RATE, eps=ADAM_EPS)
        for i in range(iterations):
            pred = torch.sigmoid(net.head(net.states(fake_x[idx[i]])))
            loss = (pred - fake_y[idx[i]]).abs().mean(dim=(1, 2, 3)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        real_x, real_y = split(real)
        with torch.no_grad():
            pred = torch.sigmoid(net.head(net.states(real_x.expand(repeats, -1, -1, -1))))
    return _mean_std((pred - real_y).abs().double().mean(dim=(1, 2, 3)).numpy())
