"""Synthetic curriculum for training and testing a tiny Oryx model from scratch on CPU.

Five task families, each probing one capability of the paper (see the module docstrings):

=================  ==========================  ===============================================
family             modality                    tests
=================  ==========================  ===============================================
documents          image (448-768 px)          native-resolution reading of small text
objects            image (128-256 px)          colour / shape / count / position at low res
short_videos       video (4-16 frames)         motion, order, repetition, temporal alignment
long_videos        video_long (100-1600 fr.)   needle-in-a-haystack retrieval (App. C.1)
multiview_scenes   multiview (2-6 views)       cross-view counting and spatial relations
=================  ==========================  ===============================================

Training-only multi-turn tasks (``TRAIN_TASKS``, in no family): ``objects/qa_session``,
``documents/line_session``, ``documents/key_session``, ``multiview/scene_session`` and
``short_videos/video_session`` ask several questions about ONE image / scene / video (``SyntheticSample.turns``), so its visual tokens are computed
once and supervised many times, which made the embedded tiny model learn faster on a CPU budget
(docs/default_model.md). ``objects/text_session`` is the one text-only task (modality ``"text"``,
no media): an objects session on a grid scene written out as text, for a text stage before the
visual ones (tried, not in the shipped recipe: docs/default_model.md, "Text first in the full
recipe").

Seeds and splits. Sample ``index`` of task ``task`` in the stream with base seed ``seed`` is drawn
from ``SeedSequence([seed, crc32(task), index])``: it depends on nothing else, so streams are
reproducible and can be extended. Convention: **training data uses base seeds in
[0, 1_000_000), held-out test data base seeds >= 1_000_000** (``TRAIN_SEEDS``, ``TEST_SEEDS``,
:func:`split_seed`); pass ``split="train"``/``"test"`` to :func:`make_split` to have the seed
checked. Different base seeds give independent streams, so train and test never share a sample
stream (pixel-level duplicates are practically impossible: positions, sizes and noise are
continuous/high-entropy).

Usage::

    from oryx_mllm.data.synthetic import make_split, documents
    train = make_split({"documents": 1000, "objects": 1000, "long_videos/digit": 50}, seed=0)
    test = make_split({"documents": 100}, seed=split_seed("test"), split="test")
    for s in documents(seed=0, n=4): print(s.question, "->", s.answer)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping

import numpy as np

from oryx_mllm.checks import check_range
from oryx_mllm.data.synthetic import task_documents as _documents
from oryx_mllm.data.synthetic import task_long_videos as _long_videos
from oryx_mllm.data.synthetic import task_multiview as _multiview
from oryx_mllm.data.synthetic import task_objects as _objects
from oryx_mllm.data.synthetic import task_short_videos as _videos
from oryx_mllm.data.synthetic.common import (
    COLOR_NAMES,
    COLORS,
    DIRECTIONS,
    LABELS,
    SHAPES,
    FrameSource,
    SyntheticSample,
    sample_rng,
)
from oryx_mllm.data.synthetic.task_long_videos import NeedleVideo, make_needle_video
from oryx_mllm.errors import ConfigError

TaskFn = Callable[..., SyntheticSample]

# Training-only multi-turn "sessions": one image / scene with several questions about it. They
# belong to no family, so held-out evaluation (which asks single questions) never draws them.
TRAIN_TASKS: dict[str, TaskFn] = {
    **_documents.TRAIN_TASKS,
    **_objects.TRAIN_TASKS,
    **_multiview.TRAIN_TASKS,
    **_videos.TRAIN_TASKS,
}
TASKS: dict[str, TaskFn] = {
    **_documents.TASKS,
    **_objects.TASKS,
    **_videos.TASKS,
    **_long_videos.TASKS,
    **_multiview.TASKS,
    **TRAIN_TASKS,
}
FAMILIES: dict[str, tuple[str, ...]] = {
    "documents": tuple(_documents.TASKS),
    "objects": tuple(_objects.TASKS),
    "short_videos": tuple(_videos.TASKS),
    "long_videos": tuple(_long_videos.TASKS),
    "multiview_scenes": tuple(_multiview.TASKS),
}

TRAIN_SEEDS = range(0, 1_000_000)
TEST_SEED_MIN = 1_000_000
TEST_SEEDS = range(TEST_SEED_MIN, 2**32)
SPLITS: tuple[str, ...] = ("train", "test")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {list(SPLITS)}, got {split!r}")


def split_seed(split: str, k: int = 0) -> int:
    """The ``k``-th base seed of ``split`` ("train": ``k``, "test": ``1_000_000 + k``)."""
    _check_split(split)
    check_range("k", k, integer=True, at_least=0)
    seed = (TRAIN_SEEDS.start if split == "train" else TEST_SEED_MIN) + k
    check_seed(seed, split)
    return seed


def check_seed(seed: int, split: str) -> None:
    """Raise :class:`ConfigError` if ``seed`` does not belong to ``split`` (convention above)."""
    _check_split(split)
    seeds = TRAIN_SEEDS if split == "train" else TEST_SEEDS
    check_range(f"{split} seed", seed, integer=True, at_least=seeds.start, below=seeds.stop)


def list_tasks(name: str | None = None) -> tuple[str, ...]:
    """All registered task names, or those of family ``name`` (a task name maps to itself)."""
    if name is None:
        return tuple(TASKS)
    if name in FAMILIES:
        return FAMILIES[name]
    if name in TASKS:
        return (name,)
    raise ConfigError(
        f"unknown task or family {name!r}; families: {sorted(FAMILIES)}, tasks: {sorted(TASKS)}"
    )


def _check_task_kwargs(task: str, kwargs: Mapping) -> None:
    """``kwargs`` are keyword arguments ``task``'s generator takes (a generator that passes
    ``**kwargs`` on, e.g. to :func:`make_needle_video`, is checked when it runs)."""
    params = list(inspect.signature(TASKS[task]).parameters.values())[3:]  # after rng, seed, index
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    known = [p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in kwargs:
        if key not in known:
            raise ConfigError(
                f"task {task!r} has no generator argument {key!r}; it takes {known or 'none'}"
            )


def generate(task: str, seed: int, index: int, **kwargs) -> SyntheticSample:
    """Sample ``index`` of ``task`` with base ``seed`` (kwargs go to the task, e.g. ``depth``);
    a kwarg the task does not take is a :class:`ConfigError` naming the task and the kwarg."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; tasks: {sorted(TASKS)}")
    _check_task_kwargs(task, kwargs)
    try:
        return TASKS[task](sample_rng(seed, task, index), seed, index, **kwargs)
    except TypeError as e:  # a kwarg passed on (``**kwargs``) to a function that lacks it
        if "unexpected keyword argument" not in str(e):
            raise
        raise ConfigError(f"task {task!r}: bad generator argument: {e}") from e


