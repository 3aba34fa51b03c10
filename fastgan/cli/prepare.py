"""fastgan prepare: pack images into a .fgd file."""
from __future__ import annotations

HELP = "pack images (folder, zip, npz, MNIST, CIFAR-10, digits) into a .fgd file"
DESCRIPTION = "Pack a dataset into a .fgd file."


def add_arguments(parser) -> None:
    from ..data import IMAGE_DATASETS

    parser.add_argument("src", help="image folder, .zip, .npz/.npy, MNIST idx file, CIFAR-10 folder, "
                                    f"or a built-in dataset ({', '.join(IMAGE_DATASETS)})")
    parser.add_argument("dst", help="the .fgd file to write (an existing .fgd file is replaced; anything else needs "
                                    "--force; never the source itself)")
    parser.add_argument("--resolution", type=int, default=None, help="resize images to R x R")
    parser.add_argument("--center-crop", action="store_true", help="cut the central square before resizing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--force", action="store_true", help="replace dst even if it is not a .fgd file")


def run(args) -> None:
    import numpy as np

    from ..data import PackedDataset, prepare

    path = prepare(args.src, args.dst, resolution=args.resolution, center_crop=args.center_crop,
                   progress=not args.no_progress, force=args.force)
    data = PackedDataset(path)
    labels = "no labels" if data.labels is None else f"{len(np.unique(data.labels))} classes"
    print(f"wrote {path}: {len(data)} images, {'x'.join(map(str, data.shape))} (CxHxW), {labels}")
