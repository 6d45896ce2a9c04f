"""The contract between the stages: the corpus, the expert-feature store, its stats and its checks."""
