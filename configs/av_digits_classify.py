r"""Audio-visual digit classification on `av_digits`: degraded handwriting + noisy speech.

  python train.py --config configs/av_digits_classify.py --workdir /tmp/cmjax-avd
  python train.py --config configs/av_digits_classify.py:fusion=gated --workdir /tmp/cmjax-avd-gmu
  python train.py --config configs/av_digits_classify.py:modalities=image --workdir /tmp/cmjax-avd-img

Both modalities are degraded (an occluded, noisy 32x32 digit; the digit's name
spoken at -16..-4 dB SNR by voices held out in test), so that each alone is
clearly below what fusion reaches.

Variants (after the colon, comma separated):
  fusion=NAME         a fusion method (cmjax.models.fusion.known_fusions())
  modalities=A+B      image+audio (default), image or audio (unimodal baselines)
  missing=S           missing-modality strategy: mask, learned, mean or predict
  balance=B           class imbalance remedy: none, weights (balanced class
                      weights in the loss) or resample (balanced resampling)
  augment=N           random image shifts of up to N pixels in training
  modality_dropout=P  training-time probability of dropping a modality
  class_skew=S        Zipf exponent of the train labels (0 = balanced)
  seed=N, tiny, steps=N, batch_size=N, workers=N
"""

import ml_collections

from cmjax import config_utils


def get_config(arg=None):
  arg = config_utils.parse_arg(
    arg,
    **config_utils.CLASSIFIER_ARGS,
    modalities="image+audio",
    modality_dropout=0.0,
    balance="none",
    augment=0,
    class_skew=0.0,
  )
  modalities = tuple(arg.modalities.split("+"))
  c = ml_collections.ConfigDict()
  c.seed = arg.seed
  c.data = dict(
    name="av_digits",
    num_train=10_000,
    image_size=32,
    image_noise=0.3,
    occlusion=0.25,
    speech=True,
    sample_rate=16_000,
    snr_db=(-16.0, -4.0),
    max_speech_seconds=1.5,
    class_skew=arg.class_skew,
    num_workers=0,
  )
  c.batch_size = 128
  c.total_steps = 400
  c.total_epochs = None
  c.total_examples = None

  c.model = dict(
    name="fusion_classifier",
    modalities=modalities,
    # Three stages: the last one sees the whole digit (with two, the
    # receptive field is half of it and training is several times slower).
    image=dict(
      name="resnet", features=(32, 64, 128), blocks=(1, 1, 1), stem_stride=2, norm="group"
    ),
    audio=dict(name="cnn", n_fft=400, hop_length=160, n_mels=40, widths=(32, 64, 64), width=64),
    fusion=config_utils.fusion_config(arg.fusion, tiny=arg.tiny),
    heads={"label": 10},
    modality_dropout=arg.modality_dropout,
    missing=arg.missing,
  )
  config_utils.set_classification_defaults(c, missing_fractions=(1.0,), noise_levels=(0.5,))

  if arg.tiny:
    config_utils.shrink_to_tiny(c)
    c.model.image = dict(name="resnet", features=(8,), blocks=(1,), num_groups=4)
    c.model.audio = dict(name="cnn", n_fft=400, hop_length=320, n_mels=16, widths=(8, 16), width=16)

  config_utils.apply_imbalance_options(c, arg)
  config_utils.apply_common_overrides(c, arg)
  return c
