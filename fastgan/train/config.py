"""TrainConfig: every knob of a training run, with defaults that train DCGAN on digits on a CPU."""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..data import dataset_kind
from ..losses import D_LOSS_KINDS, G_LOSS_KINDS
from ..models.recurrent import NOISE_KINDS, OUTPUT_ACTS
from ..models.vae import LIKELIHOODS
from ..models.vaegan import D_BATCHES, DIS_LAYERS, EQUILIBRIUM
from ..nn import DIFF_AUGMENT_POLICIES
from .base import check_device
from .families import FAMILIES, MODELS, OPTIONAL_FIELDS, family

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

AMP_MODES = ("bf16", "fp16")
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes 64 bits; seed + 1 seeds the sample grids
SEQGAN_DISCRIMINATORS = ("lstm", "cnn", "cnn-paper")


def _f(default, help: str, choices=None):
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    # Run
    name: str = _f("", "run name; the run directory is OUT_DIR/NAME (default: DATASET-MODEL, numbered if taken)")
    out_dir: str = _f("runs", "parent folder of run directories")
    resume: bool = _f(False, "continue the run OUT_DIR/NAME from its latest checkpoint")
    init_from: str = _f("", "start from another run's checkpoint (its directory or file): its weights, optimizer "
                            "states, step, data position and random streams, trained on under this run's settings "
                            "(e.g. other adversarial settings after one shared pre-training); same model and data "
                            "shape")
    seed: int = _f(0, "seed of weights, noise and data order; a seeded CPU run is bit-reproducible")
    device: str = _f("cpu", "torch device: cpu, cuda, cuda:1, ...")
    threads: int = _f(0, "CPU threads for torch (0: torch's default)")
    # Data
    dataset: str = _f("digits", "built-in dataset (images: digits; points: ring8, grid25; sequences: sines (RCGAN's), "
                           "sines-timegan (TimeGAN's: 24 steps, 5 features in [0, 1]); tokens: oracle), a .fgd file "
                           "from `fastgan prepare`, or a .npy array (N, T, F) of sequences")
    resolution: int = _f(16, "image size of the built-in digits (8, 16, 32 or 64)")
    hflip: bool = _f(False, "random horizontal flips of real images")
    # Models
    model: str = _f("dcgan", "model family: " + "; ".join(f"{f.name}: {f.summary}" for f in FAMILIES.values()), MODELS)
    z_dim: int = _f(100, "latent size")
    g_width: int = _f(32, "DCGAN: channels of G's last hidden block (doubling toward 4x4); resnet: of every G block "
                          "at 16 and 32 px, of the last at 64 px (halving from 16x at 4x4)")
    d_width: int = _f(32, "DCGAN: channels of D's first block (doubling toward 4x4); resnet: of every D block at 16 "
                          "and 32 px, of the first at 64 px (doubling to 16x)")
    mlp_hidden: tuple[int, ...] = _f((256, 256), "MLP: hidden layer widths of G and D, comma-separated")
    conditional: bool = _f(False, "class-conditional G and D on the data's labels (dcgan, resnet: conditional batch "
                                  "norm in G, projection D; mlp: a one-hot label joins G's noise and D's input); "
                                  "sample grids show one class per row")
    num_classes: int = _f(0, "conditional: number of classes (0: from the data, its largest label + 1; the run "
                             "records it)")
    # Optimisation
    steps: int = _f(2000, "generator updates")
    batch_size: int = _f(64, "samples per D and per G update in each process (global batch: batch_size x processes)")
    n_critic: int = _f(1, "D updates per G update")
    lr_g: float = _f(2e-4, "Adam learning rate of G")
    lr_d: float = _f(2e-4, "Adam learning rate of D (TTUR: set it apart from lr_g)")
    beta1: float = _f(0.5, "Adam beta1 (both networks)")
    beta2: float = _f(0.999, "Adam beta2 (both networks)")
    d_loss: str = _f("bce", "discriminator loss", D_LOSS_KINDS)
    g_loss: str = _f("ns", "generator loss", G_LOSS_KINDS)
    label_smoothing: float = _f(0.0, "one-sided label smoothing of D's real target (bce only)")
    r1_gamma: float = _f(0.0, "R1 penalty weight gamma (0: off); applied lazily every r1_every steps")
    r1_every: int = _f(16, "steps between lazy R1 penalties (the penalty is scaled by this)")
    gp_weight: float = _f(0.0, "WGAN-GP gradient penalty weight (0: off)")
    clip_grad: float = _f(0.0, "each network's gradients are scaled to a global L2 norm of at most this before its "
                               "optimizer step (0: off; seqgan: 5, as in its authors' code)")
    # Stability toolkit (dcgan, resnet and mlp)
    spectral_norm: bool = _f(False, "spectral normalisation of every D weight (Miyato et al. 2018); drops D's batch norm; "
                                "resnet: on unless --no-spectral-norm")
    mbstd: bool = _f(False, "minibatch standard deviation feature before D's last layer (Karras et al. 2018)")
    pac: int = _f(1, "PacGAN: D judges this many samples packed together (Lin et al. 2018); the batch_size samples "
                     "form batch_size / pac packs (pac divides batch_size) unless --pac-fresh")
    pac_fresh: bool = _f(False, "PacGAN as its authors' code does it: D judges batch_size packs of pac fresh samples "
                                "each, so a step draws batch_size * pac real and generated samples")
    diffaug: str = _f("", "DiffAugment policy for D's real and fake inputs, e.g. color,translation,cutout (Zhao et al. 2020)")
    instance_noise: float = _f(0.0, "std of Gaussian noise added to D's inputs, annealed linearly to 0 over the run")
    ema_decay: float = _f(0.999, "EMA decay of G's weights for samples and evaluation (0: no EMA)")
    amp: str | None = _f(None, "mixed precision: bf16, fp16 (with loss scaling) or none", AMP_MODES)
    compile: bool = _f(False, "torch.compile G and D where it pays (CUDA); on the CPU it trains eagerly and says so")
    # Other families
    vae_width: int = _f(32, "vae, vaegan: channels of the encoder's first and the decoder's last hidden block (DCGAN layout)")
    vae_beta: float = _f(1.0, "vae, rvae: weight of the KL term (1: the ELBO; otherwise a beta-VAE); vaegan: of the "
                                  "KL term in the encoder's loss (1: Larsen et al.; vaegan's default: 4)")
    vae_likelihood: str = _f("auto", "vae, rvae: p(x|z); auto is bernoulli for images, gaussian for sequences",
                             ("auto", *LIKELIHOODS))
    vae_sigma: float = _f(0.1, "vae, rvae: standard deviation of the gaussian likelihood")
    vaegan_gamma: float = _f(1.0, "vaegan: weight of the feature-space reconstruction against the GAN term in the "
                                  "decoder's loss (Larsen et al. 2016)")
    vaegan_margin: float = _f(0.0, "vaegan: equilibrium rule of Larsen et al.'s code: D skips its update while its "
                                   "cross-entropy on real or generated images is below 0.68 - margin, and the decoder "
                                   "drops its GAN term while either is above 0.68 + margin (0: off; their code: 0.35)")
    vaegan_joint_decode: bool = _f(False, "vaegan: decode the posterior and prior codes in one decoder pass, so "
                                          "batch norm normalises both with the same statistics")
    vaegan_dis_layer: str = _f("last", "vaegan: Dis_l, the discriminator layer whose features measure reconstructions: "
                                       "its last block's output, or that block's convolution before batch norm and "
                                       "activation (conv, as in Larsen et al.'s code)", DIS_LAYERS)
    vaegan_d_batches: str = _f("separate", "vaegan: D judges real, reconstructed and prior-sampled images in one "
                                           "pass each (separate, as DCGAN's D does), or in one pass (joint: shared "
                                           "batch-norm statistics, which let part of the samples collapse onto one "
                                           "pattern; see docs/results.md)", D_BATCHES)
    vaegan_gan_on_recon: bool = _f(False, "vaegan: D judges reconstructions as well as prior samples (the "
                                          "paper's L_GAN); off: prior samples only, as Larsen et al.'s code runs "
                                          "CIFAR-10 and CelebA")
    seq_len: int = _f(0, "rgan, rvae, seqgan: time steps of the built-in sines and oracle data (0: 30 for sines, 24 "
                         "for sines-timegan, 20 for oracle; a .npy has its own); the run records the length it used")
    seq_n: int = _f(10000, "rgan, rvae, seqgan: sequences in the built-in sines or oracle training set")
    sines_features: int = _f(1, "rgan, rvae: features per time step of the built-in sines (sines-timegan has 5)")
    seq_hidden: int = _f(32, "rgan, rvae, seqgan: hidden size of every LSTM (and seqgan's embedding size); timegan: "
                             "of every GRU and latent step")
    rgan_per_step: bool = _f(True, "rgan: D judges every time step (RCGAN); otherwise the whole sequence")
    rgan_out_act: str = _f("tanh", "rgan: G's output activation; tanh needs data in [-1, 1], sigmoid in [0, 1] "
                                   "(sines-timegan)", OUTPUT_ACTS)
    rgan_noise: str = _f("step", "rgan: G's noise: fresh z_dim numbers at every step (RCGAN), or one z per sequence "
                                 "given at every step (smooth steps; see docs/results.md)", NOISE_KINDS)
    rgan_layers: int = _f(1, "rgan: stacked LSTM layers of G and of D (RCGAN: 1; TimeGAN: 3)")
    rgan_moment_weight: float = _f(0.0, "rgan: weight of TimeGAN's moment loss in G's loss: |std| and |mean| "
                                        "differences of generated and real batches per step and feature (TimeGAN: "
                                        "100; 0: off)")
    timegan_layers: int = _f(3, "timegan: GRU layers of its embedder, recovery, generator and discriminator (the "
                                "supervisor has one fewer; Yoon et al.'s sines: 3)")
    timegan_embed_steps: int = _f(1000, "timegan: steps (counted in --steps) that train embedder and recovery on "
                                        "reconstruction alone, the first of its three phases")
    timegan_supervised_steps: int = _f(1000, "timegan: steps (counted in --steps) after those that train the "
                                             "supervisor on the next-step loss alone; the rest of --steps are joint "
                                             "training")
    rvae_out_act: str = _f("linear", "rvae: activation of the decoder's mean (gaussian likelihood); sigmoid keeps "
                                     "samples of data in [0, 1] inside it", OUTPUT_ACTS)
    seqgan_vocab: int = _f(100, "seqgan: vocabulary of the oracle task (Yu et al. 2017 use 5000, minutes per step "
                                "on a CPU)")
    seqgan_pretrain_steps: int = _f(1000, "seqgan: maximum-likelihood G updates before adversarial training "
                                          "(counted in --steps)")
    seqgan_d_pretrain_steps: int = _f(200, "seqgan: D updates on real vs generated before the first adversarial step "
                                           "(not counted in --steps)")
    seqgan_rollouts: int = _f(16, "seqgan: Monte-Carlo rollouts per prefix for the rewards")
    seqgan_discriminator: str = _f("lstm", "seqgan: D over tokens: an LSTM; the paper's CNN with its window sizes up "
                                           "to seq_len and seq_hidden filters each (cnn); or at the paper's size "
                                           "(cnn-paper: 64-dim embedding, 1,720 filters, L2 0.2 on the logit layer, "
                                           "dropout 0.25, one highway layer)", SEQGAN_DISCRIMINATORS)
    seqgan_rollout_delay: float = _f(0.8, "seqgan: after each adversarial G update the rollout policy's weights move "
                                          "to delay * rollout + (1 - delay) * G, as in the authors' code (0: G "
                                          "itself)")
    seqgan_nll_every: int = _f(50, "seqgan: steps between the oracle NLL evaluations logged as oracle_nll (eval_n "
                                   "samples), at log steps that are multiples of it")
    oracle_seed: int = _f(0, "seqgan: seed of the oracle LSTM and its training data, apart from --seed, so that runs "
                             "with different seeds learn the same task")
    # Faults and scale-out
    max_nonfinite: int = _f(3, "consecutive updates with non-finite loss or gradients (each skipped) before training stops")
    on_divergence: str = _f("stop", "what a run does when it diverges: stop (exit status 1, its last healthy "
                                    "checkpoint kept) or continue (checkpoints rotate as usual)",
                            ("stop", "continue"))
    sync_bn: bool = _f(False, "distributed runs: batch-norm statistics over the global batch (SyncBatchNorm)")
    # Output
    log_every: int = _f(50, "steps between metrics.jsonl lines")
    sample_every: int = _f(500, "steps between sample grids")
    ckpt_every: int = _f(500, "steps between checkpoints (one is always written at the end)")
    n_samples: int = _f(64, "images in a sample grid")
    eval_every: int = _f(0, "steps between evaluations of the EMA generator, logged to metrics.jsonl (0: off)")
    eval_n: int = _f(2000, "generated samples per evaluation")
    eval_ts_repeats: int = _f(3, "sequence runs: repeats of TimeGAN's discriminative and predictive scores in each "
                                 "evaluation (--eval-every, fastgan eval) of at least 500 sequences; their GRUs "
                                 "train afresh each time, 20-60 s on a CPU (0: off)")
    progress: bool = _f(True, "show a progress bar")
    tensorboard: bool = _f(False, "also write TensorBoard events to the run's tensorboard/ folder: the logged numbers, "
                                  "evaluations and sample grids (needs: pip install 'fastgan[tensorboard]')")

    def __post_init__(self):
        if isinstance(self.amp, str) and self.amp.lower() in ("", "none", "fp32", "no"):
            self.amp = None
        if isinstance(self.mlp_hidden, list):
            self.mlp_hidden = tuple(self.mlp_hidden)
        self._apply_family_defaults()
        self.validate()

    def __new__(cls, *args, **kwargs):
        # The fields the caller gave (the CLI and a TOML file pass only those; from_dict of a saved config, all):
        # an attribute, not a field, since it is no setting of the run.
        config = super().__new__(cls)
        config._given = {f.name for f in dataclasses.fields(cls)[:len(args)]} | set(kwargs)
        return config

    def _apply_family_defaults(self) -> None:
        """Fields for which config.model's declaration has its own default (Family.defaults) take it unless the
        caller gave them."""
        if self.model in FAMILIES:
            for name, value in FAMILIES[self.model].defaults.items():
                if name not in self._given:
                    setattr(self, name, value)

    def validate(self) -> None:
        def bad(name, why):
            raise ValueError(f"TrainConfig.{name}: {why}; got {getattr(self, name)!r}")

        self._check_types(bad)
        if self.model not in FAMILIES:
            bad("model", f"must be one of {', '.join(MODELS)}")
        if self.d_loss not in D_LOSS_KINDS:
            bad("d_loss", f"must be one of {', '.join(D_LOSS_KINDS)}")
        if self.g_loss not in G_LOSS_KINDS:
            bad("g_loss", f"must be one of {', '.join(G_LOSS_KINDS)}")
        if self.amp is not None and self.amp not in AMP_MODES:
            bad("amp", "must be bf16, fp16 or none")
        for name in ("steps", "batch_size", "n_critic", "z_dim", "g_width", "d_width", "r1_every",
                     "log_every", "sample_every", "ckpt_every", "n_samples", "eval_n", "pac",
                     "max_nonfinite", "rgan_layers", "timegan_layers"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")
        if not 0 <= self.seed <= MAX_SEED:
            bad("seed", f"must be between 0 and 2**63 - 1 ({MAX_SEED})")
        try:
            check_device(self.device, available=False)
        except ValueError as e:
            raise ValueError(f"TrainConfig.device: {e}") from None
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                bad(name, "must be > 0")
        for name in ("beta1", "beta2", "ema_decay"):
            if not 0 <= getattr(self, name) < 1:
                bad(name, "must be in [0, 1)")
        if self.batch_size % self.pac and not self.pac_fresh:
            bad("pac", f"must divide batch_size ({self.batch_size})")
        for name in ("r1_gamma", "gp_weight", "eval_every", "instance_noise", "eval_ts_repeats",
                     "rgan_moment_weight"):
            if getattr(self, name) < 0:
                bad(name, "must be >= 0")
        if self.on_divergence not in ("stop", "continue"):
            bad("on_divergence", "must be stop or continue")
        if not 0 <= self.label_smoothing < 1:
            bad("label_smoothing", "must be in [0, 1)")
        if self.label_smoothing and self.d_loss != "bce":
            bad("label_smoothing", "applies to d_loss=bce only")
        unknown = set(filter(None, self.diffaug.split(","))) - set(DIFF_AUGMENT_POLICIES)
        if unknown:
            bad("diffaug", f"policies are comma-separated names from {', '.join(DIFF_AUGMENT_POLICIES)}")
        if self.threads < 0:
            bad("threads", "must be >= 0")
        if not self.mlp_hidden or any(h < 1 for h in self.mlp_hidden):
            bad("mlp_hidden", "must be one or more positive widths")
        if "/" in self.name or self.name in (".", ".."):
            bad("name", "must be a plain folder name")
        # Other families
        for name in ("vae_width", "seq_n", "sines_features", "seq_hidden", "seqgan_rollouts", "seqgan_nll_every"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")
        for name in ("seq_len", "seqgan_pretrain_steps", "seqgan_d_pretrain_steps", "vae_beta", "vaegan_gamma",
                     "clip_grad", "oracle_seed", "timegan_embed_steps", "timegan_supervised_steps"):
            if not getattr(self, name) >= 0:
                bad(name, "must be >= 0")
        if not 0 <= self.vaegan_margin < EQUILIBRIUM:
            bad("vaegan_margin", f"must be in [0, {EQUILIBRIUM}): D's equilibrium cross-entropy is {EQUILIBRIUM}")
        if not self.vae_sigma > 0:
            bad("vae_sigma", "must be > 0")
        if self.seqgan_vocab < 2:
            bad("seqgan_vocab", "must be >= 2")
        if not 0 <= self.seqgan_rollout_delay < 1:
            bad("seqgan_rollout_delay", "must be in [0, 1)")
        for name, choices in (("vae_likelihood", ("auto", *LIKELIHOODS)), ("rgan_out_act", OUTPUT_ACTS),
                              ("rgan_noise", NOISE_KINDS), ("rvae_out_act", OUTPUT_ACTS),
                              ("seqgan_discriminator", SEQGAN_DISCRIMINATORS), ("vaegan_dis_layer", DIS_LAYERS),
                              ("vaegan_d_batches", D_BATCHES)):
            if getattr(self, name) not in choices:
                bad(name, f"must be one of {', '.join(choices)}")
        self._validate_family(bad)

    def _check_types(self, bad) -> None:
        """Each field's value has the type its annotation says (TOML and the Python API pass anything): ints are
        ints (not bools, not 1.5), floats are finite numbers (stored as float), strings are strings, and
        tuple[int, ...] is a list or tuple of ints."""
        for f in dataclasses.fields(self):
            kind, value = _field_types()[f.name], getattr(self, f.name)
            if value is None and type(None) in typing.get_args(kind):
                continue  # an optional field switched off
            optional = typing.get_origin(kind) in (typing.Union, types.UnionType)
            base = next(t for t in typing.get_args(kind) if t is not type(None)) if optional else kind
            if base is bool:
                if not isinstance(value, bool):
                    bad(f.name, "must be true or false")
            elif base is int:
                if isinstance(value, bool) or not isinstance(value, int):
                    bad(f.name, "must be a whole number")
            elif base is float:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    bad(f.name, "must be a number")
                if not math.isfinite(value):
                    bad(f.name, "must be a finite number")
                setattr(self, f.name, float(value))
            elif base is str:
                if not isinstance(value, str):
                    bad(f.name, "must be a string")
            elif typing.get_origin(base) is tuple:
                if not isinstance(value, (list, tuple)) or not all(
                        isinstance(v, int) and not isinstance(v, bool) for v in value):
                    bad(f.name, "must be a list of whole numbers")
                setattr(self, f.name, tuple(value))

    def _validate_family(self, bad) -> None:
        """The rules of config.model's declaration (fastgan.train.families): its data, options and fixed fields."""
        declared = family(self.model)
        try:
            kind = dataset_kind(self.dataset)
        except ValueError as e:
            raise ValueError(f"TrainConfig.dataset: {e}") from None
        if kind not in declared.data:
            others = [f.name for f in FAMILIES.values() if kind in f.data]
            bad("dataset", f"holds {kind}, which model {self.model} does not train on (it trains on "
                           f"{' or '.join(declared.data)}); models for {kind}: {', '.join(others)}")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name in OPTIONAL_FIELDS:
            if getattr(self, name) != defaults[name] and name not in declared.options:
                takers = [f.name for f in FAMILIES.values() if name in f.options]
                bad(name, f"is an option of {', '.join(takers)}, not of model {self.model}")
        for name, (values, why) in declared.fixed.items():
            if getattr(self, name) not in values:
                bad(name, f"must be {' or '.join(map(str, values))} for model {self.model}: {why}")
        if self.hflip and kind != "images":
            bad("hflip", f"flips images; {self.dataset} holds {kind}")
        if self.num_classes < 0 or (self.num_classes and not self.conditional):
            bad("num_classes", "must be >= 0, and applies to conditional runs only (--conditional)")
        if self.conditional and self.pac != 1:
            bad("pac", "must be 1 with conditional: D judges each sample against its own label")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def differences(self, other: "TrainConfig", ignore=()) -> list[str]:
        """Names of the fields where self and other differ, but for those in ignore."""
        return [f.name for f in dataclasses.fields(self)
                if f.name not in ignore and getattr(self, f.name) != getattr(other, f.name)]

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return cls(**values)

    def set_fields(self) -> frozenset:
        """The fields the caller gave: constructor arguments, TOML keys, command-line options."""
        return frozenset(self._given)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides) -> "TrainConfig":
        with open(path, "rb") as f:
            try:
                values = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise ValueError(f"{path}: not valid TOML: {e}") from None
        values.update(overrides)
        return cls.from_dict(values)


@functools.cache
def _field_types() -> dict:
    return typing.get_type_hints(TrainConfig)

