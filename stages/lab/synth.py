"""`coat-pipe synth`: a built-in acoustic QA corpus whose answers need the sound itself.

Clips of 1-8 s are made of tones, chirps, harmonic notes, noise bursts and silences, with one
question per clip. Every answer is exact, known from the generator. Clip i depends only on
(seed, i), so a corpus is the same whatever its shard size.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16000
QUESTION_TYPES = ("pitch_level", "pitch_direction", "count_events", "louder_half", "note_name", "has_noise")
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
PITCH_LEVELS = {"low": (110.0, 220.0), "mid": (300.0, 600.0), "high": (900.0, 1800.0)}  # Hz, a gap between
COUNT_WORDS = ("zero", "one", "two", "three", "four", "five")
# Every answer each question type can have (count_events asks about 1 to 5 sounds).
ANSWERS: dict[str, tuple[str, ...]] = {
    "pitch_level": tuple(PITCH_LEVELS),
    "pitch_direction": ("rising", "falling"),
    "count_events": COUNT_WORDS[1:],
    "louder_half": ("first", "second"),
    "note_name": NOTE_NAMES,
    "has_noise": ("yes", "no"),
}
# What the tiny twins' tokenizer should hold as whole words (stages/lab/__init__.py hands them in): the
# questions' wording, one line per type, and every answer.
TOKENIZER_QUESTIONS = [
    "Is the pitch of the tone low, mid or high? Does the pitch of the sweep rise or fall? rising falling",
    "How many separate sounds are there? zero one two three four five",
    "Which half of the clip is louder, the first or the second? first second",
    "Which note is played? Answer with the note name. " + " ".join(NOTE_NAMES),
    "Is there a burst of noise in the clip? yes no " + " ".join(PITCH_LEVELS),
]
TOKENIZER_ANSWERS = [*PITCH_LEVELS, "rising", "falling", "first", "second", "yes", "no", *COUNT_WORDS, *NOTE_NAMES]
QUIET_DB = 14.0  # how much quieter the quiet half is in `louder_half`
FADE_S = 0.01


@dataclass(frozen=True)
class Event:
    kind: str  # tone | chirp | note | noise
    start: float  # s
    end: float  # s
    f0: float = 0.0  # Hz at the start (0 for noise)
    f1: float = 0.0  # Hz at the end (chirps; equals f0 otherwise)
    gain_db: float = -12.0  # peak level in dBFS


@dataclass(frozen=True)
class SynthClip:
    key: str
    wave: np.ndarray
    task: str
    question: str
    answer: str
    events: tuple[Event, ...]

    @property
    def seconds(self) -> float:
        return len(self.wave) / SAMPLE_RATE

    def meta(self) -> dict[str, Any]:
        """The sample's json entry: the corpus contract plus the generator's ground truth."""
        return {
            "messages": [{"role": "user", "content": self.question}, {"role": "assistant", "content": self.answer}],
            "task": self.task,
            "duration": round(self.seconds, 4),
            "source": "synth",
            "answer": self.answer,
            "choices": list(ANSWERS[self.task]),  # the closed answer set: likelihood-scored validation reads it
            "events": [asdict(e) for e in self.events],
        }


def note_name(hz: float) -> str:
    """Nearest equal-tempered note name (A4 = 440 Hz), without the octave."""
    midi = int(round(69 + 12 * np.log2(hz / 440.0)))
    return NOTE_NAMES[midi % 12]


def _render(event: Event, rng: np.random.Generator) -> np.ndarray:
    n = int(round((event.end - event.start) * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    if event.kind == "tone":
        x = np.sin(2 * np.pi * event.f0 * t)
    elif event.kind == "chirp":  # exponential sweep: equal time per octave
        ratio, span = event.f1 / event.f0, n / SAMPLE_RATE
        x = np.sin(2 * np.pi * event.f0 * span / np.log(ratio) * (ratio ** (t / span) - 1))
    elif event.kind == "note":  # six harmonics at 1/k, gently decaying like a plucked string
        x = sum(np.sin(2 * np.pi * k * event.f0 * t) / k for k in range(1, 7) if k * event.f0 < SAMPLE_RATE / 2)
        x = x * np.exp(-1.5 * t)
    elif event.kind == "noise":
        x = rng.standard_normal(n)
    else:
        raise ValueError(f"unknown event kind {event.kind!r}")
    fade = min(int(FADE_S * SAMPLE_RATE), n // 2)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, fade))
    x[:fade] *= ramp
    x[n - fade :] *= ramp[::-1]
    return x / max(np.abs(x).max(), 1e-9) * 10 ** (event.gain_db / 20)


def _spans(
    n: int,
    start: float,
    stop: float,
    rng: np.random.Generator,
    shortest: float = 0.25,
    longest: float = 1.5,
    gap: float = 0.12,
) -> list[tuple[float, float]]:
    """n non-overlapping (start, end) spans inside [start, stop), separated by at least `gap`."""
    room = stop - start - gap * (n + 1)
    lengths = rng.uniform(shortest, longest, n)
    if lengths.sum() > room:
        lengths *= room / lengths.sum()
    slack = rng.dirichlet(np.ones(n + 1)) * (room - lengths.sum())
    spans, t = [], start + gap + slack[0]
    for length, extra in zip(lengths, slack[1:], strict=False):
        spans.append((t, t + length))
        t += length + gap + extra
    return spans


def _tonal(rng: np.random.Generator, span: tuple[float, float], gain: float) -> Event:
    kind = str(rng.choice(["tone", "note", "chirp"]))
    f0 = float(np.exp(rng.uniform(np.log(150), np.log(1500))))
    f1 = f0 * float(rng.choice([0.5, 2.0])) if kind == "chirp" else f0
    return Event(kind, *span, f0=f0, f1=f1, gain_db=gain)


DEFAULT_SECONDS = (1.0, 8.0)  # the range clip lengths are drawn from


def make_clip(
    seed: int,
    index: int,
    seconds_range: tuple[float, float] = DEFAULT_SECONDS,
    tasks: tuple[str, ...] = QUESTION_TYPES,
) -> SynthClip:
    """Clip `index` of the corpus for `seed`: its audio, question, exact answer and events. Clip i asks
    `tasks[i % len(tasks)]` (every type by default)."""
    rng = np.random.default_rng([seed, index])
    task = tasks[index % len(tasks)]
    seconds = float(rng.uniform(*seconds_range))
    gain = float(rng.uniform(-20.0, -6.0))
    events: list[Event]

    if task == "pitch_level":
        answer = str(rng.choice(list(PITCH_LEVELS)))
        lo, hi = PITCH_LEVELS[answer]
        f0 = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        span = _spans(1, 0.0, seconds, rng, shortest=0.6, longest=3.0)[0]
        events = [Event(str(rng.choice(["tone", "note"])), *span, f0=f0, f1=f0, gain_db=gain)]
        question = "Is the pitch of the tone low, mid or high?"
    elif task == "pitch_direction":
        answer = str(rng.choice(["rising", "falling"]))
        low = float(np.exp(rng.uniform(np.log(150), np.log(500))))
        f0, f1 = (low, low * 3) if answer == "rising" else (low * 3, low)
        span = _spans(1, 0.0, seconds, rng, shortest=0.6, longest=3.0)[0]
        events = [Event("chirp", *span, f0=f0, f1=f1, gain_db=gain)]
        question = "Does the pitch of the sweep rise or fall?"
    elif task == "count_events":
        count = int(rng.integers(1, min(5, int(seconds / 0.5)) + 1))
        events = [
            _tonal(rng, span, gain) if rng.random() < 0.75 else Event("noise", *span, gain_db=gain)
            for span in _spans(count, 0.0, seconds, rng, longest=1.0, gap=0.15)
        ]
        answer, question = COUNT_WORDS[count], "How many separate sounds are there?"
    elif task == "louder_half":
        answer = str(rng.choice(["first", "second"]))
        half = seconds / 2
        loud, quiet = gain, gain - QUIET_DB
        first_gain, second_gain = (loud, quiet) if answer == "first" else (quiet, loud)
        events = [_tonal(rng, s, first_gain) for s in _spans(int(rng.integers(1, 3)), 0.0, half, rng, longest=1.0)]
        events += [
            _tonal(rng, s, second_gain) for s in _spans(int(rng.integers(1, 3)), half, seconds, rng, longest=1.0)
        ]
        question = "Which half of the clip is louder, the first or the second?"
    elif task == "note_name":
        midi = int(rng.integers(48, 84))  # C3 .. B5
        f0 = 440.0 * 2 ** ((midi - 69) / 12)
        span = _spans(1, 0.0, seconds, rng, shortest=0.8, longest=3.0)[0]
        events = [Event("note", *span, f0=f0, f1=f0, gain_db=gain)]
        answer, question = NOTE_NAMES[midi % 12], "Which note is played? Answer with the note name."
    else:  # has_noise
        answer = str(rng.choice(["yes", "no"]))
        count = int(rng.integers(1, min(3, int(seconds / 0.5)) + 1)) + (answer == "yes")
        spans = _spans(count, 0.0, seconds, rng, longest=1.0)
        noisy = int(rng.integers(count)) if answer == "yes" else -1
        events = [Event("noise", *s, gain_db=gain) if i == noisy else _tonal(rng, s, gain) for i, s in enumerate(spans)]
        question = "Is there a burst of noise in the clip?"

    wave = np.zeros(int(round(seconds * SAMPLE_RATE)), dtype=np.float64)
    for event in events:
        start = int(round(event.start * SAMPLE_RATE))
        rendered = _render(event, rng)
        wave[start : start + len(rendered)] += rendered[: len(wave) - start]
    return SynthClip(f"synth{seed}_{index:06d}", wave.astype(np.float32), task, question, answer, tuple(events))


def synth_recipe(
    clips: int,
    seed: int,
    shard_size: int,
    name: str,
    seconds_range: tuple[float, float] = DEFAULT_SECONDS,
    tasks: tuple[str, ...] = QUESTION_TYPES,
) -> str:
    """The command that makes a synth corpus, recorded as its `created_by`: the same recipe, the same bytes."""
    lengths = (
        ""
        if seconds_range == DEFAULT_SECONDS
        else f" --min-seconds {seconds_range[0]:g} --max-seconds {seconds_range[1]:g}"
    )
    subset = "" if tuple(tasks) == QUESTION_TYPES else f" --tasks {','.join(tasks)}"
    return f"coat-pipe synth --clips {clips} --seed {seed} --shard-size {shard_size} --name {name}{lengths}{subset}"


def check_tasks(tasks: tuple[str, ...]) -> tuple[str, ...]:
    """The question types asked, in order; ValueError naming an unknown or repeated one."""
    unknown = [t for t in tasks if t not in QUESTION_TYPES]
    if unknown or not tasks or len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks {','.join(tasks)}: each once, from {', '.join(QUESTION_TYPES)}")
    return tuple(tasks)


def write_synth_corpus(
    out: Path,
    clips: int,
    seed: int,
    shard_size: int,
    name: str = "train",
    progress: bool = True,
    seconds_range: tuple[float, float] = DEFAULT_SECONDS,
    tasks: tuple[str, ...] = QUESTION_TYPES,
) -> Counter:
    """Generate `clips` clips into WebDataset shards under `out` (asking the question types `tasks` in turn);
    returns clips per question type."""
    # imported here: `import stages.lab` (every CLI start) needs only the constants above, not webdataset
    from stages.audio import encode_flac
    from stages.progress import audio_progress
    from store_schema.corpus import CorpusWriter

    recipe = synth_recipe(clips, seed, shard_size, name, seconds_range, check_tasks(tasks))
    asked: Counter = Counter()
    with CorpusWriter(out, SAMPLE_RATE, shard_size, name, created_by=recipe) as writer:
        with audio_progress(disable=not progress) as bar:
            task = bar.add_task("synth", total=clips, audio_s=0.0)
            seconds = 0.0
            for index in range(clips):
                clip = make_clip(seed, index, seconds_range, tasks)
                writer.write(clip.key, encode_flac(clip.wave, SAMPLE_RATE), clip.meta())
                asked[clip.task] += 1
                seconds += clip.seconds
                bar.update(task, advance=1, audio_s=seconds)
    return asked
