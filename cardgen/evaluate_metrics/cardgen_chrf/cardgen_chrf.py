"""chrF (and chrF++ with word_order=2) with sacreBLEU, as an ``evaluate`` metric that loads offline by path.

Returns the corpus score (0-100), the sacreBLEU signature, per-sentence chrF and per-sentence statistics.
"""

import datasets
import evaluate

from cardgen.stats.text import TextMetricSettings, score_texts

_DESCRIPTION = "Corpus chrF (sacreBLEU), one reference per prediction; 0-100."
_KWARGS = """
Args:
    predictions: generated texts.
    references: one reference text per prediction.
    lowercase: case-insensitive chrF (default False).
    word_order: word n-gram order (0: chrF, 2: chrF++).
Returns:
    chrf: corpus chrF (0-100); signature; sentence_chrf; sentence_stats.
"""
_CITATION = "Popovic, Maja. chrF: character n-gram F-score for automatic MT evaluation. WMT 2015."


class CardgenChrf(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
            reference_urls=["https://github.com/mjpost/sacrebleu"],
        )

    def _compute(self, predictions, references, lowercase=False, word_order=0):
        settings = TextMetricSettings(lowercase=lowercase, chrf_word_order=word_order)
        scores = score_texts(predictions, references, settings)
        return {"chrf": scores.metrics["chrf"], "signature": scores.signatures["chrf"],
                "sentence_chrf": scores.sentence_chrf.tolist(), "sentence_stats": scores.chrf_stats.tolist()}
