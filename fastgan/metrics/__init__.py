"""Evaluation of generative models: FID, KID, IS, precision/recall, density/coverage, mode coverage,
distances between sequence distributions, and the time-series literature's discriminative and predictive
scores (TimeGAN's protocol).

Pure functions of features, samples, generators and data (nothing here knows of trainers or
checkpoints): low-level functions take features (numpy or torch); fid() and evaluate_generator() also
take images and generators, with the FID Inception network (InceptionV3, local weights),
a classifier trained on the built-in digits (digits_classifier), or any nn.Module as extractor.
"""
from fastgan.metrics.digits_classifier import DigitsClassifier, digits_classifier, train_digits_classifier
from fastgan.metrics.evaluate import EXTRACTORS, METRICS, evaluate_generator
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
from fastgan.metrics.timeseries import discriminative_score, predictive_score

__all__ = [
    "DigitsClassifier",
    "EXTRACTORS",
    "METRICS",
    "FeatureStats",
    "InceptionV3",
    "InceptionWeightsNotFound",
    "density_coverage",
    "discriminative_score",
    "digits_classifier",
    "evaluate_generator",
    "extract",
    "fid",
    "frechet_distance",
    "generator_features",
    "inception_score",
    "kid",
    "mode_coverage",
    "precision_recall",
    "predictive_score",
    "real_image_features",
    "sequence_metrics",
    "sine_fit",
    "train_digits_classifier",
]
