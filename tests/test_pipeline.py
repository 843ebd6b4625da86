"""The grain training pipeline: batches, determinism, resume, and TFDS sources."""

import numpy as np

from cmjax.data import datasets, pipeline, records, shapes_tfds
from cmjax.data import spec as spec_lib
from tests import helpers


def _config(**data):
  c = helpers.load_config("shapes_contrastive.py", "tiny")
  c.data.num_train = 8
  c.data.update(data)
  c.batch_size = 4
  return c


def test_batches_have_the_documented_keys_shapes_and_dtypes():
  c = _config()
  batch = next(iter(pipeline.train_dataset(c)))
  t = records.max_audio_samples(c.data)
  assert batch["image"].shape == (4, 64, 64, 3) and batch["image"].dtype == np.uint8
  assert batch["text"].shape == (4, c.data.max_text_len) and batch["text"].dtype == np.int32
  assert batch["text_mask"].dtype == bool and batch["text_mask"][:, 0].all()
  assert batch["audio"].shape == (4, t) and batch["audio_mask"].shape == (4, t)
  assert batch["audio_mask"].any(axis=1).all()  # every example has speech
  spec = datasets.build(c.data).spec
  assert set(spec.labels) <= set(batch) and "shape_label" in batch
  spec_lib.check_batch(batch, spec.batch(4))  # exactly what the dataset declares


def test_resumed_iterator_continues_the_same_stream():
  c = _config()
  it = iter(pipeline.train_dataset(c))
  for _ in range(3):
    next(it)
  state = it.get_state()
  want = [next(it)["text"] for _ in range(3)]
  it2 = iter(pipeline.train_dataset(c))
  it2.set_state(state)
  got = [next(it2)["text"] for _ in range(3)]
  for a, b in zip(want, got):
    np.testing.assert_array_equal(a, b)


def test_global_batches_do_not_depend_on_the_number_of_processes():
  c = _config()
  one = iter(pipeline.train_dataset(c))
  two = [iter(pipeline.train_dataset(c, process_index=p, process_count=2)) for p in (0, 1)]
  for _ in range(3):  # batch 4 of 8 examples: crosses an epoch boundary
    whole = next(one)
    halves = [next(it) for it in two]
    assert halves[0]["image"].shape[0] == 2
    for key in ("image", "text", "audio"):
      np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), whole[key])


def test_tfds_source_feeds_the_same_pipeline(tmp_path):
  c = _config()
  opts = dict(
    num_examples=8,
    seed=c.seed,
    max_objects=c.data.max_objects,
    max_speech_seconds=c.data.max_speech_seconds,
  )
  builder = shapes_tfds.prepare_shapes_tfds(str(tmp_path), **opts)
  from_generator = next(iter(pipeline.train_dataset(c)))
  c.data.name = f"tfds:shapes/{builder.builder_config.name}"
  c.data.tfds_data_dir = str(tmp_path)
  from_tfds = next(iter(pipeline.train_dataset(c)))
  assert from_generator.keys() == from_tfds.keys()
  for k in from_generator:
    np.testing.assert_array_equal(from_generator[k], from_tfds[k], err_msg=k)
