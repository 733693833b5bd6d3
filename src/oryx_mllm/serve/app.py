"""The FastAPI app: OpenAI-compatible chat completions over the batching engine, plus ``/``.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /v1/models/{id}``,
``GET /health`` and ``GET /`` (the chat page). Every error is OpenAI-style JSON
(``{"error": {"message", "type", "param", "code"}}``) with a meaningful HTTP status.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from oryx_mllm.pipeline import Answer, OryxPipeline
from oryx_mllm.serve import schemas
from oryx_mllm.serve.engine import BatchEngine, Cancelled, GenerationParams, Job
from oryx_mllm.serve.errors import APIError, from_oryx_error
from oryx_mllm.serve.media import (
    MediaResolver,
    PreparedRequest,
    check_prompt,
    has_media,
    prepare_messages,
)
from oryx_mllm.serve.settings import ServeSettings

log = logging.getLogger(__name__)

# machine-readable ``code`` of the errors Starlette raises itself (unknown path, wrong method)
_HTTP_ERROR_CODES = {404: "unknown_path", 405: "method_not_allowed"}
DISCONNECT_POLL_S = 0.1


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


def _error_response(err: APIError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """``err`` as JSON; ``headers`` (e.g. the ``Allow`` of a 405) are sent along."""
    out = dict(headers or {})
    if err.status == 429:
        out["Retry-After"] = "1"
    return JSONResponse(err.body(), status_code=err.status, headers=out or None)


def _param(loc: tuple) -> str | None:
    """pydantic's error location as the request's own path: ``messages[0].content[1].text``.

    pydantic names union branches in the location (``list[tagged-union[...]]``,
    ``function-after[...]``) and, after a tagged union's index, the tag (``image_url``); the
    request has neither."""
    out, skip_tag = "", False
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        if "[" in part or part.startswith("function-"):
            skip_tag = skip_tag or "tagged-union" in part
            continue
        if skip_tag and out.endswith("]"):
            skip_tag = False
            continue
        out += f".{part}" if out else part
    return out or None


def _validation_error(exc: ValidationError) -> APIError:
    # A union (message content: string or parts) reports every branch. The real error is the one
    # that is not a branch's plain type mismatch ("should be a valid list"), the deepest first.
    def rank(e: dict) -> tuple[bool, int]:
        return (not e.get("type", "").endswith("_type"), len(e.get("loc", ())))

    first = max(exc.errors(), key=rank)
    param = _param(first.get("loc", ()))
    return APIError(400, f"{param}: {first.get('msg')}" if param else first.get("msg", "invalid"),
                    param=param, code="invalid_value")  # fmt: skip


def _one_torch_thread() -> None:
    """Media decoding runs torch ops on small tensors: one intra-op thread each (the setting is
    per thread), so they do not spin up thread teams that fight the model's for the cores."""
    torch.set_num_threads(1)


def _page() -> str:
    return (resources.files("oryx_mllm.serve") / "static" / "index.html").read_text("utf-8")


