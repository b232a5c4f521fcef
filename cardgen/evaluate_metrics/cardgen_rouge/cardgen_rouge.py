"""ROUGE-1/2/L/Lsum with rouge-score (Porter stemmer, no NLTK data download), as an ``evaluate`` metric that loads
offline by path. Each value is 100 x the mean per-sentence F-measure; rougeLsum splits sentences on newlines.
"""

import datasets
import evaluate

from cardgen.stats.text import TextMetricSettings, score_texts

_DESCRIPTION = "ROUGE F-measures (rouge-score, stemmer on), mean over sentences; 0-100."
_KWARGS = """
Args:
    predictions: generated texts.
    references: one reference text per prediction.
    tokenizer: "unicode" (default; keeps non-ASCII letters) or "default" (rouge-score's ASCII-only tokenizer).
Returns:
    rouge1, rouge2, rougeL, rougeLsum (0-100), signature.
"""
_CITATION = "Lin, Chin-Yew. ROUGE: A Package for Automatic Evaluation of Summaries. ACL 2004 workshop."


class CardgenRouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
            reference_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
        )

    def _compute(self, predictions, references, tokenizer="unicode"):
        scores = score_texts(predictions, references, TextMetricSettings(rouge_tokenizer=tokenizer))
        values = {key: scores.metrics[key] for key in ("rouge1", "rouge2", "rougeL", "rougeLsum")}
        return {**values, "signature": scores.signatures["rouge1"]}
