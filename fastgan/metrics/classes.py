"""Generated-class accuracy: how often a classifier recognises the class a conditional generator was asked for,
the standard check that conditioning works (e.g. the classification accuracy of Odena et al. 2017, sec. 4.1)."""
from __future__ import annotations

import torch
from torch import nn


def class_accuracy(generator: nn.Module, classifier: nn.Module, num_classes: int, n: int, z_dim: int,
                   batch_size: int = 250, seed: int = 0, device="cpu") -> dict[str, float]:
    """{"class_accuracy": fraction of n samples that classifier assigns the class they were generated for,
    "class_accuracy_min": that fraction for the worst class}.

    generator(z, labels) maps noise (N, z_dim) and int64 labels (N,) to images; the labels are balanced (each
    class n / num_classes times, give or take one) and the noise is drawn with seed. classifier has
    features_and_logits(images) -> (features, logits (N, >= num_classes)), as DigitsClassifier.
    """
    if n < num_classes:
        raise ValueError(f"class_accuracy: n must be at least num_classes ({num_classes}); got {n}")
    if not hasattr(classifier, "features_and_logits"):
        raise TypeError(f"class_accuracy: {type(classifier).__name__} has no features_and_logits(); it needs a "
                        f"classifier of the generator's classes")
    rng = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    generator, classifier = generator.to(device).eval(), classifier.to(device).eval()
    predicted = []
    with torch.no_grad():
        for ys in labels.split(batch_size):
            z = torch.randn(len(ys), z_dim, generator=rng)
            _, logits = classifier.features_and_logits(generator(z.to(device), ys.to(device)))
            predicted.append(logits.argmax(1).cpu())
    correct = (torch.cat(predicted) == labels).double()
    per_class = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, correct) / torch.bincount(
        labels, minlength=num_classes)
    return {"class_accuracy": float(correct.mean()), "class_accuracy_min": float(per_class.min())}
