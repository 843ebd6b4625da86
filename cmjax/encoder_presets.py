"""Encoder presets shared by the configs: (full size, tiny size) per name.

`python train.py --config configs/shapes_contrastive.py:image=resnet_bn` and the
other configs' `image=`, `text=` and `audio=` arguments pick entries here, so
every config offers the same encoders at the same sizes.
"""

IMAGE_ENCODERS = {
  "vit": (
    dict(
      name="vit",
      patch_size=8,
      width=128,
      depth=3,
      num_heads=4,
      mlp_dim=256,
      pool="mean",
      stem="conv",
    ),
    dict(name="vit", patch_size=16, width=16, depth=1, num_heads=2, mlp_dim=32, pool="mean"),
  ),
  "resnet_gn": (
    dict(name="resnet", features=(32, 64, 128), blocks=(1, 1, 1), norm="group", num_groups=8),
    dict(name="resnet", features=(8, 16), blocks=(1, 1), norm="group", num_groups=4),
  ),
  "resnet_bn": (
    dict(name="resnet", features=(32, 64, 128), blocks=(1, 1, 1), norm="batch"),
    dict(name="resnet", features=(8, 16), blocks=(1, 1), norm="batch"),
  ),
}
TEXT_ENCODERS = {
  "transformer": (
    dict(name="transformer", width=128, depth=2, num_heads=4, mlp_dim=256),
    dict(name="transformer", width=16, depth=1, num_heads=2, mlp_dim=32),
  ),
  # No word order: the embedding is a function of the bag of words.
  "bow": (
    dict(name="transformer", width=128, depth=2, num_heads=4, mlp_dim=256, positions="none"),
    dict(name="transformer", width=16, depth=1, num_heads=2, mlp_dim=32, positions="none"),
  ),
  "lstm": (dict(name="rnn", cell="lstm", width=128), dict(name="rnn", cell="lstm", width=16)),
  "gru": (dict(name="rnn", cell="gru", width=128), dict(name="rnn", cell="gru", width=16)),
}
_FRONT_END = dict(n_fft=400, hop_length=320, n_mels=48)
_TINY_FRONT_END = dict(n_fft=400, hop_length=320, n_mels=16)
AUDIO_ENCODERS = {
  "transformer": (
    dict(name="transformer", **_FRONT_END, width=128, depth=2, num_heads=4, mlp_dim=256),
    dict(name="transformer", **_TINY_FRONT_END, width=16, depth=1, num_heads=2, mlp_dim=32),
  ),
  "cnn": (
    dict(name="cnn", **_FRONT_END, widths=(64, 128, 128), width=128),
    dict(name="cnn", **_TINY_FRONT_END, widths=(8, 16), width=16),
  ),
  "ast": (
    dict(
      name="ast",
      **_FRONT_END,
      patch_time=4,
      patch_freq=16,
      width=128,
      depth=2,
      num_heads=4,
      mlp_dim=256,
    ),
    dict(
      name="ast",
      **_TINY_FRONT_END,
      patch_time=4,
      patch_freq=8,
      width=16,
      depth=1,
      num_heads=2,
      mlp_dim=32,
    ),
  ),
}


def encoder_entry(choices: dict, variant: str, key: str, tiny: bool) -> dict:
  """The config entry of encoder `variant` (from the `key=` config argument)."""
  if variant not in choices:
    raise ValueError(f"config argument {key}={variant!r}; expected one of {sorted(choices)}")
  return dict(choices[variant][int(tiny)])


def image(variant: str, tiny: bool = False) -> dict:
  """`config.model.image` for the `image=` config argument."""
  return encoder_entry(IMAGE_ENCODERS, variant, "image", tiny)


def text(variant: str, tiny: bool = False) -> dict:
  """`config.model.text` for the `text=` config argument."""
  return encoder_entry(TEXT_ENCODERS, variant, "text", tiny)


def audio(variant: str, tiny: bool = False) -> dict:
  """`config.model.audio` for the `audio=` config argument."""
  return encoder_entry(AUDIO_ENCODERS, variant, "audio", tiny)
