"""DDP and torch.compile wrappers in one place: the key parts they add, the modules they wrap."""

from __future__ import annotations

import pytest
from torch import nn

from ema_core._keys import strip_state_dict_keys, strip_wrapper_prefixes, unwrap_model
from ema_core.exceptions import ModelMismatchError


def test_wrapper_parts_are_stripped_wherever_compile_put_them() -> None:
    assert strip_wrapper_prefixes("module._orig_mod.encoder.0.weight") == "encoder.0.weight"
    assert strip_wrapper_prefixes("encoder._orig_mod.0.weight") == "encoder.0.weight"
    assert strip_wrapper_prefixes("module") == "module"  # a top-level tensor keeps its name


def test_two_keys_that_strip_to_one_name_the_remedy_given() -> None:
    assert strip_state_dict_keys({"module.a": 1, "b": 2}, "unused") == {"a": 1, "b": 2}
    with pytest.raises(ModelMismatchError, match=r"Model keys 'module\.x' and 'x' are both 'x' "
                       r"once wrapper prefixes are stripped: do this"):
        strip_state_dict_keys({"module.x": 1, "x": 2}, "do this")


def test_nested_data_parallel_wrappers_are_unwrapped() -> None:
    model = nn.Linear(2, 2)
    assert unwrap_model(nn.DataParallel(nn.DataParallel(model))) is model
    assert unwrap_model(model) is model
