"""Synthetic questions for passages from any OpenAI-compatible chat API.

`generate_questions` asks a chat model (OpenAI, vLLM, Ollama, a llama.cpp server: anything that
serves POST {base_url}/chat/completions) for `questions_per_passage` questions per passage, at most
`concurrency` requests at a time. Transient failures (429, 5xx, timeouts, dropped connections,
malformed or question-less answers) are retried with exponential backoff and jitter, honouring
Retry-After; a 401/403/404 (bad key, no access, wrong URL or model) stops everything at once. A
passage that exhausts its retries is reported in `GenerationStats.failed`, not fatal, unless every
passage fails or FAILURES_IN_A_ROW passages fail in a row (the server is down or misconfigured:
waiting out the retries of the rest would take hours and pay for nothing).

Every answer is cached on disk the moment it arrives, one JSON file per passage, keyed by
everything that shapes the answer (passage, title, prompt template, server address, model,
question count, temperature, max_tokens) and written atomically, so a killed generation resumes
where it stopped and never pays for a cached passage twice. Failed requests are not cached.

The HTTP layer is Python's own `http.client`: redirects are never followed (the key would go
wherever a server points), each request has a wall-clock deadline and a bound on the reply's
size, only http(s) addresses are accepted, and the key is blanked from every message.

The filters that follow generation are in documents/filters.py.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import itertools
import json
import logging
import os
import random
import re
import socket
import sys
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from common.files import write_atomic

logger = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"
PLACEHOLDER = re.compile(r"\{(n|title|text)\}")
FAILURES_IN_A_ROW = 5  # passages failing one after another that mean the server, not the passages, is at fault
FATAL_STATUS = {  # a retry cannot fix these, and every other passage would meet them too
    401: "the API key was refused: check $OPENAI_API_KEY (or the key you passed)",
    403: "the API key has no access to this model or endpoint",
    404: "no such endpoint or model: check the base URL (it should end in /v1 for most servers) and the model name",
}
RETRY_STATUS = {408, 409, 425, 429}  # and every 5xx
MAX_RETRY_AFTER_S = 300.0  # a server asking for longer (Retry-After: 86400) is waited on this long, then retried
MAX_REPLY_BYTES = 8 << 20  # a chat completion is kilobytes; a reply past this is cut off and retried
LOOPBACK = {"localhost", "127.0.0.1", "::1"}
BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)

DEFAULT_PROMPT = '''You are helping to build a search engine over regulatory text: rules, guidance and legislation.
Below is one passage from "{title}".

Write {n} different questions that a compliance officer, a lawyer or someone at a regulated firm
might type into that search engine, and that this passage answers.
- Each question must be answerable from this passage, and ask about its substance: an obligation,
  a condition, a deadline, a threshold, a definition, an exemption, who it applies to, or what
  follows from a breach.
- Ask as someone who has not read the passage would: in your own words. Do not copy phrases or
  sentences from the passage and do not cite its rule, section or paragraph numbers.
- Each question must stand on its own: name its subject instead of saying "this passage", "this
  rule" or "the above".
- Write questions, not restatements of the passage, and make them differ from one another: ask
  about different points, in different ways.

Passage:
"""
{text}
"""

Answer with exactly {n} lines, one question per line, and nothing else: no numbering, no heading.'''


class LLMError(RuntimeError):
    """Generation cannot go on: bad configuration, a fatal HTTP status, or every passage failed."""


class _Transient(Exception):
    """A failure worth retrying; `retry_after` is the server's Retry-After in seconds, if given."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Rejected(Exception):
    """The server refused this passage's request (a 4xx such as 400: too long for its context): retrying cannot help."""


@dataclass
class LLMConfig:
    """Which chat model writes the questions, and how it is called."""

    base_url: str | None = None  # None: $OPENAI_BASE_URL, else https://api.openai.com/v1
    model: str | None = None  # None: $OPENAI_MODEL; neither is an error
    api_key: str | None = None  # None: $OPENAI_API_KEY (may be empty for local servers)
    questions_per_passage: int = 2
    prompt_file: str | None = None  # a template replacing DEFAULT_PROMPT; placeholders {n}, {title}, {text}
    concurrency: int = 4  # requests in flight at most
    max_retries: int = 5  # retries per passage after its first request
    timeout_s: float = 60.0  # per request
    backoff_s: float = 1.0  # first retry waits about this long (x0.5-1.5 jitter), doubling each time
    temperature: float = 0.7
    max_tokens: int = 512
    price_per_million_input: float = 0.0  # for the cost tally, in the currency of the prices
    price_per_million_output: float = 0.0


