"""Stage two: train the CoAT model on tars + the precomputed store under DeepSpeed ZeRO-2.

One process (CPU or one GPU):
    coat-pipe train --backbone tiny-qwen2-audio --corpus data/train --out runs/coat --steps 200
Several ranks (the launcher appends --local_rank=N, which `coat-pipe train` accepts):
    deepspeed --num_gpus 8 --no_python coat-pipe train --backbone af3 --corpus data/train --out runs/af3
    DS_ACCELERATOR=cpu deepspeed --num_gpus 2 --no_python coat-pipe train --backbone tiny-af3 ...
Baseline: the same command with --no-think; the control for the supervision: --block-control (λ = 0).
Continue a run: the same command with --resume.
SIGTERM or SIGUSR1 (SLURM's time-limit warning, preemption) checkpoint every rank at the next step and
exit with code 75; launch/train.sh requeues on it.

The recipe reads top to bottom: setup, data plan, model, engine, resume, the loop, export.
The experts never run here; their targets come from the store.
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
from pathlib import Path
from typing import Any

import deepspeed
import numpy as np
import torch
import torch.distributed as dist
from torch.optim.lr_scheduler import LambdaLR

from stages.config_files import config_dict, dump_yaml
from stages.progress import console, training_progress
from stages.train.backbones.base import SAMPLE_RATE
from stages.train.bundle import save_bundle
from stages.train.checkpoint import LATEST, load_rng, mark_best, save_checkpoint, verified_tag
from stages.train.config import TrainConfig, warmup_cosine
from stages.train.data import PlannedBatches, batch_loader, iterate_batches
from stages.train.model import CoatModel
from stages.train.op_build import (
    answer_cpu_info_once,
    prefer_environment_ninja,
    refuse_stale_build_locks,
    skip_shm_comm_op,
)
from stages.train.plan import fit_warning
from stages.train.ranks import rank_device
from stages.train.run_dir import check_run_dir, drop_rows_after
from stages.train.stop_signal import StopSignal, agreed, stop_if_not_finite
from stages.train.stream import TrainingStream, load_sources
from stages.train.tally import Tally
from stages.train.tracking import Trackers
from stages.train.validate import best_key, improved, summary, validate
from store_schema.errors import UserError


def _clock(seconds: float) -> str:
    """h:mm:ss, for log lines."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def memory_in_use(device: torch.device) -> int:
    """Bytes this rank holds now: allocated GPU memory, or the process's resident memory on CPU."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return _proc_status_kib("VmRSS") * 1024


def peak_memory(device: torch.device) -> int:
    """The most this rank has held: the allocator's peak on a GPU, the resident high-water mark on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return _proc_status_kib("VmHWM") * 1024


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def uses_gpu() -> bool:
    return torch.cuda.is_available() and os.environ.get("DS_ACCELERATOR", "cuda") != "cpu"


def seed_all(seed: int) -> None:
    """The seed of the model's init (LoRA, block rows, heads) and of everything random after it."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def init_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device). Without a launcher this is a world of one."""
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(name, value)
    if "MASTER_PORT" not in os.environ:  # a world of one: any free port (a fixed one may be taken)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(probe.getsockname()[1])
    on_gpu = uses_gpu()
    if not on_gpu:  # no compiled op by default; a config asking for DeepSpeed's own Adam compiles one
        skip_shm_comm_op()
        prefer_environment_ninja()
        refuse_stale_build_locks()
        answer_cpu_info_once()
    deepspeed.init_distributed(dist_backend="nccl" if on_gpu else "gloo")
    device = rank_device(on_gpu)
    if on_gpu:
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device


def deepspeed_config(cfg: TrainConfig, on_gpu: bool) -> dict[str, Any]:
    """launch/ds_zero2.json with its "auto" values filled from the run's settings."""
    try:
        ds = json.loads(cfg.ds_config.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{cfg.ds_config}: not a readable DeepSpeed JSON config ({err})") from err
    auto = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.grad_clip,
    }
    for key, value in auto.items():
        if ds.get(key) == "auto":
            ds[key] = value
    if ds.get("bf16", {}).get("enabled") == "auto":
        ds["bf16"]["enabled"] = on_gpu  # bf16 on GPU, fp32 on CPU
    optimizer = ds.get("optimizer", {})
    params = optimizer.get("params", {})
    for key, value in (("lr", cfg.lr), ("weight_decay", cfg.weight_decay)):
        if params.get(key) == "auto":
            params[key] = value
    if not on_gpu and str(optimizer.get("type", "")).lower() in ("adam", "adamw"):
        # torch's AdamW unless the config says otherwise: DeepSpeed's Adam on CPU is a JIT-compiled op
        # (two minutes on a fresh 2-core machine) doing the same update (stages/train/op_build.py)
        optimizer.setdefault("params", params).setdefault("torch_adam", True)
    ds.pop("train_batch_size", None)  # derived by DeepSpeed from micro batch × accumulation × world
    return ds


