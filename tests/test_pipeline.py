"""OryxPipeline: the ask/chat API shared by the CLI, the server and evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from oryx_mllm.errors import CheckpointError, ConfigError, InvalidInputError
from oryx_mllm.pipeline import OryxPipeline
from oryx_mllm.processing.options import ImageOptions, MultiViewOptions, VideoOptions
from oryx_mllm.processing.processor import OryxProcessor
from oryx_tiny import byte_tokenizer, tiny_model

SMALL_VIDEO = VideoOptions(min_pixels=64 * 64, max_pixels=64 * 64, multiple=64, long_multiple=64)


@pytest.fixture(scope="module")
def pipe():
    tok = byte_tokenizer()
    model = tiny_model("qwen2", tok)
    processor = OryxProcessor(
        tok,
        image_options=ImageOptions(lowres_pixels=32 * 32),
        video_options=SMALL_VIDEO,
        multiview_options=MultiViewOptions(frame=SMALL_VIDEO),
    )
    return OryxPipeline(model, processor)


def picture(w=64, h=64, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_ask_about_an_image_reports_tokens_and_layout(pipe):
    answer = pipe.ask("What is it?", image=picture(), max_new_tokens=5)
    assert isinstance(answer.text, str)
    assert 1 <= answer.completion_tokens <= 5
    (info,) = answer.inputs
    assert info.modality == "image" and info.compression == 1
    # 64x64 high-res view -> 4x4 grid; 32x32 low-res view -> 2x2 grid
    assert info.visual_tokens == 3 + 2 * (2 + 1) + 4 * (4 + 1) == answer.visual_tokens
    assert answer.prompt_tokens > answer.visual_tokens


def test_video_and_multiview_and_compression(pipe):
    frames = [picture(seed=i) for i in range(4)]
    answer = pipe.ask("What happens?", video=frames, max_new_tokens=2)
    assert answer.inputs[0].modality == "video" and answer.inputs[0].compression == 2
    assert answer.visual_tokens == 2 + 4 * (2 * (2 + 1) + 1)  # 64x64 frames, 2x2 pooled
    answer = pipe.ask("How many objects?", views=frames[:3], compression=4, max_new_tokens=2)
    assert answer.inputs[0].modality == "multiview" and answer.inputs[0].compression == 4
    assert answer.visual_tokens == 2 + 3 * (1 * (1 + 1) + 1)


def test_views_over_the_limit_are_subsampled_with_a_warning():
    from oryx_mllm.pipeline import _input_warnings
    from oryx_mllm.processing.multiview import preprocess_views

    views = [picture(16, 16, seed=i) for i in range(5)]
    opt = MultiViewOptions(frame=SMALL_VIDEO, max_views=3)
    item = preprocess_views(views, opt)
    assert len(item.frames) == 3
    assert _input_warnings(item) == [
        "5 views given, 3 evenly spaced ones used (the limit: MultiViewOptions.max_views = 3)"
    ]
    assert _input_warnings(preprocess_views(views[:3], opt)) == []


def test_batched_answers_equal_single_answers(pipe):
    convs = [
        pipe.messages_for("What is it?", image=picture(seed=1)),
        pipe.messages_for("Describe.", video=[picture(seed=2), picture(seed=3)]),
        [{"role": "user", "content": "Just text."}],
    ]
    batched = pipe.chat_batch(convs, max_new_tokens=6)
    for conv, b in zip(convs, batched):
        single = pipe.chat(conv, max_new_tokens=6)
        assert single.text == b.text
        assert single.visual_tokens == b.visual_tokens


def test_visual_token_budget_picks_more_compression(pipe):
    frames = [picture(seed=i) for i in range(8)]
    full = pipe.ask("x", video=frames, compression=1, max_new_tokens=1)
    budget = pipe.ask("x", video=frames, max_visual_tokens=full.visual_tokens - 1, max_new_tokens=1)
    assert budget.visual_tokens < full.visual_tokens
    assert budget.inputs[0].compression > 1


def test_sampling_with_seed_is_reproducible(pipe):
    a = pipe.ask("Hi", image=picture(), temperature=1.0, seed=3, max_new_tokens=8)
    b = pipe.ask("Hi", image=picture(), temperature=1.0, seed=3, max_new_tokens=8)
    assert a.text == b.text


def test_a_vanishing_temperature_decodes_greedily(pipe):
    greedy = pipe.ask("Hi", image=picture(), temperature=0.0, max_new_tokens=8)
    for t in (1e-300, 1e-39):  # would overflow the logits to inf and NaN probabilities
        tiny = pipe.ask("Hi", image=picture(), temperature=t, seed=3, max_new_tokens=8)
        assert tiny.text == greedy.text


def test_bad_requests_raise_typed_errors(pipe):
    with pytest.raises(InvalidInputError, match="non-empty"):
        pipe.ask("  ", image=picture())
    with pytest.raises(InvalidInputError, match="max_new_tokens"):
        pipe.ask("x", max_new_tokens=0)
    with pytest.raises(InvalidInputError):
        pipe.ask("x", image=b"\x89PNG broken")
    with pytest.raises(InvalidInputError, match="seed must be in"):
        pipe.ask("x", temperature=1.0, seed=2**64)
    with pytest.raises(InvalidInputError, match="not valid Unicode"):
        pipe.ask("x \ud800")


def test_save_and_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "m")
    again = OryxPipeline.from_pretrained(tmp_path / "m")
    assert again.processor.to_dict() == pipe.processor.to_dict()
    q = dict(image=picture(seed=5), max_new_tokens=6)
    assert again.ask("What?", **q).text == pipe.ask("What?", **q).text


def test_missing_model_folder_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no Oryx model"):
        OryxPipeline.from_pretrained(tmp_path)


def test_unknown_dtype_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown dtype 'float8'"):
        OryxPipeline.from_pretrained(None, torch_dtype="float8")


def test_a_missing_gpu_is_a_config_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        OryxPipeline.from_pretrained(device_map="cuda")


def test_an_unknown_device_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown device 'tpu9'"):
        OryxPipeline.from_pretrained(device_map="tpu9")


def test_marks_without_views_are_refused(pipe):
    from oryx_mllm.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="give views"):
        pipe.messages_for("How many?", image="x.png", marks=[[(1, 2, 1)]])


def _edit_json(path, **changes):
    import json

    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:1000])


MALFORMED = {
    "config not JSON": (
        lambda d: (d / "config.json").write_text("{oops"),
        ConfigError,
        r"config\.json is not valid JSON",
    ),
    "config a list": (
        lambda d: (d / "config.json").write_text("[1, 2]"),
        ConfigError,
        r"config\.json must hold a JSON object, not a list",
    ),
    "hidden_size a string": (
        lambda d: _edit_json(d / "config.json", hidden_size="64"),
        ConfigError,
        r"config\.json: .*hidden_size",
    ),
    "truncated weights": (
        lambda d: _truncate(d / "model.safetensors"),
        CheckpointError,
        r"model\.safetensors",
    ),
    "corrupt tokenizer.json": (
        lambda d: (d / "tokenizer.json").write_text("{oops"),
        CheckpointError,
        r"tokenizer\.json is not valid JSON",
    ),
    "no tokenizer files": (
        lambda d: [(d / n).unlink() for n in ("tokenizer.json", "tokenizer_config.json")],
        CheckpointError,
        r"no tokenizer in .*tokenizer\.json",
    ),
    "wrong-typed processor option": (
        lambda d: _edit_json(d / "processor_config.json", image_options={"max_pixels": "big"}),
        ConfigError,
        r"processor_config\.json: max_pixels must be a positive integer",
    ),
    "config sizes unlike the weights'": (
        lambda d: _edit_json(d / "config.json", intermediate_size=384),
        CheckpointError,
        r"weights of other sizes than config\.json's: model\.layers\.0\.mlp\.gate_proj\.weight: "
        r"checkpoint \(512, 192\), config \(384, 192\); .* \(12 in all\)",
    ),
    "processor config a list": (
        lambda d: (d / "processor_config.json").write_text("[]"),
        ConfigError,
        r"processor_config\.json must hold a JSON object, not a list",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_model_folder_is_a_typed_error_naming_the_file(tmp_path, case):
    import shutil

    from oryx_mllm.pipeline import default_model_path

    break_folder, error, match = MALFORMED[case]
    folder = tmp_path / "model"
    shutil.copytree(default_model_path(), folder)
    break_folder(folder)
    with pytest.raises(error, match=match):
        OryxPipeline.from_pretrained(folder)


def test_loading_the_default_model_gives_no_model_type_warning():
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger("transformers").addHandler(handler)
    try:
        OryxPipeline.from_pretrained()
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert not [r for r in records if "model of type" in r.getMessage()]


@pytest.mark.parametrize("tokenizer_class", [None, "Qwen2Tokenizer", "LlamaTokenizer"])
def test_the_tokenizer_is_the_class_autotokenizer_picks(tmp_path, tokenizer_class):
    import shutil

    from transformers import AutoTokenizer

    from oryx_mllm.pipeline import default_model_path

    folder = tmp_path / "model"
    shutil.copytree(default_model_path(), folder)
    if tokenizer_class:
        _edit_json(folder / "tokenizer_config.json", tokenizer_class=tokenizer_class)
    ours = OryxProcessor.from_pretrained(folder).tokenizer
    auto = AutoTokenizer.from_pretrained(str(folder))
    assert type(ours) is type(auto)
    assert ours("a red circle, 42").input_ids == auto("a red circle, 42").input_ids


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"views": "a.png"}, "views must be a list of images, got str"),
        ({"views": [picture()], "marks": [None]}, r"marks\[0\] must be an instance mask"),
        ({"max_visual_tokens": "100"}, "max_visual_tokens must be an integer, got '100'"),
        ({"temperature": "0.5"}, "temperature must be a number, got '0.5'"),
    ],
)
def test_wrong_typed_ask_arguments_are_named(pipe, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        pipe.ask("How many?", **kwargs)


def test_messages_follow_the_order_the_model_was_trained_on(pipe):
    """Media first (the released models) unless the processor's text_first names the modality."""
    first = pipe.messages_for("What is it?", image=picture())[0]["content"]
    assert [p["type"] for p in first] == ["image", "text"]
    pipe.processor.text_first = ("image",)
    try:
        turn = pipe.messages_for("What is it?", image=picture())[0]["content"]
        video = pipe.messages_for("What moves?", video=[picture()] * 2)[0]["content"]
    finally:
        pipe.processor.text_first = ()
    assert [p["type"] for p in turn] == ["text", "image"] and turn[0]["text"] == "What is it?\n"
    assert [p["type"] for p in video] == ["video", "text"]


def test_messages_ask_again_after_the_media_with_repeat_question(pipe):
    pipe.processor.text_first, pipe.processor.repeat_question = ("image",), True
    try:
        turn = pipe.messages_for("What is it?", image=picture())[0]["content"]
        video = pipe.messages_for("What moves?", video=[picture()] * 2)[0]["content"]
    finally:
        pipe.processor.text_first, pipe.processor.repeat_question = (), False
    assert [p["type"] for p in turn] == ["text", "image", "text"]
    assert [p.get("text") for p in turn] == ["What is it?\n", None, "What is it?"]
    assert [p["type"] for p in video] == ["video", "text"]  # video is not in text_first
