"""`coat-pipe quickstart`: the whole method on one machine — data, experts, CoAT against its baseline and
its block control, report.

    DIR/quickstart.yaml         the settings (a re-run with other settings is refused)
    DIR/data/{train,heldout}    synth corpora with the mel and pitch targets in their stores
    DIR/model                   the tiny Qwen2-Audio twin every run starts from (pretrained: a copy from the cache)
    DIR/runs/{coat,base,control}-seedN  `coat-pipe train` runs (2 DeepSpeed CPU ranks), each with eval/
    DIR/probes/seedN            probes of the three runs of a seed on the held-out clips
    DIR/sweep.yaml              the runs the last training launch was asked for (`coat-pipe train --sweep`)
    DIR/logs/train.log          the training launches' output
    DIR/report.md, DIR/report/  generated from the files above, every time the command runs

Every phase skips what is already done, so running the same command again resumes where it stopped.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from pipeline.quickstart_setup import VARIANTS, QuickstartConfig, QuickstartLayout, arm_settings
from stages.config_files import config_dict, dump_yaml, load_yaml
from stages.progress import console
from stages.train.config import flatten_settings
from store_schema.errors import UserError

LAUNCH = Path(__file__).resolve().parents[1] / "launch"
READOUT_TASK = "pitch_direction"  # a question whose answer is in the pitch contour the block should hold


class Quickstart(QuickstartLayout):
    """The phases in order; each one looks at its outputs first and does only what is missing."""

    def check_settings(self) -> None:
        """Write the settings, or refuse when DIR holds a quickstart made with other ones."""
        path = self.out / "quickstart.yaml"
        wanted = config_dict(self.cfg)
        if path.is_file():
            held = load_yaml(path.read_text())
            if not self.same_design(held, wanted):
                old, new = flatten_settings(held), flatten_settings(wanted)
                changed = ", ".join(f"{k}: {old.get(k)} → {v}" for k, v in new.items() if old.get(k) != v)
                raise UserError(
                    f"{self.out} holds a quickstart with other settings ({changed}); choose another --out"
                    + self.refusal_hint(held)
                )
        self.out.mkdir(parents=True, exist_ok=True)
        path.write_text(dump_yaml(wanted))

    def refusal_hint(self, held: dict[str, Any]) -> str:
        """What else to do when DIR holds other settings (`--confirm` names the design that made them)."""
        return ""

    def same_design(self, held: dict[str, Any], wanted: dict[str, Any]) -> bool:
        """Whether DIR's settings (`held`) are the ones asked for: equal, for the demonstration."""
        return self.read_back(held) == wanted

    def read_back(self, held: dict[str, Any]) -> dict[str, Any]:
        """DIR's settings as this version reads them: a field added since DIR was made takes its default."""
        try:
            return config_dict(type(self.cfg).model_validate(held))
        except ValueError:  # settings this version refuses are not the ones asked for
            return held

    def phases(self) -> list[tuple[str, Callable[[], None]]]:
        return [
            ("synth the train and held-out corpora", self.synth),
            (f"extract {','.join(self.cfg.extracted)} into both stores", self.extract),
            (
                "pretrain the tiny Qwen2-Audio twin (once per machine)" if self.cfg.twin else "build the tiny twin",
                self.build_model,
            ),
            (
                f"train CoAT, --no-think, --block-control: {self.cfg.seeds} seed(s), {self.cfg.ranks} ranks",
                self.train,
            ),
            ("evaluate every run on the held-out split (generated and likelihood-ranked answers)", self.evaluate),
            ("probe the hidden states of each seed's three runs", self.probe),
            ("read out the thinking block on one held-out clip", self.readout),
        ]

    # --- data --------------------------------------------------------------------------------------
    def splits(self) -> list[tuple[Path, int, int, str]]:
        """(folder, clips, synth seed, name) of each corpus; the held-out seed differs: clips never trained on."""
        return [
            (self.train_corpus, self.cfg.train_clips, 0, "train"),
            (self.heldout, self.cfg.heldout_clips, 1, "heldout"),
        ]

    @property
    def tasks(self) -> tuple[str, ...]:
        from stages.lab.synth import QUESTION_TYPES

        return QUESTION_TYPES

    @property
    def seconds_range(self) -> tuple[float, float]:
        """Shortest and longest clip of every corpus: synth's default, 1-8 s."""
        from stages.lab.synth import DEFAULT_SECONDS

        return DEFAULT_SECONDS

    def synth(self) -> None:
        from stages.lab.synth import synth_recipe, write_synth_corpus
        from store_schema.corpus import read_corpus

        options = {"seconds_range": self.seconds_range, "tasks": self.tasks}
        for folder, clips, seed, name in self.splits():
            shard_size = -(-clips // 3)
            if (folder / "corpus.json").is_file():
                if read_corpus(folder).created_by == synth_recipe(clips, seed, shard_size, name, **options):
                    console.print(f"  {folder}: already made")
                    continue
                raise UserError(f"{folder} holds another corpus; remove it or choose another --out")
            write_synth_corpus(folder, clips, seed, shard_size, name, **options)

    def extract(self) -> None:
        from stages.extract.config import ExtractConfig
        from stages.extract.runner import run_extract

        for corpus, *_ in self.splits():
            run_extract(ExtractConfig(corpus=corpus, experts=self.cfg.extracted, num_workers=1))

    def build_model(self) -> None:
        from stages.lab.pretrained_twin import pretrained_twin
        from stages.train.backbones import BACKBONES

        if (self.model_dir / "config.json").is_file():
            console.print(f"  {self.model_dir}: already built")
            return
        partial = self.model_dir.with_name(f".{self.model_dir.name}.partial")  # renamed once complete
        shutil.rmtree(partial, ignore_errors=True)
        if self.cfg.twin is None:
            BACKBONES["qwen2-audio"].build_tiny(partial, seed=0, window_s=self.cfg.window_s)
        else:
            cached = pretrained_twin(self.cfg.twin)
            shutil.copytree(cached, partial)  # DIR holds the very weights its runs started from
            record = json.loads((cached / "twin.json").read_text())
            held = record["heldout"]
            console.print(
                f"  {cached}: pretrained in {record['build_seconds']:.0f} s; held-out descriptions "
                f"{100 * held['exact']:.1f} % exact (kinds {100 * held['kinds']:.1f} %, "
                f"length {100 * held['length']:.1f} %)"
            )
        partial.rename(self.model_dir)

    # --- training ----------------------------------------------------------------------------------
    def shared_settings(self) -> dict[str, Any]:
        """The TrainConfig settings every run shares (corpus, out, seed and the arm's settings come per run)."""
        return self.cfg.train | {"model": self.cfg.train["model"] | {"model_path": str(self.model_dir.resolve())}}

    def train_settings(self) -> Path:
        """DIR/train.yaml, the shared settings every run reads with --config."""
        path = self.out / "train.yaml"
        path.write_text(dump_yaml(self.shared_settings()))
        return path

    def train(self) -> None:
        """One launch trains every run not trained yet, one after another (`coat-pipe train --sweep`): the
        launcher's start and the ranks' imports are paid once, not once per run."""
        todo = []
        for name in self.cfg.run_names():
            if (self.runs / name / "final" / "config.yaml").is_file():
                console.print(f"  {self.runs / name}: already trained")
                continue
            variant, seed = name.split("-seed")
            todo.append({"name": name, "seed": int(seed), **arm_settings(variant)})  # the arm's settings
        if not todo:
            return
        sweep = self.out / "sweep.yaml"  # what this launch trains; rewritten by every launch
        sweep.write_text(dump_yaml(todo))
        flags = ["--config", str(self.train_settings()), "--corpus", str(self.train_corpus)]
        flags += ["--out", str(self.runs), "--sweep", str(sweep)]
        launch_training([entry["name"] for entry in todo], flags, self.runs, self.logs / "train.log", self.cfg)

    # --- evaluation --------------------------------------------------------------------------------
    def unscored(self) -> list[tuple[str, Path, Path]]:
        """(name, run, held-out split) of every run not scored yet; a line for each one that is."""
        todo = []
        for name in self.cfg.run_names():
            if (self.runs / name / "eval" / "metrics.json").is_file():
                console.print(f"  {self.runs / name}/eval: already scored")
            else:
                todo.append((name, self.runs / name, self.heldout))
        return todo

    def evaluate(self) -> None:
        for name, (generated, likely) in in_workers(evaluate_run, self.unscored(), self.cfg.ranks):
            console.print(
                f"  {name}: held-out accuracy {100 * generated:.1f} % generated, {100 * likely:.1f} % by likelihood"
            )

    def probe(self) -> None:
        todo = []
        for seed in range(self.cfg.seeds):
            out = self.out / "probes" / f"seed{seed}"
            if (out / "probes.json").is_file():
                console.print(f"  {out}: already probed")
                continue
            runs = [self.runs / f"{variant}-seed{seed}" for variant in self.cfg.arms]
            todo.append((f"seed{seed}", runs, self.heldout, self.cfg.training.experts, out, self.cfg.probe_clips))
        for name, _ in in_workers(probe_seed, todo, self.cfg.ranks):
            console.print(f"  {name}: probed")

    def readout(self) -> None:
        """`generate --readout` on the first held-out clip of READOUT_TASK, with every seed-0 run's answer."""
        from stages.evaluate.answer import answer, load_run
        from stages.evaluate.readout import readout_clip
        from stages.evaluate.run_eval import item_wave
        from stages.lab.synth_benchmark import load_synth

        out = self.out / "report"
        if (out / "readout.json").is_file():
            console.print(f"  {out / 'readout.png'}: already drawn")
            return
        out.mkdir(parents=True, exist_ok=True)
        items = load_synth(self.heldout)
        item = next((i for i in items if i.groups.get("task") == READOUT_TASK), items[0])
        wave = item_wave(item)
        said = {}
        for variant in VARIANTS:
            model = load_run(self.runs / f"{variant}-seed0")
            said[variant] = answer(model, [wave], [item.question], 8)[0].text
            if variant == "coat":
                lines = readout_clip(model, wave, item.question, out / "readout.png").lines
        record = {"clip": item.id, "question": item.question, "reference": item.reference, "answers": said}
        (out / "readout.json").write_text(json.dumps(record | {"lines": lines}, indent=1))


def in_workers(task: Callable[..., Any], jobs: list[tuple[Any, ...]], workers: int) -> Iterator[tuple[str, Any]]:
    """(name, task(*rest)) for each job (name, *rest), as they finish, from `workers` processes of one
    thread each. The tiny models' evaluation and probes are Python-bound: one thread of work per core
    beats one process with a thread per core. The results do not depend on which worker ran a job."""
    if not jobs:
        return
    context = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited threads or locks
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context, initializer=one_thread) as pool:
        futures = {pool.submit(task, *rest): name for name, *rest in jobs}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def one_thread() -> None:
    """A worker's setup: one thread for torch and for numpy's BLAS (two workers with a BLAS thread per core
    each would oversubscribe the cores, and OpenBLAS's waiting threads then spin: probes took twice as long)."""
    import torch
    from threadpoolctl import threadpool_limits
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)
    threadpool_limits(1)  # for the life of the worker
    hf_logging.disable_progress_bar()


