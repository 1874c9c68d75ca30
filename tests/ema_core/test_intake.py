"""The Monitor's intake alone: steps, keys, values and the sender's wake-up, no thread."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import pytest

from ema_core._intake import Intake, check_step


def test_check_step_takes_any_integer_below_2_63() -> None:
    assert check_step(np.int64(7)) == 7
    assert check_step(2**63 - 1) == 2**63 - 1
    with pytest.raises(ValueError, match=r"Invalid step 9223372036854775808: expected an int"):
        check_step(2**63)
    with pytest.raises(ValueError, match=r"Invalid step '3': expected an int >= 0"):
        check_step("3")


def test_train_names_get_their_prefix_once_and_plain_names_keep_theirs() -> None:
    inbox: deque[Any] = deque()
    intake = Intake(inbox)
    intake.put(3, {"loss": 1, "val/acc": 0.5}, 10.0, train=True)
    intake.put(4, {"lr": np.float32(0.25)}, 11.0, train=False)
    assert list(inbox) == [("train/loss", 3, 1.0, 10.0), ("val/acc", 3, 0.5, 10.0),
                           ("lr", 4, 0.25, 11.0)]
    with pytest.raises(TypeError, match=r"Invalid value 'x' for 'train/loss': expected a real"):
        intake.put(5, {"loss": "x"}, 12.0, train=True)
    with pytest.raises(ValueError, match=r"Invalid metric name 7: expected a non-empty string"):
        intake.put(5, {7: 1.0}, 12.0, train=False)


def test_the_sender_is_woken_once_the_inbox_holds_a_batch() -> None:
    woken: list[int] = []
    inbox: deque[Any] = deque()
    intake = Intake(inbox, lambda: woken.append(len(inbox)), nudge_at=3)
    intake.put(0, {"a": 1, "b": 2}, 0.0, train=False)
    intake.nudge_when_full()
    assert woken == []
    intake.put(1, {"a": 1}, 0.0, train=False)
    intake.nudge_when_full()
    assert woken == [3]


def test_an_inactive_intake_drops_points_and_wakes_nobody() -> None:
    intake = Intake(deque(maxlen=0))
    intake.put(0, {"a": 1.0}, 0.0, train=True)
    intake.nudge_when_full()
    assert len(intake.inbox) == 0
