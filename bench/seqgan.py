"""Time of one SeqGAN adversarial step on the oracle task (Yu et al. 2017's vocabulary of 5,000 by default).

    python -m bench.seqgan [--vocab 5000] [--rollouts 16] [--discriminators cnn,cnn-paper] [--repeats 3]
                           [--threads 0]

One step is a policy-gradient G update on a batch of 64 with Monte-Carlo rollout rewards (the rollout
policy completes every prefix `--rollouts` times and D scores each completion), then one D update; the
table splits it into the rewards, the G update and the D update, and times the sampler against
torch.multinomial. Writes bench/results/seqgan-cpu-<date>.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

import torch

from bench.system import cpu_model, write_result


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _time_step(kind: str, args) -> str:
    """A table row: the adversarial step, its rewards, its G update and one D update with discriminator `kind`."""
    from fastgan.models.seqgan import rollout_rewards
    from fastgan.train import TrainConfig, make_trainer

    config = TrainConfig(model="seqgan", dataset="oracle", seqgan_vocab=args.vocab, seq_n=256,
                         seqgan_pretrain_steps=0, seqgan_d_pretrain_steps=0, seqgan_rollouts=args.rollouts,
                         seqgan_discriminator=kind, progress=False, out_dir="/tmp")
    trainer = make_trainer(config)
    batches = iter(trainer.real_batches())
    tokens = trainer._fake()
    # The step first: its first call also makes the rollout policy G's copy, as a run does.
    step = _median_time(lambda: trainer.train_step(batches), args.repeats)
    d = trainer.discriminator.eval()
    rewards = _median_time(lambda: rollout_rewards(trainer.rollout, d, tokens, args.rollouts, trainer.rng),
                           args.repeats)
    d.train()
    g_update = _median_time(trainer._policy_gradient_update, args.repeats) - rewards
    d_update = _median_time(lambda: trainer._d_update(batches), args.repeats)
    return f"| {kind} | {step:.2f} | {rewards:.2f} | {g_update:.2f} | {d_update:.3f} |"


def main(argv=None) -> None:
    from fastgan.models.seqgan import sample_tokens

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=5000)
    parser.add_argument("--rollouts", type=int, default=16)
    parser.add_argument("--discriminators", default="cnn,cnn-paper")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rng = torch.Generator().manual_seed(0)
    logits = torch.randn(1024, args.vocab)
    draw_icdf = _median_time(lambda: sample_tokens(logits, rng), 5)
    draw_multinomial = _median_time(lambda: torch.multinomial(torch.softmax(logits, 1), 1, generator=rng), 5)
    lines = [f"Sampling 1024 tokens from {args.vocab} logits: inverse CDF (fastgan) {1e3 * draw_icdf:.1f} ms, "
             f"torch.multinomial {1e3 * draw_multinomial:.1f} ms ({draw_multinomial / draw_icdf:.1f}x).", "",
             "| discriminator | adversarial step (s) | rewards (s) | G update (s) | D update (s) |", "|---|---|---|---|---|"]
    for kind in args.discriminators.split(","):
        line = _time_step(kind, args)
        print(line, flush=True)
        lines.append(line)

    date = datetime.date.today().isoformat()
    command = "python -m bench.seqgan " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join([
        "# SeqGAN adversarial step time on the oracle task", "",
        f"- date: {date}",
        f"- device: {cpu_model()} ({os.cpu_count()} cores), {torch.get_num_threads()} torch threads",
        f"- command: `{command.strip()}`",
        f"- torch {torch.__version__}, python {platform.python_version()}",
        f"- vocab {args.vocab}, sequences of 20, batch 64, {args.rollouts} rollouts; G: 32-dim embedding and LSTM; "
        "cnn: the paper's windows with 32 filters each on a 32-dim embedding; cnn-paper: 64-dim embedding, 1,720 "
        f"filters; median of {args.repeats} after a warm-up. The adversarial step includes one D update "
        "(n_critic 1).", "",
        *lines, "",
    ])
    write_result(f"seqgan-cpu-{date}.md", text)


if __name__ == "__main__":
    main()
