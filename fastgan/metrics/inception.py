"""The FID Inception network: Inception-v3 as in the TensorFlow FID graph (pt_inception-2015-12-05).

This is the architecture of pytorch-fid's FIDInceptionA/C/E variant of torchvision's Inception3: the
average pools that feed the branch_pool convolutions exclude padding, and the last block pools with
max instead of average, which is what the 2015 TensorFlow graph does. Its 2048-d pool features
define FID and KID; its 1008-way logits (the 2015 graph's label set) define the Inception Score.
"""
from __future__ import annotations

import copy
import os
import weakref

import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_ENV = "FASTGAN_INCEPTION_WEIGHTS"
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILE


class InceptionWeightsNotFound(FileNotFoundError):
    pass


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class FoldedConv2d(nn.Module):
    """BasicConv2d in inference: the BatchNorm folded into the convolution's weight and bias, then ReLU in place.

    Folding is exact in real arithmetic, bn(conv(x, w)) = conv(x, w * s) + (beta - mean * s) with
    s = gamma / sqrt(var + eps); s and the products are formed in float64 and rounded once to the weight's
    dtype, so the folded layer differs from the unfolded one by float32 rounding only
    (tests/test_metrics_inception_fast.py).
    """

    def __init__(self, layer: BasicConv2d):
        super().__init__()
        conv, bn = layer.conv, layer.bn
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                              device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight.double() * scale[:, None, None, None])
            self.conv.bias.copy_(bn.bias.double() - bn.running_mean.double() * scale)
        self.requires_grad_(False)

    def forward(self, x):
        return self.conv(x).relu_()


def _avg_pool_no_pad(x):
    # The TF graph averages over valid pixels only at the borders (count_include_pad=False).
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_no_pad(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionC(nn.Module):
    def __init__(self, cin: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(_avg_pool_no_pad(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionE(nn.Module):
    """Mixed_7b pools with an average that excludes padding; Mixed_7c (max_pool=True) with a max."""

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg_pool_no_pad(x)
        return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)


def resolve_weights_path(weights: str | os.PathLike | None) -> str:
    """The weights file to load: the argument, else $FASTGAN_INCEPTION_WEIGHTS; raises when neither exists."""
    path = os.fspath(weights) if weights is not None else os.environ.get(WEIGHTS_ENV)
    if path and os.path.isfile(path):
        return path
    where = f"{path!r} does not exist" if path else f"no path given and ${WEIGHTS_ENV} is not set"
    raise InceptionWeightsNotFound(
        f"FID Inception weights not found: {where}. fastgan never downloads them. Fetch {WEIGHTS_FILE} "
        f"(the pytorch-fid port of the 2015-12-05 TensorFlow FID Inception graph) from {WEIGHTS_URL}, "
        f"then pass InceptionV3(weights='/path/to/{WEIGHTS_FILE}') or set {WEIGHTS_ENV}=/path/to/{WEIGHTS_FILE}."
    )


class InceptionV3(nn.Module):
    """FID Inception-v3: images (N, C, H, W) in [-1, 1] -> pool features (N, 2048), logits (N, 1008).

    Inputs with 1 channel are repeated to 3; any size is resized to 299x299 with bilinear
    interpolation, as pytorch-fid does (the TF graph's own resize differs slightly, so FIDs agree with
    pytorch-fid, not bit-for-bit with the TF code).

    weights: path of pt_inception-2015-12-05-6726825d.pth, else $FASTGAN_INCEPTION_WEIGHTS; loaded with
    torch.load(weights_only=True). load_weights=False keeps the random initialisation (tests only:
    random features measure nothing).
    """

    feature_dim = 2048
    num_classes = 1008

    def __init__(self, weights: str | os.PathLike | None = None, load_weights: bool = True):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, max_pool=False)
        self.Mixed_7c = FIDInceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, self.num_classes)
        if load_weights:
            path = resolve_weights_path(weights)
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ValueError(f"{path}: expected a state_dict; got {type(state).__name__}")
            try:
                missing, unexpected = self.load_state_dict(state, strict=False)
            except RuntimeError as e:  # shape mismatches
                raise ValueError(f"{path}: not a {WEIGHTS_FILE} state_dict: {e}") from None
            # Files saved before BatchNorm counted its batches lack num_batches_tracked; eval ignores it.
            missing = [k for k in missing if not k.endswith("num_batches_tracked")]
            if missing or unexpected:
                raise ValueError(
                    f"{path}: not a {WEIGHTS_FILE} state_dict: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
                )
        self.eval()

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool features and logits; on the CPU in inference (eval mode, no gradient wanted), by the fast network.

        The fast network is a copy with every BatchNorm folded into its convolution (FoldedConv2d) in
        channels_last layout, oneDNN's fastest for these convolutions and for the pools (NCHW max and average
        pools took a third of the time); it is built on first use and rebuilt when a weight or buffer
        changes. Its features equal reference_features_and_logits' to float32 rounding (2e-7 relative on
        bench.fid's default weights; as close to the float64 network as the reference on calibrated ones).
        """
        x = self._three_channels(images)
        net = self._inference_network(x)
        if net is None:
            return self._trunk(_resized(x))
        # Resizing a channels_last image gives a channels_last one (the same values): no 299x299 copy.
        return net._trunk(_resized(x.contiguous(memory_format=torch.channels_last)))

    def reference_features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pytorch-fid's network as it runs there (unfolded BatchNorm, NCHW): the oracle of the fast path."""
        return self._trunk(_resized(self._three_channels(images)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(images)[0]

    def _three_channels(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"InceptionV3: images must be (N, 1 or 3, H, W); got shape {tuple(images.shape)}")
        x = images.to(self.fc.weight.dtype)
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        features = x.mean(dim=(2, 3))
        return features, self.fc(features)

    def _inference_network(self, x: torch.Tensor) -> InceptionV3 | None:
        """The folded channels_last copy when it may stand in for self on x, else None.

        Only where nothing can tell them apart but rounding: eval mode (training BatchNorm uses batch
        statistics), no gradient to track (the copy is detached from self's parameters), float32 on the
        CPU (the layout and the folding were measured there: bench/results/fid-cpu-*.md).
        """
        if self.training or x.device.type != "cpu" or x.dtype != torch.float32:
            return None
        state = [t for t in self.state_dict(keep_vars=True).values()]
        if torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in state)):
            return None
        # data_ptr and _version change with every replacement or in-place update (load_state_dict, .to, copy_).
        key = tuple((t.data_ptr(), t._version) for t in state)
        cached = _FOLDED.get(self)
        if cached is None or cached[0] != key:
            cached = _FOLDED[self] = (key, _folded_copy(self))
        return cached[1]


def _resized(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)


# Each network's folded copy and the state it was folded from (weakly keyed: it goes with the network).
_FOLDED: weakref.WeakKeyDictionary[InceptionV3, tuple[tuple, InceptionV3]] = weakref.WeakKeyDictionary()


def _folded_copy(net: InceptionV3) -> InceptionV3:
    folded = copy.deepcopy(net)
    with torch.no_grad():
        for module in list(folded.modules()):
            for name, child in module.named_children():
                if isinstance(child, BasicConv2d):
                    setattr(module, name, FoldedConv2d(child))
    return folded.requires_grad_(False).to(memory_format=torch.channels_last).eval()
