"""Media references and "patch" files: many encoded images / video frames in one binary file.

The original Oryx data release avoids millions of small files by storing encoded images (JPEG,
PNG, ...) and video frames back to back in large binary "patch" files. A record then points at a
slice of such a file instead of a path. Anywhere a record accepts a media path (``image``,
``video``, ``video_long``, ``views``) it also accepts a patch reference::

    {"patch": "frames_00.bin", "start": 1234, "size": [5012, 4988, 5101]}

- ``patch``: path of the patch file, relative to the data root (like every media path);
- ``start``: byte offset of the first item, >= 0;
- ``size``: byte sizes of the items stored consecutively from ``start`` (an int is accepted as a
  one-element list). One size = one encoded image; several sizes = the consecutive encoded frames
  of one video (or the views of one multi-view scene), in order.

Item ``k`` therefore occupies bytes ``[start + sum(size[:k]), start + sum(size[:k + 1]))``. The
file has no header, index or padding; the records are the only index. :class:`PatchFileWriter`
appends items and returns the reference; :func:`read_patch` reads them back with seek + read
(never loading the whole file), optionally only a subset of the frames.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from oryx_mllm.errors import DataError, MediaNotFoundError, PatchFileError


@dataclass(frozen=True)
class MediaRef:
    """Where one media item lives: a plain file, or a slice of a patch file.

    ``path`` is relative to the data root (absolute paths are kept as they are). For a patch
    reference ``start`` is the byte offset and ``sizes`` the byte size of every stored item; for a
    plain file both are ``None``.
    """

    path: str
    start: int | None = None
    sizes: tuple[int, ...] | None = None

    @property
    def is_patch(self) -> bool:
        return self.sizes is not None

    @property
    def num_items(self) -> int:
        """Images / frames stored in the slice (1 for a plain file)."""
        return len(self.sizes) if self.sizes is not None else 1

    def resolve(self, data_root: str | os.PathLike) -> Path:
        """Absolute path of the file (the patch file for a patch reference)."""
        return Path(data_root) / self.path

    def to_json(self) -> str | dict:
        """The record form: the path string, or the ``{"patch", "start", "size"}`` dict."""
        if self.sizes is None:
            return self.path
        return {"patch": self.path, "start": self.start, "size": list(self.sizes)}


def parse_media_ref(value: object, *, what: str = "media") -> MediaRef:
    """Parse a record's media value (a path string or a patch dict) into a :class:`MediaRef`.

    Raises :class:`DataError` describing the problem; ``what`` names the field in the message.
    """
    if isinstance(value, MediaRef):
        return value
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{what}: empty path")
        return MediaRef(value)
    if isinstance(value, Mapping):
        unknown = set(value) - {"patch", "start", "size"}
        if unknown:
            raise DataError(f"{what}: unknown patch-reference keys {sorted(unknown)}")
        path, start, sizes = value.get("patch"), value.get("start"), value.get("size")
        if not isinstance(path, str) or not path.strip():
            raise DataError(f"{what}: patch reference needs a 'patch' file path, got {path!r}")
        if not _is_int(start) or start < 0:
            raise DataError(f"{what}: patch 'start' must be an int >= 0, got {start!r}")
        if _is_int(sizes):
            sizes = [sizes]
        if (
            not isinstance(sizes, Sequence)
            or isinstance(sizes, str)
            or not sizes
            or not all(_is_int(s) and s > 0 for s in sizes)
        ):
            raise DataError(f"{what}: patch 'size' must be a non-empty list of ints > 0")
        return MediaRef(path, int(start), tuple(int(s) for s in sizes))
    raise DataError(f"{what}: expected a path string or a patch dict, got {type(value).__name__}")


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def read_patch(
    data_root: str | os.PathLike,
    ref: MediaRef | Mapping,
    indices: Sequence[int] | None = None,
) -> list[bytes]:
    """Read the encoded items of a patch reference: one ``bytes`` per image / frame.

    ``indices`` (0-based, into the reference's ``size`` list) reads only those items, in the
    given order (repeats allowed). Raises :class:`MediaNotFoundError` when the file is missing,
    :class:`PatchFileError` when the slice runs past the end of the file (bad offset or truncated
    file) or an index is out of range, :class:`DataError` for a malformed reference.
    """
    ref = parse_media_ref(ref, what="patch reference")
    if not ref.is_patch:
        raise DataError(f"{ref.path!r} is a plain path, not a patch reference")
    path = ref.resolve(data_root)
    assert ref.sizes is not None and ref.start is not None
    offsets = [ref.start]
    for s in ref.sizes:
        offsets.append(offsets[-1] + s)
    if indices is None:
        indices = range(len(ref.sizes))
    for i in indices:
        if not _is_int(i) or not 0 <= i < len(ref.sizes):
            raise PatchFileError(f"{path}: frame index {i!r} out of range [0, {len(ref.sizes)})")
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            if offsets[-1] > file_size:
                raise PatchFileError(
                    f"{path}: reference [start={ref.start}, end={offsets[-1]}) runs past the end "
                    f"of the file ({file_size} bytes): bad offset or truncated file"
                )
            out = []
            for i in indices:
                f.seek(offsets[i])
                data = f.read(ref.sizes[i])
                if len(data) != ref.sizes[i]:  # file shrank while reading
                    raise PatchFileError(f"{path}: short read at offset {offsets[i]}")
                out.append(data)
            return out
    except FileNotFoundError as e:
        raise MediaNotFoundError(f"patch file not found: {path}") from e
    except IsADirectoryError as e:
        raise PatchFileError(f"patch path is a directory: {path}") from e


class PatchFileWriter:
    """Append encoded images / frames to a patch file and get back their references.

    ::

        with PatchFileWriter(root / "frames_00.bin", ref_path="frames_00.bin") as w:
            image_ref = w.append(jpeg_bytes)            # one image
            video_ref = w.append([f0, f1, f2, f3])      # four consecutive frames

    The file is opened in append mode, so an existing file is extended, never overwritten.
    ``ref_path`` is the path written into the references (relative to the data root); it defaults
    to the file name. :meth:`append` returns the JSON-ready dict; ``MediaRef`` via
    :func:`parse_media_ref`.
    """

    def __init__(self, path: str | os.PathLike, ref_path: str | None = None):
        self.path = Path(path)
        self.ref_path = ref_path if ref_path is not None else self.path.name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "ab")
        self._offset = self._f.seek(0, os.SEEK_END)

    @property
    def offset(self) -> int:
        """Current end of the file: where the next item will start."""
        return self._offset

    def append(self, items: bytes | Sequence[bytes]) -> dict:
        """Write one item (``bytes``) or several consecutive items; return the reference dict."""
        if self._f.closed:
            raise DataError(f"{self.path}: writer is closed")
        blobs = [items] if isinstance(items, (bytes, bytearray, memoryview)) else list(items)
        if not blobs:
            raise DataError("nothing to append: empty item list")
        for b in blobs:
            if not isinstance(b, (bytes, bytearray, memoryview)) or len(b) == 0:
                raise DataError("patch items must be non-empty bytes")
        start = self._offset
        for b in blobs:
            self._f.write(b)
        sizes = [len(b) for b in blobs]
        self._offset += sum(sizes)
        return {"patch": self.ref_path, "start": start, "size": sizes}

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> PatchFileWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
