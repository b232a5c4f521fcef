"""The evaluation engine: sorted, dynamically padded batches give exactly the unsorted results, in input order."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from cardgen.engine import (
    EngineResult,
    length_sorted_batches,
    pad_batch,
    padding_efficiency,
    run_engine,
    sdpa_attention,
    token_budget_batches,
)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def classifier(tiny_bert: Path):
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=3).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    return model, tokenizer


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rng = random.Random(5)
    words = ["the", "movie", "was", "good", "bad", "plot", "acting", "very", "awful", "great", "not", "!"]
    # lengths from 1 to 40 words, in no order, some repeated: ties must keep their places
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 40))) for _ in range(37)] + ["good", "good"]


def _features(tokenizer, texts):
    enc = tokenizer(texts, truncation=True, max_length=64)
    return [{k: enc[k][i] for k in ("input_ids", "attention_mask", "token_type_ids")} for i in range(len(texts))]


def _logits_step(model, batch):
    labels = batch.pop("labels")
    return {"logits": model(**batch).logits, "labels": labels}


def _unsorted_logits(model, features, batch_size):
    """Plain evaluation: batches in input order, padded to each batch's longest, no sorting."""
    parts = []
    with torch.no_grad():
        for i in range(0, len(features), batch_size):
            arrays = pad_batch(features[i : i + batch_size], {"input_ids": 0})
            parts.append(model(**{k: torch.from_numpy(v) for k, v in arrays.items()}).logits)
    return torch.cat(parts).numpy()


def test_sorted_evaluation_returns_the_unsorted_predictions_in_input_order(classifier, texts):
    model, tokenizer = classifier
    features = _features(tokenizer, texts)
    labels = list(range(len(texts)))  # each example's own index travels with it
    result = run_engine(model, features, _logits_step, batch_size=4, extra={"labels": labels})
    plain = _unsorted_logits(model, features, batch_size=4)
    one_by_one = _unsorted_logits(model, features, batch_size=1)  # no padding at all
    assert result.outputs["labels"].tolist() == labels  # original order restored
    assert result.outputs["logits"].shape == plain.shape
    assert result.outputs["logits"].argmax(-1).tolist() == plain.argmax(-1).tolist()
    assert result.outputs["logits"].argmax(-1).tolist() == one_by_one.argmax(-1).tolist()
    np.testing.assert_allclose(result.outputs["logits"], plain, rtol=0, atol=1e-5)
    np.testing.assert_allclose(result.outputs["logits"], one_by_one, rtol=0, atol=1e-5)
    # the batches really were reordered: the first batch holds the longest examples
    lengths = [len(f["input_ids"]) for f in features]
    first = length_sorted_batches(lengths, 4)[0]
    assert [lengths[i] for i in first] == sorted(lengths, reverse=True)[:4]


def test_batch_size_does_not_change_predictions(classifier, texts):
    model, tokenizer = classifier
    features = _features(tokenizer, texts)
    outs = [run_engine(model, features, lambda m, b: {"logits": m(**b).logits}, batch_size=bs).outputs["logits"]
            for bs in (1, 3, 16, 64)]
    for other in outs[1:]:
        assert other.argmax(-1).tolist() == outs[0].argmax(-1).tolist()
        np.testing.assert_allclose(other, outs[0], rtol=0, atol=1e-5)


def test_padding_efficiency_is_real_over_processed_tokens(classifier):
    model, _ = classifier
    lengths = [5, 1, 3, 8, 2, 2, 7]
    features = [{"input_ids": [4] * n, "attention_mask": [1] * n} for n in lengths]
    step = lambda m, b: {"logits": m(**b).logits}  # noqa: E731
    fixed = run_engine(model, features, step, batch_size=3, pack=False)
    # longest first: [8, 7, 5] -> 3 x 8, [3, 2, 2] -> 3 x 3, [1] -> 1 x 1
    assert fixed.real_tokens == 28
    assert fixed.processed_tokens == 3 * 8 + 3 * 3 + 1 * 1 == 34
    assert fixed.padding_efficiency == pytest.approx(28 / 34)
    assert fixed.num_batches == 3 and fixed.max_batch_size == 3
    assert padding_efficiency(lengths, length_sorted_batches(lengths, 3)) == pytest.approx(28 / 34)
    # packed: the first batch's 24 padded tokens bound the rest: [3, 2, 2, 1] -> 4 x 3 (8 would fit)
    packed = run_engine(model, features, step, batch_size=3)
    assert packed.processed_tokens == 24 + 4 * 3
    assert packed.padding_efficiency == pytest.approx(28 / 36)
    assert packed.num_batches == 2 and packed.max_batch_size == 4
    np.testing.assert_allclose(packed.outputs["logits"], fixed.outputs["logits"], rtol=0, atol=1e-5)
    # the same data in input order, unsorted: [5, 1, 3] -> 15, [8, 2, 2] -> 24, [7] -> 7
    unsorted = [[0, 1, 2], [3, 4, 5], [6]]
    assert padding_efficiency(lengths, unsorted) == pytest.approx(28 / 46)
    assert EngineResult(outputs={}, real_tokens=0, processed_tokens=0, seconds=0.0).padding_efficiency == 1.0


