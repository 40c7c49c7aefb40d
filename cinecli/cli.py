"""The `cinecli` command line: thin wrappers that parse options, call a package, print.

Exit codes are part of the interface for scripts and CI: 0 ok, 1 failure,
2 invalid input (the screenplay or the command line is wrong; nothing was written).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cinecli import __version__
from cinecli.screenplay import (
    FilmFormat,
    Plan,
    Screenplay,
    ScreenplayError,
    load_screenplay_resolving,
    plan_film,
    seconds_text,
    shot_hashes,
    vocabulary_warnings,
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2

app = typer.Typer(
    name="cinecli",
    rich_markup_mode="rich",
    epilog=("[bold]Example:[/bold]\n\n  [cyan]cinecli validate examples/quickstart.yaml[/cyan]\n\n"
            "  [cyan]cinecli plan examples/quickstart.yaml[/cyan]"),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

SCRIPT_ARG = typer.Argument(..., help="The screenplay YAML file.", show_default=False)
JSON_OPT = typer.Option(False, "--json", help="Print a machine-readable JSON result on stdout.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cinecli {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(  # noqa: UP007 - typer needs Optional on 3.9-style hints
        None, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Render a YAML screenplay into a film with a causal video diffusion model.

    Exit codes: 0 ok, 1 failure, 2 invalid input (nothing is written).
    """


# ---------------------------------------------------------------- validate


@app.command(epilog=(
    "[bold]Example:[/bold]\n\n"
    "  [cyan]cinecli validate examples/quickstart.yaml[/cyan]\n\n"
    "  [cyan]cinecli validate --json film.yaml[/cyan]   (exit code 2 when the screenplay is invalid)"
))
def validate(script: Path = SCRIPT_ARG, json_output: bool = JSON_OPT) -> None:
    """Check a screenplay without loading any model: every problem with file:line:column."""
    sp, fmt, plan = _load_or_exit(script, json_output)
    warnings = vocabulary_warnings(sp, fmt)
    if json_output:
        _echo_json({"ok": True, **_summary(sp, plan), "notes": list(plan.notes), "warnings": warnings})
        return
    typer.echo(f"ok: {_count(len(sp.shots), 'shot')}, {_seconds(plan.seconds)} s, {plan.frames} frames")
    for note in plan.notes:
        typer.echo(f"note: {note}")
    for warning in warnings:
        typer.echo(f"warning: {warning}")


# ---------------------------------------------------------------- plan


@app.command(epilog=(
    "[bold]Example:[/bold]\n\n"
    "  [cyan]cinecli plan examples/events.yaml[/cyan]\n\n"
    "  [cyan]cinecli plan --json examples/return.yaml[/cyan]"
))
def plan(script: Path = SCRIPT_ARG, json_output: bool = JSON_OPT) -> None:
    """Show where every shot, cut and prompt change lands on the model's latent frames and chunks.

    Loads no model: this is what a render would do, and how long it is.
    """
    sp, fmt, film_plan = _load_or_exit(script, json_output)
    warnings = vocabulary_warnings(sp, fmt)
    if json_output:
        _echo_json({"ok": True, **_plan_json(sp, film_plan), "warnings": warnings})
        return
    console = Console()
    console.print(Text(_plan_header(sp, fmt, film_plan)))
    console.print(_plan_table(film_plan))
    for note in film_plan.notes:
        console.print(Text(f"note: {note}"))
    for warning in warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))


# ---------------------------------------------------------------- render


