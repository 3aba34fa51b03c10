"""Training: TrainConfig, train(config) -> run directory, the model families, checkpoints."""
from .base import BaseTrainer, NonFiniteError
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .evaluate import evaluate_checkpoint
from .families import FAMILIES, Family, GANTrainer, build_models
from .loop import load_generator, make_trainer, train

# The GAN family's trainer keeps its historical name.
Trainer = GANTrainer

__all__ = ["TrainConfig", "train", "Trainer", "BaseTrainer", "NonFiniteError", "FAMILIES", "Family", "make_trainer",
           "build_models", "evaluate_checkpoint", "load_generator", "load_checkpoint", "save_checkpoint", "CheckpointError"]
