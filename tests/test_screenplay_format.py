"""The temporal grid: latent frames <-> video frames, both with and without a lone first frame."""

from __future__ import annotations

import pytest

from cinecli.screenplay import TemporalGrid

GRIDS = [TemporalGrid(4, False), TemporalGrid(4, True), TemporalGrid(1, False), TemporalGrid(3, True)]


def test_plain_grid_positions() -> None:
    grid = TemporalGrid(4, False)
    assert [grid.frame_start(i) for i in range(4)] == [0, 4, 8, 12]
    assert [grid.frames_in(i) for i in range(3)] == [4, 4, 4]
    assert [grid.latents_for(f) for f in (0, 1, 4, 5, 8, 150)] == [0, 1, 1, 2, 2, 38]


def test_wan_grid_first_latent_is_one_frame() -> None:
    grid = TemporalGrid(4, True)
    assert [grid.frame_start(i) for i in range(4)] == [0, 1, 5, 9]
    assert [grid.frames_in(i) for i in range(3)] == [1, 4, 4]
    assert [grid.latents_for(f) for f in (0, 1, 2, 5, 6, 81)] == [0, 1, 2, 2, 3, 21]


def test_snap_ties_go_to_the_later_latent() -> None:
    assert TemporalGrid(4, False).snap(2) == 1  # 0 and 4 are equally near
    assert TemporalGrid(4, False).snap(50) == 13  # 48 and 52 -> 52
    assert TemporalGrid(4, True).snap(3) == 2  # starts 1 and 5 are equally near -> 5
    assert TemporalGrid(4, True).snap(1) == 1
    assert TemporalGrid(4, True).frame_start(TemporalGrid(4, True).snap(50)) == 49


@pytest.mark.parametrize("grid", GRIDS, ids=str)
def test_snap_is_nearest_start_with_ties_later(grid: TemporalGrid) -> None:
    starts = [grid.frame_start(i) for i in range(300)]
    for frame in range(0, 250):
        best = min(range(300), key=lambda i: (abs(starts[i] - frame), -i))
        assert grid.snap(frame) == best, frame


@pytest.mark.parametrize("grid", GRIDS, ids=str)
def test_latents_for_is_the_fewest_that_cover(grid: TemporalGrid) -> None:
    for frames in range(1, 200):
        n = grid.latents_for(frames)
        assert grid.frame_start(n) >= frames > grid.frame_start(n - 1)
        assert sum(grid.frames_in(i) for i in range(n)) == grid.frame_start(n)


def test_stride_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stride"):
        TemporalGrid(0, False)
