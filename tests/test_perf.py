"""The MFU denominator: the peak matmul measurement and its choice of size."""

import math

from cmjax import perf


def test_peak_grows_the_matmul_until_one_takes_milliseconds(monkeypatch):
  calls = []

  def fake(n, min_repeats, min_seconds):
    calls.append((n, min_seconds))
    return n**3 * 1e-12  # a device at 2 TFLOP/s: 1024 takes 1 ms, 2048 8 ms

  monkeypatch.setattr(perf, "_fastest_matmul", fake)
  peak = perf.measure_peak_flops(n=1024, min_seconds=0.5, max_n=8192)
  assert [n for n, _ in calls] == [1024, 2048, 2048]
  assert calls[-1][1] == 0.5  # only the final size is timed for the whole window
  assert math.isclose(peak, 2e12)


def test_peak_stops_at_max_n(monkeypatch):
  monkeypatch.setattr(perf, "_fastest_matmul", lambda n, r, s: 1e-6)
  peak = perf.measure_peak_flops(n=256, max_n=1024)
  assert math.isclose(peak, 2 * 1024**3 / 1e-6)


def test_peak_of_this_machine_is_a_plausible_rate():
  peak = perf.measure_peak_flops(n=64, min_repeats=2, min_seconds=0.05, max_n=512)
  # Between a slow CPU core and any accelerator of today.
  assert 1e8 < peak < 1e16
