"""data/tokenizer.py: lossless byte-level BPE, one token per digit, ChatML, and a save/load that keeps it all."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from hybridcot.data.tokenizer import CHAT_TEMPLATE, SPECIAL_TOKENS, train_tokenizer
from hybridcot.data.world import generate_problems, long_text, user_prompt, write_long, write_short

VOCAB = 400


def _world_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for p in generate_problems(n, seed=seed):
        out += [user_prompt(p.problem), long_text(write_long(p, rng)), write_short(p)]
    return out


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerBase:
    return train_tokenizer(_world_texts(150, seed=0), vocab_size=VOCAB)


@pytest.fixture(scope="module")
def reloaded(tok: PreTrainedTokenizerBase, tmp_path_factory: pytest.TempPathFactory) -> PreTrainedTokenizerBase:
    out = tmp_path_factory.mktemp("tok")
    tok.save_pretrained(out)
    return AutoTokenizer.from_pretrained(out)


def test_vocab_special_tokens_and_sides(tok: PreTrainedTokenizerBase) -> None:
    assert len(tok) <= VOCAB and len(tok) > 256 + len(SPECIAL_TOKENS)  # byte alphabet + specials + merges
    ids = tok.convert_tokens_to_ids(SPECIAL_TOKENS)
    assert ids == [0, 1, 2]  # specials first, at fixed ids
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.bos_token is None and tok.unk_token is None
    assert tok.padding_side == "left" and tok.model_max_length == 2048
    assert tok("12 + 3")["input_ids"][0] != tok.convert_tokens_to_ids("<|endoftext|>")  # no BOS/EOS added


def test_world_texts_round_trip_and_compress(tok: PreTrainedTokenizerBase) -> None:
    texts = _world_texts(40, seed=7)  # unseen problems
    n_tokens = 0
    for t in texts:
        ids = tok.encode(t)
        assert tok.decode(ids) == t
        n_tokens += len(ids)
    # merges learned on the world's words: far fewer tokens than bytes
    assert n_tokens < 0.6 * sum(len(t.encode("utf-8")) for t in texts)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.text(),
    st.lists(st.sampled_from(list("0123456789 +-=.,\\{}$^_()") + ["\\boxed{", "\\frac{", "\n\n", "é", "∑", "数",
                                                                 "🙂", "\t", "\r\n", "<|im_end|>"])).map("".join),
))
def test_decode_encode_is_lossless_for_any_text(tok: PreTrainedTokenizerBase, text: str) -> None:
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("text", ["", " ", "  leading and trailing  ", "$\\frac{\\sqrt{2}}{3}$ \\boxed{-7}",
                                  "x\u00a0y\u200bz", "\x00\x01", "<|im_start|>user\nhi<|im_end|>"])
def test_round_trip_edge_cases(tok: PreTrainedTokenizerBase, text: str) -> None:
    assert tok.decode(tok.encode(text)) == text


def test_each_digit_is_its_own_token(tok: PreTrainedTokenizerBase) -> None:
    vocab = tok.get_vocab()
    byte_level_digits = set("0123456789")  # byte-level maps ASCII digits to themselves
    assert all(sum(c in byte_level_digits for c in t) <= 1 for t in vocab), "a token holds two digits"
    assert all(len(t) == 1 for t in vocab if any(c in byte_level_digits for c in t)), "a digit merged with text"
    toks = tok.convert_ids_to_tokens(tok.encode("47 + 38 = 85, 1000-999 x2y"))
    assert [t for t in toks if re.search(r"\d", t)] == list("473885" "1000999" "2")


def test_chat_template_renders_chatml(tok: PreTrainedTokenizerBase) -> None:
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 1 + 2?"},
            {"role": "assistant", "content": "3. \\boxed{3}"}]
    text = tok.apply_chat_template(msgs, tokenize=False)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 1 + 2?<|im_end|>\n"
                    "<|im_start|>assistant\n3. \\boxed{3}<|im_end|>\n")
    prompt = tok.apply_chat_template(msgs[1:2], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nWhat is 1 + 2?<|im_end|>\n<|im_start|>assistant\n"
    assert prompt.endswith("<|im_start|>assistant\n")
    assert tok.apply_chat_template(msgs[1:2], tokenize=False).endswith("<|im_end|>\n")
    # the markers are single special tokens, so generation can stop on <|im_end|>
    ids = tok.encode(prompt)
    assert ids.count(tok.convert_tokens_to_ids("<|im_start|>")) == 2
    assert ids.count(tok.eos_token_id) == 1


def test_chat_template_marks_assistant_tokens(tok: PreTrainedTokenizerBase) -> None:
    # the {% generation %} markers let TRL train on the assistant turns only
    msgs = [{"role": "user", "content": "What is 1 + 2?"}, {"role": "assistant", "content": "3"}]
    out = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == "3<|im_end|>"


def test_save_load_round_trip(tok: PreTrainedTokenizerBase, reloaded: PreTrainedTokenizerBase) -> None:
    texts = _world_texts(10, seed=3) + ["∑ é 🙂 $\\frac{1}{2}$", "<|im_start|>assistant\n12<|im_end|>"]
    for t in texts:
        assert reloaded.encode(t) == tok.encode(t)
    assert reloaded.get_vocab() == tok.get_vocab()
    assert (reloaded.eos_token, reloaded.pad_token, reloaded.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    assert reloaded.eos_token_id == tok.eos_token_id and reloaded.pad_token_id == tok.pad_token_id
    assert reloaded.padding_side == "left" and reloaded.model_max_length == 2048
    assert reloaded.chat_template == CHAT_TEMPLATE
    msgs = [{"role": "user", "content": "What is 4 - 3?"}]
    assert reloaded.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == \
        tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def test_left_padding_after_reload(reloaded: PreTrainedTokenizerBase) -> None:
    batch = reloaded(["1 + 2", "12 + 34 - 5"], padding=True)
    short, long_ = batch["input_ids"]
    assert len(short) == len(long_)
    n_pad = len(long_) - len(reloaded.encode("1 + 2"))
    assert n_pad > 0 and short[:n_pad] == [reloaded.pad_token_id] * n_pad  # pads on the left
    assert batch["attention_mask"][0][:n_pad] == [0] * n_pad


def test_training_is_deterministic(tok: PreTrainedTokenizerBase, tmp_path: Path) -> None:
    again = train_tokenizer(_world_texts(150, seed=0), vocab_size=VOCAB)
    assert again.get_vocab() == tok.get_vocab()
    t = long_text(write_long(generate_problems(1, seed=9)[0], random.Random(0)))
    assert again.encode(t) == tok.encode(t)


def test_signed_digit_tokens_put_a_terms_digit_next_to_its_letter(tmp_path: Path) -> None:
    from hybridcot.data.tokenizer import SIGNED_DIGITS
    from hybridcot.data.world import WriterConfig

    plain = train_tokenizer(_world_texts(150, seed=0), vocab_size=VOCAB)
    signed = train_tokenizer(_world_texts(150, seed=0), vocab_size=VOCAB, signed_digits=True)
    signed.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)  # as every later stage loads it (Qwen2Tokenizer)
    listing = "A 7, B +8, C -9, D -5, E +6, F -1; the last is F."
    assert plain.tokenize(" E +6")[-2:] == ["Ġ+", "6"]  # without them, the digit is two hops from its letter
    for t in (signed, reloaded):
        assert len(t) == len(plain) + 20
        toks = t.tokenize(listing)
        assert t.tokenize(" E +6")[-1] == " +6" and toks.count(" +8") == toks.count(" -1") == 1
        assert toks[toks.index(" -1") - 1].endswith("F")
        assert t.tokenize("7+8-9=6, 15-9: 5-9 borrow 6") == plain.tokenize("7+8-9=6, 15-9: 5-9 borrow 6")
        assert t.convert_tokens_to_ids(SIGNED_DIGITS) == list(range(len(plain), len(plain) + 20))
        rng = random.Random(3)
        for p in generate_problems(30, seed=11):  # world texts still round-trip exactly
            text = long_text(write_long(p, rng, WriterConfig(tags=True)))
            assert t.decode(t.encode(text)) == text