def iter_task(
    name: str, seed: int = 0, n: int | None = None, start: int = 0, **kwargs
) -> Iterator[SyntheticSample]:
    """Samples of a task or family (round-robin over its tasks); endless if ``n`` is None.

    Item ``i`` of a family stream is sample ``start + i // m`` of task ``i % m`` (``m`` tasks), so
    a family stream and its per-task streams contain the same samples.
    """
    tasks = list_tasks(name)
    i = 0
    while n is None or i < n:
        task = tasks[i % len(tasks)]
        yield generate(task, seed, start + i // len(tasks), **kwargs)
        i += 1


def documents(seed: int = 0, n: int | None = None, **kw) -> Iterator[SyntheticSample]:
    """Pages, forms, bar charts, tables (native-resolution reading). See ``task_documents.py``."""
    return iter_task("documents", seed, n, **kw)


def objects(seed: int = 0, n: int | None = None, **kw) -> Iterator[SyntheticSample]:
    """Coloured shapes: colour, count, position, existence. See ``task_objects.py``."""
    return iter_task("objects", seed, n, **kw)


def short_videos(seed: int = 0, n: int | None = None, **kw) -> Iterator[SyntheticSample]:
    """4-16 frame clips: direction, order, repetition, what-when. See ``task_short_videos.py``."""
    return iter_task("short_videos", seed, n, **kw)


def long_videos(seed: int = 0, n: int | None = None, **kw) -> Iterator[SyntheticSample]:
    """Needle-in-a-haystack videos; kw: num_frames, depth, frame_size, needle_span."""
    return iter_task("long_videos", seed, n, **kw)


def multiview_scenes(seed: int = 0, n: int | None = None, **kw) -> Iterator[SyntheticSample]:
    """Multi-view 3D scenes: counting and spatial relations. See ``task_multiview.py``."""
    return iter_task("multiview_scenes", seed, n, **kw)


def _schedule(task_counts: dict[str, int]) -> list[tuple[str, int]]:
    """Expand ``{task or family: count}`` into ``(task, index)`` pairs; a family's count is split
    evenly over its tasks (the first tasks get the remainder)."""
    per_task: dict[str, int] = {}
    for name, count in task_counts.items():
        tasks = list_tasks(name)
        check_range(f"count of {name!r}", count, integer=True, at_least=0)
        for j, task in enumerate(tasks):
            share = count // len(tasks) + (1 if j < count % len(tasks) else 0)
            per_task[task] = per_task.get(task, 0) + share
    return [(task, i) for task, c in per_task.items() for i in range(c)]


def resolve_task_kwargs(task_kwargs: dict[str, dict] | None) -> dict[str, dict]:
    """``{task or family: kwargs}`` -> ``{task: kwargs}``: a family's kwargs go to each of its
    tasks, later entries (e.g. a task after its family) update earlier ones. A value that is not
    a mapping, or names an argument a task's generator does not take, is a :class:`ConfigError`.
    """
    if task_kwargs is not None and not isinstance(task_kwargs, Mapping):
        raise ConfigError(
            f"task_kwargs must map task or family names to kwargs, got {task_kwargs!r}"
        )
    kwargs_for: dict[str, dict] = {}
    for name, kw in (task_kwargs or {}).items():
        tasks = list_tasks(name)
        if not isinstance(kw, Mapping):
            raise ConfigError(f"task_kwargs[{name!r}] must be a mapping of kwargs, got {kw!r}")
        for task in tasks:
            _check_task_kwargs(task, kw)
            kwargs_for.setdefault(task, {}).update(kw)
    return kwargs_for


def iter_tasks(
    task_counts: dict[str, int],
    seed: int,
    task_kwargs: dict[str, dict] | None = None,
    shuffle: bool = True,
) -> Iterator[SyntheticSample]:
    """Lazily yield the samples of :func:`make_split` (same order), one at a time.

    ``task_counts`` maps task or family names to counts; ``task_kwargs`` maps task or family
    names to keyword arguments for those tasks (e.g. ``{"long_videos": {"num_frames": 400}}``).
    The mixing order is a permutation drawn from ``seed`` (``shuffle=False``: task by task).
    """
    schedule = _schedule(task_counts)
    if shuffle:
        perm = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).permutation(
            len(schedule)
        )
        schedule = [schedule[int(i)] for i in perm]
    kwargs_for = resolve_task_kwargs(task_kwargs)
    for task, index in schedule:
        yield generate(task, seed, index, **kwargs_for.get(task, {}))


