"""The miniature world the quickstart runs in: the synth corpus and its benchmark, and the pretrained tiny twin.

No product stage imports this package. Importing it hands the product what it needs to know of the lab:
the synth benchmark registers with evaluation, and the synth task's questions and answers go into the tiny
twins' tokenizer (so that answers are whole tokens). The CLI imports it once at start.
"""

from stages.lab import synth_benchmark  # noqa: F401 - registers the synth benchmark
from stages.lab.synth import TOKENIZER_ANSWERS, TOKENIZER_QUESTIONS
from stages.train.tiny_text import add_task_text

add_task_text(TOKENIZER_QUESTIONS, TOKENIZER_ANSWERS)
