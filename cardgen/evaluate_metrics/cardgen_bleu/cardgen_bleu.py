"""Corpus BLEU with sacreBLEU, as an ``evaluate`` metric that loads offline by path (see cardgen.evaluate_metrics).

Returns the score (0-100), the sacreBLEU signature and the per-sentence sufficient statistics, from which the corpus
score of any resample is recomputed (cardgen's intervals and paired tests do exactly that).
"""

import datasets
import evaluate

from cardgen.stats.text import TextMetricSettings, score_texts

_DESCRIPTION = "Corpus BLEU (sacreBLEU), one reference per prediction; 0-100."
_KWARGS = """
Args:
    predictions: generated texts.
    references: one reference text per prediction.
    lowercase: case-insensitive BLEU (default False).
    tokenize: sacreBLEU tokenizer (default "13a").
Returns:
    bleu: corpus BLEU (0-100); signature: sacreBLEU's signature; sentence_stats: per-sentence statistics.
"""
_CITATION = "Post, Matt. A Call for Clarity in Reporting BLEU Scores. WMT 2018."


class CardgenBleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
            reference_urls=["https://github.com/mjpost/sacrebleu"],
        )

    def _compute(self, predictions, references, lowercase=False, tokenize="13a"):
        scores = score_texts(predictions, references, TextMetricSettings(lowercase=lowercase, bleu_tokenize=tokenize))
        return {"bleu": scores.metrics["bleu"], "signature": scores.signatures["bleu"],
                "sentence_stats": scores.bleu_stats.tolist()}
