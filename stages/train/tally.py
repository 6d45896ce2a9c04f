"""What a run has taken in, per rank, summed over ranks at each logged step: clips per corpus (a mixture's
shares), clips without an expert's targets, and padding (audio samples and tokens, against the batch's
longest clip and sequence)."""

from __future__ import annotations

import numpy as np

from stages.train.batch import CoatBatch, CoatSample
from stages.train.stream import Source, StreamBatch


class Tally:
    """Counts as one flat vector (so that one all-reduce sums them): clips per corpus | clips without each
    expert's targets | padded audio samples, audio samples | padded tokens, tokens."""

    def __init__(self, sources: list[Source], experts: list[str]) -> None:
        self.sources, self.experts = sources, experts
        self.counts = np.zeros(len(sources) + len(experts) + 4)

    def _missing(self, source: int) -> np.ndarray:
        held = set(self.sources[source].experts)
        return np.array([e not in held for e in self.experts], dtype=float)

    def replay(self, planned: list[StreamBatch]) -> None:
        """The corpora and missing targets of the micro-steps a resumed run has already taken."""
        for info in planned:
            self.counts[info.source] += len(info.items)
            self.counts[len(self.sources) : len(self.sources) + len(self.experts)] += len(info.items) * self._missing(
                info.source
            )

    def add(self, info: StreamBatch, samples: list[CoatSample], batch: CoatBatch) -> None:
        n, s, e = len(samples), len(self.sources), len(self.experts)
        self.counts[info.source] += n
        self.counts[s : s + e] += n * self._missing(info.source)
        lengths = [len(sample.wave) for sample in samples]
        self.counts[s + e] += sum(max(lengths) - length for length in lengths)
        self.counts[s + e + 1] += max(lengths) * n
        mask = batch.inputs["attention_mask"]
        self.counts[s + e + 2] += float((mask == 0).sum())
        self.counts[s + e + 3] += mask.numel()

    def vector(self) -> list[float]:
        return self.counts.tolist()

    def read(self, summed: list[float]) -> dict[str, float]:
        """The logged figures from the counts summed over ranks."""
        s, e = len(self.sources), len(self.experts)
        out: dict[str, float] = {}
        clips = sum(summed[:s])
        if s > 1:
            for j, source in enumerate(self.sources):
                out[f"share/{source.name}"] = summed[j] / clips if clips else 0.0
        for j, expert in enumerate(self.experts):
            if s > 1 or summed[s + j]:
                out[f"no_targets/{expert}"] = summed[s + j]
        audio, tokens = summed[s + e : s + e + 2], summed[s + e + 2 : s + e + 4]
        out["padding/audio"] = audio[0] / audio[1] if audio[1] else 0.0
        out["padding/tokens"] = tokens[0] / tokens[1] if tokens[1] else 0.0
        return out
