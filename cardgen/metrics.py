"""Metric functions (scikit-learn and numpy; no Hub access), confidence intervals and paired significance tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def classification_metrics(labels: Sequence[int], predictions: Sequence[int], num_labels: int) -> dict[str, float]:
    """Accuracy and macro precision/recall/F1; for two classes also the positive-class (label 1) F1.

    Args:
        labels: Gold label ids.
        predictions: Predicted label ids, in the same order.
        num_labels: Number of classes, so a class absent from both lists still counts in the macro average.
    """
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    y_true = np.asarray(labels)
    y_pred = np.asarray(predictions)
    all_labels = list(range(num_labels))
    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=all_labels, average="macro", zero_division=0
    )
    out = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f),
        "precision_macro": float(p),
        "recall_macro": float(r),
    }
    if num_labels == 2:
        pp, rp, fp, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=[1], average=None, zero_division=0
        )
        out["f1_positive"] = float(fp[0])
        out["precision_positive"] = float(pp[0])
        out["recall_positive"] = float(rp[0])
    return out
