"""`hybridcot rl` (Long⊗Short multi-turn GRPO): the rollout's token layout and log-probs, the rewards
against hand-computed values, a real two-step round per role on CPU, and skipping finished rounds."""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path

import pytest
import torch

from hybridcot.generation import Sample, load_generator
from hybridcot.io import HybridcotError
from hybridcot.longshort import rewards as rw
from hybridcot.longshort.protocol import LONG, SHORT, Turn, messages_for, render
from hybridcot.longshort.rl import RLConfig, TokenView, problem_of, rollout, run_rl, sample_turns

PROBLEMS = ["What is 3 + 4?", "What is 2 * 5?"]


@pytest.fixture(scope="module")
def thinkers(tmp_path_factory: pytest.TempPathFactory, world_tokenizer_dir: Path) -> dict[str, Path]:
    """Two random-weight Qwen2 thinkers (hidden 32, 2 layers) with the world tokenizer and its ChatML
    template; the default small init keeps sampling varied (no token is near-certain)."""
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(world_tokenizer_dir)
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    out = {}
    for seed, role in enumerate((LONG, SHORT)):
        cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          num_key_value_heads=2, intermediate_size=64, max_position_embeddings=1024,
                          tie_word_embeddings=True, bos_token_id=None, eos_token_id=eos, pad_token_id=pad,
                          dtype="float32")
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(cfg).to(torch.float32).eval()
        model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, bos_token_id=None)
        d = tmp_path_factory.mktemp(f"thinker_{role}")
        model.save_pretrained(d, safe_serialization=True)
        tok.save_pretrained(d)
        out[role] = d
    return out


def _load(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), AutoTokenizer.from_pretrained(path)


def _prompts(n_gen: int) -> list[list[dict]]:
    return [messages_for(LONG, p, []) for p in PROBLEMS for _ in range(n_gen)]


def _encode(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def _template(tok, msgs: list[dict], generation: bool) -> str:
    return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=generation)


def _runs(mask: list[int]) -> list[tuple[int, int]]:
    """(start, end) of every run of 1s."""
    runs, start = [], None
    for i, m in enumerate([*mask, 0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i))
            start = None
    return runs


# ---------------------------------------------------------------- the rollout