def reduce_logged(
    out: Any, batch: Any, seen: torch.Tensor, counts: Tally, world: int, device: torch.device
) -> tuple[dict[str, float], list[float], dict[str, float]]:
    """(loss parts, [clips, audio seconds] since the (re)start, tallies), summed over ranks in one all-reduce.
    The total and LM losses are means over ranks; an expert's loss is the mean over the clips that hold its
    targets (a mixture's corpus without the expert contributes nothing to it)."""
    held = {e: float(batch.targets[e].valid.sum()) for e in out.expert_losses}  # clips with each expert's targets
    local = [float(out.loss.detach()), float(out.lm_loss.detach())]
    local += [float(out.expert_losses[e].detach()) * n for e, n in held.items()] + list(held.values())
    local += seen.tolist() + counts.vector()
    values = torch.tensor(local, dtype=torch.float64, device=device)
    dist.all_reduce(values)
    summed, k = values.tolist(), len(held)
    means = {"loss": summed[0] / world, "lm": summed[1] / world}
    for i, expert in enumerate(held):
        means[expert] = summed[2 + i] / summed[2 + k + i] if summed[2 + k + i] else float("nan")
    return means, summed[2 + 2 * k : 4 + 2 * k], counts.read(summed[4 + 2 * k :])


def check_runs(runs: list[TrainConfig]) -> None:
    """What can be refused without data, for every run of a sweep before the first trains: its folder (new, or
    a run to --resume with the same settings) and the settings that need the backbone's shape."""
    for cfg in runs:
        CoatModel.check_against_backbone(cfg.model)
        check_run_dir(cfg, deepspeed_config(cfg, uses_gpu()))


