"""The dashboard's pure ES modules, run by Node.js without a browser or a server.

``call(module, expression, arg)`` imports ``frontend/js/<module>`` as ``m`` and returns
``expression`` (which may use ``arg``), evaluated by one Node process that lives for the
test session (each call costs about a millisecond). Values cross as JSON lines, with NaN,
±Infinity and -0 kept on both sides (JSON alone would turn them into null or 0).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

FRONTEND_DIR = Path(__file__).resolve().parents[2] / "frontend"

# One request per stdin line: {"module", "expression", "arg"}; one answer per stdout line:
# {"value"} or {"error"}. Non-finite numbers and -0 travel as {"$number": "NaN"|"-0"|...}.
_SCRIPT = r"""
import { createInterface } from "node:readline";
const revive = (k, v) => (v && typeof v === "object" && "$number" in v ? Number(v.$number) : v);
const keep = (k, v) => (typeof v === "number" && (!Number.isFinite(v) || Object.is(v, -0))
  ? { $number: Object.is(v, -0) ? "-0" : String(v) } : v);
const AsyncFunction = (async () => {}).constructor;
for await (const line of createInterface({ input: process.stdin })) {
  let answer;
  try {
    const { module, expression, arg } = JSON.parse(line, revive);
    const m = await import(module);
    const value = await new AsyncFunction("m", "arg", `return (${expression});`)(m, arg);
    answer = { value: value === undefined ? null : value };
  } catch (error) {
    answer = { error: String(error && error.stack || error) };
  }
  process.stdout.write(JSON.stringify(answer, keep) + "\n");
}
"""


def _encode(value: Any) -> Any:
    """``value`` for JSON.parse with ``revive``: NaN, ±inf and -0.0 tagged."""
    if isinstance(value, float):
        if math.isnan(value):
            return {"$number": "NaN"}
        if math.isinf(value):
            return {"$number": "Infinity" if value > 0 else "-Infinity"}
        if value == 0 and math.copysign(1.0, value) < 0:
            return {"$number": "-0"}
        return value
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(item) for item in value]
    return value


def _decode(value: dict[str, Any]) -> Any:
    """The inverse of ``keep`` in the script: tagged numbers back to floats."""
    return float(value["$number"].replace("Infinity", "inf")) if "$number" in value else value


class NodeRunner:
    """One ``node`` process evaluating requests from :func:`call`, one at a time."""

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.fail("Node.js runs the dashboard's module tests: apt-get install nodejs")
        self.proc = subprocess.Popen(
            [node, "--input-type=module", "-e", _SCRIPT], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, encoding="utf-8",
        )

    def call(self, module: str, expression: str, arg: object) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        request = {"module": (FRONTEND_DIR / "js" / module).as_uri(), "expression": expression,
                   "arg": _encode(arg)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"node exited with {self.proc.wait()}"
        answer = json.loads(line, object_hook=_decode)
        assert "error" not in answer, answer["error"]
        return answer["value"]

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(10)
        self.proc.stdout.close()


_runner: NodeRunner | None = None


def call(module: str, expression: str, arg: object = None) -> Any:
    """``expression`` evaluated by Node with ``m`` = ``frontend/js/<module>`` and ``arg``.

    Raises:
        AssertionError: The expression threw (the message is its stack).
    """
    global _runner
    if _runner is None:
        _runner = NodeRunner()
    return _runner.call(module, expression, arg)


def close() -> None:
    """Stop the Node process (at the end of the session)."""
    global _runner
    if _runner is not None:
        _runner.close()
        _runner = None
