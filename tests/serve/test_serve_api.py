"""The OpenAI-compatible API, driven by the official ``openai`` client against a live server."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from serve_helpers import MODEL, client_for, data_url, mask_png, mp4_bytes, png_bytes


@pytest.fixture
def server(make_server, tmp_path):
    (tmp_path / "media").mkdir()
    return make_server(media_root=tmp_path / "media", max_body_bytes=200_000)


@pytest.fixture
def client(server):
    return client_for(server)


def ask(client, content, **kw):
    kw.setdefault("max_tokens", 4)
    kw.setdefault("temperature", 0)
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], **kw
    )


def text(t: str) -> dict:
    return {"type": "text", "text": t}


def image_part(url: str, **extra) -> dict:
    return {"type": "image_url", "image_url": {"url": url}, **extra}


def assert_serving(client) -> None:
    """The server still answers a normal request."""
    out = ask(client, "still there?")
    assert out.choices[0].message.role == "assistant"


def test_models_and_health(server, client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == MODEL


def test_image_data_url_reports_visual_tokens(client):
    out = ask(client, [image_part(data_url(png_bytes())), {"type": "text", "text": "What?"}])
    assert out.object == "chat.completion" and out.model == MODEL
    assert out.choices[0].finish_reason in ("stop", "length")
    u = out.usage
    assert u.visual_tokens == u.prompt_tokens_details.visual_tokens > 0
    assert u.prompt_tokens > u.visual_tokens and 1 <= u.completion_tokens <= 4
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


def test_video_data_url_with_fps_and_max_frames(client):
    video = {"type": "video_url", "video_url": {"url": data_url(mp4_bytes(8), "video/mp4")}}
    few = ask(client, [video, {"type": "text", "text": "What happens?"}],
              extra_body={"fps": 2, "max_frames": 2})  # fmt: skip
    more = ask(client, [video, {"type": "text", "text": "What happens?"}],
               extra_body={"fps": 2, "max_frames": 4})  # fmt: skip
    assert 0 < few.usage.visual_tokens < more.usage.visual_tokens


def test_multiview_scene(client):
    views = [data_url(png_bytes(seed=i)) for i in range(3)]
    part = {"type": "multiview", "views": [{"url": v} for v in views]}
    out = ask(client, [part, {"type": "text", "text": "How many chairs?"}])
    two = ask(client, [{**part, "views": part["views"][:2]}, {"type": "text", "text": "?"}])
    assert out.usage.visual_tokens > two.usage.visual_tokens > 0


def test_multiview_marks_from_points_or_mask_urls(client):
    views = [{"url": data_url(png_bytes(seed=i))} for i in range(2)]
    points = [[[10, 10, 1], [50, 50, 2]], [[20, 12, 1]]]
    masks = [data_url(mask_png(s)) for s in (0, 8)]
    q = {"type": "text", "text": "How many?"}
    plain = ask(client, [{"type": "multiview", "views": views}, q])
    by_points = ask(client, [{"type": "multiview", "views": views, "marks": points}, q])
    by_masks = ask(client, [{"type": "multiview", "views": views, "marks": masks}, q])
    assert (
        plain.usage.visual_tokens == by_points.usage.visual_tokens == by_masks.usage.visual_tokens
    )


def test_compression_and_visual_token_budget(client):
    img = data_url(png_bytes(128, 128))
    full = ask(client, [image_part(img, compression=1), text("x")])
    pooled = ask(client, [image_part(img, compression=2), text("x")])
    request_level = ask(client, [image_part(img), text("x")], extra_body={"compression": 2})
    budget = ask(client, [image_part(img), text("x")],
                 extra_body={"max_visual_tokens": full.usage.visual_tokens - 1})  # fmt: skip
    assert pooled.usage.visual_tokens == request_level.usage.visual_tokens
    assert pooled.usage.visual_tokens < full.usage.visual_tokens
    assert budget.usage.visual_tokens < full.usage.visual_tokens


def test_local_path_under_media_root(client, tmp_path):
    (tmp_path / "media" / "a.png").write_bytes(png_bytes())
    by_path = ask(client, [image_part(str(tmp_path / "media" / "a.png")), text("?")])
    by_url = ask(client, [image_part((tmp_path / "media" / "a.png").as_uri()), text("?")])
    inline = ask(client, [image_part(data_url(png_bytes())), text("?")])
    assert by_path.usage.visual_tokens == by_url.usage.visual_tokens == inline.usage.visual_tokens
    assert by_path.choices[0].message.content == inline.choices[0].message.content


def test_streaming_matches_non_streaming(client):
    content = [image_part(data_url(png_bytes())), {"type": "text", "text": "Describe."}]
    whole = ask(client, content, max_tokens=12)
    chunks = list(ask(client, content, max_tokens=12, stream=True,
                      stream_options={"include_usage": True}))  # fmt: skip
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.visual_tokens == whole.usage.visual_tokens


def test_stream_ends_with_done(server):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "max_tokens": 3, "temperature": 0}  # fmt: skip
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"


def test_stop_strings_cut_streamed_and_whole_answers(client):
    whole = ask(client, "Say something long.", max_tokens=16)
    text = whole.choices[0].message.content
    if len(text) < 4:
        pytest.skip("the random model answered too little to cut")
    stop = text[2:4]
    cut = ask(client, "Say something long.", max_tokens=16, stop=[stop])
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in ask(client, "Say something long.", max_tokens=16, stop=[stop], stream=True)
        if c.choices
    )
    assert stop not in cut.choices[0].message.content
    assert streamed == cut.choices[0].message.content == text[: text.find(stop)].strip()


ERRORS = {
    "bad base64": (
        lambda c, s, tmp: ask(c, [image_part("data:image/png;base64,@@not-base64@@"), text("?")]),
        openai.BadRequestError, 400, "invalid_base64",
    ),
    "path outside media root": (
        lambda c, s, tmp: ask(c, [image_part(str(tmp / "outside.png")), text("?")]),
        openai.PermissionDeniedError, 403, "media_path_forbidden",
    ),
    "dot-dot escape of media root": (
        lambda c, s, tmp: ask(c, [image_part(str(tmp / "media" / ".." / "outside.png")), text("?")]),
        openai.PermissionDeniedError, 403, "media_path_forbidden",
    ),
    "oversize body": (
        lambda c, s, tmp: ask(c, [image_part(data_url(b"x" * 300_000)), text("?")]),
        openai.APIStatusError, 413, "request_too_large",
    ),
    "unknown model": (
        lambda c, s, tmp: c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        ),
        openai.NotFoundError, 404, "model_not_found",
    ),
    "empty messages": (
        lambda c, s, tmp: c.chat.completions.create(model=MODEL, messages=[]),
        openai.BadRequestError, 400, "empty_array",
    ),
    "undecodable image": (
        lambda c, s, tmp: ask(c, [image_part(data_url(b"not an image at all")), text("?")]),
        openai.UnprocessableEntityError, 422, "invalid_image",
    ),
    "remote media disabled": (
        lambda c, s, tmp: ask(c, [image_part(s.url + "/a.png"), text("?")]),
        openai.PermissionDeniedError, 403, "remote_media_disabled",
    ),
    "marks not one per view": (
        lambda c, s, tmp: ask(c, [{"type": "multiview", "views": [data_url(png_bytes())] * 2,
                                   "marks": [[[1, 2, 1]]]}, text("?")]),
        openai.BadRequestError, 400, "invalid_value",
    ),
    "colour image as instance mask": (
        lambda c, s, tmp: ask(c, [{"type": "multiview", "views": [data_url(png_bytes())],
                                   "marks": [data_url(png_bytes())]}, text("?")]),
        openai.UnprocessableEntityError, 422, "invalid_image",
    ),
    "n > 1": (
        lambda c, s, tmp: ask(c, "hi", n=2),
        openai.BadRequestError, 400, "invalid_value",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_are_openai_json_and_server_keeps_serving(case, server, client, tmp_path):
    (tmp_path / "outside.png").write_bytes(png_bytes())
    call, exc_type, status, code = ERRORS[case]
    with pytest.raises(exc_type) as info:
        call(client, server, tmp_path)
    err = info.value
    assert err.status_code == status
    body = err.response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["message"]
    assert body["code"] == code
    assert_serving(client)


def test_api_key_is_required_when_set(make_server):
    server = make_server(api_key="s3cret")
    with pytest.raises(openai.AuthenticationError) as info:
        client_for(server, api_key="wrong").models.list()
    assert info.value.response.json()["error"]["code"] == "invalid_api_key"
    good = client_for(server, api_key="s3cret")
    assert good.models.list().data[0].id == MODEL
    assert httpx.get(server.url + "/health").status_code == 200  # health stays open


def _body(content: object = "hi", **fields) -> str:
    """A request body as text; ``json.dumps`` escapes a lone surrogate as ``"\\ud800"``."""
    return json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": content}], **fields}
    )


_VIEW = data_url(png_bytes())
RAW_ERRORS = {
    # (body, content type) -> (status, code, param)
    "lone UTF-16 surrogate in the text": (
        _body("\ud800"), "application/json", 400, "invalid_value", "messages[0].content",
    ),
    "JSON nested too deeply": (
        _body()[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "application/json", 400, "invalid_json", None,
    ),
    "seed beyond torch's range": (
        _body(temperature=1, seed=2**64), "application/json", 400, "invalid_value", "seed",
    ),
    "not a JSON content type": (
        _body(), "text/plain", 415, "unsupported_media_type", None,
    ),
    "mark point outside its view": (
        _body([{"type": "multiview", "views": [_VIEW, _VIEW], "marks": [[[1e30, 1, 1]], []]}]),
        "application/json", 400, "invalid_value", "messages[0].content[0]",
    ),
    "prompt longer than the context": (
        _body("red blue " * 600), "application/json", 400, "context_length_exceeded", "messages",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(RAW_ERRORS))
def test_raw_bad_requests_are_named_and_keep_the_connection(case, make_server):
    body, kind, status, code, param = RAW_ERRORS[case]
    server = make_server(max_body_bytes=1_000_000)
    good = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        r = http.post("/v1/chat/completions", content=body, headers={"content-type": kind})
        assert r.status_code == status, r.text
        err = r.json()["error"]
        assert (err["code"], err["param"]) == (code, param) and err["message"]
        again = http.post("/v1/chat/completions", json=good)  # the same keep-alive connection
        assert again.status_code == 200


def test_mark_point_error_names_the_view_and_point(client):
    views = [data_url(png_bytes())] * 2
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, [{"type": "multiview", "views": views, "marks": [[[5, 5, 1]], [[70, 5, 1]]]}])
    assert "view 1" in info.value.response.json()["error"]["message"]
    assert "outside the 64x64 view" in info.value.response.json()["error"]["message"]


def test_explicit_nulls_mean_the_defaults(server):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
            "temperature": None, "top_p": None, "n": None, "stream": None, "stop": None,
            "seed": None}  # fmt: skip
    r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"


def test_validation_errors_name_the_request_path(server):
    bad = {"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": ""}}]}]}  # fmt: skip
    r = httpx.post(server.url + "/v1/chat/completions", json=bad, timeout=60)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "messages[0].content[1].image_url.url"


def test_unexpected_errors_are_json_500s_answered_inside_the_route(pipe, monkeypatch):
    from starlette.testclient import TestClient

    from oryx_mllm.serve import ServeSettings, create_app
    from oryx_mllm.serve import app as app_module

    def boom(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr(app_module, "check_prompt", boom)
    app = create_app(pipe, ServeSettings(model_name=MODEL))
    # raise_server_exceptions: an error that escaped the route would be raised here
    with TestClient(app, raise_server_exceptions=True) as http:
        r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": [
            {"role": "user", "content": "hi"}]})  # fmt: skip
    assert r.status_code == 500
    assert r.json()["error"] == {"message": "internal error: RuntimeError", "type": "server_error",
                                 "param": None, "code": None}  # fmt: skip


def test_a_media_root_that_is_not_a_folder_is_refused(tmp_path):
    from pydantic import ValidationError

    from oryx_mllm.serve.settings import ServeSettings

    (tmp_path / "file.txt").write_text("x")
    for root in (tmp_path / "missing", tmp_path / "file.txt"):
        with pytest.raises(ValidationError, match=f"{root} is not an existing folder"):
            ServeSettings(media_root=[tmp_path, root])
    assert ServeSettings(media_root=tmp_path).media_root == [tmp_path]


def _post(server, messages: list) -> httpx.Response:
    body = {"model": MODEL, "messages": messages, "max_tokens": 2}
    return httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60)


def test_a_user_message_without_content_is_a_400_naming_it(server):
    for content in (None, "", [], [text("")]):
        r = _post(server, [{"role": "system", "content": "Be brief."},
                           {"role": "user", "content": content}])  # fmt: skip
        assert r.status_code == 400, content
        assert r.json()["error"] == {
            "message": "messages[1]: empty content (a user message needs text or media)",
            "type": "invalid_request_error", "param": "messages[1].content",
            "code": "invalid_value",
        }  # fmt: skip
    # other roles may be empty, as with OpenAI
    ok = _post(server, [{"role": "system", "content": ""}, {"role": "user", "content": "hi"},
                        {"role": "assistant", "content": None}, {"role": "user", "content": "?"}])  # fmt: skip
    assert ok.status_code == 200


def test_a_data_url_of_the_other_modality_is_a_400_naming_the_part(server):
    from oryx_mllm.serve.media import check_media_type

    video_in_image = image_part(data_url(mp4_bytes(), "video/mp4"))
    image_in_video = {"type": "video_url", "video_url": {"url": data_url(png_bytes())}}
    for part, kind, holds, declared in [
        (video_in_image, "image_url", "video", "video/mp4"),
        (image_in_video, "video_url", "image", "image/png"),
    ]:
        r = _post(server, [{"role": "user", "content": [text("?"), part]}])
        assert r.status_code == 400
        err = r.json()["error"]
        param = f"messages[0].content[1].{kind}.url"
        assert (err["param"], err["code"]) == (param, "media_type_mismatch")
        assert err["message"].startswith(
            f"{param}: the {kind} part holds {holds} data (data:{declared}), not "
        )
    # an animated GIF is a video; paths and URLs declare no type
    check_media_type(data_url(b"GIF89a", "image/gif"), "video", "p", "video_url part")
    check_media_type("/media/clip.mp4", "image", "p", "image_url part")


def test_a_bad_view_of_a_multiview_part_is_named_by_its_index(server):
    views = [data_url(png_bytes(seed=0)), data_url(png_bytes(seed=1)), data_url(b"not an image")]
    r = _post(server, [{"role": "user", "content": [{"type": "multiview", "views": views}]}])
    assert r.status_code == 422
    assert r.json()["error"] == {
        "message": "view 2: <12 bytes>: not a recognised image format",
        "type": "invalid_request_error", "param": "messages[0].content[0].views[2]",
        "code": "invalid_image",
    }  # fmt: skip


def test_a_video_given_as_a_view_is_named_by_its_index(server):
    # declared as a PNG, so only decoding finds out that it is a video
    views = [data_url(png_bytes(seed=0)), data_url(mp4_bytes())]
    r = _post(server, [{"role": "user", "content": [{"type": "multiview", "views": views}]}])
    assert r.status_code == 400
    err = r.json()["error"]
    assert (err["param"], err["code"]) == (
        "messages[0].content[0].views[1]",
        "unsupported_modality",
    )
    assert (
        err["message"].startswith("view 1: ")
        and "a video (MP4/MOV), not an image" in err["message"]
    )


def test_a_wrong_method_is_a_405_with_allow(server):
    r = httpx.get(server.url + "/v1/chat/completions")
    assert (r.status_code, r.headers["allow"]) == (405, "POST")
    err = r.json()["error"]
    assert (err["type"], err["code"]) == ("invalid_request_error", "method_not_allowed")
    r = httpx.post(server.url + "/v1/models")
    assert (r.status_code, r.headers["allow"]) == (405, "GET")


def test_an_unknown_path_is_a_404_with_a_code(server):
    r = httpx.get(server.url + "/v1/nothing-here")
    err = r.json()["error"]
    assert (r.status_code, err["type"], err["code"]) == (404, "not_found_error", "unknown_path")