@pytest.mark.parametrize("role", [LONG, SHORT])
def test_rollout_layout_and_logprobs(thinkers, role):
    torch.manual_seed(0)
    model, tok = _load(thinkers[role])
    partner = load_generator(thinkers[SHORT if role == LONG else LONG], backend="hf")
    temperature = 0.7
    out = rollout(_prompts(2), model, tok, partner, role=role, group_size=2, max_turns=4, long_max_tokens=6,
                  short_max_tokens=5, temperature=temperature, seed=1)
    assert all(len(out[k]) == 4 for k in ("prompt_ids", "completion_ids", "logprobs", "env_mask", "turns",
                                          "own_tokens", "group"))
    assert out["group"] == [0, 0, 1, 1]
    eos = {tok.convert_tokens_to_ids("<|im_end|>")}
    for k in range(4):
        prompt, comp, lps, mask = (out[x][k] for x in ("prompt_ids", "completion_ids", "logprobs", "env_mask"))
        turns = [Turn.from_record(t) for t in out["turns"][k]]
        problem = PROBLEMS[k // 2]
        assert len(comp) == len(lps) == len(mask) and set(mask) <= {0, 1}
        # the prompt is the thinker's chat before its first turn (the short one has heard the long one)
        first = 0 if role == LONG else 1
        assert prompt == _encode(tok, _template(tok, messages_for(role, problem, turns[:first]), True))
        # mask 1 = exactly the thinker's own turns, each as many tokens as the turn record says
        own = [t for t in out["turns"][k] if t["role"] == role]
        runs = _runs(mask)
        assert [e - s for s, e in runs] == [t["n_tokens"] for t in own] and sum(mask) == out["own_tokens"][k]
        assert len(turns) == 4 or (turns and turns[-1].final)
        # prompt + completion is the template text of the full view (own turns as sampled)
        contents = [tok.decode(comp[s:e - 1] if comp[e - 1] in eos else comp[s:e]) for s, e in runs]
        it = iter(contents)
        view = [{**m, "content": next(it)} if m["role"] == "assistant" else m
                for m in messages_for(role, problem, turns)]
        assert tok.decode(prompt + comp) == _template(tok, view, False).rstrip()
        # log-probs: 0.0 on partner/glue tokens, a fresh forward's temperature-scaled log-probs elsewhere
        assert all(lp == 0.0 for lp, m in zip(lps, mask) if not m)
        assert all(lp < 0 for lp, m in zip(lps, mask) if m)
        with torch.no_grad():
            logits = model(torch.tensor([prompt + comp])).logits[0, len(prompt) - 1:-1]
        ref = torch.log_softmax(logits / temperature, -1).gather(1, torch.tensor(comp)[:, None]).squeeze(1)
        m = torch.tensor(mask, dtype=torch.bool)
        torch.testing.assert_close(torch.tensor(lps)[m], ref[m], atol=1e-4, rtol=0)
    partner.close()


def test_sample_turns_rows_leave_the_batch(thinkers):
    """With a third of the vocabulary counted as EOS, rows stop at different steps and leave the cached
    batch; each row's tokens and log-probs still match a fresh unpadded forward of its own context."""
    torch.manual_seed(3)
    model, tok = _load(thinkers[LONG])
    contexts = [_encode(tok, "<|im_start|>user\nWhat is 3 + 4?<|im_end|>\n<|im_start|>assistant\n"),
                _encode(tok, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"), [5, 6, 7]] * 2
    eos = set(range(0, len(tok), 3))
    got = sample_turns(model, contexts, 8, 1.3, sorted(eos), tok.pad_token_id)
    assert len({len(t) for t, _, _ in got}) > 1  # rows did finish at different steps
    for ctx, (toks, lps, stopped) in zip(contexts, got):
        assert stopped == (toks[-1] in eos) and (stopped or len(toks) == 8)
        assert not any(t in eos for t in toks[:-1])
        with torch.no_grad():
            logits = model(torch.tensor([ctx + toks])).logits[0, len(ctx) - 1:-1]
        ref = torch.log_softmax(logits / 1.3, -1).gather(1, torch.tensor(toks)[:, None]).squeeze(1)
        torch.testing.assert_close(torch.tensor(lps), ref, atol=1e-4, rtol=0)


class ScriptedLM(torch.nn.Module):
    """A 'model' that writes `script[i]` (token ids, EOS included) as the i-th turn of every dialogue,
    whatever it is asked; the turn number is the count of generation prompts in its context."""

    def __init__(self, tok, script: list[str]):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.vocab = len(tok)
        self.start = _encode(tok, "<|im_start|>assistant\n")
        self.script = [_encode(tok, s) + [tok.convert_tokens_to_ids("<|im_end|>")] for s in script]

    def forward(self, input_ids, attention_mask=None, past_key_values=None, **kw):
        ctx = input_ids if past_key_values is None else torch.cat([past_key_values, input_ids], 1)
        logits = torch.full((ctx.shape[0], 1, self.vocab), -30.0)
        n = len(self.start)
        for b, row in enumerate(ctx.tolist()):
            starts = [i + n for i in range(len(row) - n + 1) if row[i:i + n] == self.start]
            turn = self.script[len(starts) - 1]
            logits[b, 0, turn[len(row) - starts[-1]]] = 30.0
        return type("Out", (), {"logits": logits, "past_key_values": ctx})()


class ScriptedPartner:
    """A Generator stand-in that answers every prompt with its turns in order (one token per word)."""

    def __init__(self, turns: list[str]):
        self.turns = turns

    def generate(self, prompts, params):
        out = []
        for msgs in prompts:
            k = sum(m["role"] == "assistant" for m in msgs)
            out.append([Sample(text=self.turns[k], n_tokens=len(self.turns[k].split()))])
        return out


@pytest.mark.parametrize("role", [LONG, SHORT])
def test_canonical_turns_tokenize_exactly_as_messages_for(world_tokenizer_dir, role):
    """When the thinker writes its turns as `render` does, prompt + completion is token for token the
    chat template of `messages_for(role, problem, turns)` (trailing newline left out)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(world_tokenizer_dir)
    long_turns = ["<think>3 + 4 = 7</think>", "<think>Wait, check: 4 + 3 = 7.</think>"]
    short_turns = ["<answer>so 7</rethink>", "<answer>The answer is \\boxed{7}.</answer>"]
    mine, theirs = (long_turns, short_turns) if role == LONG else (short_turns, long_turns)
    model = ScriptedLM(tok, mine)
    out = rollout(_prompts(1)[:1], model, tok, ScriptedPartner(theirs), role=role, group_size=1, max_turns=8,
                  long_max_tokens=40, short_max_tokens=40, temperature=1.0)
    turns = [Turn.from_record(t) for t in out["turns"][0]]
    assert [render(t) for t in turns] == [x for pair in zip(long_turns, short_turns) for x in pair]
    full = _encode(tok, _template(tok, messages_for(role, PROBLEMS[0], turns), False).rstrip())
    prompt, comp, mask = out["prompt_ids"][0], out["completion_ids"][0], out["env_mask"][0]
    assert prompt + comp == full
    own = [_encode(tok, t) + [tok.convert_tokens_to_ids("<|im_end|>")] for t in mine]
    assert [comp[s:e] for s, e in _runs(mask)] == own
    assert rw.format([], [], turns=out["turns"]) == [1.0]


def test_template_that_rewrites_history_is_refused(world_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(world_tokenizer_dir)
    view = TokenView(tok)
    view.extend("<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n")
    view.add_own(_encode(tok, "abc") + [tok.convert_tokens_to_ids("<|im_end|>")], [-1.0] * 3, True)
    with pytest.raises(HybridcotError, match="does not extend a conversation"):
        view.extend("<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n<|im_start|>user\nx")
    with pytest.raises(HybridcotError, match="prompt suffix"):
        problem_of([{"role": "user", "content": "no suffix"}])


# ---------------------------------------------------------------- rewards


def _dialogue(final_text: str | None, broken: bool = False) -> list[dict]:
    turns = [Turn(LONG, "3 + 4 = 7", well_formed=not broken)]
    if final_text is not None:
        turns.append(Turn(SHORT, final_text, final=True))
    return [t.to_record() for t in turns]


def test_correctness_and_format_rewards():
    turns = [_dialogue("so \\boxed{7}"), _dialogue("so \\boxed{8}"), _dialogue("so \\boxed{7}", broken=True),
             _dialogue(None), _dialogue("no box")]
    answer = ["7"] * 5
    assert rw.correctness([], [], answer=answer, turns=turns) == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert rw.format([], [], turns=turns) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert set(rw.REWARDS) == {"correctness", "format", "length"}


def test_length_reward_by_hand():
    # group 0: min 10, max 30 -> λ = 0.5, 0.0, -0.5, 0.0, 0.5; wrong ones get min(0, λ)
    # group 1: all lengths equal -> 0 for all, right or wrong
    lengths = [10, 20, 30, 20, 10, 5, 5]
    correct = [True, True, True, False, False, True, False]
    groups = [0, 0, 0, 0, 0, 1, 1]
    assert rw.length_rewards(lengths, correct, groups) == [0.5, 0.0, -0.5, 0.0, 0.0, 0.0, 0.0]
    # through the reward function: correctness is graded from the turns
    turns = [_dialogue("\\boxed{7}") if c else _dialogue("\\boxed{1}") for c in correct]
    got = rw.length([], [], answer=["7"] * 7, turns=turns, own_tokens=lengths, group=groups)
    assert got == [0.5, 0.0, -0.5, 0.0, 0.0, 0.0, 0.0]
    assert rw.length_rewards([7, 9], [False, True], [3, 3]) == [0.0, -0.5]
    with pytest.raises(ValueError):
        rw.length_rewards([1], [True, False], [0])


# ---------------------------------------------------------------- the stage


def noise(prompts, completions, **kw):
    """A test-only reward: random values give GRPO non-zero advantages on random-weight thinkers."""
    rng = random.Random(len(kw["own_tokens"]) + sum(kw["own_tokens"]))
    return [rng.random() for _ in prompts]


def _params(path: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def _digest(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def _cfg(thinkers, out: Path, **kw) -> RLConfig:
    base = dict(long_model=str(thinkers[LONG]), short_model=str(thinkers[SHORT]), problems="world:train:2",
                output=str(out), steps=2, num_generations=2, per_device_train_batch_size=4,
                gradient_accumulation_steps=1, learning_rate=1e-2, warmup_ratio=0.0, lr_scheduler_type="constant",
                max_turns=4, long_max_tokens=6, short_max_tokens=5, temperature=0.7, partner_backend="hf",
                rewards={"correctness": 1.0, "format": 1.0, "length": 1.0, "noise": 1.0}, use_cpu=True,
                save_steps=1)
    base.update(kw)
    return RLConfig(**base)


def test_rounds_train_one_thinker_against_the_frozen_other(thinkers, tmp_path, monkeypatch):
    monkeypatch.setitem(rw.REWARDS, "noise", noise)
    out = tmp_path / "rl"
    start = {r: _params(thinkers[r]) for r in (LONG, SHORT)}
    digest = {r: _digest(thinkers[r]) for r in (LONG, SHORT)}
    final = run_rl(_cfg(thinkers, out))

    r1, r2 = out / "round-1-long", out / "round-2-short"
    assert final["status"] == "ran" and final["from"] == {LONG: str(r1), SHORT: str(r2)}
    assert final["long"] == str(out / LONG) and final["short"] == str(out / SHORT)
    assert json.loads((out / "final.json").read_text()) == {k: v for k, v in final.items() if k != "status"}
    for role, rdir in ((LONG, r1), (SHORT, r2)):  # the final thinkers: plain folders sharing the rounds' files
        assert (out / role).is_dir() and not (out / role).is_symlink()
        assert (out / role / "model.safetensors").samefile(rdir / "model.safetensors")
    for rdir, role, parent, partner in ((r1, LONG, thinkers[LONG], thinkers[SHORT]), (r2, SHORT, thinkers[SHORT], r1)):
        meta = json.loads((rdir / "hybridcot.json").read_text())
        assert meta["stage"] == "rl" and meta["role"] == role and meta["steps"] == 2
        assert meta["parents"] == {role: str(parent), ("short" if role == LONG else "long"): str(partner)}
        log = json.loads((rdir / "train_log.json").read_text())["log"]
        assert [e["step"] for e in log] == [1, 2]
        for e in log:
            assert math.isfinite(e["loss"])
            # TRL counts only the thinker's own tokens (env_mask): 2 turns of at most 6 (long) / 5 (short)
            assert 2 <= e["completions/max_length"] <= (12 if role == LONG else 10)
            for name in ("correctness", "format", "length", "noise"):
                assert math.isfinite(e[f"rewards/{name}/mean"])
        # every parameter of the trained thinker moved
        after = _params(rdir)
        same = [k for k in after if torch.equal(after[k], start[role][k])]
        assert after.keys() == start[role].keys() and same == []
        assert (rdir / "config.yaml").is_file() and not (out / f"{rdir.name}.trl").exists()
    # the partners stayed frozen: the inputs, and round 1's output while round 2 trained against it
    assert digest == {r: _digest(thinkers[r]) for r in (LONG, SHORT)}
    r1_digest = _digest(r1)

    # a rerun of the finished config trains nothing
    import trl

    def refuse(*a, **kw):
        raise AssertionError("a finished round was trained again")

    monkeypatch.setattr(trl.GRPOTrainer, "__init__", refuse)
    stamp = (r2 / "model.safetensors").stat().st_mtime_ns
    inode = (out / SHORT / "model.safetensors").stat().st_ino
    assert run_rl(_cfg(thinkers, out)) == {**final, "status": "skipped"}
    assert (r2 / "model.safetensors").stat().st_mtime_ns == stamp and _digest(r1) == r1_digest
    assert (out / SHORT / "model.safetensors").stat().st_ino == inode


def test_killed_round_resumes_from_its_trl_checkpoint(thinkers, tmp_path, monkeypatch, capsys):
    import hybridcot.training as training

    monkeypatch.setitem(rw.REWARDS, "noise", noise)
    out = tmp_path / "rl"
    cfg = _cfg(thinkers, out, rounds=[SHORT])
    real_save = training.save_checkpoint

    def killed(*a, **kw):
        raise KeyboardInterrupt  # killed after training, before the model was saved

    monkeypatch.setattr(training, "save_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        run_rl(cfg)
    assert (out / "round-1-short.trl" / "checkpoint-2").is_dir() and not (out / "round-1-short").exists()
    with pytest.raises(HybridcotError, match="temperature=0.7"):  # a resumed round keeps its settings
        run_rl(_cfg(thinkers, out, rounds=[SHORT], temperature=0.5))
    monkeypatch.setattr(training, "save_checkpoint", real_save)
    from trl import GRPOTrainer

    steps_run = []
    real_step = GRPOTrainer.training_step
    monkeypatch.setattr(GRPOTrainer, "training_step",
                        lambda self, *a, **kw: steps_run.append(1) or real_step(self, *a, **kw))
    final = run_rl(cfg)
    assert "resuming round 1 (short)" in capsys.readouterr().out
    assert steps_run == [] and final["from"] == {SHORT: str(out / "round-1-short"), LONG: str(thinkers[LONG])}
    assert _digest(out / LONG) == _digest(thinkers[LONG])  # the untrained thinker is published as it came
    assert [e["step"] for e in json.loads((out / "round-1-short" / "train_log.json").read_text())["log"]] == [1, 2]


def test_config_validation(thinkers, tmp_path, monkeypatch):
    monkeypatch.setitem(rw.REWARDS, "noise", noise)
    with pytest.raises(ValueError, match="rounds"):
        _cfg(thinkers, tmp_path, rounds=["medium"])
    with pytest.raises(ValueError, match="unknown name 'speed'"):
        _cfg(thinkers, tmp_path, rewards={"speed": 1.0})
    with pytest.raises(ValueError, match="multiple of num_generations"):
        _cfg(thinkers, tmp_path, num_generations=3)
    with pytest.raises(ValueError, match="max_turns"):
        _cfg(thinkers, tmp_path, max_turns=1)
    with pytest.raises(ValueError, match="temperature"):
        _cfg(thinkers, tmp_path, temperature=0.0)
    with pytest.raises(ValueError, match="loss_type"):
        _cfg(thinkers, tmp_path, loss_type="ppo")


def test_rl_problems_keeps_the_levels_asked_for(tmp_path):
    import json

    from hybridcot.io import HybridcotError
    from hybridcot.longshort.rl import RLConfig, rl_problems

    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "problem": f"What is {i}+1?", "answer": str(i + 1),
                                        "level": i % 5 + 1}) + "\n" for i in range(20)))
    cfg = lambda **kw: RLConfig(long_model="l", short_model="s", problems=str(path), output=str(tmp_path / "o"), **kw)  # noqa: E731
    assert len(rl_problems(cfg())) == 20
    hard = rl_problems(cfg(levels=[4, 5]))
    assert [p.id for p in hard] == [f"p{i}" for i in range(20) if i % 5 + 1 in (4, 5)]
    assert [p.id for p in rl_problems(cfg(levels=["5"], limit=10))] == ["p4", "p9"]  # limit first, then levels
    with pytest.raises(HybridcotError, match=r"no problem of levels \[6\]"):
        rl_problems(cfg(levels=[6]))
    with pytest.raises(ValueError, match="duplicates"):
        cfg(levels=[4, 4])
    path.write_text(json.dumps({"id": "x", "problem": "What is 1+1?", "answer": "2"}) + "\n")
    with pytest.raises(HybridcotError, match="problem 'x' has no 'level'"):
        rl_problems(cfg(levels=[1]))
