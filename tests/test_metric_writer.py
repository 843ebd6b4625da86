"""MetricWriter's history on resume, the eval console summary, and JSON files."""

import io
import json
import os

from cmjax import metric_writer


def _steps(workdir) -> list[int]:
  with open(os.path.join(workdir, "metrics_history.jsonl")) as f:
    return [json.loads(line)["step"] for line in f]


def _write_steps(workdir, steps, **kwargs):
  writer = metric_writer.MetricWriter(str(workdir), stream=io.StringIO(), **kwargs)
  for s in steps:
    writer.write(s, {"train/loss": 1.0 / s}, echo=False)
  writer.close()


def test_resume_drops_rows_after_the_checkpoint_step(tmp_path):
  _write_steps(tmp_path, range(1, 11))  # killed at step 10, last checkpoint at 4
  _write_steps(tmp_path, range(5, 8), resume_step=4)
  assert _steps(tmp_path) == [1, 2, 3, 4, 5, 6, 7]
  assert not os.path.exists(tmp_path / "metrics_history.jsonl.tmp")


def test_no_resume_step_keeps_the_history(tmp_path):
  _write_steps(tmp_path, [1, 2, 3])
  _write_steps(tmp_path, [4])
  assert _steps(tmp_path) == [1, 2, 3, 4]


def test_resume_drops_a_half_written_last_row(tmp_path):
  _write_steps(tmp_path, [1, 2, 3])
  with open(tmp_path / "metrics_history.jsonl", "a") as f:
    f.write('{"step": 4, "train/lo')  # the process died mid-write
  _write_steps(tmp_path, [3], resume_step=2)
  assert _steps(tmp_path) == [1, 2, 3]


def test_resume_in_a_fresh_workdir_creates_no_file(tmp_path):
  assert metric_writer.drop_history_after(str(tmp_path / "none.jsonl"), 3) == 0
  assert not os.path.exists(tmp_path / "none.jsonl")


def _eval_scalars() -> dict:
  """What the retrieval, zero-shot and classification evaluators write (42 keys)."""
  s = {}
  for a, b in (("image", "text"), ("image", "speech"), ("text", "speech")):
    for q, c in ((a, b), (b, a)):
      for name in ("R@1", "R@5", "R@10", "median_rank", "mean_rank"):
        s[f"retrieval/{q}_to_{c}/{name}"] = 0.25
    s[f"retrieval/{a}_{b}/rsum"] = 1.5
  s["retrieval/seconds"] = 3.0
  for m in ("image", "speech"):
    s[f"zeroshot/{m}_accuracy"] = 0.875
    s[f"zeroshot/{m}_macro_f1"] = 0.75
  s["zeroshot/seconds"] = 1.0
  s["classification/label/accuracy"] = 0.625
  s["classification/label/macro_f1"] = 0.5
  s["classification/label/noise_image_0.5/accuracy"] = 0.125
  s["classification/seconds"] = 0.5
  return s


def test_format_eval_line_groups_and_counts_the_rest():
  scalars = _eval_scalars()
  text = metric_writer.format_eval_line(400, scalars, max_items=8, width=10_000)
  assert "\n" not in text
  assert text.startswith("[step 400] retrieval: ")
  assert f"(+{len(scalars) - 8} more in metrics_history.jsonl)" in text
  assert text.count("=") == 8
  # Every group's headline metric, under its group's name.
  groups = dict(part.split(": ", 1) for part in text[len("[step 400] ") :].split(" | "))
  assert list(groups) == ["retrieval", "zeroshot", "classification"]
  assert "image_text/rsum=1.5000" in groups["retrieval"].split()
  assert "image_accuracy=0.8750" in groups["zeroshot"].split()
  assert "label/accuracy=0.6250" in groups["classification"].split()
  # Headline metrics before variants and timings.
  assert "noise_image" not in text and "seconds" not in text and "median_rank" not in text


def test_format_eval_line_wraps_per_group_when_long():
  text = metric_writer.format_eval_line(7, _eval_scalars(), width=80, prefix="eval ")
  lines = text.splitlines()
  assert lines[0] == "eval [step 7]"
  assert [line.split(":")[0].strip() for line in lines[1:]] == [
    "retrieval",
    "zeroshot",
    "classification",
  ]
  assert lines[-1].endswith("more in metrics_history.jsonl)")


def test_format_eval_line_shows_all_when_few_and_is_deterministic():
  scalars = {"zeroshot/image_accuracy": 0.5, "zeroshot/image_macro_f1": 0.25}
  text = metric_writer.format_eval_line(3, scalars)
  assert text == "[step 3] zeroshot: image_accuracy=0.5000 image_macro_f1=0.2500"
  assert metric_writer.format_eval_line(3, dict(scalars)) == text


def test_write_summarises_eval_lines_and_keeps_train_lines(tmp_path):
  stream = io.StringIO()
  writer = metric_writer.MetricWriter(str(tmp_path), stream=stream)
  writer.write(2, {"train/loss": 0.5, "train/lr": 0.001}, prefix="")
  writer.write(6, _eval_scalars(), prefix="eval ")
  writer.close()
  out = stream.getvalue()
  assert out.startswith("[step 2] train/loss=0.5000  train/lr=0.0010\n")
  assert "more in metrics_history.jsonl)" in out
  assert "eval [step 6]" in out
  with open(tmp_path / "metrics_history.jsonl") as f:
    rows = [json.loads(line) for line in f]
  assert len(rows[1]) == len(_eval_scalars()) + 1  # every metric is in the file


def test_read_json_round_trip_missing_and_corrupt(tmp_path):
  path = str(tmp_path / "metrics.json")
  assert metric_writer.read_json(path) is None
  metric_writer.write_json(path, {"step": 3, "a/b": 0.5})
  assert metric_writer.read_json(path) == {"step": 3, "a/b": 0.5}
  assert not os.path.exists(path + ".tmp")
  with open(path, "w") as f:
    f.write('{"step": 3, ')
  assert metric_writer.read_json(path) is None
  with open(path, "w") as f:
    f.write("[1, 2]")
  assert metric_writer.read_json(path) is None


def test_images_go_to_png_files_and_tensorboard(tmp_path):
  import numpy as np
  from PIL import Image
  from tensorboard.backend.event_processing import event_accumulator

  writer = metric_writer.MetricWriter(str(tmp_path), stream=io.StringIO())
  image = np.zeros((4, 6, 3), np.uint8)
  image[1, 2] = (255, 10, 20)
  writer.write_images(7, {"recon/grid": image})
  writer.close()
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "recon_grid.png")), image)
  events = event_accumulator.EventAccumulator(
    str(tmp_path / "tensorboard"), size_guidance={"images": 0}
  )
  events.Reload()
  (stored,) = events.Images("recon/grid")
  assert stored.step == 7 and (stored.width, stored.height) == (6, 4)
