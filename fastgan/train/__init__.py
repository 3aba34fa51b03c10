"""Training: TrainConfig, train(config) -> run directory, checkpoints."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .trainer import Trainer, build_models, load_generator, train

__all__ = ["TrainConfig", "train", "Trainer", "build_models", "load_generator", "load_checkpoint",
           "save_checkpoint", "CheckpointError"]
