"""Evaluation of generative models: FID, KID, IS, precision/recall, density/coverage, mode coverage,
and distances between sequence distributions.

Low-level functions take features (numpy or torch); fid() and evaluate_checkpoint() also take
images, generators and checkpoints, with the FID Inception network (InceptionV3, local weights),
a classifier trained on the built-in digits (digits_classifier), or any nn.Module as extractor.
"""
from fastgan.metrics.digits_classifier import DigitsClassifier, digits_classifier, train_digits_classifier
from fastgan.metrics.evaluate import add_eval_arguments, evaluate_checkpoint, evaluate_generator, run_eval
from fastgan.metrics.features import extract, generator_features, real_image_features
from fastgan.metrics.fid import fid
from fastgan.metrics.frechet import frechet_distance
from fastgan.metrics.inception import InceptionV3, InceptionWeightsNotFound
from fastgan.metrics.inception_score import inception_score
from fastgan.metrics.kid import kid
from fastgan.metrics.modes import mode_coverage
from fastgan.metrics.precision_recall import density_coverage, precision_recall
from fastgan.metrics.sequences import sequence_metrics, sine_fit
from fastgan.metrics.stats import FeatureStats

__all__ = [
    "DigitsClassifier",
    "FeatureStats",
    "InceptionV3",
    "InceptionWeightsNotFound",
    "add_eval_arguments",
    "density_coverage",
    "digits_classifier",
    "evaluate_checkpoint",
    "evaluate_generator",
    "extract",
    "fid",
    "frechet_distance",
    "generator_features",
    "inception_score",
    "kid",
    "mode_coverage",
    "precision_recall",
    "real_image_features",
    "run_eval",
    "sequence_metrics",
    "sine_fit",
    "train_digits_classifier",
]
