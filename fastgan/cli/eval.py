"""fastgan eval: score a trained run and append the scores to its metrics.jsonl."""
from __future__ import annotations

import os

HELP = ("evaluate a checkpoint: FID, KID, IS, precision/recall, mode coverage, generated-class accuracy; sequence "
        "and token metrics")
DESCRIPTION = ("Score a run's EMA generator with its family's default metrics, print them, and append "
               '{"step": ..., "eval": {...}} to the run\'s metrics.jsonl. A conditional run (--conditional) is scored '
               "on balanced labels; on the digits, acc adds class_accuracy: the fraction of samples the digits "
               "classifier assigns the class they were generated for (class_accuracy_min: the worst class's).")


def add_arguments(parser) -> None:
    from ..metrics.evaluate import EXTRACTORS, METRICS
    from ..train.families import FAMILIES

    defaults = "; ".join(f"{f.name}: {f.metrics}" for f in FAMILIES.values())
    parser.add_argument("--ckpt", required=True, help="run directory or checkpoint file")
    parser.add_argument("--metrics", default=None,
                        help=f"comma-separated, from {','.join(METRICS)}, for image and point runs (default, by "
                             f"model: {defaults})")
    parser.add_argument("--n", type=int, default=10000, help="number of generated samples (default: 10000)")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extractor", default="auto", choices=EXTRACTORS,
                        help="feature network for images: the digits classifier (digits only) or the FID Inception "
                             "network (weights from $FASTGAN_INCEPTION_WEIGHTS); auto picks by dataset")
    parser.add_argument("--dataset", default=None,
                        help="real data to compare with: a built-in name or a .fgd file (default: the run's own)")


def run(args) -> dict[str, float]:
    """Evaluate, print a table, and append {"step": ..., "eval": {...}} to the run's metrics.jsonl.

    The run folder is owned (locked) for the whole evaluation, so a training run cannot write it meanwhile (nor
    this one start while it trains), and a read-only run or a symlinked log is refused before anything is computed.
    """
    from ..train.evaluate import run_directory
    from ..train.run_folder import RunFolder

    if not os.path.exists(args.ckpt):  # before anything is locked in the folder it names
        raise FileNotFoundError(f"{args.ckpt}: no such run directory or checkpoint file")
    folder = RunFolder(run_directory(args.ckpt))
    folder.lock("fastgan eval")
    try:
        folder.check_log_writable()
        return _evaluate(args, folder)
    finally:
        folder.release()


def _evaluate(args, folder) -> dict[str, float]:
    from ..train.evaluate import evaluate_checkpoint

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    result = evaluate_checkpoint(args.ckpt, metrics, n=args.n, batch_size=args.batch_size, device=args.device,
                                 seed=args.seed, extractor=args.extractor, dataset=args.dataset)
    step = result.pop("step")
    # A sequence run scores at most as many samples as its training set holds, and says how many.
    n = result.pop("n", args.n)
    width = max(len(k) for k in result)
    print(f"{'step':<{width}}  {step}")
    if n != args.n:
        print(f"{'n':<{width}}  {n} (the run's training set has {n} sequences)")
    for key, value in result.items():
        print(f"{key:<{width}}  {value:.6g}")
    # An append, not a rewrite: the log is the run's history (a crash can tear only this line).
    folder.log({"step": step, "eval": {"n": n, **result}})
    return {"step": step, **result}
