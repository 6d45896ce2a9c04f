"""Building WebDataset corpora: from audio on disk (`shard`) or generated (`synth`)."""
