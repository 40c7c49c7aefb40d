"""Segments on disk: complete, deterministic, and concatenable without re-encoding."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("imageio_ffmpeg")

from cinecli.render.segments import (  # noqa: E402
    Segment,
    SegmentError,
    SegmentStore,
    concat,
    count_frames,
    parse_segment_name,
    partial_path,
    read_video,
    segment_name,
    shots_of,
)

H, W, FPS = 48, 64, 16


def clip(n: int, seed: int, h: int = H, w: int = W) -> np.ndarray:
    """Smooth moving pattern: realistic enough for the encoder, cheap to make."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    fx, fy, phase = rng.uniform(5, 20), rng.uniform(5, 20), rng.uniform(0, 6)
    frames = []
    for t in range(n):
        r = 128 + 100 * np.sin((x + 3 * t) / fx + phase)
        g = 128 + 100 * np.cos((y - 2 * t) / fy)
        b = (x + y + 5 * t) % 256
        frames.append(np.stack([r, g, b], -1))
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> SegmentStore:
    return SegmentStore(tmp_path / "segments", FPS, W, H)


def test_names_sort_in_film_order_and_round_trip() -> None:
    keys = [(0, 0, 1), (1, 0, 5), (1, 1, 7), (12, 3, 16), (100, 2, 4)]
    names = [segment_name(*k) for k in keys]
    assert sorted(names) == names
    assert [parse_segment_name(n) for n in names] == keys
    assert segment_name(12, 3, 16) == "c000012-s0003-n00016.mp4"
    assert parse_segment_name(".tmp-123-c000012-s0003-n00016.mp4") is None
    assert parse_segment_name("c000012-s0003-n00016.mp4.part") is None


def test_write_reads_back_frame_count_and_size(store: SegmentStore) -> None:
    frames = clip(13, 0)
    seg = store.write(frames, shot=2, chunk=5)
    assert seg == Segment(path=seg.path, shot=2, chunk=5, frames=13)
    assert seg.path.name == "c000005-s0002-n00013.mp4"
    video = read_video(seg.path)
    assert video.shape == (13, H, W, 3)
    # Lossy, but close on smooth content.
    assert np.abs(video.astype(int) - frames).mean() < 4


def test_single_frame_segment(store: SegmentStore) -> None:
    seg = store.write(clip(1, 1), shot=0, chunk=0)
    assert read_video(seg.path).shape == (1, H, W, 3)


def test_concat_equals_the_parts_bit_for_bit(store: SegmentStore, tmp_path: Path) -> None:
    lengths, shots = [1, 4, 9, 4, 16, 3], [0, 0, 0, 1, 1, 2]
    segs = [store.write(clip(n, i), shot=s, chunk=i) for i, (n, s) in enumerate(zip(lengths, shots))]
    assert store.segments() == segs
    assert store.frames_written() == sum(lengths)

    film = concat(store.segments(), tmp_path / "film.mp4", overwrite=False)
    parts = np.concatenate([read_video(s.path) for s in segs])
    whole = read_video(film)
    assert whole.shape == (sum(lengths), H, W, 3)
    assert np.array_equal(whole, parts)
    assert count_frames(film) == sum(lengths)
    import imageio_ffmpeg

    frames, secs = imageio_ffmpeg.count_frames_and_secs(str(film))
    assert frames == sum(lengths)
    assert secs == pytest.approx(sum(lengths) / FPS, abs=0.02)

    for shot, group in shots_of(store.segments()).items():
        shot_file = concat(group, tmp_path / f"shot{shot}.mp4", overwrite=False)
        expected = np.concatenate([read_video(s.path) for s in group])
        assert np.array_equal(read_video(shot_file), expected)


def test_identical_frames_give_identical_bytes(tmp_path: Path) -> None:
    frames = clip(9, 3)
    a = SegmentStore(tmp_path / "a", FPS, W, H).write(frames, shot=0, chunk=0)
    b = SegmentStore(tmp_path / "b", FPS, W, H).write(frames, shot=0, chunk=0)
    assert sha(a.path) == sha(b.path)
    fa = concat([a], tmp_path / "a.mp4", overwrite=False)
    fb = concat([b], tmp_path / "b.mp4", overwrite=False)
    assert sha(fa) == sha(fb)


def test_rewriting_a_chunk_replaces_its_segment(store: SegmentStore) -> None:
    store.write(clip(5, 0), shot=1, chunk=3)
    seg = store.write(clip(7, 0), shot=1, chunk=3)
    assert store.segments() == [seg]
    assert store.frames_written() == 7


