"""HTTP backend: sample from running vLLM / SGLang servers through their OpenAI-compatible API.

    vllm serve ckpt --dtype float32 --enable-prefix-caching --enable-prompt-tokens-details   # on each server
    from hybridcot.generation import load_generator
    gen = load_generator("ckpt", backend="http", urls="http://gpu1:8000,http://gpu2:8000")

or, for a stage: `hybridcot eval ... backend=http urls=http://gpu1:8000,http://gpu2:8000` (or
`export HYBRIDCOT_HTTP_URLS=...`). The model folder is still needed here, for its tokenizer: prompts
are rendered with its chat template and tokenized locally exactly as the "hf" and "vllm" backends do,
and sent to `POST /v1/completions` as token ids (`prompt: [ids]`), so the server sees the very tokens
the other backends would run. The generated token ids come back with `return_token_ids` (vLLM);
text is re-decoded from them and cut at the first stop string, as the other backends do. A server
that does not return token ids (e.g. SGLang) gives its text, with `n_tokens` from the usage block
and token ids re-encoded from the text.

Every sample is its own request (as in the "vllm" backend) with the per-sample seed `row_seed`
derives from (seed, prompt tokens, occurrence, sample index), so a sample does not depend on which
server drew it, on concurrency or on batching; greedy requests send no seed. Sampling is sent in
full (temperature, top_p, and top_k=-1, min_p=0, no penalties) so the server's generation-config
defaults cannot change it. `finish_reason` "stop" and "length" map as is; a server with
`--enable-prompt-tokens-details` reports its prefix-cache hits, which fill `Sample.prefill_tokens`.

Servers: requests go to the least busy server (fewest requests in flight, round robin among equals)
with at most `concurrency` in flight per server, from a thread pool. Connection errors, timeouts, 429
and 5xx are retried `retries` times with exponential backoff (`backoff` seconds, doubling, capped at
`max_backoff`, jittered, longer where the server sends Retry-After), each retry on the least busy
server not just failed; a server that keeps failing is a one-line `HybridcotError`. Other 4xx (a bad
request, a prompt over the server's max_model_len) fail at once with the server's message.
`$HYBRIDCOT_HTTP_API_KEY` is sent as a bearer token when set (`vllm serve --api-key`). Stages take
the client settings from the environment: $HYBRIDCOT_HTTP_CONCURRENCY (32), $HYBRIDCOT_HTTP_RETRIES
(5), $HYBRIDCOT_HTTP_BACKOFF (0.5 s) and $HYBRIDCOT_HTTP_TIMEOUT (600 s per request).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from hybridcot.generation.base import Generator, Sample, SamplingConfig, expand_rows, truncate_at_stop
from hybridcot.io import HybridcotError
from hybridcot.ui import progress_enabled

URLS_ENV = "HYBRIDCOT_HTTP_URLS"
API_KEY_ENV = "HYBRIDCOT_HTTP_API_KEY"


class _Retry(Exception):
    """A failure worth another try (connection error, timeout, 429, 5xx, an aborted request)."""

    def __init__(self, msg: str, retry_after: float | None = None, connection: bool = False):
        super().__init__(msg)
        self.retry_after = retry_after
        self.connection = connection


def parse_urls(urls: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Base URLs from a comma-separated string or a list (default `$HYBRIDCOT_HTTP_URLS`), normalized:
    a scheme is added where missing ("host:8000" -> "http://host:8000"), a trailing "/" or "/v1" dropped."""
    if urls is None or urls == "" or urls == []:
        urls = os.environ.get(URLS_ENV, "")
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    out: list[str] = []
    for u in (str(x).strip() for x in items):
        if not u:
            continue
        if "://" not in u:
            u = "http://" + u
        u = u.rstrip("/")
        if u.endswith("/v1"):
            u = u[:-3]
        if not u.startswith(("http://", "https://")):
            raise HybridcotError(f"http backend: URL must be http:// or https://, got {u!r}")
        if u not in out:
            out.append(u)
    if not out:
        raise HybridcotError(f"backend 'http' needs server URLs: set urls=http://host:port[,...] or ${URLS_ENV}")
    return out


