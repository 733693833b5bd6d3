"""Several model workers on one shared model, the media-decoding pool, and their failure modes."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from serve_helpers import MODEL, client_for, data_url, mask_png, png_bytes

from oryx_mllm.pipeline import Answer
from oryx_mllm.serve import ServeSettings
from oryx_mllm.serve.app import _one_torch_thread
from oryx_mllm.serve.engine import BatchEngine, Cancelled, GenerationParams, Job
from oryx_mllm.serve.media import MediaResolver, prepare_messages
from oryx_mllm.serve.schemas import ChatCompletionRequest

SIZES = [(64, 64), (96, 64), (64, 128), (128, 96), (32, 160), (160, 32), (64, 96), (128, 128)]


def image_request(i: int, url: str | None = None) -> list[dict]:
    w, h = SIZES[i % len(SIZES)]
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": url or data_url(png_bytes(w, h, i))}},
                {"type": "text", "text": f"Question {i}?"},
            ],
        }
    ]


class RecordingPipeline:
    """Stands in for the pipeline: records each call's batch size, how many calls overlap and
    the calling thread's torch thread count; answers after ``delay`` seconds."""

    def __init__(self, delay: float = 0.2):
        self.delay = delay
        self.calls: list[int] = []
        self.torch_threads: list[int] = []
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()

    def chat_batch(self, conversations, **kw) -> list[Answer]:
        with self._lock:
            self.calls.append(len(conversations))
            self.torch_threads.append(torch.get_num_threads())
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        time.sleep(self.delay)
        with self._lock:
            self.active -= 1
        return [Answer("ok", 1, 0, 1, self.delay, [], "stop") for _ in conversations]


def run_jobs(engine: BatchEngine, n: int, params: list[GenerationParams] | None = None) -> list:
    """Announce ``n`` requests, queue them together and wait for their answers."""
    params = params or [GenerationParams(max_tokens=4)] * n
    for _ in range(n):
        engine.expect()
    jobs = [
        engine.submit(Job([{"role": "user", "content": "hi"}], p), expected=True) for p in params
    ]
    return [job.future.result(30) for job in jobs]


def test_free_workers_split_the_load():
    fake = RecordingPipeline()
    engine = BatchEngine(fake, max_batch_size=8, batch_wait_ms=500, workers=2, torch_threads=1)
    engine.start()
    try:
        assert len(run_jobs(engine, 8)) == 8
    finally:
        engine.stop()
    assert sorted(fake.calls) == [4, 4]  # 8 requests, 2 free workers: two batches of 4 ...
    assert fake.most_active == 2  # ... running at the same time
    assert fake.torch_threads == [1, 1]  # each worker with its own share of torch threads


def test_one_worker_keeps_one_batch_and_the_callers_torch_threads():
    fake = RecordingPipeline(delay=0.05)
    engine = BatchEngine(fake, max_batch_size=8, batch_wait_ms=500)
    engine.start()
    try:
        run_jobs(engine, 8)
    finally:
        engine.stop()
    assert fake.calls == [8] and fake.most_active == 1
    assert fake.torch_threads == [torch.get_num_threads()]


def test_a_lone_request_does_not_wait_with_several_workers():
    fake = RecordingPipeline(delay=0.0)
    engine = BatchEngine(fake, max_batch_size=8, batch_wait_ms=2000, workers=2)
    engine.start()
    try:
        t0 = time.perf_counter()
        run_jobs(engine, 1)
        assert time.perf_counter() - t0 < 1.0
    finally:
        engine.stop()


def test_a_client_that_comes_back_at_once_is_not_counted_twice():
    """The next request of a lone client may arrive the moment its answer is out (here: from the
    answer's callback). The worker is already free then, so the load stays 1 and no batch waits
    ``batch_wait_ms`` for a second request that is not coming."""
    fake = RecordingPipeline(delay=0.0)
    engine = BatchEngine(fake, max_batch_size=8, batch_wait_ms=2000)
    engine.start()
    done = threading.Event()
    answered: list[float] = []

    def ask(_future=None) -> None:
        answered.append(time.perf_counter())
        if len(answered) == 4:
            done.set()
            return
        engine.expect()
        job = engine.submit(Job([{"role": "user", "content": "hi"}], GenerationParams(4)), True)
        job.future.add_done_callback(ask)

    try:
        ask()
        assert done.wait(20)
    finally:
        engine.stop()
    assert fake.calls == [1, 1, 1]
    assert answered[-1] - answered[0] < 1.5  # no 2 s batch waits


