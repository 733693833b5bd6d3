"""Compression ratios in requests: the server accepts exactly what the processing accepts."""

import pytest
from pydantic import ValidationError

from oryx_mllm.compression_policy import CANDIDATE_RATIOS
from oryx_mllm.serve.schemas import ChatCompletionRequest


def _request(part_ratio=None, request_ratio=None) -> dict:
    part = {"type": "image_url", "image_url": "data:image/png;base64,AA=="}
    if part_ratio is not None:
        part["compression"] = part_ratio
    body = {"model": "m", "messages": [{"role": "user", "content": [part]}]}
    if request_ratio is not None:
        body["compression"] = request_ratio
    return body


@pytest.mark.parametrize("ratio", CANDIDATE_RATIOS)
def test_candidate_ratios_are_accepted(ratio):
    req = ChatCompletionRequest.model_validate(_request(ratio, ratio))
    assert req.compression == ratio == req.messages[0].content[0].compression


@pytest.mark.parametrize("where", ["part", "request"])
@pytest.mark.parametrize("ratio", [3, 32, 64])
def test_other_ratios_are_refused_in_the_request(where, ratio):
    body = _request(ratio) if where == "part" else _request(request_ratio=ratio)
    with pytest.raises(ValidationError, match="compression must be one of 1, 2, 4, 8, 16"):
        ChatCompletionRequest.model_validate(body)


@pytest.mark.parametrize("field", ["temperature", "top_p", "fps"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_and_infinity_are_named_as_such(field, value):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], field: value}
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate(body)
    (error,) = info.value.errors()
    assert error["loc"] == (field,) and error["msg"] == "Input should be a finite number"