def run_train(cfg: TrainConfig) -> dict[str, Any]:
    # --- data first: refuse a bad store before anything starts, then the stream's inputs -----------
    sources, specs, experts = load_sources(cfg.training_corpora, cfg.experts, not cfg.model.no_think)
    val_sets = load_sources(cfg.val_corpora, experts, False, held_only=True)[0] if cfg.val_corpora else []
    # the layer the heads read, the heads' width: before any write. It reads the backbone's config, so a tiny
    # twin is built here (on every rank: the cache's atomic rename lets concurrent builders agree)
    CoatModel.check_against_backbone(cfg.model)
    run, checkpoints = cfg.out, cfg.out / "checkpoints"
    ds_config = deepspeed_config(cfg, uses_gpu())

    # --- setup: distributed, seeds, run directory ---------------------------------------------------
    rank, world, device = init_distributed()
    is_main = rank == 0
    # Every rank checks the folder before rank 0 writes into it: `agreed` is also the barrier that keeps a rank
    # still checking from finding what rank 0 has just written (a sweep's later runs start with the group up).
    resumed_changes = agreed(lambda: check_run_dir(cfg, ds_config), device)
    resuming = cfg.resume and (checkpoints / LATEST).is_file()
    stop = StopSignal()  # SIGTERM / SIGUSR1: checkpoint at the next step on every rank, then exit
    tag = agreed(lambda: verified_tag(checkpoints, rank), device) if resuming else None  # before any unpickling
    if is_main and tag is None:  # a resumed run keeps the record of its first steps' settings
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text(dump_yaml(config_dict(cfg)))
        (run / "ds_config.json").write_text(json.dumps(ds_config, indent=1))  # as DeepSpeed receives it

    # --- model and DeepSpeed engine ----------------------------------------------------------------
    if is_main and device.type == "cuda":  # before 7B weights load: will it fit, at the corpora's longest clip?
        longest = max((float(x.max()) / s.store_rate for s in sources if s.lengths for x in s.lengths), default=30.0)
        warning = fit_warning(cfg, world, torch.cuda.get_device_properties(device).total_memory, longest)
        if warning:
            console.print(warning, markup=False, highlight=False)
    dist.barrier()
    seed_all(cfg.seed)  # after the twin's build, which seeds its own init
    before_model = memory_in_use(device)
    model = CoatModel.build(cfg.model, {} if cfg.model.no_think else specs)
    engine, _, _, scheduler = deepspeed.initialize(
        model=model,
        model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=ds_config,
        lr_scheduler=lambda optimizer: LambdaLR(
            optimizer, warmup_cosine(cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio)
        ),
    )

    # --- resume: DeepSpeed state, stream position, RNG ---------------------------------------------
    stream = TrainingStream(
        sources, cfg.seed, rank, world, cfg.batch_size, cfg.shuffle_window, cfg.batch_seconds
    )  # every rank's batches at every micro-step, a pure function of the seed and the step
    micro, best = 0, None  # micro-steps taken; the best validation value so far
    if tag is not None:
        # not strict: the checkpoint holds the trainable weights only; the frozen base came from the backbone
        _, client = engine.load_checkpoint(str(checkpoints), tag=tag, load_module_strict=False)
        micro, best = client["micro"], client.get("best")
        load_rng(checkpoints, tag, rank)
    # Steps logged after the checkpoint (or, with none, by a run killed before its first) are redone: drop them.
    drop_rows_after(run / f"batches-rank{rank}.jsonl", engine.global_steps - 1)
    if is_main:
        drop_rows_after(run / "metrics.jsonl", engine.global_steps)
    if is_main and tag is not None:
        if resumed_changes:
            with open(run / "resumes.jsonl", "a") as f:  # config.yaml stays the record of the first steps
                f.write(json.dumps({"step": engine.global_steps, "changed": resumed_changes}) + "\n")
        console.print(f"resumed from {tag}: step {engine.global_steps}, micro-step {micro}")

    def save(step: int) -> None:
        client = {"micro": micro, "step": step, "best": best}
        save_checkpoint(engine, checkpoints, step, client, rank, cfg.keep_checkpoints)

    # --- the loop ----------------------------------------------------------------------------------
    engine.train()  # transformers hands models over in eval mode; frozen encoders stay in it (CoatModel.train)
    metrics = open(run / "metrics.jsonl", "a") if is_main else None
    batches_log = open(run / f"batches-rank{rank}.jsonl", "a")  # which clips each step saw
    trackers = Trackers(cfg, run) if is_main else None  # TensorBoard, W&B, MLflow: what metrics.jsonl holds
    started, first_step = time.perf_counter(), engine.global_steps
    # this rank's tallies since the start of the run (replayed on resume): clips and audio seconds, clips per
    # corpus, clips without each expert's targets, padded and total audio frames and tokens
    counts = Tally(sources, experts)
    counts.replay(stream.batches(0, micro))
    seen = torch.zeros(2, dtype=torch.float64)  # clips and audio seconds since this (re)start, for the rates
    # A live bar on a terminal; one line per logged step in log files (SLURM output, CI).
    bar = training_progress(disable=not (is_main and console.is_terminal))
    bar_task = bar.add_task("train", total=cfg.steps, completed=engine.global_steps, parts="")
    bar.start()
    interrupted = False
    while engine.global_steps < cfg.steps and not interrupted:
        planned = stream.batches(micro, stream.segment_end(micro))
        dataset = PlannedBatches(
            [(str(s.corpus.root), s.experts) for s in sources],
            [[(b.source, shard, index) for shard, index in b.items] for b in planned],
            reach=max(1, cfg.shuffle_window // max(1, cfg.batch_size)),
        )
        batches = iterate_batches(batch_loader(dataset, 0, cfg.num_workers))
        try:
            for samples, info in zip(batches, planned, strict=False):
                step = engine.global_steps
                stage = "align" if step < cfg.align_steps else "joint"
                batch = model.batch(samples)
                out = engine(batch, lm_weight=0.0 if stage == "align" else 1.0)
                stop_if_not_finite(out.loss, step, [s.key for s in samples], rank, device)
                engine.backward(out.loss)
                engine.step()  # an optimizer step at each accumulation boundary
                micro += 1
                seen += torch.tensor([len(samples), sum(len(s.wave) for s in samples) / SAMPLE_RATE])
                counts.add(info, samples, batch)
                taken = {"step": step, "epoch": info.epoch, "keys": [s.key for s in samples]}
                if len(sources) > 1:
                    taken["corpus"] = sources[info.source].name
                batches_log.write(json.dumps(taken) + "\n")
                if not engine.is_gradient_accumulation_boundary():
                    continue
                step = engine.global_steps
                logged = step % cfg.log_every == 0 or step == cfg.steps
                if logged:  # the losses' means over ranks and the tallies' sums: one small all-reduce
                    means, rates, tallies = reduce_logged(out, batch, seen, counts, world, device)
                if is_main and logged:
                    elapsed = time.perf_counter() - started
                    row = {
                        "step": step,
                        "stage": stage,
                        **means,
                        "lr": scheduler.get_last_lr()[0],
                        "samples_per_s": rates[0] / elapsed,
                        "audio_hours_per_s": rates[1] / 3600 / elapsed,
                        "elapsed_s": elapsed,
                        "eta_s": elapsed / (step - first_step) * (cfg.steps - step),
                        **tallies,
                    }
                    metrics.write(json.dumps(row) + "\n")  # type: ignore[union-attr]
                    metrics.flush()  # type: ignore[union-attr]
                    trackers.log(row)  # type: ignore[union-attr]
                    shown = " ".join(f"{k} {row[k]:.3f}" for k in ("loss", "lm", *out.expert_losses) if k in row)
                    rate = f"{row['samples_per_s']:.2f} clips/s {row['audio_hours_per_s'] * 3600:.1f} audio-s/s"
                    clock = f"elapsed {_clock(elapsed)} eta {_clock(row['eta_s'])}"
                    bar.update(bar_task, completed=step, parts=f"[{stage}] {shown} {rate}")
                    if not console.is_terminal:
                        console.print(
                            f"step {step}/{cfg.steps} [{stage}] {shown} lr {row['lr']:.2e} {rate} {clock}",
                            markup=False,
                            highlight=False,
                            soft_wrap=True,  # one line per step, whatever the log's width
                        )
                interrupted = stop.requested(device) and step < cfg.steps
                validating = val_sets and (step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0))
                new_best = False
                if validating:
                    val_started = time.perf_counter()
                    scores = validate(model, val_sets, rank, world, cfg.batch_size, device)
                    scores["val/seconds"] = time.perf_counter() - val_started  # its cost beside a step's
                    key = best_key(cfg.best_metric, val_sets)
                    new_best = key in scores and improved(key, scores[key], best)
                    best = scores[key] if new_best else best
                    if is_main:
                        row = {"step": step, "stage": "val", **scores}
                        metrics.write(json.dumps(row) + "\n")  # type: ignore[union-attr]
                        metrics.flush()  # type: ignore[union-attr]
                        trackers.log(row)  # type: ignore[union-attr]
                        console.print(f"step {step} validation: {summary(scores)}", markup=False, highlight=False)
                if step % cfg.save_every == 0 or step == cfg.steps or interrupted or new_best:
                    batches_log.flush()
                    save(step)
                    if new_best and is_main:
                        mark_best(checkpoints, f"step{step:07d}")
                if step >= cfg.steps or interrupted:
                    break
        finally:
            # this segment's workers shut down now, and on an error too: they ignore SIGTERM, so the
            # interpreter's exit would otherwise wait on them and a failed rank would hang, not exit
            batches.close()

    # --- export: the bundle is what evaluation reads ------------------------------------------------
    bar.stop()
    batches_log.close()
    if is_main:
        if interrupted:
            console.print(f"stopped by {stop.received} at step {engine.global_steps}; checkpoint saved")
        else:
            save_bundle(model, run / "final")
        metrics.close()  # type: ignore[union-attr]
        trackers.close()  # type: ignore[union-attr]
    # what this rank held at its peak, against what it held before the model: the plan's prediction to check
    peak = {"rank": rank, "device": device.type, "before_model_bytes": before_model, "peak_bytes": peak_memory(device)}
    (run / f"memory-rank{rank}.json").write_text(json.dumps(peak))
    dist.barrier()
    # Only now: the scheduler's later copies of the signal (SLURM, train.sh's trap and srun each pass
    # one on) must not kill a rank that the others still wait for in the barrier above.
    stop.restore()
    return {
        "rank": rank,
        "interrupted": interrupted,
        "steps": engine.global_steps,
        "micro_steps": micro,
        "skipped": {s.name: dict(s.skipped) for s in sources} if len(sources) > 1 else dict(sources[0].skipped),
        "run": str(run),
        "wall_seconds": time.perf_counter() - started,
    }