def test_two_workers_answer_like_one_at_a_time(make_server, pipe):
    server = make_server(workers=2, max_batch_size=4, batch_wait_ms=100)
    client = client_for(server)

    def ask(i: int):
        return client.chat.completions.create(
            model=MODEL, messages=image_request(i), max_tokens=6, temperature=0
        )

    with ThreadPoolExecutor(8) as pool:  # images of 8 different sizes, batches on both workers
        together = list(pool.map(ask, range(8)))
    stats = server.engine.stats
    assert stats.requests == 8 and stats.model_calls < 8
    for i, out in enumerate(together):
        alone = ask(i)
        assert out.choices[0].message.content == alone.choices[0].message.content
        assert out.usage.prompt_tokens == alone.usage.prompt_tokens
        assert out.usage.visual_tokens == alone.usage.visual_tokens


def test_seeded_sampling_is_reproducible_next_to_other_sampling_batches(make_server, pipe):
    server = make_server(workers=3, max_batch_size=1, batch_wait_ms=0)
    client = client_for(server)

    def sample(seed: int | None, max_tokens: int = 12) -> str:
        out = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Say something."}],
            max_tokens=max_tokens,
            temperature=1.0,
            seed=seed,
        )
        return out.choices[0].message.content

    alone = sample(7)
    with ThreadPoolExecutor(6) as pool:  # unseeded sampling batches on the other workers
        noise = [pool.submit(sample, None, 20) for _ in range(5)]
        seeded = pool.submit(sample, 7)
        assert seeded.result(60) == alone
        assert all(isinstance(f.result(60), str) for f in noise)


def test_decoding_pool_gives_the_same_tensors_as_inline(pipe):
    parts = image_request(3)[0]["content"][:1] + image_request(5)[0]["content"]  # 2 image sizes
    req = ChatCompletionRequest.model_validate(
        {"model": MODEL, "messages": [{"role": "user", "content": parts}]}
    )
    resolver = MediaResolver(ServeSettings())
    inline = prepare_messages(req, pipe.processor, resolver, 16)
    with ThreadPoolExecutor(2, initializer=_one_torch_thread) as pool:
        assert pool.submit(torch.get_num_threads).result() == 1
        pooled = pool.submit(prepare_messages, req, pipe.processor, resolver, 16).result()
    assert pooled.visual_tokens == inline.visual_tokens
    for a, b in zip(inline.visual_inputs, pooled.visual_inputs, strict=True):
        assert len(a.frames) == len(b.frames)
        for x, y in zip(a.frames, b.frames, strict=True):
            assert torch.equal(x, y)


def test_a_failing_decode_fails_only_its_request(make_server, pipe):
    server = make_server(workers=2, max_batch_size=8, batch_wait_ms=200)
    url = server.url + "/v1/chat/completions"
    broken = data_url(png_bytes(64, 64, 1)[:40])  # a truncated PNG

    def post(i: int) -> httpx.Response:
        messages = image_request(i, broken if i == 3 else None)
        body = {"model": MODEL, "messages": messages, "max_tokens": 4, "temperature": 0}
        return httpx.post(url, json=body, timeout=60)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(post, range(8)))
    assert responses[3].status_code == 422
    assert responses[3].json()["error"]["code"] == "invalid_image"
    assert [r.status_code for i, r in enumerate(responses) if i != 3] == [200] * 7
    assert server.engine.stats.requests == 7
    assert post(0).status_code == 200  # still serving


