"""Dynamic batching, the bounded queue and cancellation, seen from clients of a live server."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from serve_helpers import MODEL, client_for, data_url, png_bytes

from oryx_mllm.serve.app import StopFilter


class GatedPipeline:
    """Wraps a pipeline: counts ``chat_batch`` calls and can hold them until ``release()``."""

    def __init__(self, pipe, gated: bool = False):
        self._pipe = pipe
        self.processor = pipe.processor
        self.model = pipe.model
        self.calls: list[int] = []  # batch size of every chat_batch call
        self.max_new_tokens: list[int] = []  # and its max_new_tokens
        self.entered = threading.Event()
        self.gate = threading.Event()
        if not gated:
            self.gate.set()

    def chat_batch(self, conversations, **kw):
        self.calls.append(len(conversations))
        self.max_new_tokens.append(kw.get("max_new_tokens"))
        self.entered.set()
        assert self.gate.wait(30), "test gate never released"
        return self._pipe.chat_batch(conversations, **kw)

    def release(self) -> None:
        self.gate.set()


def request(i: int) -> list[dict]:
    w, h = [(64, 64), (96, 64), (64, 128), (128, 96)][i % 4]  # different sizes, one encoder pass
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": data_url(png_bytes(w, h, seed=i))}},
                {"type": "text", "text": f"Question {i}?"},
            ],
        }
    ]


def wait_until(cond, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "condition not reached"
        time.sleep(0.02)


def queue_behind_a_held_model(pool, gated: GatedPipeline, server, ask, n: int = 4):
    """Request 0 (1 token) holds the gated model while requests 0..n-1 queue up behind it; then
    the model is released. Returns the blocker's future and the queued ones'."""
    blocker = pool.submit(ask, 0, 1)
    assert gated.entered.wait(10)
    futures = [pool.submit(ask, i) for i in range(n)]
    wait_until(lambda: server.engine.queued == n)
    gated.release()
    return blocker, futures


def test_concurrent_requests_run_as_one_batch_equal_to_one_by_one(make_server, pipe):
    gated = GatedPipeline(pipe, gated=True)
    server = make_server(gated, max_batch_size=4, batch_wait_ms=0)
    client = client_for(server)

    def ask(i: int, max_tokens: int = 8):
        return client.chat.completions.create(
            model=MODEL, messages=request(i), max_tokens=max_tokens, temperature=0
        )

    with ThreadPoolExecutor(5) as pool:
        blocker, futures = queue_behind_a_held_model(pool, gated, server, ask)
        batched = [f.result(60) for f in futures]
        assert blocker.result(60).choices
    assert gated.calls == [1, 4]  # four requests of different image sizes, ONE model call

    for i, out in enumerate(batched):  # the same answers one at a time
        alone = ask(i)
        assert out.choices[0].message.content == alone.choices[0].message.content
        assert out.usage.visual_tokens == alone.usage.visual_tokens
        assert out.usage.prompt_tokens == alone.usage.prompt_tokens
    assert gated.calls == [1, 4, 1, 1, 1, 1]


def test_requests_arriving_together_are_batched_without_a_held_model(make_server, pipe):
    gated = GatedPipeline(pipe)
    server = make_server(gated, max_batch_size=8, batch_wait_ms=200)
    client = client_for(server)
    ask = lambda i: client.chat.completions.create(  # noqa: E731
        model=MODEL, messages=request(i), max_tokens=4, temperature=0
    )
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(ask, range(8)))
    assert len(outs) == 8 and sum(gated.calls) == 8
    assert len(gated.calls) < 8  # fewer model calls than requests


def test_a_lone_request_does_not_wait_for_a_batch(make_server, pipe):
    server = make_server(batch_wait_ms=2000)
    client = client_for(server)
    client.chat.completions.create(model=MODEL, messages=request(0), max_tokens=1)  # warm
    t0 = time.perf_counter()
    client.chat.completions.create(model=MODEL, messages=request(0), max_tokens=1)
    assert time.perf_counter() - t0 < 1.5  # nothing else in flight: no 2 s batching wait


def test_different_max_tokens_are_not_batched_together(make_server, pipe):
    gated = GatedPipeline(pipe)
    server = make_server(gated, max_batch_size=4, batch_wait_ms=500)
    client = client_for(server)

    def ask(n: int):
        return client.chat.completions.create(
            model=MODEL, messages=request(0), max_tokens=n, temperature=0
        )

    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(ask, [2, 2, 5, 5]))
    # each request ran in a batch generated with its own max_tokens (on a loaded machine a
    # request may miss the 500 ms window and run alone, so the batch sizes are not pinned)
    per_limit = {n: 0 for n in (2, 5)}
    for size, n in zip(gated.calls, gated.max_new_tokens, strict=True):
        per_limit[n] += size
    assert per_limit == {2: 2, 5: 2}
    assert all(o.usage.completion_tokens <= n for o, n in zip(outs, [2, 2, 5, 5]))


def test_full_queue_answers_429_and_recovers(make_server, pipe):
    gated = GatedPipeline(pipe, gated=True)
    server = make_server(gated, max_queue=1, max_batch_size=1, batch_wait_ms=0)
    client = client_for(server)
    ask = lambda: client.chat.completions.create(  # noqa: E731
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(ask)
        assert gated.entered.wait(10)  # request 1 holds the model
        queued = pool.submit(ask)
        wait_until(lambda: server.engine.queued == 1)  # request 2 waits
        with pytest.raises(openai.RateLimitError) as info:
            ask()  # request 3: no room
        assert info.value.status_code == 429
        assert info.value.response.json()["error"]["code"] == "queue_full"
        assert info.value.response.headers["retry-after"] == "1"
        gated.release()
        assert running.result(30).choices and queued.result(30).choices
    assert ask().choices  # serving again


def test_queued_request_is_dropped_when_its_client_disconnects(make_server, pipe):
    gated = GatedPipeline(pipe, gated=True)
    server = make_server(gated, max_batch_size=1, batch_wait_ms=0)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    url = server.url + "/v1/chat/completions"
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, url, json=body, timeout=30)
        assert gated.entered.wait(10)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url, json=body, timeout=0.5)  # gives up while queued, closes the socket
        wait_until(lambda: server.engine.stats.dropped == 1)
        gated.release()
        assert first.result(30).status_code == 200
    assert gated.calls == [1]  # the abandoned request never reached the model
    assert httpx.post(url, json=body, timeout=30).status_code == 200


def test_streaming_stops_generating_when_the_client_disconnects(make_server, pipe):
    server = make_server(max_max_tokens=4000)
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count forever."}],
        "max_tokens": 4000,
        "temperature": 1.0,
        "stream": True,
    }
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=30) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")  # generation started; now hang up
    wait_until(lambda: not server.engine.busy, timeout=20)
    assert server.engine.stats.cancelled == 1


def test_stop_filter_holds_back_partial_stop_strings():
    f = StopFilter(("END",))
    assert f.feed(" Hello E") == "Hello"  # the space waits: the answer may end before "END"
    assert f.feed("N") == ""
    assert f.feed("D and more") == ""
    assert f.flush() == ""
    g = StopFilter(("END",))
    assert g.feed("abc E") + g.flush() == "abc E"


@pytest.mark.parametrize(
    "stop, chunks",
    [(" Q:", [" Q", ": x"]), ("\n", ["\nParis", "\nmore"]), ("\n\n", ["  \n", "\nA"])],
)
def test_a_stop_at_the_very_start_gives_the_empty_answer(stop, chunks):
    f = StopFilter((stop,))  # the non-streamed answer: cut at the first stop, then strip -> ""
    assert "".join(f.feed(c) for c in chunks) + f.flush() == ""


def test_stop_filter_streams_the_stripped_answer():
    f = StopFilter(("triangle",))  # the non-streamed answer "red square" has no trailing space
    assert f.feed("red square ") == "red square"
    assert f.feed("tri") == "" and f.feed("angle blue") == ""
    assert f.flush() == ""
    g = StopFilter(())
    assert [g.feed(t) for t in (" a ", " b  ", "\n")] == ["a", "  b", ""] and g.flush() == ""


class PoisonPipeline(GatedPipeline):
    """A model call fails when any of its conversations asks the poison question."""

    def chat_batch(self, conversations, **kw):
        if any("POISON" in str(c) for c in conversations):
            self.calls.append(len(conversations))
            self.max_new_tokens.append(kw.get("max_new_tokens"))
            raise ValueError("poisoned batch")
        return super().chat_batch(conversations, **kw)


def test_one_failing_request_does_not_fail_its_batch(make_server, pipe):
    gated = PoisonPipeline(pipe, gated=True)
    server = make_server(gated, max_batch_size=4, batch_wait_ms=0)
    client = client_for(server)

    def ask(i: int, max_tokens: int = 4):
        messages = request(i)
        if i == 2:
            messages[0]["content"][1]["text"] = "POISON"
        return client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=max_tokens, temperature=0
        )

    with ThreadPoolExecutor(5) as pool:
        blocker, futures = queue_behind_a_held_model(pool, gated, server, ask)
        assert blocker.result(60).choices
        with pytest.raises(openai.InternalServerError):
            futures[2].result(60)
        answers = [futures[i].result(60).choices[0].message.content for i in (0, 1, 3)]
    assert gated.calls == [1, 4, 1, 1, 1, 1]  # the batch failed, then each request ran alone
    assert answers == [ask(i).choices[0].message.content for i in (0, 1, 3)]


def test_text_requests_do_not_wait_behind_media_decoding(make_server, pipe, monkeypatch):
    from oryx_mllm.serve import media

    entered, release = threading.Event(), threading.Event()
    decode = media._decode

    def slow_decode(*args, **kw):  # a media fetch that hangs (e.g. a slow remote server)
        entered.set()
        assert release.wait(30)
        return decode(*args, **kw)

    monkeypatch.setattr(media, "_decode", slow_decode)
    server = make_server(decode_workers=1)
    client = client_for(server)
    with ThreadPoolExecutor(1) as pool:
        stuck = pool.submit(
            client.chat.completions.create, model=MODEL, messages=request(0), max_tokens=1
        )
        assert entered.wait(10)  # the only decode thread is busy
        t0 = time.perf_counter()
        out = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )
        assert out.choices and time.perf_counter() - t0 < 10
        release.set()
        assert stuck.result(60).choices


def test_remote_media_fetch_stops_at_its_total_time_limit():
    import http.server

    from oryx_mllm.serve.errors import APIError
    from oryx_mllm.serve.media import MediaResolver
    from oryx_mllm.serve.settings import ServeSettings

    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # 1 byte every 50 ms: each read is quick, the whole takes 10 s
            self.send_response(200)
            self.send_header("Content-Length", "200")
            self.end_headers()
            for _ in range(200):
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.05)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        resolver = MediaResolver(ServeSettings(allow_remote_media=True, remote_timeout_s=0.5))
        t0 = time.perf_counter()
        with pytest.raises(APIError) as info:
            resolver.fetch(f"http://127.0.0.1:{httpd.server_port}/slow.png", "image_url.url")
        assert time.perf_counter() - t0 < 3
        assert info.value.status == 400 and "took longer than 0.5s" in str(info.value)
    finally:
        httpd.shutdown()
