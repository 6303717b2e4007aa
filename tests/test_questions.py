"""Synthetic questions against a local fake chat-completions server scripted per request: answers
parsed and tokens and cost tallied exactly; 429 (with and without Retry-After), 500, a hang past
the timeout, malformed JSON and question-less answers retried; a passage out of retries reported
and not cached; 401/404 fatal at once; the concurrency limit held; the cache reused and keyed on
model and prompt; a generation killed with SIGKILL resumed without asking a cached passage again.
The filters on hand-made questions, the round trip with bag-of-words embeddings."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from documents.filters import filter_questions, near_verbatim, round_trip_filter
from documents.questions import (
    DEFAULT_PROMPT,
    LLMConfig,
    LLMError,
    generate_questions,
    load_template,
    parse_questions,
    render_prompt,
)

ROOT = Path(__file__).resolve().parent.parent
PASSAGE_ID = re.compile(r"\bP\d\d\b")  # every fake passage names itself in its text, so the server knows which it is


def make_passages(count: int) -> list[dict]:
    return [
        {"_id": f"id{i}", "title": f"Rulebook {i % 3}", "text": f"Rule P{i:02d}: firms must keep records."}
        for i in range(count)
    ]


def expected_questions(pid: str) -> list[str]:
    return [f"What must a firm covered by {pid} report?", f"When does {pid} apply to branches?"]


class FakeChat:
    """An OpenAI-compatible chat-completions server on 127.0.0.1.

    `script` maps a passage (P00, P01, ...) to the actions of its first, second, ... request; a
    request past the end of its list is answered "ok". It records every request and the most
    requests it ever had in flight at once.
    """

    def __init__(self, script: dict[str, list[str]] | None = None, delay: float = 0.0, hang_s: float = 1.5):
        self.script, self.delay, self.hang_s = script or {}, delay, hang_s
        self.redirect_to = ""
        self.lock = threading.Lock()
        self.requests: list[dict] = []  # passage, action, body, headers, start, end
        self.in_flight = self.max_in_flight = 0
        self.tokens_sent = [0, 0]  # prompt, completion: every reply that carried usage
        self.answered: list[str] = []  # passages answered "ok", in order
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake.handle(self)

            def log_message(self, *args) -> None:  # keep the test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def passages_requested(self, since: int = 0) -> list[str]:
        return [request["passage"] for request in self.requests[since:]]

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        passage = PASSAGE_ID.search(body["messages"][0]["content"]).group(0)
        with self.lock:
            seen = sum(request["passage"] == passage for request in self.requests)
            actions = self.script.get(passage, [])
            record = {
                "passage": passage,
                "action": actions[seen] if seen < len(actions) else "ok",
                "body": body,
                "headers": dict(handler.headers),
                "start": time.monotonic(),
            }
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self.respond(handler, record["action"], passage, body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up on a hung request
            pass
        finally:
            with self.lock:
                self.in_flight -= 1
                record["end"] = time.monotonic()

    def respond(self, handler: BaseHTTPRequestHandler, action: str, passage: str, body: dict) -> None:
        if action == "redirect":  # to self.redirect_to, as a moved API (or a hostile proxy) would answer
            handler.send_response(307)
            handler.send_header("Location", self.redirect_to)
            handler.send_header("Content-Length", "0")
            return handler.end_headers()
        if action == "echo-key":  # a 401 whose body repeats the header it was sent
            echoed = json.dumps({"error": {"message": f"bad header {handler.headers['Authorization']}"}})
            return self.send(handler, 401, echoed.encode())
        if action in ("trickle", "huge"):  # a reply one byte at a time, or one far too big
            handler.send_response(200)
            handler.send_header("Content-Length", str(10**9))
            handler.end_headers()
            for _ in range(10**9 // 65536):
                handler.wfile.write(b" " if action == "trickle" else b" " * 65536)
                handler.wfile.flush()
                time.sleep(0.2 if action == "trickle" else 0)
        if action in ("401", "404", "429", "429-retry-after", "500"):
            error = {"401": "Incorrect API key provided: sk-te***", "404": "The model `fake-model` does not exist"}
            headers = {"Retry-After": "1"} if action == "429-retry-after" else {}
            message = error.get(action, "server trouble")
            return self.send(handler, int(action[:3]), json.dumps({"error": {"message": message}}).encode(), headers)
        if action == "malformed":
            return self.send(handler, 200, b'{"choices": [{"message": {"content": "1. What')
        if action == "hang":
            time.sleep(self.hang_s)
        time.sleep(self.delay)
        usage = {"prompt_tokens": len(body["messages"][0]["content"]) // 4, "completion_tokens": 20 + int(passage[1:])}
        questions = "\n".join(
            f"{number}{mark} {question}"
            for number, mark, question in zip((1, 2), (".", ")"), expected_questions(passage))
        )
        content = "" if action == "no-questions" else f"Here are two questions:\n{questions}"
        with self.lock:
            self.tokens_sent = [
                self.tokens_sent[0] + usage["prompt_tokens"],
                self.tokens_sent[1] + usage["completion_tokens"],
            ]
            self.answered += [passage] if content else []
        reply = {"choices": [{"message": {"role": "assistant", "content": content}}], "usage": usage}
        self.send(handler, 200, json.dumps(reply).encode())

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, payload: bytes, headers: dict | None = None) -> None:
        handler.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


@pytest.fixture
def chat():
    """Start fake servers with `chat(script=..., delay=...)`; all are stopped after the test."""
    servers: list[FakeChat] = []

    def start(**kwargs) -> FakeChat:
        servers.append(FakeChat(**kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def config_for(server: FakeChat, **overrides) -> LLMConfig:
    settings = {
        "base_url": server.url,
        "model": "fake-model",
        "api_key": "sk-test",
        "concurrency": 2,
        "max_retries": 3,
        "timeout_s": 5.0,
        "backoff_s": 0.01,
    }
    return LLMConfig(**{**settings, **overrides})


# ---------------------------------------------------------------- generation


def test_answers_parsed_and_tokens_and_cost_tallied(chat, tmp_path):
    server = chat()
    passages = make_passages(4)
    config = config_for(
        server, price_per_million_input=2.5, price_per_million_output=10.0, temperature=0.3, max_tokens=200
    )
    found, stats = generate_questions(passages, config, tmp_path, progress=False)
    assert found == {p["_id"]: expected_questions(f"P{i:02d}") for i, p in enumerate(passages)}
    assert (stats.passages, stats.cached, stats.requests, stats.retries, stats.failed) == (4, 0, 4, 0, [])
    assert [stats.prompt_tokens, stats.completion_tokens] == server.tokens_sent
    assert stats.completion_tokens == 20 + 21 + 22 + 23
    assert stats.cost == pytest.approx((server.tokens_sent[0] * 2.5 + server.tokens_sent[1] * 10.0) / 1e6, rel=1e-12)
    request = server.requests[0]
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    assert {k: request["body"][k] for k in ("model", "temperature", "max_tokens")} == {
        "model": "fake-model",
        "temperature": 0.3,
        "max_tokens": 200,
    }
    assert "4 passages, 0 from the cache, 4 requests (0 retries), 0 failed" in stats.summary()


def test_settings_from_the_environment(chat, tmp_path, monkeypatch):
    server = chat()
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/")
    monkeypatch.setenv("OPENAI_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_API_KEY", "")  # a local server needs no key: no Authorization header at all
    found, _ = generate_questions(make_passages(1), LLMConfig(), tmp_path, progress=False)
    assert found == {"id0": expected_questions("P00")}
    assert server.requests[0]["body"]["model"] == "env-model"
    assert "Authorization" not in server.requests[0]["headers"]
    monkeypatch.delenv("OPENAI_MODEL")
    with pytest.raises(LLMError, match="no model"):
        generate_questions(make_passages(1), LLMConfig(), tmp_path, progress=False)


def test_transient_failures_are_retried(chat, tmp_path):
    script = {
        "P00": ["429"],
        "P01": ["429-retry-after"],
        "P02": ["500", "500"],
        "P03": ["hang"],
        "P04": ["malformed"],
        "P05": ["no-questions"],
    }
    server = chat(script=script, hang_s=1.5)
    passages = make_passages(7)
    found, stats = generate_questions(
        passages, config_for(server, concurrency=4, timeout_s=0.5), tmp_path, progress=False
    )
    assert found == {p["_id"]: expected_questions(f"P{i:02d}") for i, p in enumerate(passages)}
    assert (stats.retries, stats.requests, stats.failed) == (7, 14, [])
    assert [stats.prompt_tokens, stats.completion_tokens] == server.tokens_sent  # the question-less answer was paid for
    first, second = [request for request in server.requests if request["passage"] == "P01"]
    assert second["start"] - first["end"] >= 0.9  # Retry-After: 1 honoured, not the 0.01 s backoff


def test_passage_out_of_retries_is_reported_and_not_cached(chat, tmp_path):
    server = chat(script={"P01": ["500"] * 3})
    passages = make_passages(4)
    found, stats = generate_questions(passages, config_for(server, max_retries=2), tmp_path, progress=False)
    assert sorted(found) == ["id0", "id2", "id3"]
    assert stats.failed == ["id1"] and "HTTP 500" in stats.errors["id1"] and "server trouble" in stats.errors["id1"]
    assert server.passages_requested().count("P01") == 3
    before = len(server.requests)
    found, stats = generate_questions(passages, config_for(server, max_retries=2), tmp_path, progress=False)
    assert server.passages_requested(before) == ["P01"]  # the others came from the cache, P01's failure did not
    assert (stats.cached, stats.failed, len(found)) == (3, [], 4)


@pytest.mark.parametrize("status, message", [("401", "Incorrect API key"), ("404", "does not exist")])
def test_fatal_status_stops_at_once(chat, tmp_path, status, message):
    server = chat(script={f"P{i:02d}": [status] * 10 for i in range(8)})
    started = time.monotonic()
    with pytest.raises(LLMError, match=f"HTTP {status}: .*{message}"):
        generate_questions(make_passages(8), config_for(server, max_retries=5, backoff_s=1.0), tmp_path, progress=False)
    assert len(server.requests) <= 2  # the two first in flight; nothing retried, no passage queued after them
    assert time.monotonic() - started < 1.0


def test_every_request_failing_raises(chat, tmp_path):
    server = chat(script={f"P{i:02d}": ["500"] * 10 for i in range(8)})
    with pytest.raises(LLMError, match="every request failed.*HTTP 500"):
        generate_questions(make_passages(2), config_for(server, max_retries=1), tmp_path, progress=False)
    before = len(server.requests)
    with pytest.raises(LLMError, match="5 passages in a row failed"):
        generate_questions(
            make_passages(8), config_for(server, max_retries=1, concurrency=1), tmp_path / "b", progress=False
        )
    assert len(server.requests) - before == 5 * 2  # the last three passages were never asked


def test_concurrency_limit(chat, tmp_path):
    server = chat(delay=0.1)
    found, _ = generate_questions(make_passages(12), config_for(server, concurrency=3), tmp_path, progress=False)
    assert len(found) == 12
    assert 2 <= server.max_in_flight <= 3


def test_cache_reused_and_keyed_on_model_and_prompt(chat, tmp_path):
    server = chat()
    passages = make_passages(3) + [{"_id": "copy", "title": "Rulebook 0", "text": "Rule P00: firms must keep records."}]
    config = config_for(server)
    first, stats = generate_questions(passages, config, tmp_path, progress=False)
    assert stats.requests == 3 and first["copy"] == first["id0"]  # the same title and text: asked once
    again, stats = generate_questions(passages, config, tmp_path, progress=False)
    assert (again, stats.requests, stats.cached) == (first, 0, 4)
    assert len(server.requests) == 3
    _, stats = generate_questions(passages, replace(config, model="other-model"), tmp_path, progress=False)
    assert stats.requests == 3 and server.requests[-1]["body"]["model"] == "other-model"
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("From {title}, {n} questions on: {text}", encoding="utf-8")
    _, stats = generate_questions(passages, replace(config, prompt_file=str(prompt)), tmp_path / "c2", progress=False)
    assert stats.requests == 3
    assert server.requests[-1]["body"]["messages"][0]["content"].startswith("From Rulebook ")


RESUME_SCRIPT = """
import json, sys
from pathlib import Path
from documents.questions import LLMConfig, generate_questions
passages = json.loads(Path(sys.argv[1]).read_text())
config = LLMConfig(base_url=sys.argv[2], model="fake-model", api_key="", concurrency=2, timeout_s=5)
generate_questions(passages, config, Path(sys.argv[3]), progress=False)
"""


def test_resume_after_kill_never_asks_a_cached_passage_again(chat, tmp_path):
    server = chat(delay=0.15)
    passages = make_passages(12)
    (tmp_path / "passages.json").write_text(json.dumps(passages), encoding="utf-8")
    cache = tmp_path / "cache"
    worker = subprocess.Popen(
        [sys.executable, "-c", RESUME_SCRIPT, str(tmp_path / "passages.json"), server.url, str(cache)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 30
    while len(server.answered) < 4 and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    cached = {PASSAGE_ID.search(json.loads(path.read_text())["answer"]).group(0) for path in cache.glob("*.json")}
    assert 1 <= len(cached) < 12, "the kill should land mid-generation"
    before = len(server.requests)
    found, stats = generate_questions(passages, config_for(server, concurrency=2), cache, progress=False)
    asked_again = set(server.passages_requested(before))
    assert not asked_again & cached
    assert asked_again | cached == {f"P{i:02d}" for i in range(12)}
    assert stats.cached == len(cached) and stats.requests == 12 - len(cached)
    assert found == {p["_id"]: expected_questions(f"P{i:02d}") for i, p in enumerate(passages)}


# ---------------------------------------------------------------- prompt and parsing


def test_prompt_placeholders_and_checks(tmp_path):
    passage = {"_id": "x", "title": "Conduct Rules", "text": "A firm must {not} mislead."}
    template = 'Q for {title}: {n} as {"questions": [...]}\n{text}'
    assert (
        render_prompt(template, passage, 3)
        == 'Q for Conduct Rules: 3 as {"questions": [...]}\nA firm must {not} mislead.'
    )
    filled = render_prompt(DEFAULT_PROMPT, passage, 2)
    assert "Write 2 different questions" in filled and "A firm must {not} mislead." in filled
    assert "{" + "text}" not in filled
    no_text = tmp_path / "bad.txt"
    no_text.write_text("Write {n} questions about {title}.", encoding="utf-8")
    with pytest.raises(LLMError, match="no {text} placeholder"):
        load_template(LLMConfig(prompt_file=str(no_text)))


@pytest.mark.parametrize(
    "answer",
    [
        "What is a controller?\nWho must notify the regulator?",
        "Here are 2 questions:\n\n1. What is a controller?\n2) Who must notify the regulator?\n",
        "- **What is a controller?**\n* Who must notify the regulator?",
        'Q1: "What is a controller?"\nQ2: "Who must notify the regulator?"',
        '```json\n["What is a controller?", "Who must notify the regulator?"]\n```',
        '{"questions": ["What is a controller?", "Who must notify the regulator?", "A third one?"]}',
        "<think>The passage is about controllers.\nMaybe ask?</think>\n"
        "What is a controller?\nWho must notify the regulator?",
    ],
)
def test_parse_questions(answer):
    assert parse_questions(answer, 2) == ["What is a controller?", "Who must notify the regulator?"]


def test_parse_questions_without_question_marks_and_empty():
    assert parse_questions("1. capital buffer rules for banks\n2. deadline to report a breach", 2) == [
        "capital buffer rules for banks",
        "deadline to report a breach",
    ]
    assert parse_questions("", 2) == [] and parse_questions("Questions:\n", 2) == []


# ---------------------------------------------------------------- filters


PASSAGES = {
    "p1": "An authorised firm must notify the regulator within fourteen days of any change in its controllers.",
    "p2": "A controller is a person who holds ten per cent or more of the shares in a firm.",
    "p3": "Records of every transaction must be kept for six years.",
    "p4": "This rule applies from 1 January.",
}


def test_near_verbatim_rule():
    passage = PASSAGES["p1"]
    assert near_verbatim(
        "Must one NOTIFY the regulator, within fourteen days of any new controller?", passage
    )  # 8 in a row
    assert not near_verbatim("Must one notify the regulator within fourteen days of a change?", passage)  # 7 in a row
    assert not near_verbatim("How quickly must a firm report new controllers?", passage)


def test_filter_questions_counts():
    questions = {
        "p1": [
            "",
            "   ",
            "How quickly must a firm tell the regulator about new controllers?",
            "how quickly must a firm tell the regulator about new controllers",  # a repeat of the one above
            "Is it true that a firm must notify the regulator within fourteen days of any change in its controllers?",
            "What is a controller?",
        ],  # also asked of p2: ambiguous, every copy goes
        "p2": ["What is a controller?", "WHAT is a controller!!", "Who counts as a controller of a firm?"],
        "p3": ["How long must transaction records be kept?"],
        "p4": ["", "?"],
    }
    kept, counts = filter_questions(questions, PASSAGES)
    assert kept == {
        "p1": ["How quickly must a firm tell the regulator about new controllers?"],
        "p2": ["Who counts as a controller of a firm?"],
        "p3": ["How long must transaction records be kept?"],
    }
    assert counts == {"empty": 4, "repeated": 2, "ambiguous": 2, "near_verbatim": 1, "kept": 3}
    assert sum(counts.values()) == sum(len(asked) for asked in questions.values())


def bag_of_words(vocabulary: dict[str, int]):
    """Unit-length word-count vectors over a fixed vocabulary: (N, V) float32."""

    def encode(texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), len(vocabulary)), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                if word in vocabulary:
                    vectors[row, vocabulary[word]] += 1
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    return encode


def test_round_trip_filter():
    passages = {
        "capital": "banks hold capital reserves above the minimum ratio",
        "aml": "firms verify customer identity to prevent money laundering",
        "complaints": "insurers answer complaints within eight weeks",
    }
    words = sorted({word for text in passages.values() for word in text.split()})
    encode = bag_of_words({word: i for i, word in enumerate(words)})
    questions = {
        "capital": ["how much capital must banks hold", "how fast must insurers answer complaints"],
        "aml": ["when must firms verify customer identity"],
        "complaints": ["what deadline do insurers have for complaints"],
    }
    kept, counts = round_trip_filter(questions, passages, encode, top_k=1)
    assert kept == {
        "capital": ["how much capital must banks hold"],
        "aml": questions["aml"],
        "complaints": questions["complaints"],
    }
    assert counts == {"not_in_top_k": 1, "kept": 3}
    seen: list[list[str]] = []
    kept, counts = round_trip_filter(
        questions, passages, encode, top_k=3, encode_passages=lambda texts: seen.append(texts) or encode(texts)
    )
    assert kept == questions and counts == {"not_in_top_k": 0, "kept": 4}
    assert seen == [list(passages.values())]


# ---------------------------------------------------------------- what the client never does


def test_a_redirect_is_never_followed_and_the_key_never_leaves(chat, tmp_path):
    """A 307 to another server (another port: another origin): generation stops naming the
    redirect, and the second server never receives a request, let alone the key."""
    first, second = chat(script={"P00": ["redirect"] * 5}), chat()
    first.redirect_to = second.url + "/chat/completions"
    with pytest.raises(LLMError, match="a redirect to .* not followed"):
        generate_questions(make_passages(1), config_for(first, api_key="sk-secret-1"), tmp_path, progress=False)
    assert first.requests[0]["headers"]["Authorization"] == "Bearer sk-secret-1"  # sent where it was meant to go
    assert second.requests == [] and not list(tmp_path.glob("*.json"))  # nothing asked there, nothing cached


def test_the_key_is_redacted_from_every_message(chat, tmp_path):
    server = chat(script={"P00": ["echo-key"]})
    with pytest.raises(LLMError) as raised:
        generate_questions(make_passages(1), config_for(server, api_key="sk-secret-2"), tmp_path, progress=False)
    assert "sk-secret-2" not in str(raised.value) and "bad header Bearer ***" in str(raised.value)


def test_a_trickling_reply_is_cut_off_at_the_deadline(chat, tmp_path):
    """One byte every 0.2 s never trips a per-read timeout; the whole request still ends at timeout_s."""
    server = chat(script={"P00": ["trickle"]})
    started = time.monotonic()
    found, stats = generate_questions(
        make_passages(2), config_for(server, timeout_s=1.0, max_retries=0), tmp_path, progress=False
    )
    assert time.monotonic() - started < 4.0
    assert set(found) == {"id1"} and "no complete reply within 1 s" in stats.errors["id0"]


def test_a_reply_past_the_size_limit_is_cut_off(chat, tmp_path, monkeypatch):
    import documents.questions as questions

    monkeypatch.setattr(questions, "MAX_REPLY_BYTES", 1 << 20)
    server = chat(script={"P00": ["huge"]})
    found, stats = generate_questions(make_passages(2), config_for(server, max_retries=0), tmp_path, progress=False)
    assert set(found) == {"id1"} and "over 1048576 bytes" in stats.errors["id0"]


@pytest.mark.parametrize("url", ["file:///etc/hostname#", "ftp://example.com/v1", "localhost:8000/v1"])
def test_only_http_and_https_addresses_are_accepted(tmp_path, url):
    with pytest.raises(LLMError, match="must be an http:// or https:// address"):
        generate_questions(make_passages(1), LLMConfig(base_url=url, model="m"), tmp_path, progress=False)


def test_plain_http_to_another_machine_is_warned_about(capsys):
    from documents.questions import Endpoint

    Endpoint.from_config(LLMConfig(base_url="http://10.1.2.3:8000/v1", model="m", api_key="k"))
    assert "plain http to another machine: the passages and the API key travel unencrypted" in capsys.readouterr().err
    Endpoint.from_config(LLMConfig(base_url="http://127.0.0.1:8000/v1", model="m", api_key="k"))
    assert capsys.readouterr().err == ""


def test_answers_of_one_server_are_not_reused_for_another(chat, tmp_path):
    first, second = chat(), chat()
    generate_questions(make_passages(2), config_for(first), tmp_path, progress=False)
    _, stats = generate_questions(make_passages(2), config_for(second), tmp_path, progress=False)
    assert stats.cached == 0 and len(second.requests) == 2  # same model name, another server: asked again
