"""Accuracy as an `evaluate.Metric` (instantiated locally, no Hub), and a `compute_metrics` for the Trainer."""

from __future__ import annotations

from typing import Any

import datasets
import evaluate
import numpy as np


class RobustAccuracy(evaluate.Metric):
    """Top-1 accuracy; robust accuracy when the predictions come from adversarial examples.

    `compute` returns {"accuracy": float}. Instantiate it directly (`RobustAccuracy()`); `evaluate.load` would
    need the Hub.
    """

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Top-1 accuracy of an image classifier, clean or under adversarial attack.",
            citation="",
            inputs_description="predictions: predicted class ids; references: true class ids.",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions: list[int], references: list[int]) -> dict[str, float]:
        return {"accuracy": float(np.mean(np.asarray(predictions) == np.asarray(references)))}


def compute_accuracy_metrics(eval_pred: Any) -> dict[str, float]:
    """`Trainer` compute_metrics: accuracy of argmax(logits) against the labels (first element of tuples)."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    labels = labels[0] if isinstance(labels, tuple) else labels
    return RobustAccuracy(keep_in_memory=True).compute(predictions=np.argmax(logits, axis=-1), references=labels)