@pytest.mark.parametrize("size", [(63, 48), (64, 47), (0, 48)])
def test_odd_or_empty_size_refused(tmp_path: Path, size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="even|positive"):
        SegmentStore(tmp_path / "s", FPS, *size)


def test_wrong_frames_refused(store: SegmentStore) -> None:
    with pytest.raises(ValueError, match="shape"):
        store.write(clip(2, 0, h=H + 2), shot=0, chunk=0)
    with pytest.raises(ValueError, match="shape"):
        store.write(np.zeros((0, H, W, 3), np.uint8), shot=0, chunk=0)
    with pytest.raises(TypeError, match="uint8"):
        store.write(clip(2, 0).astype(np.float32), shot=0, chunk=0)
    assert store.segments() == []


def test_overwrite_refused_then_allowed(store: SegmentStore, tmp_path: Path) -> None:
    segs = [store.write(clip(3, 0), shot=0, chunk=0)]
    out = tmp_path / "film.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match=r"film\.mp4.*--overwrite"):
        concat(segs, out, overwrite=False)
    assert out.read_bytes() == b"precious"
    concat(segs, out, overwrite=True)
    assert read_video(out).shape[0] == 3
    assert not partial_path(out).exists()


def test_discard_from(store: SegmentStore) -> None:
    for chunk, shot in [(0, 0), (1, 0), (1, 1), (2, 1), (3, 2)]:
        store.write(clip(2, chunk), shot=shot, chunk=chunk)
    (store.folder / ".tmp-999-c000004-s0002-n00002.mp4").write_bytes(b"half written")
    store.discard_from(1)
    assert [(s.chunk, s.shot) for s in store.segments()] == [(0, 0)]
    assert sorted(p.name for p in store.folder.iterdir()) == ["c000000-s0000-n00002.mp4"]
    assert store.frames_written() == 2


def test_temp_files_are_not_segments(store: SegmentStore) -> None:
    store.write(clip(2, 0), shot=0, chunk=0)
    (store.folder / ".tmp-1-c000001-s0000-n00002.mp4").write_bytes(b"")
    (store.folder / "notes.txt").write_text("x")
    assert [s.chunk for s in store.segments()] == [0]


def test_new_store_over_existing_folder_sees_segments(store: SegmentStore) -> None:
    seg = store.write(clip(4, 0), shot=0, chunk=0)
    again = SegmentStore(store.folder, FPS, W, H)
    assert again.segments() == [seg]


def test_zero_segments_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "film.mp4"
    with pytest.raises(ValueError, match="no segments"):
        concat([], out, overwrite=False)
    assert list(tmp_path.iterdir()) == []


def test_failed_concat_leaves_nothing(store: SegmentStore, tmp_path: Path) -> None:
    good = store.write(clip(3, 0), shot=0, chunk=0)
    bad_path = store.folder / segment_name(1, 0, 3)
    bad_path.write_bytes(b"this is not an mp4")
    bad = Segment(path=bad_path, shot=0, chunk=1, frames=3)
    out = tmp_path / "out" / "film.mp4"
    with pytest.raises(SegmentError, match="concatenate"):
        concat([good, bad], out, overwrite=False)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []


def test_missing_segment_file_refused(tmp_path: Path) -> None:
    ghost = Segment(path=tmp_path / segment_name(0, 0, 1), shot=0, chunk=0, frames=1)
    with pytest.raises(FileNotFoundError):
        concat([ghost], tmp_path / "film.mp4", overwrite=False)
    assert not (tmp_path / "film.mp4").exists()


def test_per_segment_overhead(tmp_path: Path) -> None:
    """Prints the fixed cost of one segment (run with -s); no assertion on speed."""
    h, w = 256, 384
    store = SegmentStore(tmp_path / "t", FPS, w, h)
    frames = clip(16, 0, h=h, w=w)

    def median_ms(n: int) -> float:
        times = []
        for chunk in range(5):
            start = time.perf_counter()
            store.write(frames[:n], shot=0, chunk=chunk)
            times.append(time.perf_counter() - start)
        return 1000 * sorted(times)[len(times) // 2]

    one, sixteen = median_ms(1), median_ms(16)
    per_frame = (sixteen - one) / 15
    print(f"\nsegment write at {w}x{h}: 1 frame {one:.1f} ms, 16 frames {sixteen:.1f} ms, "
          f"~{per_frame:.1f} ms/frame, fixed overhead ~{one - per_frame:.1f} ms")