class StopFilter:
    """Streams text but never emits a stop string (or the text after it); holds back a tail that
    could be the start of one, and trailing whitespace (answers are stripped)."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops = stops
        self.buffer = ""
        self.stopped = False
        self.started = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        self.buffer += text
        # Stops are searched in the text as generated, leading whitespace included (a stop such
        # as "\n" may be where the answer starts), then the output is stripped: the same order
        # as the non-streamed answer (cut at the first stop, then strip).
        hits = [self.buffer.find(s) for s in self.stops if s in self.buffer]
        if hits:  # the answer ends here
            out, self.buffer, self.stopped = self.buffer[: min(hits)].rstrip(), "", True
            return self._emit(out)
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.buffer)), 0, -1):
                if self.buffer.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        cut = len(self.buffer) - hold
        # whitespace goes out only once text other than a stop follows it: the answer may end
        # right there, and answers are stripped
        while cut > 0 and self.buffer[cut - 1].isspace():
            cut -= 1
        out, self.buffer = self.buffer[:cut], self.buffer[cut:]
        return self._emit(out)

    def _emit(self, out: str) -> str:
        if not self.started:  # answers are stripped: no leading whitespace
            out = out.lstrip()
            self.started = bool(out)
        return out

    def flush(self) -> str:
        out = "" if self.stopped else self._emit(self.buffer.rstrip())
        self.buffer = ""
        return out


def create_app(pipeline: OryxPipeline, settings: ServeSettings | None = None) -> FastAPI:
    """An app serving ``pipeline`` under ``settings`` (the engine runs while the app is up)."""
    settings = settings or ServeSettings()
    model_name = settings.model_name or (
        Path(settings.model_path).name if settings.model_path else "oryx-tiny"
    )
    engine = BatchEngine(
        pipeline,
        max_queue=settings.max_queue,
        max_batch_size=settings.max_batch_size,
        batch_wait_ms=settings.batch_wait_ms,
        workers=settings.workers,
        torch_threads=settings.torch_threads,
    )
    resolver = MediaResolver(settings)
    decoder = ThreadPoolExecutor(
        settings.decode_workers, thread_name_prefix="oryx-decode", initializer=_one_torch_thread
    )
    texts = ThreadPoolExecutor(
        settings.decode_workers, thread_name_prefix="oryx-text", initializer=_one_torch_thread
    )
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            engine.stop()
            decoder.shutdown(wait=False, cancel_futures=True)
            texts.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="Oryx", version="1", lifespan=lifespan, docs_url="/docs")
    app.state.engine = engine
    app.state.settings = settings
    app.state.model_name = model_name
    engine.start()  # also works without lifespan events (e.g. a bare ASGI transport)

    # Errors ----------------------------------------------------------------------------------------
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        code = _HTTP_ERROR_CODES.get(exc.status_code)
        # Starlette's 405 carries the route's methods as an ``Allow`` header (RFC 9110 15.5.6)
        err = APIError(exc.status_code, str(exc.detail), type=kind, code=code)
        return _error_response(err, exc.headers)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error_response(from_oryx_error(exc))

    # Helpers ---------------------------------------------------------------------------------------
    def check_key(request: Request) -> None:
        if settings.api_key is None:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), settings.api_key.encode()
        ):
            raise APIError(401, "invalid or missing API key (Authorization: Bearer <key>)",
                           type="authentication_error", code="invalid_api_key")  # fmt: skip

    def check_content_type(request: Request) -> None:
        """JSON bodies only; a missing header is accepted (some clients send none)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind and kind != "application/json" and not kind.endswith("+json"):
            raise APIError(415, f"the body must be JSON (Content-Type: application/json), got "
                           f"{kind!r}", code="unsupported_media_type")  # fmt: skip

    async def read_body(request: Request) -> bytes:
        limit = settings.max_body_bytes
        too_big = APIError(413, f"request body larger than {limit} bytes",
                           code="request_too_large")  # fmt: skip
        declared = request.headers.get("content-length")
        size, chunks, drained = 0, [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit or (declared and declared.isdigit() and int(declared) > limit):
                drained += len(chunk)  # read (not keep) the rest so the client sees our 413
                if drained > 4 * limit + (1 << 20):
                    break
                continue
            chunks.append(chunk)
        if size > limit or drained:
            raise too_big
        return b"".join(chunks)

    async def wait_for(request: Request, awaitable: asyncio.Future) -> object:
        """Await ``awaitable`` unless the client disconnects first (-> :class:`ClientGone`)."""
        while True:
            done, _ = await asyncio.wait({awaitable}, timeout=DISCONNECT_POLL_S)
            if done:
                return awaitable.result()
            if await request.is_disconnected():
                raise ClientGone

    def prepare_checked(req: schemas.ChatCompletionRequest) -> PreparedRequest:
        prepared = prepare_messages(req, pipeline.processor, resolver, settings.max_media_items)
        check_prompt(prepared, pipeline)
        return prepared

    async def prepare(req: schemas.ChatCompletionRequest) -> PreparedRequest:
        loop = asyncio.get_running_loop()
        # Media go to the decode pool; text-only requests (tokenising only) to their own, so they
        # never wait behind a slow media fetch and never tokenise on the event loop.
        pool = decoder if has_media(req) else texts
        task = loop.run_in_executor(pool, prepare_checked, req)
        engine.expect()  # the worker may wait for this request to join a batch
        try:
            return await asyncio.wait_for(task, settings.decode_timeout_s)
        except TimeoutError as exc:
            engine.unexpect()
            raise APIError(422, "preparing the request (fetching and decoding its media, "
                           f"tokenising its prompt) took longer than {settings.decode_timeout_s}s",
                           code="decode_timeout") from exc  # fmt: skip
        except BaseException:
            engine.unexpect()
            raise

    def parse(body: bytes) -> schemas.ChatCompletionRequest:
        try:
            raw = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise APIError(400, f"the body is not valid JSON: {exc}", code="invalid_json") from exc
        except RecursionError as exc:
            raise APIError(
                400, "the body's JSON is nested too deeply", code="invalid_json"
            ) from exc
        if not isinstance(raw, dict):
            raise APIError(400, "the body must be a JSON object", code="invalid_json")
        if raw.get("messages") == []:
            raise APIError(400, "messages must not be empty", param="messages",
                           code="empty_array")  # fmt: skip
        try:
            return schemas.ChatCompletionRequest.model_validate(raw)
        except ValidationError as exc:
            raise _validation_error(exc) from exc

    def params_of(req: schemas.ChatCompletionRequest) -> GenerationParams:
        max_tokens = req.max_completion_tokens or req.max_tokens or settings.default_max_tokens
        if max_tokens > settings.max_max_tokens:
            raise APIError(400, f"max_tokens must be <= {settings.max_max_tokens}",
                           param="max_tokens", code="invalid_value")  # fmt: skip
        return GenerationParams(
            max_tokens=max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            stop=tuple(req.stop or ()),
            seed=req.seed,
        )

    def submit(job: Job) -> Job:
        try:
            return engine.submit(job, expected=True)
        except APIError:
            raise
        except RuntimeError as exc:
            raise APIError(503, "the server is shutting down", type="server_error") from exc

    # Routes ----------------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(_page())

    @app.get("/health")
    async def health() -> dict:
        return {
            "status": "ok",
            "model": model_name,
            "queued": engine.queued,
            "busy": engine.busy,
            "engine": engine.stats.as_dict(),
        }

    def model_card() -> dict:
        return {"id": model_name, "object": "model", "created": created, "owned_by": "oryx"}

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict:
        check_key(request)
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request) -> dict:
        check_key(request)
        if model_id != model_name:
            raise APIError(404, f"the model {model_id!r} does not exist", type="not_found_error",
                           param="model", code="model_not_found")  # fmt: skip
        return model_card()

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        try:
            return await _chat_completions(request)
        except (APIError, StarletteHTTPException):
            raise
        except Exception as exc:  # noqa: BLE001 - answered as JSON here, see below
            # Raised past the route, Starlette's last-resort handler answers and then re-raises,
            # which makes the server drop the client's keep-alive connection.
            log.exception("unhandled error")
            raise from_oryx_error(exc) from exc

    async def _chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        check_key(request)
        check_content_type(request)
        req = parse(await read_body(request))
        if req.model != model_name:
            raise APIError(404, f"the model {req.model!r} does not exist; this server serves "
                           f"{model_name!r}", type="not_found_error", param="model",
                           code="model_not_found")  # fmt: skip
        params = params_of(req)
        prepared = await prepare(req)
        if req.stream:
            return await stream_response(request, req, params, prepared)
        job = submit(Job(prepared.messages, params))
        try:
            answer = await wait_for(request, asyncio.wrap_future(job.future))
        except ClientGone:
            engine.cancel(job)
            return JSONResponse({}, status_code=499)
        except Cancelled as exc:
            raise APIError(503, "request cancelled", type="server_error") from exc
        except Exception as exc:
            raise from_oryx_error(exc) from exc
        assert isinstance(answer, Answer)
        usage = schemas.usage(answer.prompt_tokens, answer.visual_tokens, answer.completion_tokens)
        return JSONResponse(
            schemas.completion(
                schemas.new_id(), model_name, answer.text, answer.finish_reason, usage
            )
        )

    async def stream_response(
        request: Request,
        req: schemas.ChatCompletionRequest,
        params: GenerationParams,
        prepared: PreparedRequest,
    ) -> StreamingResponse:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, object]] = asyncio.Queue()

        def on_text(text: str) -> None:  # worker thread
            loop.call_soon_threadsafe(events.put_nowait, ("text", text))

        job = Job(prepared.messages, params, on_text=on_text)
        job.future.add_done_callback(
            lambda f: loop.call_soon_threadsafe(events.put_nowait, ("done", f))
        )
        submit(job)
        # Wait for the first event before answering 200, so failures are still real errors.
        getter = asyncio.ensure_future(events.get())
        try:
            first = await wait_for(request, getter)
        except ClientGone:
            getter.cancel()
            engine.cancel(job)
            return StreamingResponse(iter(()), status_code=499)
        kind, value = first  # type: ignore[misc]
        if kind == "done" and value.exception() is not None:  # type: ignore[union-attr]
            raise from_oryx_error(value.exception())  # type: ignore[union-attr]

        id_, created_at = schemas.new_id(), int(time.time())
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        stops = StopFilter(params.stop)

        def sse(obj: dict) -> str:
            return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

        async def body() -> AsyncIterator[str]:
            pending: tuple[str, object] | None = first
            try:
                yield sse(
                    schemas.chunk(id_, model_name, created_at, {"role": "assistant", "content": ""})
                )
                while True:
                    kind, value = pending if pending is not None else await events.get()
                    pending = None
                    if kind == "text":
                        text = stops.feed(value)  # type: ignore[arg-type]
                        if text:
                            yield sse(schemas.chunk(id_, model_name, created_at, {"content": text}))
                        continue
                    exc = value.exception()  # type: ignore[union-attr]
                    if exc is not None:
                        err = from_oryx_error(exc)
                        yield sse(err.body())
                        break
                    answer: Answer = value.result()  # type: ignore[union-attr]
                    tail = stops.flush()
                    if tail:
                        yield sse(schemas.chunk(id_, model_name, created_at, {"content": tail}))
                    yield sse(schemas.chunk(id_, model_name, created_at, {}, answer.finish_reason))
                    if include_usage:
                        u = schemas.usage(
                            answer.prompt_tokens, answer.visual_tokens, answer.completion_tokens
                        )
                        yield sse(schemas.chunk(id_, model_name, created_at, usage_=u))
                    break
                yield "data: [DONE]\n\n"
            finally:
                engine.cancel(job)  # no-op when finished; stops generation when the client left

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


def serve(settings: ServeSettings, pipeline: OryxPipeline | None = None) -> None:
    """Load the model (unless given) and run uvicorn until interrupted (``oryx serve``)."""
    import uvicorn

    if pipeline is None:
        pipeline = OryxPipeline.from_pretrained(settings.model_path)
    app = create_app(pipeline, settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