class _Server:
    def __init__(self, url: str):
        self.url = url
        self.model: str | None = None
        self.inflight = 0
        self.down_until = 0.0
        self.failures = 0  # consecutive


class HTTPGenerator(Generator):
    """OpenAI-compatible HTTP backend. Keywords: urls (list or comma-separated; default
    $HYBRIDCOT_HTTP_URLS), served_model (default: the one model each server lists at /v1/models),
    concurrency (requests in flight per server), retries, backoff, max_backoff, timeout (seconds per
    request), progress. dtype / batch_size / threads are accepted for interface parity and ignored:
    the server decides them."""

    backend = "http"

    def __init__(self, model_path: str | Path, urls: str | list[str] | None = None, *, dtype: str = "float32",
                 served_model: str | None = None, concurrency: int | None = None, retries: int | None = None,
                 backoff: float | None = None, max_backoff: float = 30.0, timeout: float | None = None,
                 progress: bool | None = None, batch_size: int | None = None, threads: int | None = None,
                 tokenizer: Any = None):
        from hybridcot.models import load_tokenizer

        concurrency = int(_env("CONCURRENCY", 32)) if concurrency is None else concurrency
        retries = int(_env("RETRIES", 5)) if retries is None else retries
        backoff = float(_env("BACKOFF", 0.5)) if backoff is None else backoff
        timeout = float(_env("TIMEOUT", 600.0)) if timeout is None else timeout
        if concurrency < 1 or retries < 0 or backoff < 0 or timeout <= 0:
            raise HybridcotError("http backend: need concurrency >= 1, retries >= 0, backoff >= 0, timeout > 0")
        self.model_path = Path(model_path)
        self.urls = parse_urls(urls)
        self.servers = [_Server(u) for u in self.urls]
        self.served_model = served_model
        self.concurrency = concurrency
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.progress = progress_enabled() if progress is None else progress
        self.dtype = dtype
        self._lock = threading.Lock()
        self._rr = 0
        self._key = os.environ.get(API_KEY_ENV, "").strip()
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(self.model_path)
        self._connect()

    # ------------------------------------------------------------ transport

    def _request(self, server: _Server, path: str, body: dict | None = None, timeout: float | None = None) -> dict:
        """One HTTP call; raises _Retry for what is worth retrying, HybridcotError for the rest."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(server.url + path, data=data, headers=headers,
                                     method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = _error_detail(e)
            if e.code == 429 or e.code >= 500:
                raise _Retry(f"HTTP {e.code}: {detail}", _retry_after(e)) from None
            raise HybridcotError(f"http backend: {server.url}{path}: HTTP {e.code}: {detail}") from None
        except (urllib.error.URLError, OSError, ConnectionError) as e:  # refused, reset, DNS, timeout
            reason = getattr(e, "reason", None) or e
            raise _Retry(f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__,
                         connection=True) from None
        except Exception as e:  # http.client.RemoteDisconnected / BadStatusLine and friends
            raise _Retry(f"{type(e).__name__}: {e}", connection=True) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise _Retry(f"not JSON: {raw[:120]!r}") from None

    def _pick(self, avoid: _Server | None = None) -> _Server:
        """The least busy server that is up (round robin among equals), avoiding `avoid` where possible."""
        with self._lock:
            now = time.monotonic()
            pool = [s for s in self.servers if s is not avoid] or self.servers
            up = [s for s in pool if s.down_until <= now] or [min(pool, key=lambda s: s.down_until)]
            k = len(self.servers)
            self._rr += 1
            best = min(up, key=lambda s: (s.inflight, (self.servers.index(s) - self._rr) % k))
            best.inflight += 1
            return best

    def _call(self, path: str, body: Any = None, server: _Server | None = None,
              timeout: float | None = None) -> tuple[_Server, dict]:
        """GET (body None) or POST with retries; returns (the server that answered, its JSON).

        `server` pins the call to one server, else each try goes to the least busy server up, not the
        one that just failed. `body` may be a function of the server (the model name differs by server).
        """
        t0 = time.monotonic()
        last: _Retry | None = None
        tried: list[str] = []
        prev: _Server | None = None
        for attempt in range(self.retries + 1):
            if server is None:
                s = self._pick(avoid=prev)
            else:
                s = server
                with self._lock:
                    s.inflight += 1
            try:
                out = self._request(s, path, body(s) if callable(body) else body, timeout)
                with self._lock:
                    s.failures, s.down_until = 0, 0.0
                return s, out
            except _Retry as e:
                last = e
                if s.url not in tried:
                    tried.append(s.url)
                delay = min(self.max_backoff, self.backoff * 2 ** attempt) * random.uniform(0.5, 1.0)
                if e.retry_after is not None:
                    delay = max(delay, min(e.retry_after, self.max_backoff))
                with self._lock:
                    s.failures += 1
                    s.down_until = time.monotonic() + delay
                prev = s
                if attempt < self.retries:
                    time.sleep(delay)
            finally:
                with self._lock:
                    s.inflight -= 1
        assert last is not None
        where, tries, took = ", ".join(tried), self.retries + 1, time.monotonic() - t0
        if last.connection:
            raise HybridcotError(f"http backend: no answer from {where} after {tries} tries in {took:.1f} s "
                                 f"({last}); is the server running (vllm serve <model>) and the URL right?")
        raise HybridcotError(f"http backend: {where}{path} still failing after {tries} tries in {took:.1f} s: {last}")

    def _connect(self) -> None:
        """Ask every server for its model list (`/v1/models`), to check it is up and learn the model name."""
        up = 0
        errors = []
        for s in self.servers:
            try:
                _, listing = self._call("/v1/models", server=s, timeout=min(self.timeout, 30.0))
            except HybridcotError as e:
                errors.append(str(e))
                continue
            up += 1
            ids = [m.get("id") for m in listing.get("data", []) if isinstance(m, dict)]
            s.model = self._choose_model(s.url, ids, listing.get("data", []))
        if not up:
            raise HybridcotError(errors[0] if len(errors) == 1 else
                                 f"http backend: none of {len(self.servers)} servers answered: {errors[0]}")
        for e in errors:  # some are down: go on with the others (each request retries across them)
            print(f"warning: {e}; going on with the other servers", file=sys.stderr)

    def _choose_model(self, url: str, ids: list, data: list) -> str | None:
        if self.served_model:
            if ids and self.served_model not in ids:
                raise HybridcotError(f"http backend: {url} serves {ids}, not {self.served_model!r}")
            return self.served_model
        if len(ids) == 1:
            return ids[0]
        here = {str(self.model_path), str(self.model_path.resolve()), self.model_path.name}
        match = [m.get("id") for m in data if isinstance(m, dict)
                 and ({str(m.get("id")), str(m.get("root")), Path(str(m.get("root") or "")).name} & here)]
        if len(match) == 1:
            return match[0]
        if not ids:
            return None  # the server lists nothing: send no model name and let it use its own
        raise HybridcotError(f"http backend: {url} serves several models {ids}; pick one with served_model=...")

    # ------------------------------------------------------------ generation

    def _body(self, server: _Server, ids: list[int], params: SamplingConfig, seed: int) -> dict:
        body: dict[str, Any] = {
            "prompt": ids, "max_tokens": params.max_tokens, "n": 1,
            "temperature": params.temperature, "top_p": params.top_p if not params.greedy else 1.0,
            "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0,
            "frequency_penalty": 0.0, "skip_special_tokens": True, "return_token_ids": True, "stream": False,
        }
        if server.model:
            body["model"] = server.model
        if params.stop:
            body["stop"] = list(params.stop)
        if not params.greedy:
            body["seed"] = seed
        return body

    def _one(self, ids: list[int], params: SamplingConfig, seed: int) -> Sample:
        """One sample: a request, retried (also when the server aborts it) until it gives a choice."""
        for attempt in range(self.retries + 1):
            server, resp = self._call("/v1/completions", lambda srv: self._body(srv, ids, params, seed))
            choices = resp.get("choices") or []
            if len(choices) != 1:
                raise HybridcotError(f"http backend: {server.url}/v1/completions gave {len(choices)} choices for n=1")
            c = choices[0]
            reason = c.get("finish_reason")
            if reason in ("stop", "length"):
                return self._sample(c, resp.get("usage") or {}, ids, params)
            if attempt == self.retries:
                raise HybridcotError(f"http backend: {server.url}/v1/completions finished a request with "
                                     f"finish_reason={reason!r} after {self.retries + 1} tries")
            time.sleep(min(self.max_backoff, self.backoff * 2 ** attempt))
        raise AssertionError("unreachable")

    def _sample(self, c: dict, usage: dict, prompt: list[int], params: SamplingConfig) -> Sample:
        token_ids = c.get("token_ids")
        if isinstance(token_ids, list):
            out_ids = [int(t) for t in token_ids]
            text, _ = truncate_at_stop(self.tokenizer.decode(out_ids, skip_special_tokens=True), params.stop)
            n_tokens = len(out_ids)
        else:  # a server without return_token_ids: its text, its token count
            text, _ = truncate_at_stop(str(c.get("text") or ""), params.stop)
            out_ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            n_tokens = int(usage.get("completion_tokens") or len(out_ids))
        finish = "length" if c["finish_reason"] == "length" else "stop"
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        prefill = max(0, len(prompt) - int(cached)) if isinstance(cached, int) else None
        return Sample(text=text, token_ids=out_ids, n_tokens=n_tokens, finish_reason=finish, prefill_tokens=prefill)

    def _generate(self, prompt_ids: list[list[int]], params: SamplingConfig) -> list[list[Sample]]:
        rows = expand_rows(prompt_ids, params)
        out: list[list[Sample | None]] = [[None] * params.n for _ in prompt_ids]
        workers = min(len(rows), self.concurrency * len(self.servers))
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(rows), desc="http", unit="sample")
        pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="hybridcot-http")
        try:
            futs = {pool.submit(self._one, prompt_ids[i], params, seed): (i, j) for i, j, seed in rows}
            pending = set(futs)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for f in done:
                    if f.exception() is not None:
                        raise f.exception()  # type: ignore[misc]
                    i, j = futs[f]
                    out[i][j] = f.result()
                    if bar is not None:
                        bar.update(1)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            if bar is not None:
                bar.close()
        return out  # type: ignore[return-value]


def _env(name: str, default: float) -> float:
    """$HYBRIDCOT_HTTP_<name> as a number (the stages' way to tune the client), else `default`."""
    raw = os.environ.get(f"HYBRIDCOT_HTTP_{name}", "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise HybridcotError(f"$HYBRIDCOT_HTTP_{name} must be a number, got {raw!r}") from None


def _error_detail(e: urllib.error.HTTPError) -> str:
    """The server's error message on one line (vLLM: {"error": {"message": ...}})."""
    try:
        raw = e.read()
    except Exception:
        raw = b""
    msg: Any = None
    try:
        j = json.loads(raw)
        err = j.get("error", j) if isinstance(j, dict) else j
        msg = err.get("message") if isinstance(err, dict) else err
        if msg is None and isinstance(j, dict):
            msg = j.get("detail") or j.get("message")
    except ValueError:
        msg = raw.decode("utf-8", "replace")
    text = " ".join(str(msg or e.reason or "").split())
    return text[:300] or str(e.reason)


def _retry_after(e: urllib.error.HTTPError) -> float | None:
    try:
        v = e.headers.get("Retry-After") if e.headers else None
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None
