"""The synth corpus as a benchmark: its clips asked as they were written, judged by the exact answer, with the
question type's answer set as the choices likelihood scoring ranks. Registered with evaluation on import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stages.evaluate.benchmarks import Benchmark, EvalItem, register_benchmark
from stages.lab.synth import ANSWERS


def load_synth(corpus_dir: Path | str, *_: Any) -> list[EvalItem]:
    """The clips of a synth corpus (use a held-out seed: `coat-pipe synth --seed 1 --name heldout`)."""
    from store_schema.corpus import conversation_turns, iter_tar_samples, read_corpus, sample_audio, sample_meta

    corpus = read_corpus(corpus_dir)
    items = []
    for shard in corpus.shards:
        for raw in iter_tar_samples(corpus.tar_path(shard)):
            try:  # a sample without a usable conversation is an unanswerable item, named, never a crash
                meta = sample_meta(raw, f"{corpus.tar_path(shard)}: {raw['__key__']}")
                (question, answer), problem = conversation_turns(meta["messages"]), None
            except ValueError as e:
                meta, (question, answer), problem = {}, ("", ""), str(e)
            task = meta.get("task", "")
            choices = list(ANSWERS.get(task, ()))
            item = EvalItem(raw["__key__"], sample_audio(raw), question, answer, choices, groups={"task": task})
            item.problem = problem or (None if item.audio is not None else "no audio entry in the tar sample")
            items.append(item)
    return items


register_benchmark("synth", Benchmark("exact", load_synth, reads_corpus=True))
