"""Stage one: run frozen audio experts over the corpus and write pooled targets into the store."""
