"""Patch labels (records' ``patch_text``), the text-first order (``data.text_first``) and the
align loss in the model and the trainer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from oryx_mllm.config import VISUAL_TOKEN
from oryx_mllm.errors import ConfigError, DataError, InvalidInputError
from oryx_mllm.processing.chat import (
    IGNORE_INDEX,
    encode_conversation,
    ensure_visual_token,
    markers_after_text,
)
from oryx_mllm.processing.processor import OryxProcessor
from oryx_mllm.processing.types import VisualInput
from oryx_mllm.train.config import DataSpec, TrainConfig
from oryx_mllm.train.patch_labels import (
    check_frame_text,
    check_patch_text,
    frame_text_targets,
    patch_text_targets,
)
from oryx_mllm.train.trainer import train
from oryx_mllm.train.transform import MicroBatchCollator, TrainTransform

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_utils import DATA_OPTIONS, recipe_dict, save_tiny_model  # noqa: E402

from oryx_tiny import byte_tokenizer, image, tiny_model, video  # noqa: E402

PAGE_TEXT = ["a1 ", " b2"]  # a 2 x 3 patch page: 32 x 48 px at native resolution


def page_item(tok, **over) -> dict:
    """A raw training item: a 32 x 48 px page, its patch text and one question."""
    arr = np.full((32, 48, 3), 230, np.uint8)
    buf = Path(over.pop("root")) / "page.png"
    Image.fromarray(arr).save(buf)
    return {
        "id": "page0",
        "modality": "image",
        "media": [buf],
        "frames": None,
        "conversations": [
            {"from": "human", "value": "<image>\nWhat is on row 2?"},
            {"from": "gpt", "value": "b2"},
        ],
        "patch_text": PAGE_TEXT,
        **over,
    }


def transform(tok, **data) -> TrainTransform:
    spec = DataSpec(image={"lowres_pixels": 32 * 32, "multiple": 16}, max_length=512, **data)
    return TrainTransform(tok, ensure_visual_token(tok), spec, patch_labels=True)


@pytest.fixture
def tok():
    t = byte_tokenizer()
    ensure_visual_token(t)
    return t


def test_targets_name_each_native_patch_and_ignore_the_rest(tok):
    item = image((32, 48))  # low-res view 32 x 32 (2 x 2 patches), native 2 x 3 patches
    t = patch_text_targets(item, PAGE_TEXT, tok)
    assert len(t) == item.num_tokens()
    ids = {c: tok.encode(c, add_special_tokens=False)[0] for c in "a1b2"}
    lo = 1 + 2 * (2 + 1) + 1  # begin, two low-res rows + their newlines, sep
    native = t[lo : lo + 2 * 4].view(2, 4)  # two rows of 3 patches + a newline each
    expected = [[ids["a"], ids["1"], IGNORE_INDEX, IGNORE_INDEX]]
    expected += [[IGNORE_INDEX, ids["b"], ids["2"], IGNORE_INDEX]]
    assert native.tolist() == expected
    assert (t[:lo] == IGNORE_INDEX).all() and t[-1] == IGNORE_INDEX


@pytest.mark.parametrize(
    "rows, item, message",
    [
        (["abcd", "efgh"], image((32, 48)), "2 x 4 cells but the image is 2 x 3"),
        (PAGE_TEXT, VisualInput("video", [torch.zeros(3, 32, 48)]), "uncompressed"),
    ],
)
def test_targets_that_do_not_fit_the_image_are_a_data_error(tok, rows, item, message):
    with pytest.raises(DataError, match=message):
        patch_text_targets(item, rows, tok)


def test_a_character_of_several_tokens_is_a_data_error():
    class TwoTokens:
        def encode(self, text, add_special_tokens=False):
            return [1, 2]

    with pytest.raises(DataError, match="is 2 tokens"):
        patch_text_targets(image((32, 48)), PAGE_TEXT, TwoTokens())


@pytest.mark.parametrize("bad", [[], "ab", ["ab", "c"], ["", ""], [1, 2]])
def test_malformed_patch_text_is_a_data_error(bad):
    with pytest.raises(DataError, match="patch_text"):
        check_patch_text(bad)


def test_markers_after_text_moves_only_leading_markers():
    assert markers_after_text("<image>\nWhat?") == "What?\n<image>\n"
    assert markers_after_text("<image><image>\nQ") == "Q\n<image>\n<image>\n"
    assert markers_after_text("Q <image>") == "Q <image>"


def test_text_first_training_text_matches_what_the_processor_asks(tok, tmp_path):
    """The tokens a text-first model is trained on begin with exactly the prompt the processor
    builds for that modality at inference (messages_for's order)."""
    ex = transform(tok, text_first=["image"])(page_item(tok, root=tmp_path))
    processor = OryxProcessor(
        tok,
        image_options=DataSpec(image={"lowres_pixels": 32 * 32, "multiple": 16}).image_options(),
    )
    processor.text_first = ("image",)
    parts = [
        {"type": "text", "text": "What is on row 2?\n"},
        {"type": "image", "image": tmp_path / "page.png"},
    ]
    prompt = processor([{"role": "user", "content": parts}])["input_ids"][0].tolist()
    assert ex.encoded.input_ids[: len(prompt)] == prompt
    text = tok.decode(ex.encoded.input_ids)
    assert text.index("What is on row 2?") < text.index(VISUAL_TOKEN)


def test_markers_after_text_can_ask_again_after_the_media():
    assert markers_after_text("<image>\nWhat?", repeat=True) == "What?\n<image>\nWhat?"
    assert markers_after_text("Q <image>", repeat=True) == "Q <image>"


def test_repeated_question_training_text_matches_what_the_processor_asks(tok, tmp_path):
    ex = transform(tok, text_first=["image"], repeat_question=True)(page_item(tok, root=tmp_path))
    processor = OryxProcessor(
        tok,
        image_options=DataSpec(image={"lowres_pixels": 32 * 32, "multiple": 16}).image_options(),
        text_first=["image"],
        repeat_question=True,
    )
    parts = [
        {"type": "text", "text": "What is on row 2?\n"},
        {"type": "image", "image": tmp_path / "page.png"},
        {"type": "text", "text": "What is on row 2?"},
    ]
    prompt = processor([{"role": "user", "content": parts}])["input_ids"][0].tolist()
    assert ex.encoded.input_ids[: len(prompt)] == prompt
    text = tok.decode(ex.encoded.input_ids)
    first, media = text.index("What is on row 2?"), text.index(VISUAL_TOKEN)
    assert first < media < text.index("What is on row 2?", media)
    # a conversation without markers gets the same order
    bare = [{"role": "user", "content": "What is on row 2?"}]
    item = processor.preprocess({"type": "image", "image": tmp_path / "page.png"})
    enc = encode_conversation(
        bare, tok, [item], ensure_visual_token(tok), markers_after=True, repeat_question=True
    )
    assert enc.input_ids == prompt


def test_media_first_is_kept_without_text_first(tok, tmp_path):
    ex = transform(tok)(page_item(tok, root=tmp_path))
    text = tok.decode(ex.encoded.input_ids)
    assert text.index(VISUAL_TOKEN) < text.index("What is on row 2?")


def test_collated_visual_labels_follow_the_placeholder_order(tok, tmp_path):
    t = transform(tok)
    page = t(page_item(tok, root=tmp_path))
    plain = t(page_item(tok, root=tmp_path, id="plain", patch_text=None))
    (mb,) = MicroBatchCollator(tok.pad_token_id, 1)([plain, page])
    n_plain = plain.visual[0].num_tokens()
    assert (mb["visual_labels"][:n_plain] == IGNORE_INDEX).all()
    assert torch.equal(mb["visual_labels"][n_plain:], page.visual[0].meta["labels"])


def test_model_visual_loss_is_the_lm_head_cross_entropy_on_the_visual_embeddings():
    tok = byte_tokenizer()
    model = tiny_model("qwen2", tok)
    item = image((32, 48))
    vid = model.config.visual_token_id
    ids = torch.tensor([[5, 6, *[vid] * item.num_tokens(), 7]])
    labels = patch_text_targets(item, PAGE_TEXT, tok)
    out = model(input_ids=ids, visual_inputs=[item], visual_labels=labels)
    embeds = model.embed(ids, [item])[0, 2:-1]
    head = model.language_model.get_output_embeddings()
    keep = labels != IGNORE_INDEX
    expected = F.cross_entropy(head(embeds[keep]).float(), labels[keep])
    torch.testing.assert_close(out.visual_loss, expected)
    # DDP rebuilds the output from its flattened fields after every forward
    leaves, spec = torch.utils._pytree.tree_flatten(out)
    torch.testing.assert_close(
        torch.utils._pytree.tree_unflatten(leaves, spec).visual_loss, expected
    )
    with pytest.raises(InvalidInputError, match="visual_labels has 3 entries"):
        model(input_ids=ids, visual_inputs=[item], visual_labels=labels[:3])


def test_align_config_is_checked():
    with pytest.raises(ConfigError, match="align.weight"):
        TrainConfig(align={"weight": -1})
    with pytest.raises(ConfigError, match="align.until_step"):
        TrainConfig(align={"weight": 1, "until_step": 0})
    with pytest.raises(ConfigError, match="not supported with data.packing"):
        TrainConfig(align={"weight": 1}, data={"packing": True})
    with pytest.raises(ConfigError, match="data.text_first has unknown modalities"):
        TrainConfig(data={"text_first": ["audio"]})
    with pytest.raises(ConfigError, match="data.repeat_question needs data.text_first"):
        TrainConfig(data={"repeat_question": True})
    with pytest.raises(ConfigError, match="data.repeat_question must be true or false"):
        TrainConfig(data={"text_first": ["image"], "repeat_question": "yes"})


def test_processor_config_text_first_round_trips_and_is_checked(tmp_path):
    OryxProcessor(byte_tokenizer(), text_first=["image"], repeat_question=True).save_pretrained(
        tmp_path
    )
    loaded = OryxProcessor.from_pretrained(tmp_path)
    assert loaded.text_first == ("image",) and loaded.repeat_question is True
    cfg = json.loads((tmp_path / "processor_config.json").read_text())
    (tmp_path / "processor_config.json").write_text(json.dumps({**cfg, "text_first": ["sound"]}))
    with pytest.raises(ConfigError, match="text_first has unknown modalities"):
        OryxProcessor.from_pretrained(tmp_path)
    (tmp_path / "processor_config.json").write_text(json.dumps({**cfg, "repeat_question": 1}))
    with pytest.raises(ConfigError, match="repeat_question must be true or false, got 1"):
        OryxProcessor.from_pretrained(tmp_path)


def test_trainer_adds_the_align_loss_until_its_step_and_saves_text_first(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    records = []
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(data / f"p{i}.png")
        records.append(
            {
                "id": f"p{i}",
                "image": f"p{i}.png",
                "patch_text": PAGE_TEXT,
                "conversations": [
                    {"from": "human", "value": "<image>\nRow 2?"},
                    {"from": "gpt", "value": "b2"},
                ],
            }
        )
    (data / "train.json").write_text(json.dumps(records))
    recipe = recipe_dict(
        save_tiny_model(tmp_path / "model"),
        data / "train.json",
        tmp_path / "out",
        data={"image": {**DATA_OPTIONS["image"], "multiple": 16}, "text_first": ["image"]},
        align={"weight": 1.0, "until_step": 2},
        max_steps=4,
        save_steps=4,
    )
    train(TrainConfig(**recipe))
    rows = [json.loads(x) for x in (tmp_path / "out/metrics.jsonl").read_text().splitlines()]
    assert [("visual_loss" in r) for r in rows] == [True, True, False, False]
    assert all(np.isfinite(r["visual_loss"]) and r["visual_loss"] > 0 for r in rows[:2])
    saved = json.loads((tmp_path / "out/final/processor_config.json").read_text())
    assert saved["text_first"] == ["image"]


def test_a_record_with_bad_patch_text_is_a_data_error_naming_the_sample(tok, tmp_path):
    with pytest.raises(DataError, match="sample 'page0': 'patch_text' must be"):
        transform(tok)(page_item(tok, root=tmp_path, patch_text=["ab", "c"]))


def test_frame_text_names_every_grid_token_of_its_frame(tok):
    item = video(frames=3, size=64, ratio=2)  # 2 x 2 tokens per frame after 2x2 pooling
    t = frame_text_targets(item, ["", "g", ""], tok)
    assert len(t) == item.num_tokens()
    g = tok.encode("g", add_special_tokens=False)[0]
    per_frame = 2 * (2 + 1) + 1  # two rows of two tokens + their newlines, then the separator
    frames = t[1:-1].view(3, per_frame)
    assert frames[1].tolist() == [g, g, IGNORE_INDEX, g, g, IGNORE_INDEX, IGNORE_INDEX]
    assert (frames[[0, 2]] == IGNORE_INDEX).all()
    assert t[0] == IGNORE_INDEX and t[-1] == IGNORE_INDEX


def test_frame_text_of_a_long_video_at_4x4_labels_one_token_per_frame(tok):
    item = video(frames=4, size=64, ratio=4, modality="video")
    t = frame_text_targets(item, ["", "", "", "7"], tok)
    seven = tok.encode("7", add_special_tokens=False)[0]
    assert (t == seven).nonzero().flatten().tolist() == [1 + 3 * 3]  # frame 3's one token


@pytest.mark.parametrize(
    "words, item, message",
    [
        (["a", ""], video(frames=3), "names 2 frames but the video has 3"),
        (["a"], image((32, 48)), "needs a video or a multi-view scene"),
    ],
)
def test_frame_text_that_does_not_fit_is_a_data_error(tok, words, item, message):
    with pytest.raises(DataError, match=message):
        frame_text_targets(item, words, tok)


@pytest.mark.parametrize("bad", [[], "ab", [1, ""], None])
def test_malformed_frame_text_is_a_data_error(bad):
    with pytest.raises(DataError, match="frame_text"):
        check_frame_text(bad)


def test_a_frame_word_of_several_tokens_is_a_data_error(tok):
    with pytest.raises(DataError, match="'frame_text' word 'green' is 5 tokens"):
        frame_text_targets(video(frames=1), ["green"], tok)


def test_a_record_with_both_kinds_of_labels_is_a_data_error(tok, tmp_path):
    with pytest.raises(DataError, match="sample 'page0': has both 'patch_text' and 'frame_text'"):
        transform(tok)(page_item(tok, root=tmp_path, frame_text=["a"]))


def test_a_video_record_gets_its_frame_labels(tok, tmp_path):
    frames = []
    for i in range(2):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(tmp_path / f"f{i}.png")
        frames.append((tmp_path / f"f{i}.png").read_bytes())
    item = {
        "id": "v0",
        "modality": "video",
        "media": [frames],
        "frames": None,
        "conversations": [
            {"from": "human", "value": "<video>\nWhich digit?"},
            {"from": "gpt", "value": "4"},
        ],
        "frame_text": ["", "4"],
    }
    video_options = {"min_pixels": 4096, "max_pixels": 4096, "multiple": 32, "long_multiple": 64}
    spec = DataSpec(video=video_options, max_length=512)
    ex = TrainTransform(tok, ensure_visual_token(tok), spec, patch_labels=True)(item)
    labels = ex.visual[0].meta["labels"]
    four = tok.encode("4", add_special_tokens=False)[0]
    assert int((labels == four).sum()) == 4  # frame 2's 2 x 2 tokens at the default 2x2 pooling
    assert int((labels != IGNORE_INDEX).sum()) == 4
