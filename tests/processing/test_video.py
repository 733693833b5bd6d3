"""Videos written in the test with PyAV: right frames at right times, VFR, GIF, long mode,
lists / directories of frames, typed errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from media_helpers import frame_value, mean_rgb, write_audio_only
from PIL import Image

from oryx_mllm.errors import (
    OryxError,
    UnsupportedModalityError,
    VideoDecodeError,
    VideoNotFoundError,
)
from oryx_mllm.processing import VideoOptions, is_long_video, preprocess_video, sample_video
from oryx_mllm.processing.video import sample_times, select_nearest


def _frame_indices(v) -> list[int]:
    """Recover which source frame each output frame is (grey level 40 + 4 i; red = marker)."""
    out = []
    for f in v.frames:
        r, g, b = mean_rgb(f)
        if r > 200 and g < 60:
            out.append(-1)  # the marker
        else:
            out.append(round((g - 40) / 4))
    return out


@pytest.mark.parametrize(
    "name, codec",
    [
        ("a.mp4", "mpeg4"),
        ("a.mkv", "libx264"),
        ("a.webm", "libvpx-vp9"),
        ("a.avi", "mpeg4"),
        ("a.gif", "gif"),
    ],
)
def test_one_fps_picks_the_right_frames(make_video, name, codec):
    path = make_video(name, num_frames=50, fps=10, codec=codec, marker=30)  # 5 s at 10 fps
    v = preprocess_video(path)
    assert v.modality == "video" and v.compression == 2 and v.meta["long_video"] is False
    assert v.timestamps == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0], abs=1e-6)
    assert _frame_indices(v) == [0, 10, 20, -1, 40]  # the red marker frame is the one at 3.0 s
    assert all(
        abs(mean_rgb(f)[1] - frame_value(i)) < 3
        for f, i in zip(v.frames, [0, 10, 20], strict=False)
    )
    assert {tuple(f.shape) for f in v.frames} == {(3, 192, 320)}  # 64x48 scaled into [288², 480²]
    assert v.num_tokens() == 2 + 5 * (6 * 11 + 1)


def test_target_fps_and_max_frames(make_video):
    path = make_video(num_frames=100, fps=10)  # 10 s
    v = preprocess_video(path, VideoOptions(fps=2))
    assert v.timestamps == pytest.approx([k / 2 for k in range(20)])
    capped = preprocess_video(path, VideoOptions(max_frames=4, long_video=False))
    # uniform over first..last frame, as the original's linspace(0, n - 1, max_frames)
    assert capped.timestamps == pytest.approx([0.0, 3.3, 6.6, 9.9])
    assert _frame_indices(capped) == [0, 33, 16, 49]  # grey level wraps every 50 frames


def test_variable_frame_rate(make_video):
    pts = [0, 100, 950, 1100, 2050, 2950, 3600, 4000]
    for name, codec in (("vfr.mkv", "libx264"), ("vfr.mp4", "libx264")):
        v = preprocess_video(make_video(name, num_frames=8, codec=codec, pts_ms=pts))
        expected_t = [0.0, 0.95, 2.05, 2.95, 4.0]
        n = len(v.timestamps)
        assert n >= 4 and v.timestamps == pytest.approx(expected_t[:n], abs=1e-6)
        assert _frame_indices(v) == [0, 2, 4, 5, 7][:n]


def test_sparse_frames_are_not_repeated(make_video):
    # 0.5 fps slideshow sampled at 1 fps: every frame once, no duplicates.
    v = preprocess_video(
        make_video("slow.mkv", num_frames=4, fps=1, codec="libx264", pts_ms=[0, 2000, 4000, 6000])
    )
    assert _frame_indices(v) == [0, 1, 2, 3]
    assert v.timestamps == pytest.approx([0.0, 2.0, 4.0, 6.0])


def test_long_video_mode_selection(make_video):
    opt = VideoOptions(max_frames=4, long_max_frames=8)  # threshold = 4 s at 1 fps
    short = preprocess_video(make_video("s.mp4", num_frames=40, fps=10), opt)  # 4 s
    assert short.meta["long_video"] is False and short.compression == 2 and len(short.frames) == 4
    long = preprocess_video(make_video("l.mp4", num_frames=60, fps=10), opt)  # 6 s
    assert long.meta["long_video"] is True and long.compression == 4 and len(long.frames) == 6
    assert all(f.shape[1] % 128 == 0 and f.shape[2] % 128 == 0 for f in long.frames)
    longer = preprocess_video(make_video("ll.mp4", num_frames=120, fps=10), opt)  # 12 s -> 8 frames
    assert len(longer.frames) == 8 and longer.compression == 4
    # explicit choices are honoured
    forced = preprocess_video(
        make_video("s2.mp4", num_frames=20, fps=10), VideoOptions(long_video=True)
    )
    assert forced.meta["long_video"] is True and forced.compression == 4
    explicit = preprocess_video(make_video("s3.mp4", num_frames=20, fps=10), compression=8)
    assert explicit.compression == 8 and all(f.shape[1] % 128 == 0 for f in explicit.frames)
    assert is_long_video(64.0) is False and is_long_video(64.5) is True
    assert is_long_video(1000.0, VideoOptions(long_threshold_s=2000)) is False


def test_list_of_frames_and_4d_arrays():
    frames = [np.full((30, 40, 3), frame_value(i), np.uint8) for i in range(5)]
    v = preprocess_video(frames)
    assert v.timestamps == [0.0, 1.0, 2.0, 3.0, 4.0] and _frame_indices(v) == [0, 1, 2, 3, 4]
    mixed = [Image.fromarray(frames[0]), torch.from_numpy(frames[1]), frames[2]]
    assert len(preprocess_video(mixed).frames) == 3
    t = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # [T, C, H, W]
    assert _frame_indices(preprocess_video(t)) == [0, 1, 2, 3, 4]
    two_fps = preprocess_video(frames, VideoOptions(list_fps=2.0))
    assert two_fps.timestamps == [0.0, 1.0, 2.0] and _frame_indices(two_fps) == [0, 2, 4]


def test_directory_of_images(tmp_path):
    for i in range(12):  # natural order: frame2 before frame10
        Image.new("RGB", (40, 30), (frame_value(i),) * 3).save(tmp_path / f"frame{i}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    v = preprocess_video(tmp_path, VideoOptions(max_frames=64))
    assert _frame_indices(v) == list(range(12))
    sub = preprocess_video(tmp_path, VideoOptions(max_frames=3, long_video=False))
    assert _frame_indices(sub) == [0, 6, 11] or _frame_indices(sub) == [0, 5, 11]


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no FIFOs on this OS")
def test_a_device_or_fifo_is_not_a_video_file(tmp_path):
    import os

    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        with pytest.raises(VideoDecodeError, match="not a regular file"):
            preprocess_video(path)


def test_bad_videos_are_typed(tmp_path, make_video):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    audio = write_audio_only(tmp_path / "audio.m4a")
    zero = make_video("zero.mp4", num_frames=0)
    for path, problem in [
        (empty, "zero-byte"),
        (noise, ""),
        (audio, "no video stream"),
        (zero, ""),
    ]:
        with pytest.raises(VideoDecodeError) as info:
            preprocess_video(path)
        assert path.name in str(info.value) and problem in str(info.value)
    with pytest.raises(VideoNotFoundError):
        preprocess_video(tmp_path / "missing.mp4")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(VideoDecodeError, match="no image files"):
        preprocess_video(tmp_path / "emptydir")
    with pytest.raises(VideoDecodeError):
        preprocess_video([])
    with pytest.raises(VideoDecodeError, match="bad frame"):
        preprocess_video([np.zeros((4, 4, 3), np.uint8), b"garbage"])
    with pytest.raises(OryxError):
        preprocess_video(42)  # type: ignore[arg-type]


def test_video_files_need_pyav_but_frame_lists_do_not(make_video, monkeypatch):
    path = make_video(num_frames=3)
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    frames = [np.full((30, 40, 3), frame_value(i), np.uint8) for i in range(3)]
    assert len(preprocess_video(frames).frames) == 3
    with pytest.raises(VideoDecodeError, match="PyAV"):
        preprocess_video(path)


def test_import_does_not_need_pyav():
    code = "import sys; sys.modules['av'] = None; import oryx_mllm, oryx_mllm.processing"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bytes_input(make_video):
    data = make_video(num_frames=20, fps=10).read_bytes()
    assert len(preprocess_video(data).frames) == 2


def test_sampling_helpers():
    assert sample_times(0.0, 10.0, 1.0, 64) == [float(k) for k in range(10)]
    assert sample_times(0.0, 10.0, 1.0, 3, frame_dt=1.0) == [0.0, 4.5, 9.0]
    assert sample_times(0.0, 0.0, 1.0, 64) == [0.0]
    items = [(t, t) for t in (0.0, 0.4, 0.9, 1.6, 2.2)]
    assert [t for t, _ in select_nearest(items, [0.0, 1.0, 2.0])] == [0.0, 0.9, 2.2]
    assert [t for t, _ in select_nearest(items, [0.0, 0.1, 0.15, 5.0])] == [0.0, 2.2]


def test_streaming_holds_only_selected_frames(make_video):
    path = make_video(num_frames=100, fps=10)
    s = sample_video(path, VideoOptions(fps=0.5))
    assert len(s.frames) == 5 and all(f.size == (320, 192) for f in s.frames)


@pytest.mark.parametrize(
    "name, codec", [("seek.mp4", "mpeg4"), ("seek.mkv", "libx264"), ("seek.webm", "libvpx-vp9")]
)
def test_seeking_gives_the_same_frames_as_decoding_everything(make_video, name, codec):
    path = make_video(name, num_frames=400, fps=10, codec=codec, gop=25, size=(32, 32), marker=133)
    opt = dict(max_frames=5, long_video=False)
    fast = sample_video(path, VideoOptions(**opt))
    slow = sample_video(path, VideoOptions(**opt, seek_min_gap_s=None))
    assert fast.meta["seek"] is True and slow.meta["seek"] is False
    assert (
        fast.timestamps
        == slow.timestamps
        == pytest.approx([0.0, 9.975, 19.95, 29.925, 39.9], abs=0.051)
    )
    for a, b in zip(fast.frames, slow.frames, strict=True):
        assert np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max() <= 2
    marker = sample_video(path, VideoOptions(fps=1 / 13.3, max_frames=64))  # targets 0, 13.3, ...
    assert marker.meta["seek"] is True and marker.timestamps[1] == pytest.approx(13.3)
    assert np.asarray(marker.frames[1])[5, 5].tolist()[0] > 200  # the red frame 133


def test_a_truncated_file_is_sampled_as_far_as_it_decodes_and_says_so(make_video):
    path = make_video("clip.mkv", num_frames=20, fps=1)  # 20 s; matroska keeps the duration
    whole = preprocess_video(path)  # in its header, so a cut file still claims 20 s
    assert "frames_end_s" not in whole.meta and len(whole.frames) == 20
    data = path.read_bytes()
    cut = path.with_name("cut.mkv")
    cut.write_bytes(data[: len(data) // 2])
    part = preprocess_video(cut)
    assert part.meta["duration"] == pytest.approx(20.0, abs=1.0)
    assert 0 < part.meta["frames_end_s"] < 15 and 1 <= len(part.frames) < 20
    # what an Answer reports for its inputs (oryx ask prints it as a warning)
    from oryx_mllm.pipeline import _info

    assert _info(whole, 16).warnings == []
    (warning,) = _info(part, 16).warnings
    assert "before its stated duration of 20 s (truncated or damaged file)" in warning


def test_a_cut_off_mp4_says_truncated_or_corrupt_not_decoder_not_found(make_video):
    data = make_video("clip.mp4", num_frames=8, fps=2).read_bytes()
    # cut in half, and cut right before the sample description (the codec): PyAV then opens a
    # video stream without a decoder and fails with "Decoder not found"
    for cut in (data[: len(data) // 2], data[: data.index(b"stsd") - 4]):
        with pytest.raises(VideoDecodeError, match="truncated or corrupt") as info:
            preprocess_video(cut)
        assert "Decoder not found" not in str(info.value)
    assert str(info.value) == (
        f"<{len(cut)} bytes>: cannot decode video: the video stream names no codec that can be "
        "decoded (the file is truncated or corrupt, or its codec is unsupported)"
    )


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_a_still_image_given_as_a_video_is_a_modality_error(tmp_path, fmt):
    path = tmp_path / f"photo.{fmt.lower()}"
    Image.new("RGB", (48, 32), (200, 30, 30)).save(path, format=fmt)
    for source in (path, path.read_bytes()):  # a path and the same file's bytes
        with pytest.raises(UnsupportedModalityError, match=f"a still {fmt}, not a video"):
            sample_video(source)


def test_a_gif_is_still_a_video(tmp_path):
    path = tmp_path / "blink.gif"
    frames = [Image.new("RGB", (32, 32), (v, v, v)) for v in (0, 255)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=500)
    assert len(sample_video(path, VideoOptions(fps=2.0)).frames) == 2
