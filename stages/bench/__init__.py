"""`coat-pipe bench …`: the measurements behind docs/PERFORMANCE.md, each against a baseline run in the same
process. Above the product stages (and the lab, whose synth corpus they measure on); nothing imports them
but the CLI."""
