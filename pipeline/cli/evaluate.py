"""Using a trained model: `generate`, `eval` (with `eval score` and `eval compare`), `probe`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.app import BENCHMARK_HELP, RunOpt, app, eval_app
from pipeline.errors import user_errors
from stages.progress import out, print_table
from store_schema.errors import UserError


@app.command()
@user_errors
def generate(
    run: RunOpt,
    audio: Annotated[Path, typer.Option(help="Audio file (any rate; mixed to mono, resampled to 16 kHz).")],
    question: Annotated[str, typer.Option(help="What to ask about the audio.")],
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer in tokens.")] = 64,
    readout: Annotated[
        bool, typer.Option("--readout", help="Also show what the thinking block holds (heads vs expert targets).")
    ] = False,
    out_png: Annotated[Path | None, typer.Option("--png", help="Where the readout picture goes.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 …")] = "cpu",
) -> None:
    """Ask a trained model about one clip: one prefill over audio, question and thinking block, then decoding.

    Example: [bold]coat-pipe generate --run runs/coat --audio clip.wav --question "Is the pitch rising?" --readout[/]
    """
    from stages.audio import AudioError, read_audio_file, resample
    from stages.evaluate.answer import answer, load_run
    from stages.train.backbones.base import SAMPLE_RATE

    try:
        wave, rate, _ = read_audio_file(audio)
    except AudioError as err:
        raise UserError(str(err)) from None
    wave = resample(wave, rate, SAMPLE_RATE)
    if wave.size == 0:
        raise UserError(f"{audio}: no samples left at {SAMPLE_RATE} Hz")
    model = load_run(run, device)
    said = answer(model, [wave], [question], max_new_tokens)[0]
    out.print(said.text, markup=False, highlight=False)
    if readout:
        from stages.evaluate.readout import readout_clip

        if model.think is None:
            raise UserError(f"{run} was trained with --no-think: it has no thinking block to read out")
        png = out_png or run / "readout" / f"{audio.stem}.png"
        report = readout_clip(model, wave, question, png)
        for line in report.lines:
            out.print(line, markup=False, highlight=False)
        out.print(f"readout picture: {png}")


@eval_app.callback()
@user_errors
def eval_benchmark(
    ctx: typer.Context,
    run: Annotated[Path | None, typer.Option(help="Training run directory, or a bundle.")] = None,
    benchmark: Annotated[str | None, typer.Option(help=BENCHMARK_HELP)] = None,
    manifest: Annotated[
        str | None, typer.Option(help="The benchmark's manifest (for synth: a corpus folder or URL).")
    ] = None,
    audio_root: Annotated[Path | None, typer.Option(help="Folder the manifest's audio paths start from.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder (default RUN/eval/BENCHMARK).")] = None,
    batch_size: Annotated[int, typer.Option(help="Clips per generate call.", min=1)] = 8,
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer in tokens.", min=1)] = 32,
    labels: Annotated[str | None, typer.Option(help="classification: the label list, comma-separated.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 …")] = "cpu",
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
    scoring: Annotated[
        str,
        typer.Option(
            help="generate (the answer is generated text), likelihood (the most likely of the allowed answers: "
            "choices, labels, a synth question type's answers), or both, side by side in metrics.json."
        ),
    ] = "generate",
    prompt_preset: Annotated[
        str | None,
        typer.Option(
            help="mmau/mmar: how a question is put. coat (default): the question, lettered options, 'Answer with "
            "the option's text.'; r1-aqa: the MMAU prompt of R1-AQA, Ke-Omni-R and NeMo-RL (choices as a list, "
            "the answer inside <answer> tags, which is what is scored)."
        ),
    ] = None,
    prompt: Annotated[
        str | None,
        typer.Option(help="mmau/mmar: your own template with {question}, and {options} or {choices}."),
    ] = None,
    system_prompt: Annotated[str | None, typer.Option(help="A system turn before every question.")] = None,
    prompt_file: Annotated[
        Path | None, typer.Option(help="YAML with `template:` and `system:` (the flags above win over it).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a finished evaluation in --out (whole, once this one is done).")
    ] = False,
) -> None:
    """Batched answers and scores: predictions.jsonl, metrics.json, metrics.md in --out; eval.json records the
    run, manifest, scoring and prompt.

    Example: [bold]coat-pipe eval --run runs/coat --benchmark mmau --manifest mmau.json --prompt-preset r1-aqa[/]
    """
    if ctx.invoked_subcommand is not None:
        return
    if run is None or benchmark is None or manifest is None:
        raise UserError("eval needs --run, --benchmark and --manifest (or a subcommand: score, compare)")
    from stages.evaluate.prompts import prompt_format
    from stages.evaluate.run_eval import run_eval

    if (prompt_preset or prompt or prompt_file) and benchmark not in ("mmau", "mmar"):
        raise UserError(f"--prompt-preset, --prompt and --prompt-file shape mmau/mmar questions, not {benchmark}'s")
    chosen = prompt_format(prompt_preset or "coat", prompt, system_prompt, prompt_file)
    out_dir = out_dir or run / "eval" / benchmark
    label_list = [x.strip() for x in labels.split(",")] if labels else None
    metrics, items = run_eval(
        run,
        benchmark,
        manifest,
        out_dir,
        audio_root,
        label_list,
        batch_size,
        max_new_tokens,
        device,
        not no_progress,
        scoring,
        chosen,
        overwrite,
    )
    _print_metrics(metrics, items, out_dir)


def _print_metrics(metrics: dict, items: list, out_dir: Path) -> None:
    problems = [(i.id, i.problem) for i in items if i.problem]
    if problems:
        shown = problems[:10]
        print_table(f"unanswered items ({len(problems)}; all in predictions.jsonl)", ["id", "problem"], shown)
    out.print((out_dir / "metrics.md").read_text(), markup=False, highlight=False)
    out.print(f"written: {out_dir}/predictions.jsonl, metrics.json, metrics.md")


@eval_app.command("score")
@user_errors
def eval_score(
    benchmark: Annotated[str, typer.Option(help=BENCHMARK_HELP)],
    manifest: Annotated[str, typer.Option(help="The benchmark's manifest (for synth: a corpus folder or URL).")],
    predictions: Annotated[Path, typer.Option(help="predictions.jsonl: rows with the benchmark's id and prediction.")],
    audio_root: Annotated[Path | None, typer.Option(help="Folder the manifest's audio paths start from.")] = None,
    labels: Annotated[str | None, typer.Option(help="classification: the label list, comma-separated.")] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="A new or empty folder (default: NAME-scored/ beside it).")
    ] = None,
) -> None:
    """Re-score saved predictions without loading a model (ids missing from the file count as unanswered).

    Writes predictions.jsonl (with each row's verdict), metrics.json and metrics.md into --out, which must
    be new or empty: a finished evaluation beside the predictions is never overwritten.
    """
    from stages.evaluate.benchmarks import load_benchmark
    from stages.evaluate.run_eval import read_predictions, write_outputs
    from store_schema.corpus import refuse_non_empty

    if not predictions.is_file():
        raise UserError(f"{predictions}: no such predictions file")
    label_list = [x.strip() for x in labels.split(",")] if labels else None
    items = load_benchmark(benchmark, manifest, audio_root, label_list, need_audio=False)  # scoring needs no audio
    rows = read_predictions(predictions)
    unknown = sorted(set(rows) - {i.id for i in items})
    if unknown:
        raise UserError(f"{predictions}: {len(unknown)} id(s) not in {manifest}, e.g. {unknown[0]!r}")
    target = out_dir or predictions.parent / f"{predictions.stem}-scored"
    refuse_non_empty(target)
    metrics = write_outputs(target, benchmark, items, rows, title=f"{benchmark}: {predictions}")
    _print_metrics(metrics, [], target)


@eval_app.command("compare")
@user_errors
def eval_compare(
    outputs: Annotated[
        list[Path] | None,
        typer.Argument(metavar="OUTPUT", help="Eval output folders (with metrics.json), first = reference."),
    ] = None,
    group: Annotated[
        list[str] | None,
        typer.Option(
            help="An arm of several runs, NAME=DIR,DIR,… (repeatable; the first is the reference). Runs pair by "
            "position: the k-th run of every arm is the same seed."
        ),
    ] = None,
    png: Annotated[
        Path | None, typer.Option(help="Grouped bar chart (default: compare.png in the first folder).")
    ] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples for the 95 % intervals.", min=100)] = 10_000,
    scoring: Annotated[
        str,
        typer.Option(help="Pair the verdicts of generate (the text answers) or likelihood (of `eval --scoring both`)."),
    ] = "generate",
) -> None:
    """Runs side by side, one row per task, with each run's difference from the first, its 95 % paired
    bootstrap interval over items (and seeds) and McNemar's exact p; a bar chart.

    Examples: [bold]coat-pipe eval compare eval/base eval/coat[/]; three seeds per arm:
    [bold]coat-pipe eval compare --group base=b0,b1,b2 --group coat=c0,c1,c2[/]
    """
    from stages.evaluate.compare import compare_markdown, compare_rows, read_metrics
    from stages.evaluate.paired import VERDICTS, compare_arms, paired_markdown, read_verdicts, refuse_incomparable
    from stages.evaluate.plots import grouped_bars_png

    if group and outputs:
        raise UserError("give either eval output folders or --group NAME=DIR,DIR,…, not both")
    if group:
        arms = []
        for item in group:
            name, sep, dirs = item.partition("=")
            if not sep or not name or not dirs:
                raise UserError(f"--group {item!r}: expected NAME=DIR,DIR,…")
            arms.append((name, [Path(d) for d in dirs.split(",") if d]))
    else:
        folders = outputs or []
        unique = len({p.name for p in folders}) == len(folders)
        arms = [(o.name if unique else str(o), [o]) for o in folders]
    if len(arms) < 2:
        raise UserError("compare needs at least two eval output folders (or two --group arms)")
    reference = arms[0][1][0]
    if scoring not in VERDICTS:
        raise UserError(f"--scoring {scoring!r}: one of {', '.join(VERDICTS)}")
    measure, rows = compare_rows([read_metrics(o) for o in arms[0][1] + [r for _, runs in arms[1:] for r in runs]])
    # every run read and checked before anything is written: the same questions, one verdict per item
    verdicts = {r: read_verdicts(r, scoring if measure == "accuracy" else None) for _, runs in arms for r in runs}
    refuse_incomparable(list(verdicts.values()))
    if not group:
        names = [name for name, _ in arms]
        header = ["task", *names, *(f"Δ {n}" for n in names[1:])]
        table = [
            (task, *(f"{100 * v:.1f}" for v in values), *(f"{100 * (v - values[0]):+.1f}" for v in values[1:]))
            for task, values in rows
        ]
        print_table(f"{measure} (%)", header, table)
        png = png or reference / "compare.png"
        grouped_bars_png([(t, [100 * v for v in vs]) for t, vs in rows], names, png, f"{measure} (%)")
        png.with_suffix(".md").write_text(compare_markdown(names, measure, rows))
        out.print(f"chart: {png}; table: {png.with_suffix('.md')}")
    if measure != "accuracy":
        return  # WER has no per-item verdict to pair
    base_name, base_runs = arms[0]
    base = [verdicts[r] for r in base_runs]
    sections = []
    for name, runs in arms[1:]:
        results = compare_arms(base, [verdicts[r] for r in runs], resamples)
        title = f"{name} − {base_name}: accuracy (%, {scoring}), Δ with its 95 % paired bootstrap interval"
        pooled = " (seeds pooled)" if len(runs) > 1 else ""
        header = ["task", "items", base_name, name, "Δ", "95 % interval", f"McNemar p{pooled}"]
        if len(runs) > 1:  # seeds as the unit of replication: the test to read; McNemar is per trained model
            header.append("sign-flip p (seeds)")
        print_table(title, header, [paired_row(r) for r in results])
        sections.append(paired_markdown(title, header, [paired_row(r) for r in results]))
    paired = reference / "compare-paired.md"
    paired.write_text("\n".join(sections))
    out.print(f"paired table: {paired}")


def paired_row(r) -> tuple[str, ...]:  # noqa: ANN001 - a PairedDelta
    return (
        r.row,
        str(r.items),
        f"{100 * r.accuracy_a:.1f}",
        f"{100 * r.accuracy_b:.1f}",
        f"{100 * r.delta:+.1f}",
        f"[{100 * r.low:+.1f}, {100 * r.high:+.1f}]",
        f"{r.p_mcnemar:.3g}",
        *([] if r.p_seeds is None else [f"{r.p_seeds:.3g}"]),
    )


@app.command()
@user_errors
def probe(
    runs: Annotated[list[Path], typer.Option("--run", help="Run directories to probe (repeat: CoAT and --no-think).")],
    corpus: Annotated[str, typer.Option(help="Extracted corpus (folder or URL) whose clips and targets are probed.")],
    experts: Annotated[str, typer.Option(help="Store experts to probe, comma-separated.")] = "pitch,mel",
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: the first run's probe/).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Use at most this many clips.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 …")] = "cpu",
) -> None:
    """Linear probes of expert targets from hidden states at the thinking positions and the answer position.

    Ridge regression (logistic for probability experts) on a held-out split, every layer; a run trained
    with --no-think is read at the same positions with the block's untrained tokens appended.

    Example: [bold]coat-pipe probe --run runs/coat --run runs/base --corpus data/heldout --experts pitch,mel[/]
    """
    from stages.evaluate.probe import MIN_PROBE_CLIPS, run_probes

    out_dir = out_dir or runs[0] / "probe"
    if limit is not None and limit < MIN_PROBE_CLIPS:
        raise UserError(f"--limit {limit}: a probe needs at least {MIN_PROBE_CLIPS} clips (cross-validated folds)")
    result = run_probes(runs, corpus, [e.strip() for e in experts.split(",") if e.strip()], out_dir, limit, device)
    print_table("probes: held-out R² (accuracy for probs), best layer", result.header, result.rows)
    out.print(f"written: {out_dir}/probes.json, probes.md, probe_layers.png")
