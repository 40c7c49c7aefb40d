"""The film on disk as a folder of small, complete H.264 segments.

Every chunk's frames (split at shot boundaries) become one MP4 segment the
moment they are decoded. A render that dies therefore loses at most the chunk
in flight, a resumed render re-creates byte-identical segments (the encoder is
pinned to be deterministic), and the final film and per-shot files are cheap
stream-copy concatenations of segments.

Invariants kept here:

* a segment file whose name parses is complete: ffmpeg writes to a hidden
  temporary name and the file is fsynced and renamed only after ffmpeg exited
  cleanly;
* the segment name encodes ``(chunk, shot, frames)`` with zero padding, so
  sorting names is film order and listing needs no decoding;
* a published film is complete: it is written to ``<stem>.partial<suffix>``
  and renamed over the output only when ffmpeg succeeded.

``imageio_ffmpeg`` is imported lazily so that machines without ffmpeg (the
training GPU box) can still import :mod:`cinecli.render`.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cinecli.state.atomic import fsync_dir

__all__ = [
    "Segment",
    "SegmentStore",
    "SegmentError",
    "concat",
    "read_video",
    "count_frames",
    "segment_name",
    "parse_segment_name",
    "shots_of",
    "partial_path",
    "ffmpeg_exe",
]

# Zero-padded so that a plain name sort is film order (chunk first, then shot).
_NAME_RE = re.compile(r"^c(\d{6,})-s(\d{4,})-n(\d{5,})\.mp4$")
_TMP_PREFIX = ".tmp-"

# GOP length far beyond any segment: each segment is one IDR frame followed by
# P/B frames. The IDR at the start is what makes stream-copy concat valid.
_GOP = 1_000_000


class SegmentError(RuntimeError):
    """ffmpeg failed to encode, concatenate or read a video."""


@dataclass(frozen=True)
class Segment:
    """One complete segment file: frames of one shot from one chunk."""

    path: Path
    shot: int
    chunk: int
    frames: int


def ffmpeg_exe() -> str:
    """Path of the bundled ffmpeg; imported here so import of the module stays cheap."""
    import imageio_ffmpeg  # lazy: the training machine has no ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def segment_name(chunk: int, shot: int, frames: int) -> str:
    """File name of a segment; name order equals film order."""
    if chunk < 0 or shot < 0 or frames <= 0:
        raise ValueError(f"bad segment key chunk={chunk} shot={shot} frames={frames}")
    return f"c{chunk:06d}-s{shot:04d}-n{frames:05d}.mp4"


def parse_segment_name(name: str) -> tuple[int, int, int] | None:
    """``(chunk, shot, frames)`` of a segment file name, or None for anything else (temp files)."""
    m = _NAME_RE.match(name)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def partial_path(out: Path) -> Path:
    """Where a film is assembled before it is renamed to ``out`` (same folder, so rename is atomic)."""
    return out.with_name(f"{out.stem}.partial{out.suffix or '.mp4'}")


def shots_of(segments: Sequence[Segment]) -> dict[int, list[Segment]]:
    """Segments grouped by shot, each group in film order: the input of per-shot files."""
    groups: dict[int, list[Segment]] = {}
    for seg in sorted(segments, key=lambda s: (s.chunk, s.shot)):
        groups.setdefault(seg.shot, []).append(seg)
    return groups


def x264_args(fps: int, crf: int) -> list[str]:
    """Encoder options, pinned so identical frames give identical bytes.

    ``-threads 1`` removes any dependence on the core count of the machine (a
    resumed render may run elsewhere); the bitexact flags drop the muxer's
    version string; ``-map_metadata -1`` drops creation times. Scene-cut keyframes
    are disabled so the only IDR is the first frame of each segment.

    B-frames are off (``-bf 0``): with them, a segment's decode timestamps start
    before zero by the reorder delay, and a short segment (one frame) has a
    different delay from a long one, so stream-copied concatenation produces
    non-monotonic timestamps. Without B-frames every segment has dts == pts and
    the concatenation is exact, at a small cost in compression.

    RGB is converted with the BT.709 matrix and the stream is tagged BT.709,
    limited range, so players and :func:`read_video` agree on the colours.
    """
    return [
        "-c:v", "libx264",
        "-preset", "medium",
        "-crf", str(crf),
        "-vf", "scale=out_color_matrix=bt709:out_range=tv,"
               "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv",
        "-pix_fmt", "yuv420p",
        "-g", str(_GOP),
        "-bf", "0",
        "-sc_threshold", "0",
        "-threads", "1",
        "-x264-params", "log=-1",
        "-r", str(fps),
        "-map_metadata", "-1",
        "-fflags", "+bitexact",
        "-flags:v", "+bitexact",
        "-movflags", "+faststart",
        "-f", "mp4",
    ]


def _fsync_file(path: Path) -> None:
    """Flush a file's data to disk before it is renamed into place."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _run_ffmpeg(args: list[str], *, stdin: memoryview | None = None, what: str) -> None:
    """Run ffmpeg to completion, raising :class:`SegmentError` with its stderr tail on failure."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error", *args]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _, err = proc.communicate(input=stdin)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip()[-2000:]
        raise SegmentError(f"ffmpeg failed to {what} (exit {proc.returncode}): {tail}")


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


class SegmentStore:
    """A folder of segments for one film at one size and frame rate.

    Holds no frames: :meth:`write` streams one chunk's frames to ffmpeg and
    returns; the folder listing is the only state, so a new store over an
    existing folder (resume) sees exactly what a previous process completed.
    """

    def __init__(self, folder: Path, fps: int, width: int, height: int, *, crf: int = 18) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        _check_even(width, height)
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {crf}")
        self.folder = Path(folder)
        self.fps = fps
        self.width = width
        self.height = height
        self.crf = crf
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, frames: np.ndarray, *, shot: int, chunk: int) -> Segment:
        """Encode one shot's frames of one chunk as a complete segment file.

        Any earlier segment for the same (chunk, shot) is removed first, so a
        re-render of a chunk never leaves two candidates behind.
        """
        self._check_frames(frames)
        count = int(frames.shape[0])
        final = self.folder / segment_name(chunk, shot, count)
        tmp = self.folder / f"{_TMP_PREFIX}{os.getpid()}-{final.name}"
        data = memoryview(np.ascontiguousarray(frames)).cast("B")
        args = [
            "-f", "rawvideo",
            "-pix_fmt", "rgb24",
            "-s", f"{self.width}x{self.height}",
            "-r", str(self.fps),
            "-i", "pipe:0",
            *x264_args(self.fps, self.crf),
            str(tmp),
        ]
        try:
            _run_ffmpeg(args, stdin=data, what=f"encode segment {final.name}")
            _fsync_file(tmp)
            for old in self._segments_of(chunk, shot):
                if old.path != final:
                    _unlink_quietly(old.path)
            os.replace(tmp, final)
        finally:
            _unlink_quietly(tmp)
        fsync_dir(self.folder)
        return Segment(path=final, shot=shot, chunk=chunk, frames=count)

    def segments(self) -> list[Segment]:
        """Complete segments in film order; temporary and foreign files are ignored."""
        found: list[Segment] = []
        for entry in os.scandir(self.folder):
            key = parse_segment_name(entry.name)
            if key is None or not entry.is_file():
                continue
            chunk, shot, frames = key
            found.append(Segment(path=Path(entry.path), shot=shot, chunk=chunk, frames=frames))
        found.sort(key=lambda s: (s.chunk, s.shot, s.frames))
        _check_unique(found)
        return found

    def discard_from(self, chunk: int) -> None:
        """Delete segments of chunks >= ``chunk`` and stale temp files (resume / re-render)."""
        for seg in self.segments():
            if seg.chunk >= chunk:
                _unlink_quietly(seg.path)
        for entry in os.scandir(self.folder):
            if entry.name.startswith(_TMP_PREFIX):
                _unlink_quietly(Path(entry.path))
        fsync_dir(self.folder)

    def frames_written(self) -> int:
        """Total frames in complete segments (from names; nothing is decoded)."""
        return sum(s.frames for s in self.segments())

    def _segments_of(self, chunk: int, shot: int) -> list[Segment]:
        return [s for s in self.segments() if s.chunk == chunk and s.shot == shot]

    def _check_frames(self, frames: np.ndarray) -> None:
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
            raise TypeError(f"frames must be a uint8 numpy array, got {type(frames).__name__} "
                            f"{getattr(frames, 'dtype', '')}")
        expected = (self.height, self.width, 3)
        if frames.ndim != 4 or tuple(frames.shape[1:]) != expected or frames.shape[0] == 0:
            raise ValueError(f"frames must have shape [T>0, {self.height}, {self.width}, 3], "
                             f"got {list(frames.shape)}")


def _check_even(width: int, height: int) -> None:
    """yuv420p halves chroma in both directions, so H.264 needs even sizes."""
    if width <= 0 or height <= 0:
        raise ValueError(f"video size must be positive, got {width}x{height}")
    if width % 2 or height % 2:
        raise ValueError(
            f"video size {width}x{height} is not even; H.264 in yuv420p needs even width "
            f"and height (try {width + width % 2}x{height + height % 2})"
        )


def _check_unique(segments: Sequence[Segment]) -> None:
    """Two files for one (chunk, shot) mean the folder was tampered with; refuse to guess."""
    seen: dict[tuple[int, int], Path] = {}
    for seg in segments:
        key = (seg.chunk, seg.shot)
        if key in seen:
            raise SegmentError(f"two segments for chunk {seg.chunk} shot {seg.shot}: "
                               f"{seen[key].name} and {seg.path.name}; delete one")
        seen[key] = seg.path


def _concat_list(segments: Sequence[Segment]) -> str:
    """Concat demuxer script; absolute paths, single quotes escaped the way ffmpeg expects."""
    lines = ["ffconcat version 1.0"]
    for seg in segments:
        path = str(Path(seg.path).resolve()).replace("'", "'\\''")
        lines.append(f"file '{path}'")
    return "\n".join(lines) + "\n"


def concat(segments: Sequence[Segment], out: Path, *, overwrite: bool) -> Path:
    """Stream-copy the segments, in the given order, into ``out`` and publish it atomically.

    Nothing is re-encoded, so this is fast and the film's frames are exactly
    the segments' frames. The film is assembled at :func:`partial_path` and
    renamed to ``out`` only on success; on failure nothing is left at ``out``.
    """
    out = Path(out)
    if not segments:
        raise ValueError(f"no segments to concatenate into {out}; nothing was rendered")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    missing = [str(s.path) for s in segments if not Path(s.path).is_file()]
    if missing:
        raise FileNotFoundError(f"missing segment files: {', '.join(missing[:5])}")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(out)
    fd, list_name = tempfile.mkstemp(prefix=f".{out.stem}-", suffix=".ffconcat", dir=out.parent)
    list_path = Path(list_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(_concat_list(segments))
        args = [
            "-xerror",  # the concat demuxer otherwise skips an unreadable segment and exits 0
            "-f", "concat", "-safe", "0", "-i", str(list_path),
            "-map", "0:v:0", "-c", "copy",
            "-map_metadata", "-1", "-fflags", "+bitexact",
            "-movflags", "+faststart", "-f", "mp4",
            str(partial),
        ]
        _run_ffmpeg(args, what=f"concatenate {len(segments)} segments into {out}")
        expected = sum(s.frames for s in segments)
        got = count_frames(partial)
        if got != expected:
            raise SegmentError(f"concatenation into {out} has {got} frames, segments hold "
                               f"{expected}; a segment is damaged")
        _fsync_file(partial)
        if out.exists() and not overwrite:  # appeared while we were working
            raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
        os.replace(partial, out)
        fsync_dir(out.parent)
    finally:
        _unlink_quietly(list_path)
        _unlink_quietly(partial)
    return out


def count_frames(path: Path) -> int:
    """Video frames in a file, counted by stream copy (packets), so nothing is decoded.

    One `framecrc` line per packet: the muxer is in every ffmpeg build, where the `frame=` of
    `-progress` with a stream copy is missing in ffmpeg 7 (imageio-ffmpeg 0.5 and 0.6 bundle it).
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats",
           "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip()[-2000:]
        raise SegmentError(f"ffmpeg failed to count frames of {path} (exit {proc.returncode}): {tail}")
    return sum(1 for line in proc.stdout.splitlines() if line.strip() and not line.startswith(b"#"))


def read_video(path: Path) -> np.ndarray:
    """All frames of a video as uint8 [T, H, W, 3] (for tests and evaluation, not streaming)."""
    import imageio_ffmpeg  # lazy: the training machine has no ffmpeg

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no video at {path}")
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24", bits_per_pixel=24)
    meta = next(gen)
    width, height = meta["size"]
    frames = [np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3) for buf in gen]
    if not frames:
        return np.zeros((0, height, width, 3), dtype=np.uint8)
    return np.stack(frames)