@app.command(epilog=(
    "[bold]Examples:[/bold]\n\n"
    "  [cyan]cinecli render examples/quickstart.yaml[/cyan]   (writes quickstart.mp4 in the current folder)\n\n"
    "  [cyan]cinecli render film.yaml -o out/film.mp4 --split-shots --seed 3[/cyan]\n\n"
    "  [cyan]cinecli render film.yaml --progress json | jq -c 'select(.event==\"chunk_done\")'[/cyan]\n\n"
    "Beside the film: [bold]film.manifest.json[/bold], [bold]film.contact.png[/bold] (a row per shot), "
    "and the state folder [bold]film.state/[/bold] that resume and re-render use.\n\n"
    "Exit codes: 0 done, 1 failure while rendering, 2 invalid input (nothing written), 130 interrupted."
))
def render(
    script: Path = SCRIPT_ARG,
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="The MP4 to write [default: SCRIPT's name, .mp4, in the current folder]."),  # noqa: UP007
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    split_shots: bool = typer.Option(False, "--split-shots", help="Also write one MP4 per shot into FILM.shots/."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override film.seed."),  # noqa: UP007
    policy: Optional[str] = typer.Option(None, "--memory", help="Override film.memory.policy: camr, window, full or none."),  # noqa: UP007
    steps: Optional[int] = typer.Option(None, "--steps", min=1, max=1000, help="Denoising steps per chunk [default: the model's]."),  # noqa: UP007
    device: str = typer.Option("cpu", "--device", help="Torch device: cpu, cuda, cuda:1 ..."),
    history: str = typer.Option("native", "--history", help="Storage of the KV history: native or int8."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="Override film.quantize: none or int8 (8-bit weights of the transformer's linear layers)."),  # noqa: UP007
    offload_history: bool = typer.Option(False, "--offload-history", help="Keep the KV history in CPU memory (pinned on CUDA); only the active set goes to the device."),
    max_vram: Optional[str] = typer.Option(None, "--max-vram", help="Fit an estimated VRAM budget (8GB, 6000MB): offload history (every layer's active set held, then one layer's at a time), then int8 history, then int8 weights; refuse (exit 2) if nothing fits."),  # noqa: UP007
    state_dir: Optional[Path] = typer.Option(None, "--state", help="State folder [default: FILM.state beside the output]."),  # noqa: UP007
    progress: str = typer.Option("auto", "--progress", help="auto (bars on a terminal, JSON lines otherwise), rich, json or quiet."),
    fresh: bool = typer.Option(False, "--fresh", help="Forget the state folder's checkpoints and start over (no resume, no reuse)."),
    checkpoint_every: str = typer.Option("1", "--checkpoint-every", help="Checkpoint every N chunks (3) or seconds (30s); shot ends always checkpoint."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the transformer blocks and the decoder: a slower start (compilation), faster chunks; pays on GPUs and long films."),
) -> None:
    """Render a screenplay into an MP4, chunk by chunk, streaming each chunk to disk as it is made.

    An unfinished render of the same screenplay and settings is resumed from its state folder; an
    edited screenplay is re-rendered from its first changed shot.
    """
    from cinecli.render.run import RenderRequest, render_script

    if policy is not None and policy not in ("camr", "window", "full", "none"):
        typer.echo(f"error: --memory must be camr, window, full or none, not {policy!r}", err=True)
        raise typer.Exit(EXIT_INVALID)
    if history not in ("native", "int8"):
        typer.echo(f"error: --history must be native or int8, not {history!r}", err=True)
        raise typer.Exit(EXIT_INVALID)
    if quantize is not None and quantize not in ("none", "int8"):
        typer.echo(f"error: --quantize must be none or int8, not {quantize!r}", err=True)
        raise typer.Exit(EXIT_INVALID)
    vram_bytes = None
    if max_vram is not None:
        from cinecli.memory.budget import BudgetError, parse_size

        try:
            vram_bytes = parse_size(max_vram)
        except BudgetError as exc:
            typer.echo(f"error: --max-vram: {exc}", err=True)
            raise typer.Exit(EXIT_INVALID) from None
    req = RenderRequest(script=script, output=output, state_dir=state_dir, overwrite=overwrite, split_shots=split_shots,
                        device=device, seed=seed, policy=policy, steps=steps, history=history,
                        quantize=quantize, offload_history=offload_history, max_vram=vram_bytes,
                        fresh=fresh, checkpoint_every=checkpoint_every, compile=compile_)
    raise typer.Exit(_run_reported(progress, lambda emit: render_script(req, emit)))


# ---------------------------------------------------------------- resume


@app.command(epilog=(
    "[bold]Examples:[/bold]\n\n"
    "  [cyan]cinecli resume film.state[/cyan]   (the command an interrupted render prints)\n\n"
    "  [cyan]cinecli resume film.state --progress json[/cyan]\n\n"
    "Exit codes: 0 done, 1 failure while rendering, 2 the state cannot be resumed (it says why), 130/143 interrupted."
))
def resume(
    state: Path = typer.Argument(..., help="The state folder of an interrupted render (FILM.state).", show_default=False),
    device: Optional[str] = typer.Option(None, "--device", help="Torch device (default: the one the render started on; same type only)."),  # noqa: UP007
    checkpoint_every: str = typer.Option("1", "--checkpoint-every", help="Checkpoint every N chunks (3) or seconds (30s)."),
    progress: str = typer.Option("auto", "--progress", help="auto (bars on a terminal, JSON lines otherwise), rich, json or quiet."),
) -> None:
    """Continue an interrupted render from its last checkpoint, with the screenplay and options it started with.

    The frames are identical to those of a render that was never interrupted.
    """
    from cinecli.render.run import resume_state

    raise typer.Exit(_run_reported(progress, lambda emit: resume_state(state, emit, device=device,
                                                                       checkpoint_every=checkpoint_every)))


def _run_reported(progress: str, job) -> int:  # type: ignore[no-untyped-def]
    """Run a render job with the chosen reporter; errors are repeated on stderr when stdout carries JSON."""
    import sys

    from cinecli.render.progress import JsonLinesReporter, make_reporter

    try:
        reporter = make_reporter(progress, sys.stdout)  # type: ignore[arg-type]
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        return EXIT_INVALID
    errors: list[str] = []

    def emit(event) -> None:  # type: ignore[no-untyped-def]
        if event.kind == "error":
            errors.append(event.message)
        reporter.handle(event)

    with reporter:
        code = job(emit)
    if errors and isinstance(reporter, JsonLinesReporter):  # a farm log's reader looks at stderr for errors
        for message in errors:
            typer.echo(message, err=True)
    return code


# ---------------------------------------------------------------- inspect


@app.command(epilog=(
    "[bold]Examples:[/bold]\n\n"
    "  [cyan]cinecli inspect film.state[/cyan]   (how far the render got, its settings, restore points, sizes)\n\n"
    "  [cyan]cinecli inspect film.manifest.json --json[/cyan]"
))
def inspect(
    path: Path = typer.Argument(..., help="A state folder, its manifest.json, or a film's .manifest.json.", show_default=False),
    json_output: bool = JSON_OPT,
    verify: bool = typer.Option(False, "--verify", help="Also check every state file's size and sha256."),
) -> None:
    """Show what a state folder or a film manifest holds. Exit code 2 when it cannot be read (or --verify finds damage)."""
    from cinecli.state.inspect import inspect_path
    from cinecli.state.manifest import StateError

    try:
        info = inspect_path(path, verify=verify)
    except StateError as exc:
        if json_output:
            _echo_json({"ok": False, "error": str(exc)})
        else:
            typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    bad = bool(info.get("problems"))
    if json_output:
        _echo_json({"ok": not bad, **info})
    else:
        _print_inspect(info)
    if bad:
        raise typer.Exit(EXIT_INVALID)


def _print_inspect(info: dict) -> None:  # type: ignore[type-arg]
    """A header, a settings table and a shots table; all user text goes in as Text (no markup)."""
    console = Console()
    if info["kind"] == "film":
        shots = info.get("shots", [])
        model = info.get("model", {})
        console.print(Text(f"film manifest {info['path']}: {info.get('title', '')}"))
        console.print(Text(f"screenplay {info.get('screenplay', {}).get('path')}  model {model.get('name')} "
                           f"({model.get('weights')})  seed {info.get('seed')}"))
        settings = Table("setting", "value", title="settings")
        for key, value in info.get("settings", {}).items():
            settings.add_row(Text(str(key)), Text(json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)))
        console.print(settings)
        table = Table("#", "shot", "frames", "hash", title="shots")
        for i, shot in enumerate(shots):
            table.add_row(str(i + 1), Text(str(shot.get("id"))), f"{shot.get('frame_start')}–{shot.get('frame_end')}",
                          str(shot.get("hash", ""))[:12])
        console.print(table)
        return
    pos, size = info["position"], info["bytes"]
    status = "complete" if info["complete"] else f"chunk {pos['next_chunk']} of {pos['chunks']} done"
    console.print(Text(f"state {info['path']} (format {info['format_version']}): {status}, "
                       f"frame {pos['frames_done']} of {pos['frames']}, {pos['generation_seconds']:.1f} s generating"))
    console.print(Text(f"screenplay {info['screenplay']}\noutput     {info['output']}\n"
                       f"size       {size['total'] / 1e6:.1f} MB (bank chunks {size['chunks'] / 1e6:.1f} MB, "
                       f"restore points {size['restore_points'] / 1e6:.1f} MB, segments {size['segments'] / 1e6:.1f} MB)"))
    settings = Table("setting", "value", title="settings")
    for key, value in info["settings"].items():
        settings.add_row(Text(str(key)), Text(str(value)))
    console.print(settings)
    table = Table("#", "shot", "frames", "status", "restore point", "hash", title="shots")
    for shot in info["shots"]:
        rp = shot["restore_point"]
        table.add_row(str(shot["index"] + 1), Text(shot["id"]), f"{shot['frame_start']}–{shot['frame_end']}",
                      shot["status"], f"chunk {rp['next_chunk']}" if rp else "–", shot["hash"][:12])
    console.print(table)
    for problem in info.get("problems", []):
        console.print(Text(f"damaged: {problem}", style="red"))


