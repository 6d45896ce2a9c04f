"""How DataLoader workers are started for a corpus: forked locally, from a preloading fork server for a bucket."""

import multiprocessing.forkserver
from pathlib import Path

from store_schema.location import corpus_path, worker_context


def test_local_corpora_fork_and_buckets_use_a_fork_server_that_preloads_the_dataset_module(tmp_path):
    assert worker_context(Path(tmp_path), "stages.train.data") is None  # PyTorch's default: fork
    context = worker_context(corpus_path("s3://bucket/corpus"), "stages.train.data")
    assert context is not None and context.get_start_method() == "forkserver"
    # What the server imports when it starts (CPython keeps the list on its one fork server).
    assert multiprocessing.forkserver._forkserver._preload_modules == ["stages.train.data"]