def test_packed_batches_never_exceed_the_first_batch_tokens(classifier, texts):
    model, tokenizer = classifier
    features = _features(tokenizer, texts)
    shapes = []

    def step(m, batch):
        shapes.append(tuple(batch["input_ids"].shape))
        return {"logits": m(**batch).logits}

    run_engine(model, features, step, batch_size=4)
    assert shapes[0][0] == 4
    assert all(rows * width <= shapes[0][0] * shapes[0][1] for rows, width in shapes)
    assert max(rows for rows, _ in shapes) > 4  # short examples come many to a batch
    assert sum(rows for rows, _ in shapes) == len(features)


def test_pad_batch_pads_each_key_with_its_value():
    arrays = pad_batch([{"input_ids": [5, 6, 7], "labels": [1, 2, 3]}, {"input_ids": [9], "labels": [4]}],
                       {"input_ids": 0, "labels": -100})
    assert arrays["input_ids"].tolist() == [[5, 6, 7], [9, 0, 0]]
    assert arrays["labels"].tolist() == [[1, 2, 3], [4, -100, -100]]


def test_token_budget_batches():
    lengths = [10, 2, 2, 5, 1, 1, 1, 1]
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))  # [0, 3, 1, 2, 4, 5, 6, 7]
    batches = token_budget_batches(order, lengths, max_tokens=10)
    assert batches == [[0], [3, 1], [2, 4, 5, 6, 7]]
    assert all(len(b) * max(lengths[i] for i in b) <= 10 for b in batches)
    assert token_budget_batches(order, lengths, max_tokens=10, max_rows=2) == [[0], [3, 1], [2, 4], [5, 6], [7]]
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))


def test_out_of_memory_halves_the_batch_and_keeps_results(classifier, texts):
    model, tokenizer = classifier
    features = _features(tokenizer, texts)
    sizes = []

    def step(m, batch):
        sizes.append(batch["input_ids"].shape[0])
        if batch["input_ids"].shape[0] > 5:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        return {"logits": m(**batch).logits}

    result = run_engine(model, features, step, batch_size=16)
    expected = run_engine(model, features, lambda m, b: {"logits": m(**b).logits}, batch_size=4)
    assert sizes[:3] == [16, 8, 4]  # halved until it fits
    assert result.max_batch_size <= 5
    np.testing.assert_allclose(result.outputs["logits"], expected.outputs["logits"], rtol=0, atol=1e-5)

    def always(m, batch):
        raise torch.OutOfMemoryError("simulated")

    with pytest.raises(torch.OutOfMemoryError):
        run_engine(model, features[:3], always, batch_size=2)
    with pytest.raises(ValueError):  # other errors are not retried
        run_engine(model, features[:3], lambda m, b: (_ for _ in ()).throw(ValueError("bad")), batch_size=2)


def test_eager_models_run_with_sdpa_and_are_restored(tiny_bert: Path):
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        tiny_bert, num_labels=2, attn_implementation="eager").eval()
    seen = []

    def step(m, batch):
        seen.append(m.config._attn_implementation)
        return {"logits": m(**batch).logits}

    run_engine(model, [{"input_ids": [2, 7, 3], "attention_mask": [1, 1, 1]}], step)
    assert seen == ["sdpa"]
    assert model.config._attn_implementation == "eager"
    with sdpa_attention(torch.nn.Linear(2, 2)):  # not a transformers model: left alone
        pass


def test_empty_input(classifier):
    model, _ = classifier
    result = run_engine(model, [], lambda m, b: {"logits": m(**b).logits})
    assert result.outputs == {} and result.processed_tokens == 0 and result.padding_efficiency == 1.0
