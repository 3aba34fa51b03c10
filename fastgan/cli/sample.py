"""fastgan sample: write samples of a trained run in its kind's format."""
from __future__ import annotations

HELP = "write samples from a checkpoint: images, points, sequence plots or tokens"
DESCRIPTION = ("Images: a PNG grid at --out (toy 2D data: a scatter plot); a conditional run's grid has one row per "
               "class (N // classes samples each), or --class K gives N samples of class K. Sequences (rgan, rvae): a PNG of line "
               "plots at --out and the values, float32 (N, T, F), in the .npy of the same name. Tokens (seqgan): the "
               "token ids as text, one sequence per line, at --out with the suffix .txt.")


def add_arguments(parser) -> None:
    parser.add_argument("--ckpt", required=True, help="run directory or checkpoint file")
    parser.add_argument("--n", type=int, default=64, help="number of samples (default: 64)")
    parser.add_argument("--out", default="samples.png",
                        help="output PNG; sequences also write their values to this name with suffix .npy; seqgan's "
                             "tokens go to this name with suffix .txt; an existing file is replaced only if it is of "
                             "that kind (PNG, .npy, token text), anything else needs --force (default: samples.png)")
    parser.add_argument("--force", action="store_true",
                        help="replace the output files even if they are not of the kind sample writes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent noise (default: 0)")
    parser.add_argument("--class", dest="label", type=int, default=None, metavar="K",
                        help="conditional runs: samples of class K only (0 to the run's classes - 1)")
    parser.add_argument("--no-ema", action="store_true", help="use the raw generator instead of its EMA")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


#: the most samples one command draws: (N, C, H, W) float32 samples of 64 x 64 RGB images take 3 GiB at this N
MAX_SAMPLES = 65536
#: the most pixels of a PNG of samples: PIL's decompression-bomb limit, above which PIL warns on opening the file
MAX_PIXELS = 89_478_485
SIGNATURES = {".png": ("a PNG image", lambda head: head.startswith(b"\x89PNG\r\n\x1a\n")),
              ".npy": ("a .npy array", lambda head: head.startswith(b"\x93NUMPY")),
              ".txt": ("a text file of token ids", lambda head: not head.strip(b"0123456789 \n"))}


def _check_outputs(args, kind) -> None:
    """Before any sample is drawn: --n fits a grid PNG that can be opened, and every output file is new or of the
    kind it holds, and none is the checkpoint read."""
    from pathlib import Path

    from ..atomic import check_replaceable

    per_panel = kind.panel_pixels  # the fewest pixels of a sample in a grid (images are scaled up to 64 px)
    if per_panel and args.n > MAX_PIXELS // per_panel:
        raise ValueError(f"--n must be at most {MAX_PIXELS // per_panel:,} for {kind.name}: a PNG grid of "
                         f"{args.n:,} {kind.name} is over PIL's {MAX_PIXELS:,}-pixel limit")
    outputs = [Path(args.out).with_suffix(suffix) for suffix in kind.suffixes]
    ckpt = Path(args.ckpt)
    inputs = [ckpt / "checkpoint.pt", ckpt / "checkpoint.prev.pt"] if ckpt.is_dir() else [ckpt]
    for path in outputs:
        what, is_kind = SIGNATURES[path.suffix]
        check_replaceable(path, what, is_kind, inputs=inputs, force=args.force)


def run(args) -> None:
    from ..train import load_generator
    from ..train.config import MAX_SEED
    from ..train.families import family
    from ..train.kinds import data_kind

    if args.n < 1:
        raise ValueError(f"--n must be >= 1; got {args.n}")
    if args.n > MAX_SAMPLES:
        raise ValueError(f"--n must be at most {MAX_SAMPLES:,}; got {args.n:,}")
    if not 0 <= args.seed <= MAX_SEED:
        raise ValueError(f"--seed must be between 0 and 2**63 - 1; got {args.seed}")
    generator, config, step = load_generator(args.ckpt, ema=not args.no_ema, device=args.device)
    kind = data_kind(config.dataset)
    _check_outputs(args, kind)
    trainer = family(config.model).trainer
    if config.conditional:
        import torch

        from ..train.families.gan import grid_labels

        if args.label is None:
            labels, nrow = grid_labels(args.n, config.num_classes), max(1, args.n // config.num_classes)
            what = f"{len(labels)} samples, {nrow} of each of its {config.num_classes} classes (a row per class),"
        elif 0 <= args.label < config.num_classes:
            labels, nrow, what = torch.full((args.n,), args.label), None, f"{args.n} samples of class {args.label}"
        else:
            raise ValueError(f"--class {args.label}: the run has classes 0 to {config.num_classes - 1}")
        samples = trainer.draw_samples(generator, config, len(labels), args.seed, args.device, labels)
        written = kind.write(samples, args.out, nrow=nrow)
        print(f"wrote {what} of step {step} to {' and '.join(map(str, written))}")
        return
    if args.label is not None:
        raise ValueError(f"--class {args.label}: {args.ckpt} is not a conditional run (trained without --conditional)")
    samples = trainer.draw_samples(generator, config, args.n, args.seed, args.device)
    centers = kind.centers(config.dataset) if kind.centers else None
    written = kind.write(samples, args.out, centers, values=True)
    print(f"wrote {args.n} samples of step {step} to {' and '.join(map(str, written))}")
