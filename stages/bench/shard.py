"""`coat-pipe bench shard`: each source format against the JSONL manifest on the same audio, and the peak
memory of sharding a conversation file of many rows against one of few rows."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from stages.corpus import sources
from stages.corpus.shard import build_shards, read_manifest

RATE = 16000
TURNS = [{"role": "user", "content": "<audio>What is heard?"}, {"role": "assistant", "content": "A tone."}]


def _write_audio(folder: Path, clips: int, seconds: float) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(clips):
        t = np.arange(int(seconds * RATE)) / RATE
        wave = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 900) * t) + 0.01 * rng.standard_normal(len(t))
        sf.write(folder / f"c{i:05d}.wav", wave.astype(np.float32), RATE)
        paths.append(folder / f"c{i:05d}.wav")
    return paths


def _sources(root: Path, paths: list[Path]) -> dict[str, Any]:
    """The same clips in every shape: name -> (lambda returning the rows, the rejections)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rel = [str(p.relative_to(root)) for p in paths]
    manifest = root / "manifest.jsonl"
    user, answer = TURNS[0] | {"content": "What is heard?"}, TURNS[1]
    manifest.write_text("".join(json.dumps({"audio": r, "messages": [user, answer]}) + "\n" for r in rel))
    chat = root / "chat.jsonl"
    chat.write_text("".join(json.dumps({"messages": TURNS, "audios": [r]}) + "\n" for r in rel))
    pq.write_table(
        pa.table(
            {"audio": [{"bytes": p.read_bytes(), "path": p.name} for p in paths], "messages": [TURNS] * len(paths)}
        ),
        root / "hf.parquet",
    )
    cuts = root / "cuts.jsonl"
    with open(cuts, "w") as f:
        for i, (p, r) in enumerate(zip(paths, rel)):
            info = sf.info(str(p))
            recording = {"id": f"r{i}", "sources": [{"type": "file", "channels": [0], "source": r}]}
            recording |= {"sampling_rate": RATE, "num_samples": info.frames, "duration": info.duration}
            supervision = {"id": f"s{i}", "recording_id": f"r{i}", "start": 0.0, "duration": info.duration}
            cut = {"id": f"c{i}", "start": 0.0, "duration": info.duration, "channel": 0, "type": "MonoCut"}
            f.write(
                json.dumps(cut | {"recording": recording, "supervisions": [supervision | {"text": "a tone"}]}) + "\n"
            )
    return {
        "jsonl manifest (today's path)": lambda: read_manifest(manifest),
        "chat (LLaMA-Factory / ms-swift)": lambda: (sources.read_chat(chat), []),
        "hf parquet (audio bytes)": lambda: (sources.read_hf(root / "hf.parquet"), []),
        "lhotse cuts": lambda: (sources.read_lhotse(cuts), []),
    }


def _peak_rss_mb(command: list[str]) -> float:
    """The peak resident memory of a child process (GNU time's %M), in MB."""
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *command], capture_output=True, text=True, check=True)
    return int(done.stderr.strip().splitlines()[-1]) / 1024


def bench_shard(clips: int = 200, seconds: float = 4.0, rows: tuple[int, int] = (1000, 100000)) -> dict[str, Any]:
    """Audio seconds per second of `shard` per format on the same clips (ratio to the JSONL manifest), and the
    peak memory of `shard --from chat` over `rows` conversation rows (all on one short clip)."""
    root = Path(tempfile.mkdtemp(prefix="coat-bench-shard-"))
    try:
        paths = _write_audio(root / "audio", clips, seconds)
        speeds = {}
        for name, read in _sources(root, paths).items():
            out = root / f"out-{len(speeds)}"
            start = time.perf_counter()
            entries, rejected = read()
            summary = build_shards(entries, out, shard_size=100, rejected=rejected, progress=False)
            elapsed = time.perf_counter() - start
            if summary.written != clips:
                raise RuntimeError(f"{name}: wrote {summary.written} of {clips} clips ({summary.rejected[:2]})")
            speeds[name] = summary.seconds / elapsed
        base = speeds["jsonl manifest (today's path)"]
        memory = {}
        short = root / "short.wav"
        sf.write(short, np.zeros(int(0.05 * RATE), np.float32) + 0.1, RATE)
        for count in rows:
            chat = root / f"rows-{count}.jsonl"
            with open(chat, "w") as f:
                for _ in range(count):
                    f.write(json.dumps({"messages": TURNS, "audios": ["short.wav"]}) + "\n")
            command = [sys.executable, "-m", "pipeline.cli", "shard", "--from", "chat", str(chat)]
            memory[count] = _peak_rss_mb([*command, "--out", str(root / f"mem-{count}"), "--shard-size", "5000"])
        return {
            "clips": clips,
            "audio_seconds": clips * seconds,
            "speeds": speeds,
            "ratios": {name: speed / base for name, speed in speeds.items()},
            "peak_rss_mb": memory,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