def make_split(
    task_counts: dict[str, int],
    seed: int,
    split: str | None = None,
    task_kwargs: dict[str, dict] | None = None,
    shuffle: bool = True,
) -> list[SyntheticSample]:
    """A shuffled list of samples, ``task_counts[name]`` per task or family, from base ``seed``.

    ``split`` ("train"/"test"), if given, checks the seed convention (train seeds < 1_000_000 <=
    test seeds). Long videos are lazy, so even large splits stay small in memory except for
    documents and multi-view masks.
    """
    if split is not None:
        check_seed(seed, split)
    return list(iter_tasks(task_counts, seed, task_kwargs=task_kwargs, shuffle=shuffle))


def sample_texts(samples: Iterable[SyntheticSample]) -> list[str]:
    """Questions and answers of ``samples`` (the tokenizer's training text)."""
    out = []
    for s in samples:
        out += [s.question, s.answer]
    return out


__all__ = [
    "COLORS",
    "COLOR_NAMES",
    "DIRECTIONS",
    "FAMILIES",
    "LABELS",
    "SHAPES",
    "TASKS",
    "TEST_SEEDS",
    "TRAIN_TASKS",
    "TEST_SEED_MIN",
    "TRAIN_SEEDS",
    "FrameSource",
    "NeedleVideo",
    "SyntheticSample",
    "check_seed",
    "documents",
    "generate",
    "iter_task",
    "iter_tasks",
    "list_tasks",
    "long_videos",
    "make_needle_video",
    "make_split",
    "multiview_scenes",
    "objects",
    "resolve_task_kwargs",
    "sample_texts",
    "short_videos",
    "split_seed",
]
