"""Stage two: the CoAT model (backbones, thinking block, heads, losses) and its training."""
