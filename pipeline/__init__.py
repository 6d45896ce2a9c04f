"""coat-pipe: Continuous Audio Thinking for large audio language models. The CLI and what every stage shares."""

__version__ = "0.1.0"