# ---------------------------------------------------------------- train


@app.command(epilog=(
    "[bold]Examples:[/bold] (the three stages of the default model, in order)\n\n"
    "  [cyan]cinecli train autoencoder configs/train/autoencoder.yaml runs/ae[/cyan]\n\n"
    "  [cyan]cinecli train base configs/train/base.yaml runs/base[/cyan]\n\n"
    "  [cyan]cinecli train distill configs/train/distill.yaml runs/distill[/cyan]\n\n"
    "  [cyan]cinecli train blend configs/train/blend-latent41.yaml runs/blend[/cyan]  (then, optionally: two students of one lineage averaged)\n\n"
    "  [cyan]cinecli train router configs/train/router.yaml runs/router[/cyan]  (optional: a routing head for CAMR, the student frozen; minutes on a GPU, and it starts over when run again)\n\n"
    "The three training stages checkpoint into OUT and resume from it when run again; "
    "logs are JSON lines in OUT/log.jsonl. docs/TRAINING.md says how the shipped weights were made."
))
def train(
    stage: str = typer.Argument(..., help="autoencoder, base, distill, blend (average two trained generators) or router (CAMR's routing head).", show_default=False),
    config: Path = typer.Argument(..., help="The stage's YAML config.", show_default=False),
    out: Path = typer.Argument(..., help="Output folder (checkpoints, log.jsonl, loss.png, final weights); run again to resume.", show_default=False),
) -> None:
    """Train a stage of the default model on the procedural multi-shot world."""
    from cinecli.train.config import ConfigError, load_yaml_config

    def log(rec: dict) -> None:
        typer.echo(json.dumps(rec))

    try:
        if stage == "autoencoder":
            from cinecli.train.autoencoder import load_train_config, train_autoencoder

            path = train_autoencoder(load_train_config(config), out_dir=out, log=log)
        elif stage == "base":
            from cinecli.train.base import BaseTrainConfig, train_base

            path = train_base(load_yaml_config(config, BaseTrainConfig), out, log=log)
        elif stage == "distill":
            from cinecli.train.distill import DistillConfig, train_distill

            path = train_distill(load_yaml_config(config, DistillConfig), out, log=log)
        elif stage == "blend":
            from cinecli.train.blend import BlendConfig, blend_weights

            path = blend_weights(load_yaml_config(config, BlendConfig), out)
        elif stage == "router":
            from cinecli.train.router import RouterTrainConfig, train_router

            path = train_router(load_yaml_config(config, RouterTrainConfig), out, log=log)
        else:
            typer.echo(f"error: unknown stage {stage!r}; choose autoencoder, base, distill, blend or router", err=True)
            raise typer.Exit(EXIT_INVALID)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    typer.echo(f"wrote {path}")


