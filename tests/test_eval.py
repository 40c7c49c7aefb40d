"""The judge: ground-truth world films score near the top, and each kind of damage lowers
the metric it targets. Also the report files and `cinecli eval` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cinecli.cli import app
from cinecli.eval import damage
from cinecli.eval.cuts import cut_score, detect_cuts, match_cuts
from cinecli.eval.detectors import load_detectors
from cinecli.eval.prompts import Look, parse_prompt
from cinecli.eval.report import EvalReport, evaluate, report_json, write_report
from cinecli.eval.signals import colour_histograms, soft_colour_histograms
from cinecli.eval.world import plan_for_film, world_film_for
from cinecli.screenplay import Plan, parse_screenplay_text
from cinecli.world.benchmark import benchmark_films, film_returns
from cinecli.world.render import render_frames
from cinecli.world.screenplay import to_screenplay_yaml
from cinecli.world.spec import FilmSpec


@pytest.fixture(scope="module")
def det():  # type: ignore[no-untyped-def]
    return load_detectors()


@pytest.fixture(scope="module")
def films() -> list[FilmSpec]:
    """The first four short benchmark films with a character return (16-20 s at 192x128,
    12 fps)."""
    return [f for f in benchmark_films() if f.total_frames <= 240
            and any(r.kind == "character" for r in film_returns(f))][:4]


@pytest.fixture(scope="module")
def rendered(films: list[FilmSpec]) -> list[tuple[FilmSpec, np.ndarray, Plan]]:
    return [(f, render_frames(f, 0, f.total_frames), plan_for_film(f)) for f in films]


@pytest.fixture(scope="module")
def truth_reports(rendered, det) -> list[EvalReport]:  # type: ignore[no-untyped-def]
    return [evaluate(frames, plan, truth=film, detectors=det) for film, frames, plan in rendered]


def test_prompt_parsing() -> None:
    refs = parse_prompt("close-up of the large red circle spinning at the docks, the keeper waits")
    assert refs.setting == "harbour" and refs.framing == "closeup"
    assert refs.looks == (Look("red", "circle", "large"),) and refs.roles == ("keeper",)
    assert parse_prompt("long shot of the town street").setting == "city street"
    assert parse_prompt("the camera holds as the guard now leaps").setting is None


def test_cut_matching_and_sca() -> None:
    matched, missed, extra = match_cuts((10, 50, 90), (11, 48, 70), tolerance=6)
    assert matched == ((10, 11), (50, 48)) and missed == (90,) and extra == (70,)
    score = cut_score((10, 50, 90), (11, 48, 70), frames=120, shots=4, tolerance=6)
    assert score.nsd == pytest.approx((1 + 2 + 30 * 2) / 120)
    assert score.sca == pytest.approx(np.exp(-score.nsd))
    assert cut_score((), (), 100, 1, 6).sca == 1.0
    # a single isolated jump is a cut, a steady ramp is not
    diff = np.full(60, 2.0, np.float32)
    hist = np.full(60, 0.01, np.float32)
    diff[30], hist[30] = 40.0, 0.5
    assert detect_cuts(diff, hist) == (30,)


def test_a_cut_between_two_views_of_one_setting_is_found_in_wobbling_frames() -> None:
    # A decoder's colour wobble makes every frame pair change the histogram a little (0.02);
    # a cut to the other character of a dialogue changes it only 3.5x that, but the pixels 16x.
    diff = np.full(60, 1.0, np.float32)
    hist = np.full(60, 0.02, np.float32)
    diff[30], hist[30] = 16.0, 0.07
    assert detect_cuts(diff, hist) == (30,)
    # the same frame pair with a pixel change no larger than a moving shot's is not a cut
    diff[30] = 3.0
    assert detect_cuts(diff, hist) == ()
    # a pan: every pair changes as much, none stands out
    assert detect_cuts(np.full(60, 9.0, np.float32), np.full(60, 0.08, np.float32)) == ()


def test_a_shift_of_one_colour_level_barely_moves_the_soft_histogram() -> None:
    # a flat grey frame on a bin edge (63 -> 64): hard bins move all of it, soft ones about 2%
    frames = np.stack([np.full((8, 8, 3), 63, np.uint8), np.full((8, 8, 3), 64, np.uint8)])
    hard, soft = colour_histograms(frames), soft_colour_histograms(frames)
    assert 0.5 * np.abs(hard[1] - hard[0]).sum() == pytest.approx(1.0)
    assert 0.5 * np.abs(soft[1] - soft[0]).sum() < 0.05
    assert soft.sum(axis=1) == pytest.approx([1.0, 1.0])


def test_ground_truth_scores_near_the_top(truth_reports: list[EvalReport]) -> None:
    for r in truth_reports:
        assert r.sca >= 0.99
        assert r.alignment is not None and r.alignment >= 0.9  # one undetectable white subject
        assert r.intra is not None and r.intra >= 0.9
        assert r.inter is not None and r.inter >= 0.95
        assert r.drift >= 0.99
        assert r.motion_vs_truth == pytest.approx(1.0)
    assert np.mean([r.alignment for r in truth_reports]) >= 0.95


def test_frozen_frames_lower_motion(rendered, truth_reports, det) -> None:  # type: ignore[no-untyped-def]
    film, frames, plan = rendered[0]
    r = evaluate(damage.freeze_second_half(frames, plan), plan, truth=film, detectors=det)
    assert r.motion_vs_truth is not None and r.motion_vs_truth < 0.75
    assert r.motion_ratio is not None and r.motion_ratio < 0.1 * truth_reports[0].motion_ratio
    assert r.sca >= 0.99  # cuts untouched


@pytest.mark.parametrize("kind", ["shuffle", "dissolve"])
def test_shuffled_shots_or_removed_cuts_lower_sca(rendered, det, kind: str) -> None:  # type: ignore[no-untyped-def]
    for film, frames, plan in rendered[:2]:
        bad = (damage.shuffle_shots(frames, plan, seed=1) if kind == "shuffle"
               else damage.dissolve_cuts(frames, plan))
        r = evaluate(bad, plan, truth=film, detectors=det)
        assert r.sca < 0.8, (film.seed, r.cuts)


def test_recoloured_returns_lower_inter_shot(rendered, truth_reports, det) -> None:  # type: ignore[no-untyped-def]
    tested = 0
    for (film, frames, plan), good in zip(rendered[:3], truth_reports):
        if good.inter_character is None:
            continue  # the returning character is white: invisible to the colour detector
        r = evaluate(damage.recolour_returns(film, frames), plan, truth=film, detectors=det)
        assert r.inter_character is not None and r.inter_character < good.inter_character - 0.3
        assert r.inter is not None and good.inter is not None and r.inter < good.inter - 0.1
        assert r.sca >= 0.99
        tested += 1
    assert tested >= 2


def test_wrong_screenplay_lowers_alignment(rendered, films, truth_reports, det) -> None:  # type: ignore[no-untyped-def]
    for i, ((film, frames, _), good) in enumerate(zip(rendered[:3], truth_reports)):
        wrong = plan_for_film(damage.swap_prompts(film, films[(i + 1) % len(films)]))
        r = evaluate(frames, wrong, detectors=det)
        assert r.alignment is not None and r.alignment < good.alignment - 0.3


def test_colour_drift_and_flicker(rendered, det) -> None:  # type: ignore[no-untyped-def]
    film, frames, plan = rendered[1]
    drifted = evaluate(damage.colour_drift(frames), plan, truth=film, detectors=det)
    assert drifted.drift < 0.7 and drifted.drift_colour > 3.0
    flickering = evaluate(damage.flicker(frames), plan, truth=film, detectors=det)
    assert flickering.intra is not None and flickering.intra < 0.3


def test_world_film_is_recognised_from_its_screenplay(films: list[FilmSpec]) -> None:
    from cinecli.eval.world import default_format

    fmt = default_format()
    film = films[0]
    sp = parse_screenplay_text(to_screenplay_yaml(film), Path("w.yaml"), fmt)
    assert world_film_for(sp) == film
    edited = to_screenplay_yaml(film).replace(film.shots[0].prompt, "wide shot of the meadow")
    assert world_film_for(parse_screenplay_text(edited, Path("w.yaml"), fmt)) is None


def test_report_files_and_json(rendered, truth_reports, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, frames, plan = rendered[0]
    paths = write_report(truth_reports[0], tmp_path / "rep", frames)
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    data = json.loads(paths["json"].read_text())
    assert data == json.loads(json.dumps(report_json(truth_reports[0])))
    assert set(data["metrics"]) >= {"sca", "alignment", "intra", "inter", "motion", "drift"}
    assert len(data["shots"]) == len(plan.shots) and data["series"]
    assert "| shot cut accuracy |" in paths["markdown"].read_text()


def _write_mp4(frames: np.ndarray, fps: int, path: Path) -> None:
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (frames.shape[2], frames.shape[1]), fps=fps,
                                         codec="libx264", pix_fmt_out="yuv420p",
                                         output_params=["-crf", "18"], macro_block_size=1)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def test_cli_eval_end_to_end(rendered, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    film, frames, _ = rendered[0]
    movie, script = tmp_path / "film.mp4", tmp_path / "film.yaml"
    _write_mp4(frames, film.fps, movie)
    script.write_text(to_screenplay_yaml(film), encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(app, ["eval", str(movie), "--script", str(script), "-o", str(tmp_path / "rep"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["ok"] and out["world_seed"] == film.seed
    m = out["metrics"]
    assert m["sca"] >= 0.99 and m["alignment"] >= 0.95 and m["inter"] >= 0.9 and m["drift"] >= 0.95
    assert (tmp_path / "rep" / "eval.json").is_file() and (tmp_path / "rep" / "contact.png").is_file()
    table = runner.invoke(app, ["eval", str(movie), "--script", str(script)])
    assert table.exit_code == 0 and "shot cut accuracy" in table.stdout


def test_cli_eval_bad_inputs(rendered, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    film, frames, _ = rendered[0]
    movie, script = tmp_path / "film.mp4", tmp_path / "film.yaml"
    _write_mp4(frames[:60], film.fps, movie)
    script.write_text(to_screenplay_yaml(film), encoding="utf-8")
    runner = CliRunner()
    short = runner.invoke(app, ["eval", str(movie), "--script", str(script)])
    assert short.exit_code == 2 and "60 frames" in short.output
    missing = runner.invoke(app, ["eval", str(tmp_path / "none.mp4"), "--script", str(script)])
    assert missing.exit_code == 2 and "no film" in missing.output
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    junk = runner.invoke(app, ["eval", str(tmp_path / "junk.mp4"), "--script", str(script), "--json"])
    assert junk.exit_code == 2 and json.loads(junk.stdout)["ok"] is False
    bad_script = tmp_path / "bad.yaml"
    bad_script.write_text("film: {fps: 12}\nshots: []\n", encoding="utf-8")
    invalid = runner.invoke(app, ["eval", str(movie), "--script", str(bad_script)])
    assert invalid.exit_code == 2 and "invalid" in invalid.output
    helped = runner.invoke(app, ["eval", "--help"])
    assert helped.exit_code == 0 and "cinecli eval film.mp4 --script film.yaml" in helped.output


def test_judder_counts_jumps_between_latent_frames_but_not_scripted_cuts() -> None:
    from cinecli.eval.metrics import judder

    smooth = np.ones(15)  # change into frames 1..15, evenly spread
    assert judder(smooth, 4) == pytest.approx(3 / 15)
    jumpy = np.where(np.arange(1, 16) % 4 == 0, 1.0, 0.0)
    assert judder(jumpy, 4) == pytest.approx(1.0)
    cut_at_8 = smooth.copy()
    cut_at_8[7] = 100.0  # a scripted cut into frame 8, a latent boundary
    assert judder(cut_at_8, 4) > 0.8
    assert judder(cut_at_8, 4, frozenset({8})) == pytest.approx(2 / 14)
