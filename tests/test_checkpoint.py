"""Loading miniature checkpoints in the released layout, and our own save/load round trip."""

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

from oryx_mllm.compressor import DynamicCompressor
from oryx_mllm.config import OryxConfig
from oryx_mllm.errors import CheckpointError, ConfigError
from oryx_mllm.files import atomic_save_json
from oryx_mllm.model import OryxForConditionalGeneration
from oryx_mllm.processing.chat import collate, encode_conversation, ensure_visual_token
from oryx_mllm.projector import OryxProjector
from oryx_mllm.vision import OryxViT, OryxViTConfig
from oryx_tiny import byte_tokenizer, image, llm_config, tiny_model, video

VIT = OryxViTConfig.tiny(attention_backend="math")


def released_parts(kind):
    torch.manual_seed(1)
    llm = AutoModelForCausalLM.from_config(llm_config(kind))
    vit = OryxViT(VIT)
    comp = DynamicCompressor(64)  # released mid size 256
    proj = OryxProjector(64, 32)
    return llm, vit, comp, proj


def write_released(folder, kind, llm, vit, comp, proj, fmt="sharded", tower_inside=False):
    """A folder laid out like Oryx-7B / Oryx-34B (names and config keys from the reference)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.clone() for k, v in llm.state_dict().items()}
    if llm.config.tie_word_embeddings:
        state.pop("lm_head.weight")
    state.update({f"model.vision_resampler.{k}": v for k, v in comp.state_dict().items()})
    state.update({f"model.mm_projector.{k}": v for k, v in proj.state_dict().items()})
    if tower_inside:
        state.update(
            {f"model.vision_tower.vision_tower.{k}": v for k, v in vit.state_dict().items()}
        )
    else:
        torch.save({**vit.state_dict(), "extra.unused": torch.zeros(1)}, folder / "oryx_vit.pth")
    if fmt == "sharded":
        keys = sorted(state)
        half = len(keys) // 2
        weight_map = {}
        for i, part in enumerate((keys[:half], keys[half:])):
            name = f"model-0000{i + 1}-of-00002.safetensors"
            save_file({k: state[k] for k in part}, str(folder / name), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(part, name))
        atomic_save_json(
            {"metadata": {}, "weight_map": weight_map}, folder / "model.safetensors.index.json"
        )
    else:
        torch.save(state, folder / "pytorch_model.bin")
    config = {
        **llm.config.to_dict(),
        "model_type": "oryx_qwen" if kind == "qwen2" else "oryx_llama",
        "mm_vision_tower": f"oryx_vit:{folder / 'oryx_vit.pth'}",
        "mm_projector_type": "simple_mlp_twoview",
        "mm_resampler_type": "dynamic_compressor",
        "mm_hidden_size": 64,
        "mm_vision_select_layer": -1,  # other keys of the original code are tolerated
        "mm_use_im_start_end": False,
    }
    (folder / "config.json").write_text(json.dumps(config))
    byte_tokenizer().save_pretrained(str(folder))


def by_hand(kind, llm, vit, comp, proj, tok):
    config = OryxConfig.from_llm_config(
        llm.config, vision_config=VIT, visual_token_id=ensure_visual_token(tok)
    )
    model = OryxForConditionalGeneration(config, language_model=llm, vision_tower=vit)
    model.vision_resampler.load_state_dict(comp.state_dict())
    model.mm_projector.load_state_dict(proj.state_dict())
    return model.eval()


def inputs(tok, visual_token_id):
    items = [image(), video(3, 64, 2)]
    conv = [{"role": "user", "content": "<image> and <video>: same?"}]
    b = collate([encode_conversation(conv, tok, items, visual_token_id)], tok.pad_token_id)
    return b["input_ids"], b["attention_mask"], items


@pytest.mark.parametrize(
    "kind,fmt,tower_inside",
    [("qwen2", "sharded", False), ("llama", "bin", True), ("llama", "sharded", False)],
)
def test_released_layout_loads_like_hand_assembled(tmp_path, kind, fmt, tower_inside):
    parts = released_parts(kind)
    write_released(tmp_path / "ckpt", kind, *parts, fmt=fmt, tower_inside=tower_inside)
    loaded = OryxForConditionalGeneration.from_pretrained(tmp_path / "ckpt", vision_config=VIT)
    tok = byte_tokenizer()
    reference = by_hand(kind, *parts, tok)
    assert loaded.config.visual_token_id == reference.config.visual_token_id
    ids, mask, items = inputs(tok, reference.config.visual_token_id)
    with torch.no_grad():
        want = reference(ids, mask, items).logits
        got = loaded(ids, mask, items).logits
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_explicit_vision_tower(tmp_path):
    llm, vit, comp, proj = released_parts("qwen2")
    write_released(tmp_path / "c", "qwen2", llm, vit, comp, proj)
    (tmp_path / "c" / "oryx_vit.pth").rename(tmp_path / "elsewhere.pth")
    with pytest.raises(CheckpointError, match="mm_vision_tower"):
        OryxForConditionalGeneration.from_pretrained(tmp_path / "c", vision_config=VIT)
    model = OryxForConditionalGeneration.from_pretrained(tmp_path / "c", vision_tower=vit)
    assert model.vision_tower is vit
    model = OryxForConditionalGeneration.from_pretrained(
        tmp_path / "c", vision_tower=tmp_path / "elsewhere.pth", vision_config=VIT
    )
    torch.testing.assert_close(model.vision_tower.pos_embed, vit.pos_embed)


def test_missing_and_unexpected_weights_are_reported(tmp_path):
    llm, vit, comp, proj = released_parts("llama")
    folder = tmp_path / "c"
    write_released(folder, "llama", llm, vit, comp, proj, fmt="bin")
    state = torch.load(folder / "pytorch_model.bin")
    bad = {k: v for k, v in state.items() if k != "model.mm_projector.image_sep"}
    torch.save(bad, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="image_sep"):
        OryxForConditionalGeneration.from_pretrained(folder, vision_config=VIT)
    bad = {k: v for k, v in state.items() if k != "model.norm.weight"}
    torch.save(bad, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="model.norm.weight"):
        OryxForConditionalGeneration.from_pretrained(folder, vision_config=VIT)
    torch.save({**state, "model.surprise": torch.zeros(2)}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="model.surprise"):
        OryxForConditionalGeneration.from_pretrained(folder, vision_config=VIT)
    model = OryxForConditionalGeneration.from_pretrained(folder, vision_config=VIT, strict=False)
    assert isinstance(model, OryxForConditionalGeneration)
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError, match="no weights"):
        OryxForConditionalGeneration.from_pretrained(folder, vision_config=VIT)


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_save_pretrained_round_trip(tmp_path, kind):
    tok = byte_tokenizer()
    model = tiny_model(kind, tok)
    model.save_pretrained(tmp_path / "out", tokenizer=tok, max_shard_bytes=64 * 1024)
    assert (tmp_path / "out" / "model.safetensors.index.json").exists()
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"].startswith(
        "oryx_"
    )
    loaded = OryxForConditionalGeneration.from_pretrained(tmp_path / "out")
    assert loaded.config.to_dict()["oryx"] == model.config.to_dict()["oryx"]
    assert loaded.config.llm_config().to_dict() == model.language_model.config.to_dict()
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ids, mask, items = inputs(tok, model.config.visual_token_id)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, mask, items).logits, model(ids, mask, items).logits)
    # saving again over the same folder as a single file replaces the shards
    loaded.save_pretrained(tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").exists()
    assert not (tmp_path / "out" / "model.safetensors.index.json").exists()
    OryxForConditionalGeneration.from_pretrained(tmp_path / "out")


def test_bf16_and_device_map(tmp_path):
    tok = byte_tokenizer()
    model = tiny_model("qwen2", tok)
    model.save_pretrained(tmp_path / "out", tokenizer=tok)
    loaded = OryxForConditionalGeneration.from_pretrained(
        tmp_path / "out", torch_dtype=torch.bfloat16, device_map="cpu"
    )
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    ids, mask, items = inputs(tok, model.config.visual_token_id)
    with torch.no_grad():
        out = loaded.generate(ids, mask, items, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 3)


def test_a_failed_resave_keeps_the_old_weights(tmp_path, monkeypatch):
    import safetensors.torch

    tok = byte_tokenizer()
    old = tiny_model("qwen2", tok)
    old.save_pretrained(tmp_path / "out", tokenizer=tok)
    real_save_file, calls = safetensors.torch.save_file, []

    def second_shard_fails(*args, **kwargs):  # the disk fills up after the first new shard
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        real_save_file(*args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", second_shard_fails)
    with pytest.raises(OSError, match="disk full"):
        tiny_model("qwen2", tok).save_pretrained(tmp_path / "out", max_shard_bytes=64 * 1024)
    monkeypatch.undo()
    assert not list((tmp_path / "out").glob(".*.tmp"))
    loaded = OryxForConditionalGeneration.from_pretrained(tmp_path / "out")
    for k, v in old.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_resaving_as_one_file_removes_the_old_shards(tmp_path):
    tok = byte_tokenizer()
    model = tiny_model("qwen2", tok)
    model.save_pretrained(tmp_path / "out", tokenizer=tok, max_shard_bytes=64 * 1024)
    model.save_pretrained(tmp_path / "out")
    assert not list((tmp_path / "out").glob("model-*-of-*.safetensors"))


def test_a_truncated_weights_file_is_a_checkpoint_error_naming_it(tmp_path):
    tok = byte_tokenizer()
    tiny_model("qwen2", tok).save_pretrained(tmp_path / "out", tokenizer=tok)
    weights = tmp_path / "out" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        OryxForConditionalGeneration.from_pretrained(tmp_path / "out")


def test_loading_without_a_tokenizer_gives_no_model_type_warning(tmp_path):
    import logging

    tok = byte_tokenizer()
    tiny_model("qwen2", tok).save_pretrained(tmp_path / "out", tokenizer=tok)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger("transformers").addHandler(handler)
    try:
        OryxForConditionalGeneration.from_pretrained(tmp_path / "out")
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert not [r for r in records if "model of type" in r.getMessage()]


def test_an_oryx_config_that_is_not_an_object_is_a_config_error(tmp_path):
    from oryx_mllm.errors import ConfigError

    with pytest.raises(ConfigError, match="must be a JSON object, got list"):
        OryxConfig.from_dict([1, 2])
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"config.json must hold a JSON object, not a list"):
        OryxConfig.load(tmp_path)


def test_atomically_written_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        atomic_save_json({"a": 1}, tmp_path / "x.json")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644  # not mkstemp's 0600


def test_a_resave_interrupted_before_its_config_never_loads_the_old_shards(tmp_path, monkeypatch):
    import os

    tok = byte_tokenizer()
    model = tiny_model("qwen2", tok)
    out = tmp_path / "out"
    model.save_pretrained(out, tokenizer=tok, max_shard_bytes=64 * 1024)  # sharded + index
    with torch.no_grad():
        model.mm_projector.image_newline.fill_(7.0)
    replace = os.replace

    def crash_at_config(src, dst):
        if str(dst).endswith("config.json"):
            raise KeyboardInterrupt  # killed right before the new config is moved in
        replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_at_config)
    with pytest.raises(KeyboardInterrupt):
        model.save_pretrained(out)  # one file this time
    monkeypatch.setattr(os, "replace", replace)
    assert not (out / "model.safetensors.index.json").exists()  # it would point at old shards
    loaded = OryxForConditionalGeneration.from_pretrained(out)
    assert torch.all(loaded.mm_projector.image_newline == 7.0)


def test_visual_token_norm_is_saved_and_absent_from_released_layout(tmp_path):
    model = tiny_model("qwen2")
    model.save_pretrained(tmp_path / "plain")
    saved = json.loads((tmp_path / "plain/config.json").read_text())
    assert "visual_token_norm" not in saved["oryx"]
    model.config.visual_token_norm = "embedding_rms"
    model.save_pretrained(tmp_path / "normed")
    loaded = OryxForConditionalGeneration.from_pretrained(tmp_path / "normed")
    assert loaded.config.visual_token_norm == "embedding_rms"


def test_an_unknown_visual_token_norm_is_a_config_error():
    with pytest.raises(ConfigError, match="visual_token_norm 'layer'"):
        OryxConfig(text_config=llm_config("qwen2").to_dict(), visual_token_norm="layer")