def evaluate_run(run: Path, heldout: Path) -> tuple[float, float]:
    """Score one run on the held-out split both ways; (generated, likelihood) accuracy."""
    from stages.evaluate.run_eval import run_eval

    metrics, _ = run_eval(  # called only while RUN/eval has no metrics.json: what is there is a leftover
        run, "synth", heldout, run / "eval", batch_size=16, max_new_tokens=8, scoring="both", progress=False,
        overwrite=True,
    )  # fmt: skip
    return metrics["accuracy"], metrics["likelihood"]["accuracy"]


def probe_seed(runs: list[Path], heldout: Path, experts: list[str], out: Path, limit: int) -> None:
    """Probe one seed's three runs on the held-out clips."""
    from stages.evaluate.probe import run_probes

    run_probes(runs, heldout, experts, out, limit=limit)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_training(names: list[str], flags: list[str], runs: Path, log_path: Path, cfg: QuickstartConfig) -> None:
    """`bash launch/train.sh FLAGS` (DeepSpeed's launcher, `cfg.ranks` CPU ranks) training the runs `names`
    under `runs` in order, with a bar over the current run's steps and a line as each one ends.

    The launch runs in its own session, so a Ctrl-C (or SIGTERM) reaches only this process, which then
    sends SIGTERM to every rank: they checkpoint at the next step and the next quickstart resumes there."""
    from stages.progress import training_progress

    steps = cfg.training.steps
    tenth = max(1, steps // 10)  # a log file (no live bar) gets a line per tenth; a run's loss is over its last tenth
    log_path.parent.mkdir(parents=True, exist_ok=True)
    bin_dir = str(Path(sys.executable).parent)  # `deepspeed` and `coat-pipe` of this environment
    env = os.environ | {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "COAT_CPU_RANKS": str(cfg.ranks),
        "MASTER_PORT": str(free_port()),
        "OMP_NUM_THREADS": str(cfg.threads_per_rank),
    }
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):  # left by an in-process run, if any
        env.pop(key, None)
    pending = list(names)
    with open(log_path, "ab") as log, training_progress(disable=not console.is_terminal) as bar:
        task = bar.add_task("train", total=steps, parts=pending[0])
        started = time.perf_counter()
        proc = subprocess.Popen(
            ["bash", str(LAUNCH / "train.sh"), *flags],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        shown = 0  # the last step given a line in a log file
        try:
            while pending:
                done = proc.poll() is not None
                name = pending[0]
                if (runs / name / "final" / "config.yaml").is_file():
                    step, loss = last_logged(runs / name / "metrics.jsonl", tenth)
                    console.print(
                        f"  {name}: {step} steps in {time.perf_counter() - started:.0f} s, "
                        f"lm loss {loss:.3f} (last {tenth} steps)"
                    )
                    pending.pop(0)
                    started, shown = time.perf_counter(), 0
                    bar.reset(task, total=steps, parts=pending[0] if pending else "")
                    continue
                if done:
                    break
                time.sleep(0.5)
                step, loss = last_logged(runs / name / "metrics.jsonl")
                bar.update(task, completed=step, parts=f"{name}  lm {loss:.3f}" if step else name)
                if not console.is_terminal and step >= shown + tenth:
                    console.print(f"  {name}: step {step}/{steps}, lm loss {loss:.3f}")
                    shown = step
            proc.wait()
        except KeyboardInterrupt:
            stop_session(proc)
            raise UserError(f"interrupted while training {pending[0]}; run the same command again to resume") from None
    if proc.returncode != 0 or pending:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        where = f" at {pending[0]}" if pending else ""
        raise UserError(f"training{where} failed (exit {proc.returncode}); its log is {log_path}:\n{tail}")


def last_logged(metrics: Path, rows: int = 1) -> tuple[int, float]:
    """(last step, mean LM loss of the last `rows` steps) from a run's metrics.jsonl; (0, nan) before any."""
    lines = [line for line in metrics.read_text().splitlines() if line.endswith("}")] if metrics.is_file() else []
    logged = [row for row in map(json.loads, lines) if "lm" in row]  # training rows (validation rows have none)
    if not logged:
        return 0, float("nan")
    last = logged[-rows:]
    return int(last[-1]["step"]), sum(float(r["lm"]) for r in last) / len(last)


def stop_session(proc: subprocess.Popen) -> None:
    """SIGTERM to the launcher and its ranks (they checkpoint, then exit); wait for all of them."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    console.print("stopping: the ranks checkpoint at their next step …")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)  # is any process of the session left?
        except ProcessLookupError:
            return
        proc.poll()
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)


def run_phases(quickstart: Quickstart) -> dict[str, float]:
    """Check DIR's settings, then every phase in order (each skips what is done); the seconds per phase,
    summed over every invocation that built DIR (a resumed run adds what it did)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars for every tiny model would drown the phases
    # SIGTERM (`kill`, a scheduler) stops the quickstart as Ctrl-C does: training checkpoints first.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    quickstart.check_settings()
    phases = quickstart.phases()
    timings_path = quickstart.out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    for number, (title, phase) in enumerate(phases, 1):
        console.rule(f"[bold]{number}/{len(phases)}[/] {title}", align="left")
        t0 = time.perf_counter()
        try:
            phase()
        except KeyboardInterrupt:  # outside a training launch, whose own handler stops its ranks first
            raise UserError(f"interrupted during “{title}”; run the same command again to resume") from None
        timings[title] = timings.get(title, 0.0) + time.perf_counter() - t0
        timings_path.write_text(json.dumps(timings, indent=1))
    return timings


def run_design(
    quickstart: Quickstart,
    read: Callable[[Any], Any],
    write: Callable[[Any, Any, dict[str, float], float], Path],
    summary: Callable[[Any], None] | None = None,
) -> Path:
    """Every phase, then `read` the results and `write` the report (and print `summary`); the report's path."""
    started = time.perf_counter()
    timings = run_phases(quickstart)
    results = read(quickstart)
    report = write(quickstart, results, timings, time.perf_counter() - started)
    if summary is not None:
        summary(results)
    console.print(f"report: {report}  ({time.perf_counter() - started:.0f} s this time)")
    return report


def run_quickstart(out: Path, cfg: QuickstartConfig) -> Path:
    """Every phase, then the report; returns the report's path."""
    from pipeline.quickstart_report import print_summary, read_results, write_report

    return run_design(Quickstart(out, cfg), read_results, write_report, print_summary)
