"""Multihead attention pooling (MAP): a learned probe attends over the tokens."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.attention import MultiHeadAttention
from cmjax.models.layers import Dtype, layer_norm
from cmjax.models.transformer import MlpBlock


class MAPHead(nn.Module):
  """`[batch, tokens, width]` (+ optional key mask) -> pooled `[batch, width]`.

  One learned query attends over all tokens, then a residual MLP refines the
  result; unlike mean pooling, the model learns which tokens matter.
  """

  num_heads: int
  mlp_dim: int
  dtype: Dtype = jnp.float32
  activation: str = "gelu_tanh"
  ln_epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
    chex.assert_rank(x, 3)
    batch, _, width = x.shape
    probe = self.param(
      "probe",
      nn.with_logical_partitioning(nn.initializers.xavier_uniform(), (None, "embed")),
      (1, width),
    )
    q = jnp.broadcast_to(probe.astype(self.dtype)[None], (batch, 1, width))
    y = MultiHeadAttention(num_heads=self.num_heads, dtype=self.dtype, name="attn")(
      q, x, key_mask=key_mask
    )
    mlp = MlpBlock(self.mlp_dim, dtype=self.dtype, activation=self.activation, name="mlp")
    y = y + mlp(layer_norm("ln", self.dtype, epsilon=self.ln_epsilon)(y))
    pooled = y[:, 0]
    chex.assert_shape(pooled, (batch, width))
    return pooled
