"""The per-part speed benchmark (benchmarks/component_speed.py) runs every part.

Timing itself is not asserted (that is the benchmark's job); this checks that
each part of the model builds, compiles and runs forward + backward at a small
batch, so the diagnostic tool does not rot as the modules change.
"""

import pytest

from benchmarks import component_speed


def test_every_part_runs_at_the_default_experiments_size():
  rows = list(
    component_speed.time_parts(
      ["small"], component_speed.PARTS, torch=None, layers=1, repeats=1, calls=1, batch_size=4
    )
  )
  assert [r["part"] for r in rows] == list(component_speed.PARTS)
  for r in rows:
    assert r["cmjax_s"] > 0 and r["torch_s"] is None, r


def test_a_patch_stem_has_no_conv_stem_row():
  rows = list(
    component_speed.time_parts(["tiny"], ["conv_stem"], layers=1, repeats=1, calls=1, batch_size=4)
  )
  assert rows == []


def test_unknown_part_is_an_error():
  with pytest.raises(ValueError, match="unknown"):
    list(component_speed.time_parts(["small"], ["softmax"]))