@dataclass(frozen=True)
class Endpoint:
    """LLMConfig's connection settings with the environment's defaults filled in."""

    url: str  # the full chat-completions URL
    model: str
    api_key: str  # "" sends no Authorization header

    @classmethod
    def from_config(cls, config: LLMConfig) -> Endpoint:
        base_url = config.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LLMError(f"base URL {base_url!r}: must be an http:// or https:// address")
        model = config.model or os.environ.get("OPENAI_MODEL")
        if not model:
            raise LLMError("no model named: set the model in the LLM config or $OPENAI_MODEL")
        api_key = config.api_key if config.api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        if parts.scheme == "http" and parts.hostname not in LOOPBACK and not parts.hostname.startswith("127."):
            print(
                f"warning: {base_url} is plain http to another machine: the passages"
                + (" and the API key" if api_key else "")
                + " travel unencrypted",
                file=sys.stderr,
            )
        return cls(base_url.rstrip("/") + "/chat/completions", model, api_key)

    def redact(self, text: str) -> str:
        """`text` with the API key (and any bearer token) blanked: for every message and record."""
        if self.api_key:
            text = text.replace(self.api_key, "***")
        return BEARER.sub(r"\1***", text)


@dataclass
class GenerationStats:
    """What one `generate_questions` call did; tokens and cost are of the requests it made (cached
    answers cost nothing now)."""

    passages: int = 0
    cached: int = 0  # passages answered from the cache
    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    failed: list[str] = field(default_factory=list)  # passage ids whose requests all failed
    errors: dict[str, str] = field(default_factory=dict)  # failed passage id -> its last error
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def summary(self) -> str:
        return (
            f"questions: {self.passages} passages, {self.cached} from the cache, {self.requests} requests "
            f"({self.retries} retries), {len(self.failed)} failed; {self.prompt_tokens:,} prompt + "
            f"{self.completion_tokens:,} completion tokens, cost {self.cost:.4f}"
        )


@dataclass
class _Outcome:
    """One passage's requests: the answer and its questions (None when every attempt failed)."""

    answer: str = ""
    questions: list[str] | None = None
    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""


# ---------------------------------------------------------------- configuration and prompt


def check_llm_config(config: LLMConfig, names: dict[str, str] | None = None) -> None:
    """Raise LLMError naming the first field with a value that cannot work (as `names` calls it: a
    command line's flag for each field, say; else the field's own name)."""
    problems = [
        ("questions_per_passage", config.questions_per_passage < 1, "must be >= 1"),
        ("concurrency", config.concurrency < 1, "must be >= 1"),
        ("max_retries", config.max_retries < 0, "must be >= 0"),
        ("timeout_s", config.timeout_s <= 0, "must be > 0"),
        ("backoff_s", config.backoff_s < 0, "must be >= 0"),
        ("max_tokens", config.max_tokens < 1, "must be >= 1"),
        ("price_per_million_input", config.price_per_million_input < 0, "must be >= 0"),
        ("price_per_million_output", config.price_per_million_output < 0, "must be >= 0"),
    ]
    for name, bad, rule in problems:
        if bad:
            if names and name in names:
                raise LLMError(f"{names[name]} {getattr(config, name)!r}: {rule}")
            raise LLMError(f"{name} = {getattr(config, name)!r}: {rule}")


def load_template(config: LLMConfig) -> str:
    """The prompt template: the user's file, or DEFAULT_PROMPT. It must place the passage ({text})."""
    if config.prompt_file is None:
        return DEFAULT_PROMPT
    try:
        template = Path(config.prompt_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise LLMError(f"{config.prompt_file}: cannot read the prompt file ({err})") from None
    if "{text}" not in template:
        raise LLMError(
            f"{config.prompt_file}: the prompt has no {{text}} placeholder, so the model would never see the passage"
        )
    return template


def render_prompt(template: str, passage: dict, n: int) -> str:
    """Fill {n}, {title}, {text} in one pass: braces elsewhere (a JSON example) and in the passage stay as they are."""
    values = {"n": str(n), "title": passage.get("title") or "(untitled)", "text": passage["text"]}
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def cache_key(passage: dict, template: str, endpoint: Endpoint, config: LLMConfig) -> str:
    """sha256 of everything that shapes the answer (the server's address included: two servers
    may serve different models under one name), so a change to any of them asks again."""
    parts = [
        passage["text"],
        passage.get("title") or "",
        template,
        endpoint.url,
        endpoint.model,
        config.questions_per_passage,
        config.temperature,
        config.max_tokens,
    ]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- parsing answers


MARKER = re.compile(
    r"^\s*(?:[-*•–]+|#+|\(?\d{1,3}[.):]|\(?[a-zA-Z][.)]|q(?:uestion)?\s*\d*\s*[:.)-])\s*", re.IGNORECASE
)
THINKING = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)  # reasoning models (Qwen3, DeepSeek-R1) emit this first
FENCE = re.compile(r"^```\w*\s*|\s*```$")


