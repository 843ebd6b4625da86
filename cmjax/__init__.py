"""cmjax: cross-modal learning in JAX/Flax."""
