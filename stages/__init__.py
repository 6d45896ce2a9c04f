"""The pipeline's stages: corpus building, stage one (extract), stage two (train), evaluation."""
