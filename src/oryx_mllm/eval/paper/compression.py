"""On-demand compression (paper Table 5b / Table 9): accuracy versus LLM cost at 1x, 2x2 and 4x4.

The same held-out short videos (4-16 frames: direction, order, repetition, what-when) and long
needle videos (the model's long-video maximum of frames, every frame given to the model) are answered
with the Dynamic Compressor forced to 1x (no pooling), 2x2 and 4x4. Reported per setting:
exact-match accuracy, the LLM prompt length (prefill tokens, visual tokens included), the visual
tokens alone, and the time to first token (preprocessing + vision encoder + compressor + LLM
prefill + one decoding step; ``max_new_tokens=1``, one request at a time, median).
"""

from __future__ import annotations

import statistics

from oryx_mllm.eval.paper.common import (
    PaperConfig,
    Table,
    accuracy,
    answer_samples,
    mean,
    question_text,
    video_options,
)
from oryx_mllm.eval.paper.samples import held_out

RATIOS = (1, 2, 4)


def _frames(sample) -> list:
    media = sample.media
    return list(media) if isinstance(media, list) else [media.frame(i) for i in range(len(media))]


def run(pipe, cfg: PaperConfig) -> Table:
    long_frames = cfg.compression_long_frames or video_options(pipe).long_max_frames
    sets = {
        "short videos": held_out("short_videos", cfg.seed, cfg.compression_short_samples),
        "long videos": held_out(
            "long_videos",
            cfg.seed,
            cfg.compression_long_samples,
            num_frames=long_frames,
            frame_size=cfg.needle_frame_size,
        ),
    }
    rows = []
    for name, samples in sets.items():
        frames = {s.id: _frames(s) for s in samples}
        for r in RATIOS:

            def message(s, r=r, frames=frames):
                return pipe.messages_for(question_text(s), video=frames[s.id], compression=r)

            scored = answer_samples(pipe, samples, message, cfg.batch_size, max_new_tokens=8)
            ttft = [
                pipe.chat(message(s), max_new_tokens=1).latency_s
                for s in samples[: cfg.latency_samples]
            ]
            rows.append(
                {
                    "videos": name,
                    "compression": f"{r}x{r}" if r > 1 else "1x",
                    "accuracy": accuracy(scored),
                    "prefill tokens": mean([s.prompt_tokens for s in scored]),
                    "visual tokens": mean([s.visual_tokens for s in scored]),
                    "time to first token (s)": statistics.median(ttft),
                }
            )
    n_frames = {k: mean([len(_frames(s)) for s in v]) for k, v in sets.items()}
    return Table(
        name="compression",
        title="Compression (Table 5b / 9): accuracy and LLM prefill cost at 1x / 2x2 / 4x4",
        columns=[
            "videos",
            "compression",
            "accuracy",
            "prefill tokens",
            "visual tokens",
            "time to first token (s)",
        ],
        rows=rows,
        notes=[
            f"{len(sets['short videos'])} short videos (mean {n_frames['short videos']:.1f} "
            f"frames) and {len(sets['long videos'])} long needle videos "
            f"({long_frames} frames each: the model's long-video maximum unless configured, all "
            "given to the model); held-out seed "
            f"{cfg.seed}; exact-match accuracy",
            f"time to first token: median of {cfg.latency_samples} single requests "
            "(max_new_tokens=1)",
        ],
    )
