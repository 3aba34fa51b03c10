"""TrainConfig: the settings of a training run, with defaults that train DCGAN on digits on a CPU.

TrainConfig declares the settings every run shares; each model family declares its own beside itself
(fastgan.train.families: Family.settings). `TrainConfig(model=X, ...)` builds X's config class, which holds both
as flat attributes, so config.json, checkpoints and TOML files keep one flat namespace. A setting of another
family is an error naming the families that take it.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

from ..atomic import require_regular_file
from ..data import dataset_kind
from ..losses import D_LOSS_KINDS, G_LOSS_KINDS
from .base import check_device
from .kinds import data_kind
from .families import FAMILIES, MODELS, OPTIONAL_FIELDS, family
from .families.settings import check_settings, setting

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

AMP_MODES = ("bf16", "fp16")
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes 64 bits; seed + 1 seeds the sample grids


@dataclass
class TrainConfig:
    """The settings every run shares. `TrainConfig(model=..., **settings)` makes the config class of that model's
    family: these fields plus the family's own settings (Family.settings), as flat attributes."""

    # Run
    name: str = setting("", "run name; the run directory is OUT_DIR/NAME (default: DATASET-MODEL, numbered if taken)")
    out_dir: str = setting("runs", "parent folder of run directories")
    resume: bool = setting(False, "continue the run OUT_DIR/NAME from its latest checkpoint")
    init_from: str = setting("", "start from another run's checkpoint (its directory or file): its weights, optimizer "
                            "states, step, data position and random streams, trained on under this run's settings "
                            "(e.g. other adversarial settings after one shared pre-training); same model and data "
                            "shape")
    seed: int = setting(0, "seed of weights, noise and data order; a seeded CPU run is bit-reproducible")
    device: str = setting("cpu", "torch device: cpu, cuda, cuda:1, ...")
    threads: int = setting(0, "CPU threads for torch (0: torch's default)", at_least=0)
    # Data
    dataset: str = setting("digits", "built-in dataset (images: digits; points: ring8, grid25; sequences: sines (RCGAN's), "
                           "sines-timegan (TimeGAN's: 24 steps, 5 features in [0, 1]); tokens: oracle), a .fgd file "
                           "from `fastgan prepare`, or a .npy array (N, T, F) of sequences")
    resolution: int = setting(16, "image size of the built-in digits (8, 16, 32 or 64)")
    hflip: bool = setting(False, "random horizontal flips of real images")
    # Models
    model: str = setting("dcgan", "model family: " + "; ".join(f"{f.name}: {f.summary}" for f in FAMILIES.values()),
                         MODELS)
    z_dim: int = setting(100, "latent size", at_least=1)
    conditional: bool = setting(False, "class-conditional G and D on the data's labels (dcgan, resnet: conditional batch "
                                  "norm in G, projection D; mlp: a one-hot label joins G's noise and D's input); "
                                  "sample grids show one class per row")
    num_classes: int = setting(0, "conditional: number of classes (0: from the data, its largest label + 1; the run "
                             "records it)")
    # Optimisation
    steps: int = setting(2000, "generator updates", at_least=1)
    batch_size: int = setting(64, "samples per D and per G update in each process (global batch: batch_size x "
                                  "processes)", at_least=1)
    n_critic: int = setting(1, "D updates per G update", at_least=1)
    lr_g: float = setting(2e-4, "Adam learning rate of G", above=0)
    lr_d: float = setting(2e-4, "Adam learning rate of D (TTUR: set it apart from lr_g)", above=0)
    beta1: float = setting(0.5, "Adam beta1 (both networks)", at_least=0, below=1)
    beta2: float = setting(0.999, "Adam beta2 (both networks)", at_least=0, below=1)
    d_loss: str = setting("bce", "discriminator loss", D_LOSS_KINDS)
    g_loss: str = setting("ns", "generator loss", G_LOSS_KINDS)
    label_smoothing: float = setting(0.0, "one-sided label smoothing of D's real target (bce only)", at_least=0,
                                     below=1)
    clip_grad: float = setting(0.0, "each network's gradients are scaled to a global L2 norm of at most this before its "
                               "optimizer step (0: off; seqgan: 5, as in its authors' code)", at_least=0)
    ema_decay: float = setting(0.999, "EMA decay of G's weights for samples and evaluation (0: no EMA)", at_least=0,
                               below=1)
    amp: str | None = setting(None, "mixed precision: bf16, fp16 (with loss scaling) or none", AMP_MODES)
    compile: bool = setting(False, "torch.compile G and D on CUDA (not yet run on a GPU); on the CPU, where it "
                                   "measured slower, it trains eagerly and says so")
    # Faults and scale-out
    max_nonfinite: int = setting(3, "consecutive updates with non-finite loss or gradients (each skipped) before "
                                    "training stops", at_least=1)
    on_divergence: str = setting("stop", "what a run does when it diverges (docs/reliability.md): stop "
                                         "(exit status 1, its last healthy checkpoint kept) or continue (training "
                                         "goes on; the last healthy checkpoint is kept as checkpoint.healthy.pt)",
                                 ("stop", "continue"))
    sync_bn: bool = setting(False, "distributed runs: batch-norm statistics over the global batch (SyncBatchNorm, "
                                   "CUDA only; not yet run on a GPU)")
    # Output
    log_every: int = setting(50, "steps between metrics.jsonl lines", at_least=1)
    sample_every: int = setting(500, "steps between sample grids", at_least=1)
    ckpt_every: int = setting(500, "steps between checkpoints (one is always written at the end)", at_least=1)
    n_samples: int = setting(64, "images in a sample grid", at_least=1)
    eval_every: int = setting(0, "steps between evaluations of the EMA generator, logged to metrics.jsonl (0: off)",
                              at_least=0)
    eval_n: int = setting(2000, "generated samples per evaluation", at_least=1)
    eval_ts_repeats: int = setting(3, "sequence runs: repeats of TimeGAN's discriminative and predictive scores in each "
                                 "evaluation (--eval-every, fastgan eval) of at least 500 sequences; their GRUs "
                                 "train afresh each time, 20-60 s on a CPU (0: off)", at_least=0)
    progress: bool = setting(True, "show a progress bar")
    tensorboard: bool = setting(False, "also write TensorBoard events to the run's tensorboard/ folder: the logged numbers, "
                                  "evaluations and sample grids (needs: pip install 'fastgan[tensorboard]')")

    def __new__(cls, *args, **kwargs):
        if args:
            raise TypeError("TrainConfig takes its settings as keyword arguments")
        if cls is TrainConfig:
            cls = config_class(kwargs.get("model", "dcgan"))
            _check_names(cls, kwargs)
        config = super().__new__(cls)
        # The fields the caller gave (the CLI and a TOML file pass only those; from_dict of a saved config, all):
        # an attribute, not a field, since it is no setting of the run.
        config._given = set(kwargs)
        return config

    def __post_init__(self):
        if isinstance(self.amp, str) and self.amp.lower() in ("", "none", "fp32", "no"):
            self.amp = None
        for name, value in family(self.model).defaults.items():
            if name not in self._given:  # the family's own default (a paper's settings) unless given
                setattr(self, name, value)
        self.validate()

    def validate(self) -> None:
        def bad(name, why):
            raise ValueError(f"TrainConfig.{name}: {why}; got {getattr(self, name)!r}")

        declared = family(self.model)
        check_settings(self, TrainConfig, bad)
        for group in declared.settings:
            check_settings(self, group, bad)
        if not 0 <= self.seed <= MAX_SEED:
            bad("seed", f"must be between 0 and 2**63 - 1 ({MAX_SEED})")
        try:
            check_device(self.device, available=False)
        except ValueError as e:
            raise ValueError(f"TrainConfig.device: {e}") from None
        if self.label_smoothing and self.d_loss != "bce":
            bad("label_smoothing", "applies to d_loss=bce only")
        if "/" in self.name or self.name in (".", ".."):
            bad("name", "must be a plain folder name")
        self._validate_family(declared, bad)
        for group in declared.settings:
            if "check" in vars(group):  # the group's rules across fields
                group.check(self, bad)

    def _validate_family(self, declared, bad) -> None:
        """The rules of config.model's declaration (fastgan.train.families): its data, options and fixed fields."""
        try:
            kind = dataset_kind(self.dataset)
        except ValueError as e:
            raise ValueError(f"TrainConfig.dataset: {e}") from None
        if kind not in declared.data:
            others = [f.name for f in FAMILIES.values() if kind in f.data]
            bad("dataset", f"holds {kind}, which model {self.model} does not train on (it trains on "
                           f"{' or '.join(declared.data)}); models for {kind}: {', '.join(others)}")
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        for name in OPTIONAL_FIELDS:
            if getattr(self, name) != defaults[name] and name not in declared.options:
                takers = [f.name for f in FAMILIES.values() if name in f.options]
                bad(name, f"is an option of {', '.join(takers)}, not of model {self.model}")
        for name, (values, why) in declared.fixed.items():
            if getattr(self, name) not in values:
                bad(name, f"must be {' or '.join(map(str, values))} for model {self.model}: {why}")
        if self.hflip and not data_kind(self.dataset).flips:
            bad("hflip", f"flips images; {self.dataset} holds {kind}")
        if self.num_classes < 0 or (self.num_classes and not self.conditional):
            bad("num_classes", "must be >= 0, and applies to conditional runs only (--conditional)")

    def to_dict(self) -> dict:
        """The settings as one flat dict: the shared fields, then the family's own."""
        shared = [f.name for f in dataclasses.fields(TrainConfig)]
        return {name: getattr(self, name) for name in (*shared, *family(self.model).setting_names())}

    def differences(self, other: "TrainConfig", ignore=()) -> list[str]:
        """Names of the settings where self and other differ (one holding a setting the other lacks counts),
        but for those in ignore."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [name for name in {**mine, **theirs}
                if name not in ignore and mine.get(name, _MISSING) != theirs.get(name, _MISSING)]

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """A saved config (config.json, a checkpoint). Settings of families other than its model's are dropped:
        configs written before each family declared its own settings list every family's, and those never acted
        on the run. An unknown name is an error."""
        model = values.get("model", "dcgan")
        own = set(config_class(model).__dataclass_fields__) if model in FAMILIES else set()
        return cls(**{k: v for k, v in values.items() if k in own or k not in ALL_SETTINGS})

    def set_fields(self) -> frozenset:
        """The fields the caller gave: constructor arguments, TOML keys, command-line options."""
        return frozenset(self._given)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides) -> "TrainConfig":
        """Settings from a TOML file (flat keys, as the options' names with underscores), overridden by `overrides`."""
        with open(require_regular_file(path, "--config file"), "rb") as f:
            try:
                values = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise ValueError(f"{path}: not valid TOML: {e}") from None
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}: not valid TOML: not UTF-8 text ({e.reason} at byte {e.start})") from None
        values.update(overrides)
        return cls(**values)


