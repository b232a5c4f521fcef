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
    assert sizes[0] > 5 and sizes[1] == sizes[0] // 2 and sizes[2] <= 5  # halved until it fits
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


# ---------------------------------------------------------------------------------------------------------------
# token_nll_step: the output head only on predicted positions, in bounded chunks


def _tiny_lm(kind: str):
    torch.manual_seed(0)
    if kind == "gpt2":
        config = transformers.GPT2Config(vocab_size=97, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                         bos_token_id=0, eos_token_id=0)
        return transformers.GPT2LMHeadModel(config).eval()
    # Gemma 2 caps its logits after the head (tanh soft-capping): head(backbone(x)) is not its logits
    config = transformers.Gemma2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                       final_logit_softcapping=3.0, max_position_embeddings=64)
    return transformers.Gemma2ForCausalLM(config).eval()


def _windows_with_labels(n: int = 11, width: int = 20, seed: int = 0) -> list[dict[str, list[int]]]:
    rng = np.random.default_rng(seed)
    feats = []
    for i in range(n):
        ids = rng.integers(0, 97, width).tolist()
        context = 0 if i == 0 else int(rng.integers(1, width - 1))  # the first window predicts all, later ones a tail
        feats.append({"input_ids": ids, "attention_mask": [1] * width,
                      "labels": [-100] * context + ids[context:]})
    return feats


def _reference_nll(model, feats) -> np.ndarray:
    """Per-position NLL from each window's full logits, one window at a time."""
    out = np.zeros((len(feats), len(feats[0]["input_ids"])))
    with torch.no_grad():
        for i, f in enumerate(feats):
            logits = model(torch.tensor([f["input_ids"]])).logits[0].double()
            logp = torch.log_softmax(logits, -1)
            for j in range(1, len(f["labels"])):
                if f["labels"][j] != -100:
                    out[i, j] = -float(logp[j - 1, f["labels"][j]])
    return out


@pytest.mark.parametrize("kind", ["gpt2", "gemma2-softcap"])
def test_token_nll_step_equals_full_logits_and_runs_the_head_only_where_predicted(kind, monkeypatch):
    from cardgen.tasks import token_nll

    model = _tiny_lm(kind)
    feats = _windows_with_labels()
    predicted = sum(sum(label != -100 for label in f["labels"][1:]) for f in feats)
    rows_through_head: list[int] = []
    head = model.get_output_embeddings()
    hook = head.register_forward_hook(lambda _m, args, _out: rows_through_head.append(args[0].shape[:-1].numel()))
    monkeypatch.setattr(token_nll, "HEAD_CHUNK_BYTES", 4 * 97 * 7)  # 7 positions per head call
    try:
        got = run_engine(model, feats, token_nll.token_nll_step(model, 20), batch_size=4).outputs["nll"]
    finally:
        hook.remove()
    np.testing.assert_allclose(got, _reference_nll(model, feats), rtol=2e-5, atol=2e-5)
    if kind == "gpt2":  # split head: exactly the predicted positions, at most 7 at a time (+ the check's 1 + 1)
        assert sum(rows_through_head) == predicted + 2 and max(rows_through_head) <= 7
    else:  # soft-capped logits: the check fails once, and every batch takes the model's full logits
        assert sum(rows_through_head) >= len(feats) * 20


def test_min_cost_batches_trade_padding_for_calls():
    from cardgen.engine import min_cost_batches

    lengths = [10, 10, 9, 9, 9, 5, 5, 4, 1, 1, 1, 1]
    order = list(range(len(lengths)))  # already longest first
    # no cost per call: one batch per distinct length, no padding at all
    assert min_cost_batches(order, lengths, 1000, call_tokens=0) == [[0, 1], [2, 3, 4], [5, 6], [7], [8, 9, 10, 11]]
    # a call costs as much as 1000 tokens: everything in one batch (within the memory budget)
    assert min_cost_batches(order, lengths, 1000, call_tokens=1000) == [order]
    # within 60 padded tokens: two batches, cut where the work is least (50 + 7 x 5, not 60 + 6 x 5)
    assert min_cost_batches(order, lengths, 60, call_tokens=1000) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11]]
    # in between: padding of 1 token per row is worth saving a call of 4, padding of 4 per row is not
    plan = min_cost_batches(order, lengths, 1000, call_tokens=4)
    assert plan == [[0, 1, 2, 3, 4], [5, 6, 7], [8, 9, 10, 11]]
    assert sorted(i for b in plan for i in b) == order
    assert min_cost_batches([], [], 10) == [] and min_cost_batches([0], [50], 10) == [[0]]  # one row always fits
    rng = np.random.default_rng(0)
    for _ in range(20):  # exact: no other cut of a random length list costs less (brute force over all cuts)
        ls = sorted(rng.integers(1, 12, 9).tolist(), reverse=True)

        def cost(batches, ls=ls):  # noqa: ANN001, ANN202
            return sum(len(b) * ls[b[0]] + 5 for b in batches)

        def allowed(b, ls=ls):  # noqa: ANN001, ANN202
            return len(b) == 1 or (len(b) <= 4 and len(b) * ls[b[0]] <= 40)

        got = min_cost_batches(list(range(9)), ls, 40, call_tokens=5, max_rows=4)
        assert all(allowed(b) for b in got)
        assert cost(got) == min(cost(c) for c in _all_cuts(list(range(9))) if all(allowed(b) for b in c))


def _all_cuts(items):
    if not items:
        yield []
        return
    for k in range(1, len(items) + 1):
        for rest in _all_cuts(items[k:]):
            yield [items[:k], *rest]
