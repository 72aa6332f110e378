"""Big-model loading options stay optional: device_map needs accelerate, 8/4-bit needs bitsandbytes; a
clear message names the missing package (neither is installed here)."""

from __future__ import annotations

import importlib.util

import pytest

from pidcore.extract.adapters import _placement


@pytest.mark.skipif(importlib.util.find_spec("accelerate") is not None, reason="accelerate is installed")
def test_device_map_without_accelerate_says_so():
    with pytest.raises(ValueError, match="device_map needs the accelerate package"):
        _placement("auto", None)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed")
def test_quantization_without_bitsandbytes_says_so():
    with pytest.raises(ValueError, match="4bit quantization needs the bitsandbytes package"):
        _placement(None, "4bit")


def test_unknown_quantization_and_defaults():
    with pytest.raises(ValueError, match="quantization must be one of 8bit, 4bit"):
        _placement(None, "3bit")
    assert _placement(None, None) == {}
