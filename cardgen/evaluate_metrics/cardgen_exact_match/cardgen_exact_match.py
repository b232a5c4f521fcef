"""Exact match (whitespace collapsed; optionally case-insensitive), as an ``evaluate`` metric that loads offline by
path. 100 x the share of predictions equal to their reference.
"""

import datasets
import evaluate

from cardgen.stats.text import normalise

_DESCRIPTION = "Exact match after collapsing whitespace; 0-100."
_KWARGS = """
Args:
    predictions: generated texts.
    references: one reference text per prediction.
    lowercase: compare case-insensitively (default False).
Returns:
    exact_match (0-100).
"""


class CardgenExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, lowercase=False):
        same = [normalise(p, lowercase) == normalise(r, lowercase) for p, r in zip(predictions, references, strict=True)]
        return {"exact_match": 100.0 * sum(same) / max(1, len(same))}
