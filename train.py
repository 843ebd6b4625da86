r"""Train and evaluate a cmjax model.

  python train.py --workdir /tmp/cmjax-run            # the default experiment
  python train.py --config configs/shapes_contrastive.py:tiny --workdir /tmp/t
  python train.py --config configs/shapes_contrastive.py --config.batch_size=64 \
      --workdir /tmp/cmjax-run

Rerunning the same command in the same workdir resumes from the newest checkpoint.

Several processes (hosts, or one per GPU) run the same command, each told who
it is (see cmjax/distributed.py and the README's launch section):

  python train.py --config ... --workdir /shared/runs/x \
      --coordinator_address=10.0.0.1:1234 --num_processes=4 --process_id=$RANK
  python train.py --config ... --workdir /shared/runs/x --distributed  # TPU pod
"""

import errno
import os
import re
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from cmjax import bad_steps, checkpoint, config_utils, distributed, host_memory, trainer
from cmjax.data import decode

# What a full disk, a quota or a workdir that became read-only raise on a write.
_STORAGE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM)

_DEFAULT_CONFIG = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), "configs", "shapes_contrastive.py"
)


def _config_argument(argv) -> str:
  """The value of --config in `argv` (`--config=V` or `--config V`), else the default."""
  for i, arg in enumerate(argv[1:], 1):
    match = re.match(r"^--?config(=|$)", arg)
    if match and match.group(1):
      return arg.split("=", 1)[1]
    if match and i + 1 < len(argv):
      return argv[i + 1]
  return _DEFAULT_CONFIG


def _unknown_override_message(argv) -> str | None:
  """One line naming the first `--config.x.y` in `argv` the config lacks, else None."""
  try:
    config = config_utils.load_config(_config_argument(argv))
  except Exception:  # noqa: BLE001  # pylint: disable=broad-except
    # The config itself does not load: not ours to explain; the caller re-raises
    # the original error.
    return None
  for arg in argv[1:]:
    match = re.match(r"^--?(?:no)?config\.([^=]+)", arg)
    message = match and config_utils.unknown_override_message(config, match.group(1))
    if message:
      return message
  return None


def _stop_on_unknown_override(parse, argv):
  """Returns `parse(argv)`, but an unknown `--config.x.y` override stops with one line.

  ml_collections raises AttributeError (KeyError for some paths) from deep
  inside flag parsing, shown as a 50-line traceback; the user needs the key and
  its closest valid spellings. It raises at two moments: when the config flag is
  defined (no --config given: the default config is parsed then) and when
  app.run parses the flags. Any other error is re-raised.
  """
  try:
    return parse(argv)
  except (AttributeError, KeyError):
    message = _unknown_override_message(argv)
    if message is None:
      raise
    print(f"FATAL Flags parsing error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _parse_flags(argv):
  """app.run's flag parser: absl's own, with the one-line unknown-override error."""
  return _stop_on_unknown_override(app.parse_flags_with_usage, argv)


# Without --config on the command line, ml_collections parses the default config
# and its overrides right here, at definition: the first moment one can be unknown.
_stop_on_unknown_override(
  lambda _: config_flags.DEFINE_config_file(
    "config", _DEFAULT_CONFIG, "Experiment config file (configs/NAME.py[:args]).", lock_config=True
  ),
  sys.argv,
)

flags.DEFINE_string("workdir", None, "Where checkpoints, logs and metrics go.")
flags.mark_flag_as_required("workdir")
flags.DEFINE_string(
  "coordinator_address",
  None,
  "host:port of process 0, for multi-process training (else $CMJAX_COORDINATOR_ADDRESS).",
)
flags.DEFINE_integer("num_processes", None, "Number of processes (else $CMJAX_NUM_PROCESSES).")
flags.DEFINE_integer("process_id", None, "This process's index (else $CMJAX_PROCESS_ID).")
flags.DEFINE_bool(
  "keep_freed_host_memory",
  True,
  "Let malloc reuse freed memory for the next step's buffers instead of "
  "mapping fresh pages (cmjax/host_memory.py; a third of a CPU step).",
)
flags.DEFINE_bool(
  "distributed", False, "Let JAX detect the processes itself (Cloud TPU, SLURM, MPI)."
)
flags.DEFINE_float(
  "process_timeout_s",
  distributed.DEFAULT_PROCESS_TIMEOUT_S,
  "With several processes: stop, naming it, when another has shown no sign of life "
  "for this many seconds (instead of waiting in a collective).",
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    # Progress goes to stdout; library INFO chatter (checkpoint threads) is
    # kept for --verbosity=0.
    logging.set_verbosity(logging.WARNING)
  if flags.FLAGS.keep_freed_host_memory and not host_memory.keep_freed_memory():
    logging.warning(
      "keep_freed_host_memory: not glibc, or JAX already started; malloc left as it is."
    )
  distributed.initialize(
    flags.FLAGS.coordinator_address,
    flags.FLAGS.num_processes,
    flags.FLAGS.process_id,
    auto=flags.FLAGS.distributed,
    process_timeout_s=flags.FLAGS.process_timeout_s,
  )
  try:
    trainer.train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
  except jax.errors.JaxRuntimeError:
    # With several processes, a collective fails when a peer died: the watchdog
    # names it and stops this process within its timeout; else the error stands.
    distributed.wait_for_watchdog()
    raise
  except decode.DataError as e:
    # A bad example is the data's fault, not the code's: one line, no traceback.
    sys.exit(
      f"Bad data: {e}\nFix or remove it, or set --config.data.on_error=skip to leave such "
      "rows out (they are counted and named in the log and metrics.json)."
    )
  except checkpoint.CheckpointError as e:
    sys.exit(f"Cannot resume: {e}")
  except (bad_steps.BadStepsError, checkpoint.SaveError) as e:
    sys.exit(f"Stopped: {e}")
  except OSError as e:
    if e.errno not in _STORAGE_ERRORS:
      raise
    # A run file (metrics, TensorBoard, config) could not be written.
    sys.exit(
      f"Stopped: cannot write {e.filename or 'a run file'} ({e.strerror}). The checkpoints "
      f"already written are intact; free space and rerun the same command to resume."
    )


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