def test_multiview_marks_are_drawn_from_points_and_masks(pipe):
    views = [data_url(png_bytes(64, 64, i)) for i in range(2)]
    marks = [data_url(mask_png(second_id=3), "image/png"), [[30, 30, 7]]]
    part = {"type": "multiview", "views": views, "marks": marks}
    req = ChatCompletionRequest.model_validate(
        {"model": MODEL, "messages": [{"role": "user", "content": [part]}]}
    )
    (item,) = prepare_messages(
        req, pipe.processor, MediaResolver(ServeSettings()), 16
    ).visual_inputs
    locations = item.meta["mark_locations"]
    assert [sorted(view) for view in locations] == [[1, 3], [7]]
    assert locations[1][7] == (30.0, 30.0)


class FailingBatchPipeline(RecordingPipeline):
    """Fails every call of more than one conversation; during that call the client of
    ``leaving`` goes away."""

    def __init__(self):
        super().__init__(delay=0.0)
        self.leaving: Job | None = None

    def chat_batch(self, conversations, **kw) -> list[Answer]:
        if len(conversations) > 1:
            self.calls.append(len(conversations))
            self.leaving.cancel()
            raise ValueError("batch failed")
        return super().chat_batch(conversations, **kw)


def test_a_failed_batch_counts_each_request_once_and_skips_gone_clients():
    fake = FailingBatchPipeline()
    engine = BatchEngine(fake, max_batch_size=8, batch_wait_ms=2000)
    jobs = [Job([{"role": "user", "content": f"q{i}"}], GenerationParams(4)) for i in range(3)]
    fake.leaving = jobs[1]
    engine.start()
    try:
        for _ in jobs:
            engine.expect()
        for job in jobs:
            engine.submit(job, expected=True)
        assert jobs[0].future.result(30).text == "ok"
        assert jobs[2].future.result(30).text == "ok"
        with pytest.raises(Cancelled):
            jobs[1].future.result(30)
    finally:
        engine.stop()
    assert fake.calls == [3, 1, 1]  # the batch, then the two requests whose clients stayed
    stats = engine.stats
    assert (stats.requests, stats.model_calls, stats.retries, stats.dropped) == (3, 3, 2, 1)
    assert stats.batch_sizes == [3]
    assert stats.as_dict()["mean_batch_size"] == 3.0


class CountingResolver(MediaResolver):
    def __init__(self, settings):
        super().__init__(settings)
        self.fetched: list[str] = []

    def fetch(self, url, param):
        self.fetched.append(url)
        return super().fetch(url, param)


def test_a_visual_token_budget_fetches_each_media_url_once(pipe):
    url = data_url(png_bytes(128, 128, 7))
    parts = [
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "text", "text": "What is it?"},
    ]
    body = {"model": MODEL, "messages": [{"role": "user", "content": parts}]}
    # 81 tokens at ratio 1; 10 is below what the first decode's grid allows, so the image is
    # decoded again at larger ratios (twice, without the memo: three fetches)
    req = ChatCompletionRequest.model_validate({**body, "max_visual_tokens": 10})
    resolver = CountingResolver(ServeSettings())
    budget = prepare_messages(req, pipe.processor, resolver, 4)
    assert budget.visual_tokens <= 10
    assert resolver.fetched == [url]


@pytest.mark.parametrize(
    "url,status,message",
    [
        ("{root}/pix.png\x00x", 400, "media path contains a NUL byte"),
        ("file://{root}/pix.png%00x", 400, "media path contains a NUL byte"),
        ("{root}", 400, "media path is not a file: {root}"),
        ("{root}/missing.png", 400, "media file not found: {root}/missing.png"),
    ],
)
def test_bad_local_media_paths_are_client_errors(tmp_path, url, status, message):
    from oryx_mllm.serve.errors import APIError

    resolver = MediaResolver(ServeSettings(media_root=tmp_path))
    with pytest.raises(APIError) as info:
        resolver.fetch(url.format(root=tmp_path), "messages[0].content[0]")
    assert info.value.status == status and info.value.param == "messages[0].content[0]"
    assert str(info.value) == message.format(root=tmp_path)
