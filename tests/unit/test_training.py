"""training.tokenize_rows: the world build's own tokenization must give TRL's columns exactly."""

from __future__ import annotations

from pathlib import Path

from hybridcot.data.world import generate_problems, write_long
from hybridcot.data.world_models import _sft_rows
from hybridcot.training import sft_trainer, tokenize_rows


def _rows(n: int = 40) -> tuple[list[dict], list[dict]]:
    import random

    probs = generate_problems(n, seed=3)
    rng = random.Random(0)
    thoughts = [write_long(p, rng) for p in probs]
    return (_sft_rows(probs, thoughts, "long", 0.0, 0, stepwise=True),
            _sft_rows(probs, thoughts, "short", 0.5, 0, stepwise=True))


def test_tokenize_rows_equals_trls_own_columns(pico_model_dir: Path, tmp_path: Path) -> None:
    from hybridcot.models import load_causal_lm, load_tokenizer

    tok, model = load_tokenizer(pico_model_dir), load_causal_lm(pico_model_dir)
    long_rows, short_rows = _rows()
    cache: dict[str, list[int]] = {}
    for rows in (long_rows, short_rows):
        trl_ds = sft_trainer(model, tok, rows, output_dir=tmp_path, steps=2, batch_size=4, lr=1e-3,
                             seed=0).train_dataset
        own_ds = sft_trainer(model, tok, rows, output_dir=tmp_path, steps=2, batch_size=4, lr=1e-3,
                             seed=0, token_cache=cache).train_dataset
        assert own_ds["input_ids"] == trl_ds["input_ids"]
        assert own_ds["labels"] == trl_ds["labels"]
        # the loss covers exactly the assistant's completion: a prompt is never trained on
        for ids, labels in zip(own_ds["input_ids"], own_ds["labels"]):
            n_prompt = sum(label == -100 for label in labels)
            assert 0 < n_prompt < len(ids) and all(label == -100 for label in labels[:n_prompt])
            assert labels[n_prompt:] == ids[n_prompt:]


def test_own_tokenization_trains_exactly_as_trls(pico_model_dir: Path) -> None:
    """Same batches, same losses, same weights: the token cache changes only how fast setup is."""
    import torch

    from hybridcot.models import load_causal_lm, load_tokenizer
    from hybridcot.training import sft_train

    tok = load_tokenizer(pico_model_dir)
    long_rows, short_rows = _rows(24)
    rows = long_rows + short_rows
    runs = []
    for cache in (None, {}):
        model, losses = sft_train(load_causal_lm(pico_model_dir), tok, rows, steps=3, batch_size=4, lr=1e-3,
                                  seed=0, what="test", token_cache=cache)
        runs.append((losses, [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0] and len(runs[0][0]) == 3
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_tokenize_rows_cuts_to_max_length(pico_model_dir: Path) -> None:
    from hybridcot.models import load_tokenizer

    tok = load_tokenizer(pico_model_dir)
    cols = tokenize_rows(tok, _rows(5)[0], max_length=40)
    assert all(len(x) == 40 == n and len(y) == 40 for x, y, n in zip(cols["input_ids"], cols["labels"], cols["length"]))


def test_tokenize_rows_tokenizes_each_text_once(pico_model_dir: Path) -> None:
    from hybridcot.models import load_tokenizer

    tok = load_tokenizer(pico_model_dir)
    long_rows, _ = _rows(20)
    cache: dict[str, list[int]] = {}
    first = tokenize_rows(tok, long_rows + long_rows, cache)  # a repeated level: the same rows twice
    # 20 distinct prompts + 20 distinct conversations (the problems are distinct)
    assert len(cache) == 40
    assert first["input_ids"][:20] == first["input_ids"][20:]
    calls = []
    real = tok.__class__.__call__

    class Counting(tok.__class__):
        def __call__(self, texts, *a, **k):
            calls.append(len(texts))
            return real(self, texts, *a, **k)

    tok.__class__ = Counting
    again = tokenize_rows(tok, long_rows, cache)
    assert calls == [] and again["input_ids"] == first["input_ids"][:20]
