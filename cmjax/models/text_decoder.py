"""A causal Transformer text decoder that cross-attends to any encoder's tokens.

Teacher-forced training reads the whole target at once:

  logits = decoder(tokens [B, L], memory [B, M, d], memory_mask [B, M])  # [B, L, vocab]

and generation runs one position at a time against a key/value cache
(`init_cache`, then `step`), which computes the same logits as the
teacher-forced pass (tests/test_text_decoder.py). Each block is pre-LN:
x + SelfAttn(LN x) (causal), x + CrossAttn(LN x, memory), x + MLP(LN x). The
output layer is the token embedding transposed (tied) unless `tie_embeddings`
is False.
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from cmjax.models.attention import MultiHeadAttention
from cmjax.models.layers import Dtype, dense, layer_norm, token_embed
from cmjax.models.transformer import MlpBlock


class DecoderBlock(nn.Module):
  """Causal self-attention, cross-attention to the memory, MLP (all pre-LN)."""

  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  activation: str = "gelu_tanh"
  ln_epsilon: float = 1e-6

  def setup(self):
    norm = lambda name: layer_norm(name, self.dtype, epsilon=self.ln_epsilon)
    attention = lambda name: MultiHeadAttention(self.num_heads, dtype=self.dtype, name=name)
    self.ln_self, self.ln_cross, self.ln_mlp = norm("ln_self"), norm("ln_cross"), norm("ln_mlp")
    self.self_attn, self.cross_attn = attention("self_attn"), attention("cross_attn")
    self.mlp = MlpBlock(
      self.mlp_dim, self.dropout_rate, self.dtype, activation=self.activation, name="mlp"
    )
    self.drop = nn.Dropout(self.dropout_rate)

  def __call__(self, x, memory, memory_mask, *, deterministic: bool = True, cache=None):
    """x: `[B, L, width]`; memory: `[B, M, d]` with bool `memory_mask [B, M]`.

    With `cache` (`dict(self=, cross=)`, see `MultiHeadAttention`) returns
    `(x, cache)` for one decoding step."""
    h = self.ln_self(x)
    if cache is None:
      h = self.self_attn(h, causal=True, deterministic=deterministic)
    else:
      h, self_cache = self.self_attn(h, cache=cache["self"])
    x = x + self.drop(h, deterministic=deterministic)
    h = self.ln_cross(x)
    if cache is None:
      h = self.cross_attn(h, memory, key_mask=memory_mask, deterministic=deterministic)
    else:
      h, _ = self.cross_attn(h, key_mask=memory_mask, cache=cache["cross"])
    x = x + self.drop(h, deterministic=deterministic)
    h = self.mlp(self.ln_mlp(x), deterministic=deterministic)
    x = x + self.drop(h, deterministic=deterministic)
    return x if cache is None else (x, dict(self=self_cache, cross=cache["cross"]))

  def cross_kv(self, memory: jax.Array, width: int) -> dict:
    """The cross-attention's keys and values of `memory` `[B, M, d]`, projected
    once per sequence (`width`: the decoder's; the query is a dummy)."""
    probe = jnp.zeros((memory.shape[0], 1, width), self.dtype)
    _, kv = self.cross_attn(probe, memory, return_kv=True)
    return kv


class TextDecoder(nn.Module):
  """Token ids -> next-token logits, conditioned on a memory of encoder tokens.

  Attributes:
    vocab_size: output classes (the tokenizer's vocabulary).
    max_len: longest sequence (learned position table; the cache's length).
    width, depth, num_heads, mlp_dim: sizes.
    dropout_rate: on residual branches and in the MLPs (training only).
    dtype: compute dtype; logits are float32.
    activation, ln_epsilon: as the encoders' Transformer.
    tie_embeddings: output layer = token embedding transposed.
  """

  vocab_size: int
  max_len: int
  width: int = 256
  depth: int = 2
  num_heads: int = 4
  mlp_dim: int = 1024
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  activation: str = "gelu_tanh"
  ln_epsilon: float = 1e-6
  tie_embeddings: bool = True

  def setup(self):
    self.embed = token_embed(self.vocab_size, self.width, self.dtype)
    self.pos_embedding = self.param(
      "pos_embedding",
      nn.with_logical_partitioning(nn.initializers.normal(0.01), ("pos", "embed")),
      (self.max_len, self.width),
    )
    self.blocks = [
      DecoderBlock(
        self.num_heads,
        self.mlp_dim,
        self.dropout_rate,
        self.dtype,
        self.activation,
        self.ln_epsilon,
        name=f"block{i}",
      )
      for i in range(self.depth)
    ]
    self.ln_final = layer_norm("ln_final", self.dtype, epsilon=self.ln_epsilon)
    if not self.tie_embeddings:
      self.head = dense(self.vocab_size, "head", self.dtype, out_axis="vocab")

  def _logits(self, x: jax.Array) -> jax.Array:
    x = self.ln_final(x)
    logits = self.embed.attend(x) if self.tie_embeddings else self.head(x)
    return logits.astype(jnp.float32)

  def __call__(self, tokens, memory, memory_mask=None, *, train: bool = False) -> jax.Array:
    """Teacher forcing: int `[B, L]` (L <= max_len), `[B, M, d]`, bool `[B, M]` ->
    float32 logits `[B, L, vocab_size]`; position i sees tokens 0..i."""
    chex.assert_rank([tokens, memory], [2, 3])
    length = tokens.shape[1]
    if length > self.max_len:
      raise ValueError(f"{length} target tokens exceed the decoder's max_len {self.max_len}")
    x = self.embed(tokens) + self.pos_embedding[:length].astype(self.dtype)[None]
    for block in self.blocks:
      x = block(x, memory, memory_mask, deterministic=not train)
    return self._logits(x)

  def init_cache(self, memory: jax.Array, memory_mask: jax.Array | None = None) -> dict:
    """The decoding state for `memory` `[B, M, d]`: per block, empty self-attention
    keys / values `[B, max_len, heads, head_dim]` and the memory's projected
    cross-attention keys / values; `index` (the next position) 0."""
    batch = memory.shape[0]
    head_dim = self.width // self.num_heads
    empty = jnp.zeros((batch, self.max_len, self.num_heads, head_dim), self.dtype)
    blocks = [
      dict(
        self=dict(key=empty, value=empty, index=jnp.int32(0)),
        cross=block.cross_kv(memory, self.width),
      )
      for block in self.blocks
    ]
    mask = jnp.ones(memory.shape[:2], jnp.bool_) if memory_mask is None else memory_mask
    return dict(blocks=blocks, memory_mask=mask.astype(jnp.bool_), index=jnp.int32(0))

  def step(self, tokens: jax.Array, cache: dict) -> tuple[jax.Array, dict]:
    """One position: int `[B]` (the tokens at `cache['index']`) -> (float32
    logits `[B, vocab_size]` for the next position, advanced cache)."""
    chex.assert_rank(tokens, 1)
    index = cache["index"]
    pos = jax.lax.dynamic_slice_in_dim(self.pos_embedding, index, 1, axis=0)
    x = self.embed(tokens[:, None]) + pos.astype(self.dtype)[None]
    blocks = []
    for block, block_cache in zip(self.blocks, cache["blocks"]):
      x, block_cache = block(x, None, cache["memory_mask"], cache=block_cache)
      blocks.append(block_cache)
    logits = self._logits(x)[:, 0]
    return logits, dict(blocks=blocks, memory_mask=cache["memory_mask"], index=index + 1)