def _json_questions(answer: str) -> list[str] | None:
    """The strings of a JSON list, or of a JSON object's first list value; None when the answer is not that."""
    try:
        value = json.loads(FENCE.sub("", answer.strip()))
    except json.JSONDecodeError:
        return None
    if isinstance(value, dict):
        value = next((v for v in value.values() if isinstance(v, list)), None)
    if not isinstance(value, list):
        return None
    return [item for item in value if isinstance(item, str)]


def parse_questions(answer: str, n: int) -> list[str]:
    """Up to n questions from an answer: one per line or a JSON list; numbering, bullets, quotes and
    markdown bold stripped. When some lines end in '?', only those count (dropping a preamble such
    as 'Here are two questions:'); lines ending in ':' are headings, never questions."""
    answer = THINKING.sub("", answer).strip()
    lines = _json_questions(answer)
    if lines is None:
        lines = answer.splitlines()
    cleaned = [MARKER.sub("", line.replace("**", "")).strip().strip("\"'“”`").strip() for line in lines]
    cleaned = [line for line in cleaned if line and not line.endswith(":") and not FENCE.fullmatch(line)]
    if any(line.endswith("?") for line in cleaned):
        cleaned = [line for line in cleaned if line.endswith("?")]
    return cleaned[:n]


# ---------------------------------------------------------------- one request


def _server_message(body: bytes, reason: str) -> str:
    """The error message an OpenAI-compatible server put in its body, else the start of the body."""
    text = body.decode("utf-8", "replace")
    try:
        message = json.loads(text)["error"]
        return str(message.get("message", message) if isinstance(message, dict) else message)[:300]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return text.strip()[:300] or reason


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


@dataclass
class _Reply:
    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes


def _http_failure(reply: _Reply, endpoint: Endpoint) -> Exception:
    """The exception an HTTP status other than 200 becomes: fatal, retried, or this passage rejected."""
    where = f"{endpoint.url} (model {endpoint.model!r}): HTTP {reply.status}"
    if 300 <= reply.status < 400:  # never followed: the key would go wherever the server points
        location = reply.headers.get("Location", "?")
        return LLMError(
            endpoint.redact(
                f"{where}: a redirect to {location}, not followed (the API key is never sent to another "
                "address); give the base URL the server redirects to"
            )
        )
    where = endpoint.redact(f"{where}: {_server_message(reply.body, reply.reason)}")
    if reply.status in FATAL_STATUS:
        return LLMError(f"{where}\n{FATAL_STATUS[reply.status]}")
    if reply.status in RETRY_STATUS or reply.status >= 500:
        return _Transient(where, _retry_after(reply.headers.get("Retry-After")))
    return _Rejected(where)


