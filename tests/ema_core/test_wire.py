"""ema_core.wire: the one NaN/±Infinity encoder and parser of client and server."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ema_core.wire import NON_FINITE, decode_float, encode_float, encode_json, points_json


def test_encode_float_writes_the_three_strings_and_passes_finite_numbers() -> None:
    assert [encode_float(v) for v in (math.nan, math.inf, -math.inf)] == [
        "NaN", "Infinity", "-Infinity"]
    assert [encode_float(v) for v in (0.0, -1.5, 3)] == [0.0, -1.5, 3]
    assert list(NON_FINITE) == ["NaN", "Infinity", "-Infinity"]


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_decode_inverts_encode_through_json(value: float) -> None:
    back = decode_float(json.loads(json.dumps(encode_float(value), allow_nan=False)))
    assert math.isnan(back) if math.isnan(value) else back == value


def test_encode_json_reaches_every_depth_and_keeps_the_rest() -> None:
    value = {"a": [1, math.nan, {"b": (math.inf, "x")}], "c": None, "d": True, "e": -math.inf}
    encoded = encode_json(value)
    assert encoded == {"a": [1, "NaN", {"b": ["Infinity", "x"]}], "c": None, "d": True,
                       "e": "-Infinity"}
    json.dumps(encoded, allow_nan=False)  # JSON holds it now


def test_points_json_matches_json_dumps_of_wire_form() -> None:
    pts = [
        ('a"b\\', 1, math.nan, 1.5),
        ("é", 2, math.inf, 2.0),
        ("c", 3, -math.inf, 0.0),
        ("d", 4, 0.1, 1e20),
        ("e", 5, -0.0, 3.0),
        ("d", 6, 7, 4.0),
    ]
    assert json.loads("[" + points_json(pts) + "]") == [
        {"key": 'a"b\\', "step": 1, "value": "NaN", "wall_time": 1.5},
        {"key": "é", "step": 2, "value": "Infinity", "wall_time": 2.0},
        {"key": "c", "step": 3, "value": "-Infinity", "wall_time": 0.0},
        {"key": "d", "step": 4, "value": 0.1, "wall_time": 1e20},
        {"key": "e", "step": 5, "value": -0.0, "wall_time": 3.0},
        {"key": "d", "step": 6, "value": 7, "wall_time": 4.0},
    ]
    assert points_json([]) == ""


@pytest.mark.parametrize("module", ["ema_core.wire", "ema_core.metric_keys"])
def test_shared_modules_import_without_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "False"


def test_check_creation_id_accepts_a_uuid4_hex_and_names_a_bad_value() -> None:
    import uuid

    from ema_core.wire import check_creation_id

    creation_id = uuid.uuid4().hex
    assert check_creation_id(creation_id) == creation_id
    dashed = str(uuid.uuid4())
    assert check_creation_id(dashed) == dashed
    with pytest.raises(ValueError) as info:
        check_creation_id("a/b")
    assert str(info.value) == ("Invalid creation_id 'a/b': expected 1 to 64 ASCII letters, "
                               "digits, '-' or '_', e.g. uuid.uuid4().hex")
