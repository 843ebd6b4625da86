"""Layout rules the code keeps: short functions, a short training loop."""

import ast
import pathlib

CMJAX = pathlib.Path(__file__).resolve().parent.parent / "cmjax"


def test_no_function_in_cmjax_is_over_80_lines():
  long = []
  for path in sorted(CMJAX.rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        lines = node.end_lineno - node.lineno + 1
        if lines > 80:
          long.append(f"{path.relative_to(CMJAX.parent)}:{node.lineno} {node.name} ({lines} lines)")
  assert not long, "split these functions:\n" + "\n".join(long)


def test_the_training_loop_file_is_under_300_lines():
  assert len((CMJAX / "trainer.py").read_text().splitlines()) < 300