def _exchange(endpoint: Endpoint, payload: bytes, headers: dict, timeout_s: float) -> _Reply:
    """POST `payload` and read the whole reply, within `timeout_s` seconds of wall-clock time in
    all (a watchdog closes the connection at the deadline: a server trickling bytes cannot hold it
    open) and at most MAX_REPLY_BYTES. Plain http.client: redirects are never followed."""
    parts = urllib.parse.urlsplit(endpoint.url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    port = parts.port or (443 if parts.scheme == "https" else 80)  # explicit: an IPv6 host has colons
    connection = kind(parts.hostname, port, timeout=timeout_s)
    expired = threading.Event()

    def abort() -> None:
        expired.set()
        if connection.sock is not None:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    watchdog = threading.Timer(timeout_s, abort)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request("POST", parts.path + (f"?{parts.query}" if parts.query else ""), payload, headers)
        response = connection.getresponse()
        chunks, size = [], 0
        while chunk := response.read1(1 << 16):
            size += len(chunk)
            if expired.is_set():
                raise TimeoutError
            if size > MAX_REPLY_BYTES:
                raise _Transient(f"{endpoint.url}: the reply is over {MAX_REPLY_BYTES} bytes; cut off")
            chunks.append(chunk)
        if expired.is_set():
            raise TimeoutError
        return _Reply(response.status, response.reason, response.headers, b"".join(chunks))
    except (OSError, http.client.HTTPException) as err:  # timeouts, refused or dropped connections
        if expired.is_set():
            raise _Transient(f"{endpoint.url}: no complete reply within {timeout_s:g} s") from None
        reason = getattr(err, "reason", None) or err
        raise _Transient(endpoint.redact(f"{endpoint.url}: {type(err).__name__}: {reason}")) from None
    finally:
        watchdog.cancel()
        connection.close()


def _post_chat(endpoint: Endpoint, prompt: str, config: LLMConfig) -> dict:
    """POST one chat completion; the decoded JSON reply. Raises LLMError, _Transient or _Rejected."""
    body = {
        "model": endpoint.model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
    }
    headers = {"Content-Type": "application/json"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    reply = _exchange(endpoint, json.dumps(body).encode("utf-8"), headers, config.timeout_s)
    if reply.status != 200:
        raise _http_failure(reply, endpoint)
    try:
        return json.loads(reply.body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        message = f"{endpoint.url}: the reply is not JSON ({err}): {reply.body[:200]!r}"
        raise _Transient(endpoint.redact(message)) from None


def _content_and_usage(reply: dict) -> tuple[str | None, int, int]:
    """choices[0].message.content (None when missing) and usage's prompt and completion tokens (0 when missing)."""
    usage = reply.get("usage") if isinstance(reply, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    tokens = [usage.get(name) for name in ("prompt_tokens", "completion_tokens")]
    tokens = [count if isinstance(count, int) else 0 for count in tokens]
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        content = None
    return (content if isinstance(content, str) else None), tokens[0], tokens[1]


def _ask(endpoint: Endpoint, prompt: str, config: LLMConfig, stop: threading.Event) -> _Outcome:
    """One passage's questions, retrying transient failures; LLMError propagates to stop every worker."""
    outcome = _Outcome()
    for attempt in range(config.max_retries + 1):
        if stop.is_set():
            outcome.error = "stopped"
            return outcome
        outcome.requests += 1
        outcome.retries += int(attempt > 0)
        try:
            content, prompt_tokens, completion_tokens = _content_and_usage(_post_chat(endpoint, prompt, config))
            outcome.prompt_tokens += prompt_tokens  # paid for even when the answer is unusable
            outcome.completion_tokens += completion_tokens
            questions = parse_questions(content, config.questions_per_passage) if content is not None else []
            if questions:
                outcome.answer, outcome.questions = content, questions
                return outcome
            failure = _Transient(endpoint.redact(f"{endpoint.url}: no questions in the answer: {str(content)[:200]!r}"))
        except _Transient as err:
            failure = err
        except _Rejected as err:
            outcome.error = str(err)
            return outcome
        except LLMError:
            stop.set()  # before any worker takes its next passage: a fatal status ends every request
            raise
        outcome.error = str(failure)
        if attempt < config.max_retries:
            jittered = config.backoff_s * 2**attempt * random.uniform(0.5, 1.5)
            stop.wait(min(failure.retry_after, MAX_RETRY_AFTER_S) if failure.retry_after is not None else jittered)
    return outcome


# ---------------------------------------------------------------- the cache


def _read_cache(path: Path, n: int) -> list[str] | None:
    """The questions of a cached answer; None when absent or unusable (then it is asked again)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    answer = record.get("answer") if isinstance(record, dict) else None
    return (parse_questions(answer, n) or None) if isinstance(answer, str) else None


def _write_cache(path: Path, outcome: _Outcome, model: str) -> None:
    """Written beside `path` and moved into place: a kill never leaves a partial answer under its name."""
    record = {
        "model": model,
        "answer": outcome.answer,
        "usage": {"prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens},
    }
    write_atomic(path, json.dumps(record, ensure_ascii=False))


def _ask_and_cache(endpoint: Endpoint, prompt: str, config: LLMConfig, path: Path, stop: threading.Event) -> _Outcome:
    outcome = _ask(endpoint, prompt, config, stop)
    if outcome.questions:
        _write_cache(path, outcome, endpoint.model)
    return outcome


# ---------------------------------------------------------------- generation


def _record(stats: GenerationStats, outcome: _Outcome, ids: list[str]) -> None:
    stats.requests += outcome.requests
    stats.retries += outcome.retries
    stats.prompt_tokens += outcome.prompt_tokens
    stats.completion_tokens += outcome.completion_tokens
    if outcome.questions is None:
        stats.failed += ids
        stats.errors.update(dict.fromkeys(ids, outcome.error))


def _run_requests(
    todo: dict[str, tuple[str, list[str]]],
    endpoint: Endpoint,
    config: LLMConfig,
    cache_dir: Path,
    found: dict[str, list[str]],
    stats: GenerationStats,
    bar: tqdm,
) -> None:
    """Ask for each cache key's prompt, at most `concurrency` at once; fill `found` and `stats` as answers arrive.

    A passage is handed to the pool only when another finishes, so a stop (fatal status, failures
    in a row, Ctrl-C) leaves nothing queued and every answer already received is in the cache.
    """
    stop = threading.Event()  # set on a fatal error: passages still retrying give up
    executor = ThreadPoolExecutor(config.concurrency, thread_name_prefix="questions")
    work = iter(todo.items())
    futures: dict[Future, list[str]] = {}  # in flight -> the passage ids it answers

    def submit_next() -> None:
        for key, (prompt, ids) in itertools.islice(work, 1):
            futures[executor.submit(_ask_and_cache, endpoint, prompt, config, cache_dir / f"{key}.json", stop)] = ids

    in_a_row = 0
    try:
        for _ in range(config.concurrency):
            submit_next()
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                outcome, ids = future.result(), futures.pop(future)  # result() re-raises a worker's LLMError
                _record(stats, outcome, ids)
                found.update({pid: list(outcome.questions) for pid in ids} if outcome.questions else {})
                bar.update(len(ids))
                in_a_row = 0 if outcome.questions else in_a_row + 1
                if in_a_row >= FAILURES_IN_A_ROW:
                    raise LLMError(f"{in_a_row} passages in a row failed; the last error: {outcome.error}")
                submit_next()
    finally:
        stop.set()
        executor.shutdown(wait=True)  # requests in flight finish (within timeout_s) and are cached


def generate_questions(
    passages: list[dict], config: LLMConfig, cache_dir: Path, progress: bool = True
) -> tuple[dict[str, list[str]], GenerationStats]:
    """Passage `_id` -> its questions (failed passages are left out and listed in the stats), and the stats.

    `passages` are {"_id", "title", "text"} dicts. Passages with the same title and text share one
    request. Raises LLMError on bad configuration, a fatal HTTP status, or when every request fails.
    """
    check_llm_config(config)
    endpoint = Endpoint.from_config(config)
    template = load_template(config)
    ids = [passage["_id"] for passage in passages]
    repeated = [pid for pid, count in Counter(ids).items() if count > 1]
    if repeated:
        raise LLMError(f"passage ids must be unique; repeated: {', '.join(map(str, repeated[:5]))}")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    todo: dict[str, tuple[str, list[str]]] = {}  # cache key -> (prompt, passage ids)
    for passage in passages:
        key = cache_key(passage, template, endpoint, config)
        prompt = render_prompt(template, passage, config.questions_per_passage)
        todo.setdefault(key, (prompt, []))[1].append(passage["_id"])
    stats, found = GenerationStats(passages=len(passages)), {}
    for key in list(todo):
        cached = _read_cache(cache_dir / f"{key}.json", config.questions_per_passage)
        if cached:
            found.update({pid: list(cached) for pid in todo.pop(key)[1]})
    stats.cached = len(found)
    with tqdm(total=len(passages), initial=stats.cached, desc="questions", unit="passage", disable=not progress) as bar:
        _run_requests(todo, endpoint, config, cache_dir, found, stats, bar)
    stats.cost = (
        stats.prompt_tokens * config.price_per_million_input + stats.completion_tokens * config.price_per_million_output
    ) / 1e6
    if passages and not found:
        raise LLMError(f"every request failed; the last error: {stats.errors[stats.failed[-1]]}")
    return {pid: found[pid] for pid in ids if pid in found}, stats