_MISSING = object()

#: every family's own setting -> the families that take it
ALL_SETTINGS: dict[str, tuple[str, ...]] = {}
for _family in FAMILIES.values():
    for _name in _family.setting_names():
        ALL_SETTINGS[_name] = (*ALL_SETTINGS.get(_name, ()), _family.name)


@functools.cache
def config_class(model) -> type[TrainConfig]:
    """The config class of --model `model`: TrainConfig's fields and the family's settings."""
    if not isinstance(model, str) or model not in FAMILIES:
        raise ValueError(f"TrainConfig.model: must be one of {', '.join(MODELS)}; got {model!r}")
    declared = FAMILIES[model]
    names = [f.name for group in declared.settings for f in dataclasses.fields(group)]
    clash = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(TrainConfig.__dataclass_fields__)))
    if clash:
        raise TypeError(f"family {model}: settings declared twice: {', '.join(clash)}")
    name = "".join(part.title() for part in model.split("-")) + "Config"
    cls = dataclasses.make_dataclass(name, [], bases=(TrainConfig, *declared.settings))
    cls.__module__, cls.__qualname__ = __name__, name
    globals()[name] = cls  # picklable by name
    return cls


def _check_names(cls: type[TrainConfig], values: dict) -> None:
    """Every name given is a setting of cls's family, or an error naming the families that take it."""
    unknown = sorted(set(values) - set(cls.__dataclass_fields__))
    model = values.get("model", "dcgan")
    for name in unknown:
        if name in ALL_SETTINGS:
            raise ValueError(f"TrainConfig.{name}: is a setting of {', '.join(ALL_SETTINGS[name])}, not of model "
                             f"{model}")
    if unknown:
        raise ValueError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
