"""`coat-pipe bench stream`: the training stream (tars + store, as a rank reads them) from an object store
against the same corpus on local disk, in one process; clips/s, their ratio, and requests per clip.

Without `--corpus`, a synthetic corpus is extracted on disk and uploaded to a local S3 endpoint (moto's
server, from the dev extra) whose requests are counted; with `--corpus URL --local DIR`, a user's own
bucket is measured against a local copy (no request count: that needs the server's side).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stages.extract.config import ExtractConfig
from stages.extract.runner import run_extract
from stages.lab.synth import write_synth_corpus
from stages.train.config import TrainConfig
from stages.train.data import PlannedBatches, batch_loader, plan_epoch, usable_items
from store_schema.corpus import read_corpus
from store_schema.errors import UserError
from store_schema.location import corpus_path
from store_schema.reader import store_experts

ROUNDS = 2  # each source is read this often, alternating; the faster round counts


@contextmanager
def counting_s3_endpoint() -> Iterator[tuple[str, list[int]]]:
    """A local S3 API (moto's WSGI app under werkzeug on 127.0.0.1) that counts the requests it serves."""
    try:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server
    except ImportError:
        raise UserError(
            "bench stream needs moto's S3 server for its local endpoint (pip install 'coat-pipe[dev]'), "
            "or a bucket of your own: --corpus s3://… --local DIR"
        ) from None
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    app, served = DomainDispatcherApplication(create_backend_app), [0]

    def counted(environ: dict, start_response: Any) -> Any:
        served[0] += 1
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, counted, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}", served
    finally:
        server.shutdown()


def _epoch_rate(corpus: str | Path, experts: list[str], batch_size: int, workers: int) -> tuple[float, int]:
    """Clips/s over one epoch as training reads it (shards opened on first use, in the workers)."""
    info = read_corpus(corpus)
    usable, skipped = usable_items(info, experts)
    plan = plan_epoch(usable, skipped, 0, 0, 0, 1, batch_size)
    start, clips = time.perf_counter(), 0
    for batch in batch_loader(PlannedBatches.of_corpus(corpus, experts, plan.batches), 0, workers):
        clips += len(batch)
    return clips / (time.perf_counter() - start), clips


def bench_stream(
    clips: int, batch_size: int, workers: int | None, corpus: str | None, local: Path | None
) -> dict[str, Any]:
    workers = TrainConfig.model_fields["num_workers"].default if workers is None else workers
    if corpus is not None:
        if local is None:
            raise UserError("--corpus URL needs --local DIR, a copy of the same corpus on this machine's disk")
        return _compare(corpus, local, batch_size, workers, served=None)
    local = Path(tempfile.mkdtemp(prefix="coat-bench-stream-")) / "corpus"
    write_synth_corpus(local, clips, seed=0, shard_size=max(1, clips // 4), progress=False)
    run_extract(ExtractConfig(corpus=local, experts=["mel", "pitch"], progress=False, num_workers=0))
    with counting_s3_endpoint() as (endpoint, served):
        keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")
        saved = {k: os.environ.get(k) for k in keys}
        os.environ.update(dict(zip(keys, ("bench", "bench", "us-east-1", endpoint), strict=True)))
        try:
            bucket = corpus_path("s3://coat-bench/corpus")
            bucket.fs.mkdir("coat-bench")
            bucket.fs.put(str(local), bucket.path, recursive=True)
            return _compare(str(bucket), local, batch_size, workers, served)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _compare(remote: str, local: Path, batch_size: int, workers: int, served: list[int] | None) -> dict[str, Any]:
    experts = store_experts(read_corpus(local))
    if store_experts(read_corpus(remote)) != experts:
        raise UserError(f"{remote} and {local} hold other experts; compare copies of one corpus")
    rates: dict[str, list[float]] = {"remote": [], "local": []}
    requests, clips = [], 0
    for _ in range(ROUNDS):
        rates["local"].append(_epoch_rate(local, experts, batch_size, workers)[0])
        before = served[0] if served is not None else 0
        rate, clips = _epoch_rate(remote, experts, batch_size, workers)
        rates["remote"].append(rate)
        if served is not None:
            requests.append((served[0] - before) / clips)
    best = {k: max(v) for k, v in rates.items()}
    return {
        "remote": remote,
        "local": str(local),
        "experts": experts,
        "clips": clips,
        "workers": workers,
        "batch_size": batch_size,
        "remote_clips_s": best["remote"],
        "local_clips_s": best["local"],
        "ratio": best["remote"] / best["local"],
        "requests_per_clip": min(requests) if requests else None,
    }
