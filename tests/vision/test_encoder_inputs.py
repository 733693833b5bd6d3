"""OryxViT's position-table cache and the checks on its config and packed-forward inputs."""

from __future__ import annotations

import pytest
import torch

from oryx_mllm import InvalidInputError, OryxViT, OryxViTConfig
from oryx_mllm.errors import ConfigError
from oryx_mllm.vision import encoder


def _tiny() -> OryxViT:
    torch.manual_seed(0)
    return OryxViT(OryxViTConfig.tiny()).eval()


@torch.no_grad()
def test_load_state_dict_with_assign_refreshes_position_cache():
    model, other = _tiny(), OryxViT(OryxViTConfig.tiny()).eval()
    model.position_embedding(7, 3)
    model.load_state_dict(other.state_dict(), assign=True)
    torch.testing.assert_close(
        model.position_embedding(7, 3), other.position_embedding(7, 3), atol=0, rtol=0
    )


@torch.no_grad()
def test_assigning_pos_embed_data_refreshes_position_cache():
    model = _tiny()
    model.position_embedding(7, 3)
    model.pos_embed.data = model.pos_embed.data * 2
    torch.testing.assert_close(
        model.position_embedding(7, 3), model._resample_pos(7, 3), atol=0, rtol=0
    )


@torch.no_grad()
def test_position_cache_evicts_least_recently_used_over_byte_budget(monkeypatch):
    model = _tiny()  # 16 positions x 64 fp32 channels = 4096 bytes per entry below
    monkeypatch.setattr(encoder, "POS_CACHE_BYTES", 2 * 4096)
    for grid in [(4, 4), (2, 8), (4, 4), (8, 2)]:
        model.position_embedding(*grid)
    assert list(model._pos_cache) == [(4, 4), (8, 2)]


def test_unknown_attention_backend_is_a_config_error():
    with pytest.raises(ConfigError, match=r"attention_backend 'bogus' not in \('auto', "):
        OryxViTConfig(attention_backend="bogus")


@pytest.mark.parametrize(
    "x, seqlens, match",
    [
        (torch.randn(8, 64), [4, 3], r"sum to 7, but x has 8 tokens"),
        (torch.randn(8, 64), [10, -2], r"seqlens\[1\] must be a positive integer, got -2"),
        (torch.randn(8, 64), [8, 0], r"seqlens\[1\] must be a positive integer, got 0"),
        (torch.randn(2, 4, 64), [4, 4], r"packed \[T, 64\] tensor, got \(2, 4, 64\)"),
        (torch.randn(8, 32), [8], r"packed \[T, 64\] tensor, got \(8, 32\)"),
    ],
)
def test_forward_rejects_bad_packed_inputs(x, seqlens, match):
    with pytest.raises(InvalidInputError, match=match):
        _tiny()(x, seqlens)


def test_threads_sharing_one_encoder_use_its_cache_safely():
    import random
    import sys
    import threading

    cfg = OryxViTConfig(hidden_size=32, depth=1, num_heads=2, mlp_hidden_size=64, position_grid=8)
    model = OryxViT(cfg).eval()
    errors: list[Exception] = []

    def work(seed: int) -> None:  # like server workers encoding images of many sizes
        rnd = random.Random(seed)
        with torch.inference_mode():
            for _ in range(1500):
                try:
                    model.position_embedding(rnd.randint(1, 40), rnd.randint(1, 40))
                except Exception as e:  # noqa: BLE001 - collected and asserted below
                    errors.append(e)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert errors == []
    with torch.inference_mode():
        assert torch.equal(model.position_embedding(7, 9), model._resample_pos(7, 9))
