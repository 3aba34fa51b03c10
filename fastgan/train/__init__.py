"""Training: TrainConfig, train(config) -> run directory, checkpoints."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .base import BaseTrainer, NonFiniteError
from .trainer import FAMILIES, Trainer, build_models, load_generator, make_trainer, train

__all__ = ["TrainConfig", "train", "Trainer", "BaseTrainer", "NonFiniteError", "FAMILIES", "make_trainer", "build_models", "load_generator", "load_checkpoint",
           "save_checkpoint", "CheckpointError"]