# ---------------------------------------------------------------- eval


@app.command("eval", epilog=(
    "[bold]Examples:[/bold]\n\n"
    "  [cyan]cinecli eval film.mp4 --script film.yaml[/cyan]\n\n"
    "  [cyan]cinecli eval film.mp4 --script film.yaml -o film.eval --json[/cyan]\n\n"
    "A screenplay exported from the procedural world is recognised by its seed and its shots, "
    "and the film is then also compared with the world's own rendering.\n\n"
    "Exit codes: 0 evaluated, 2 invalid input (missing or unreadable film or screenplay, "
    "length or size mismatch)."
))
def eval_film(
    film: Path = typer.Argument(..., help="The rendered film (MP4).", show_default=False),
    script: Path = typer.Option(..., "--script", "-s", help="The screenplay the film was rendered from.", show_default=False),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write eval.json, metrics.png, contact.png and report.md into this folder."),  # noqa: UP007
    json_output: bool = JSON_OPT,
) -> None:
    """Score a film against its screenplay: cuts, text alignment, consistency, motion, drift."""
    from cinecli.eval.report import report_json, write_report
    from cinecli.eval.run import EvalInputError, metric_rows, run_eval

    try:
        result = run_eval(film, script)
    except EvalInputError as exc:
        if json_output:
            _echo_json({"ok": False, "error": str(exc)})
        else:
            typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    written = {}
    if output is not None:
        prompts = tuple(result.plan.prompts[s.prompts[0]] for s in result.plan.shots)
        written = {k: str(v) for k, v in write_report(result.report, output, result.frames, prompts).items()}
    if json_output:
        _echo_json({"ok": True, "film": str(film), "script": str(script), "world_seed": result.world_seed,
                    "files": written, **report_json(result.report)})
        return
    table = Table(title=f"{film.name} vs {script.name}")
    for column, justify in (("metric", "left"), ("meaning", "left"), ("value", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for key, label, value in metric_rows(result.report):
        table.add_row(key, label, value)
    console = Console()
    console.print(table)
    truth = f"world film seed {result.world_seed}" if result.world_seed is not None else "none (script is not a world export)"
    console.print(Text(f"ground truth: {truth}"))
    for name, path in written.items():
        console.print(Text(f"wrote {name}: {path}"))


# ---------------------------------------------------------------- models


@app.command(epilog=(
    "[bold]Examples:[/bold]\n\n"
    "  [cyan]cinecli models[/cyan]   (the built-in presets)\n\n"
    "  [cyan]cinecli models models/self-forcing.yaml[/cyan]   (also check every file that description names)\n\n"
    "Exit codes: 0 every file is usable, 2 a description or one of its files is not."
))
def models(
    files: Optional[list[Path]] = typer.Argument(None, help="Model description YAML files to check.", show_default=False),  # noqa: UP007
    json_output: bool = JSON_OPT,
) -> None:
    """List the known model presets and check model description files: every path exists, is readable, holds tensors."""
    from cinecli.model.wan.inventory import check_model_file, preset_rows
    from cinecli.model.wan.spec import ModelFileError

    presets = preset_rows()
    checked: list[dict] = []  # type: ignore[type-arg]
    bad = False
    for path in files or []:
        try:
            rows = check_model_file(path)
        except ModelFileError as exc:
            checked.append({"file": str(path), "ok": False, "error": str(exc), "files": []})
            bad = True
            continue
        ok = all(r.ok for r in rows)
        bad |= not ok
        checked.append({"file": str(path), "ok": ok, "files": [
            {"role": r.role, "path": str(r.path), "ok": r.ok, "detail": r.detail, "bytes": r.size} for r in rows]})
    if json_output:
        _echo_json({"ok": not bad, "presets": [vars(p) for p in presets], "model_files": checked})
    else:
        console = Console()
        table = Table("preset", "parameters", "dim", "layers", "heads", "ffn", "text dim", title="presets")
        for p in presets:
            table.add_row(p.name, f"{p.params / 1e9:.2f}B" if p.params >= 1e8 else f"{p.params / 1e6:.2f}M",
                          str(p.dim), str(p.layers), str(p.heads), str(p.ffn_dim), str(p.text_dim))
        console.print(table)
        for entry in checked:
            if "error" in entry:
                console.print(Text(f"error: {entry['error']}", style="red"))
                continue
            table = Table("role", "path", "status", "size", title=str(entry["file"]))
            for r in entry["files"]:
                status = Text(("ok: " if r["ok"] else "problem: ") + r["detail"], style=None if r["ok"] else "red")
                table.add_row(r["role"], Text(r["path"]), status, f"{r['bytes'] / 1e6:,.1f} MB")
            console.print(table)
    if bad:
        raise typer.Exit(EXIT_INVALID)


# ---------------------------------------------------------------- convert


@app.command(epilog=(
    "[bold]Examples:[/bold]\n\n"
    "  [cyan]cinecli convert self_forcing_dmd.pt -o self-forcing.safetensors[/cyan]\n\n"
    "  [cyan]cinecli convert longlive_base.pt --lora lora.pt -o longlive.safetensors[/cyan]\n\n"
    "The file is read with weights_only=True (no pickled code runs), EMA weights are preferred, "
    "wrapper prefixes are removed and a LoRA is merged; the result is checked against the preset "
    "(every key used, every shape right) before anything is written.\n\n"
    "Exit codes: 0 written, 2 the checkpoint does not fit (the first offending key is named)."
))
def convert(
    source: Path = typer.Argument(..., help="A .pt/.pth or .safetensors transformer checkpoint.", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="The safetensors file to write.", show_default=False),
    lora: Optional[Path] = typer.Option(None, "--lora", help="A PEFT LoRA to merge (LongLive's lora.pt)."),  # noqa: UP007
    lora_alpha: Optional[float] = typer.Option(None, "--lora-alpha", help="LoRA alpha [default: its rank, scaling 1]."),  # noqa: UP007
    key: str = typer.Option("auto", "--key", help="Entry holding the weights: auto (generator_ema, then generator), generator_ema, generator, model, none."),
    preset_name: str = typer.Option("wan2.1-t2v-1.3b", "--preset", help="Shape to check the weights against."),
    model_file: Optional[Path] = typer.Option(None, "--model", help="Take preset, config, key and LoRA alpha from a model description instead."),  # noqa: UP007
    dtype: str = typer.Option("keep", "--dtype", help="keep, bfloat16 or float32."),
) -> None:
    """Write a public Wan2.1-family checkpoint as one clean safetensors file (Wan names, LoRA merged)."""
    from cinecli.model.config import preset
    from cinecli.model.loading import WeightsError
    from cinecli.model.loading import convert as convert_checkpoint
    from cinecli.model.wan.spec import ModelFileError, read_model_file

    dtypes = {"keep": None, "bfloat16": "bfloat16", "float32": "float32"}
    if dtype not in dtypes:
        typer.echo(f"error: --dtype must be keep, bfloat16 or float32, not {dtype!r}", err=True)
        raise typer.Exit(EXIT_INVALID)
    try:
        if model_file is not None:
            spec = read_model_file(model_file)
            cfg, key = spec.transformer_config(), spec.checkpoint_key
            lora_alpha = lora_alpha if lora_alpha is not None else spec.lora_alpha
        else:
            cfg = preset(preset_name)
        import torch

        report = convert_checkpoint(source, output, cfg, key=key, lora=lora, lora_alpha=lora_alpha,
                                    dtype=getattr(torch, dtypes[dtype]) if dtypes[dtype] else None)
    except (WeightsError, ModelFileError, KeyError) as exc:
        typer.echo(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    merged = f", merged {report.lora_modules} LoRA modules (scaling {report.lora_scaling:g})" if report.lora_modules else ""
    renamed = ", renamed from the Diffusers layout" if report.renamed_from_diffusers else ""
    typer.echo(f"wrote {output}: {report.tensors} tensors from '{report.picked}'{merged}{renamed}")


# ---------------------------------------------------------------- shared helpers


def _load_or_exit(script: Path, json_output: bool) -> tuple[Screenplay, FilmFormat, Plan]:
    """Load, validate and plan; invalid input ends the command with exit code 2."""
    from cinecli.model.formats import film_format  # imported here so --help stays instant

    try:
        sp, fmt = load_screenplay_resolving(script, film_format)
        return sp, fmt, plan_film(sp, fmt)
    except ScreenplayError as exc:
        _report_problems(exc, json_output)
        raise typer.Exit(EXIT_INVALID) from None
    except OSError as exc:
        typer.echo(f"error: cannot read {script}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_FAILURE) from None


def _report_problems(exc: ScreenplayError, json_output: bool) -> None:
    if json_output:
        problems = [{**vars(p), "message": str(p)} for p in exc.problems]
        _echo_json({"ok": False, "problems": problems})
        return
    for problem in exc.problems:
        typer.echo(str(problem), err=True)
    typer.echo(f"{_count(len(exc.problems), 'problem')} found; nothing was written", err=True)


def _echo_json(value: object) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _seconds(seconds: float) -> str:
    return f"{seconds:.2f}".rstrip("0").rstrip(".")


def _summary(sp: Screenplay, plan: Plan) -> dict[str, object]:
    return {
        "file": str(sp.path), "title": sp.film.title, "model": sp.film.model, "sha256": sp.sha256,
        "shots": len(sp.shots), "seconds": round(plan.seconds, 3), "frames": plan.frames,
        "width": plan.width, "height": plan.height, "fps": plan.fps,
        "latent_frames": len(plan.latents), "chunk_frames": plan.chunk_frames, "chunks": plan.num_chunks,
    }


def _plan_json(sp: Screenplay, plan: Plan) -> dict[str, object]:
    hashes = shot_hashes(sp)
    shots = []
    for shot, digest in zip(plan.shots, hashes):
        chunks = plan.shot_chunks(shot.index)
        shots.append({
            "index": shot.index, "id": shot.id, "cut": shot.cut,
            "frame_start": shot.frame_start, "frame_end": shot.frame_end,
            "scripted_start": shot.scripted_start, "scripted_end": shot.scripted_end,
            "latent_start": shot.latent_start, "latent_end": shot.latent_end,
            "chunks": [chunks.start, chunks.stop],
            "location": plan.locations[shot.location] if shot.location >= 0 else None,
            "prompts": [
                {"latent": latent, "frame": plan.grid.frame_start(latent),
                 "at": round((plan.grid.frame_start(latent) - shot.frame_start) / plan.fps, 3),
                 "prompt": plan.prompts[prompt]}
                for latent, prompt in plan.prompt_changes(shot.index)
            ],
            "hash": digest,
        })
    return {
        **_summary(sp, plan),
        "grid": {"stride": plan.grid.stride, "first_alone": plan.grid.first_alone},
        "prompts": list(plan.prompts), "shot_plans": shots, "notes": list(plan.notes),
    }


def _plan_header(sp: Screenplay, fmt: FilmFormat, plan: Plan) -> str:
    return (f"{sp.film.title}: {plan.width}x{plan.height} at {plan.fps} fps, {_seconds(plan.seconds)} s, "
            f"{plan.frames} frames = {len(plan.latents)} latent frames in "
            f"{_count(plan.num_chunks, 'chunk')} of {plan.chunk_frames} (model {fmt.model})")


def _plan_table(plan: Plan) -> Table:
    """One row per shot; user text goes in as Text so brackets in prompts are never markup."""
    table = Table(show_lines=True)
    places = bool(plan.locations)  # the column only where the screenplay names locations
    for column, justify in (("#", "right"), ("shot", "left"), ("cut", "left"), ("start", "left"),
                            ("end", "left"), ("latents", "right"), ("chunks", "right")) + ((("location", "left"),) if places else ()) + (("prompts", "left"),):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for shot in plan.shots:
        chunks = plan.shot_chunks(shot.index)
        location = (Text(plan.locations[shot.location]) if shot.location >= 0 else Text("–"),) if places else ()
        table.add_row(
            str(shot.index + 1), Text(shot.id), shot.cut,
            Text(_frame_cell(shot.frame_start, shot.scripted_start, plan.fps)),
            Text(_frame_cell(shot.frame_end, shot.scripted_end, plan.fps)),
            f"{shot.latent_start}–{shot.latent_end - 1}",
            f"{chunks.start}–{chunks.stop - 1}" if len(chunks) > 1 else str(chunks.start),
            *location,
            Text(_prompt_cell(plan, shot.index)),
        )
    return table


def _frame_cell(placed: int, scripted: int, fps: int) -> str:
    cell = f"{seconds_text(placed / fps)} f{placed}"
    return cell if placed == scripted else f"{cell}\n(scripted {seconds_text(scripted / fps)} f{scripted})"


def _prompt_cell(plan: Plan, shot: int) -> str:
    start = plan.shots[shot].frame_start
    lines = []
    for i, (latent, prompt) in enumerate(plan.prompt_changes(shot)):
        offset = seconds_text((plan.grid.frame_start(latent) - start) / plan.fps)
        lines.append(plan.prompts[prompt] if i == 0 else f"+{offset}: {plan.prompts[prompt]}")
    return "\n".join(lines)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="cinecli")
