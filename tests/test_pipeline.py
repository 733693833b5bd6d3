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


def test_marks_without_views_are_refused():
    from oryx_mllm.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="give views"):
        OryxPipeline.messages_for("How many?", image="x.png", marks=[[(1, 2, 1)]])
