"""Command-line value parsers: tables of good strings with their values, and bad strings."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.options import CostOptions
from ttplan.costmodel.specs import (ComputeBudget, UpdateSpec, parse_bytes, parse_compute,
                                    parse_input_shape, parse_update)


def _rejects(parser, text):
    with pytest.raises(SpecError) as info:
        parser(text)
    message = str(info.value)
    assert "\n" not in message
    assert repr(text) in message  # names the bad value
    assert "expected" in message  # and the expected form


@pytest.mark.parametrize("text, value", [
    ("1,3,96,96", (1, 3, 96, 96)),
    ("1x3x96x96", (1, 3, 96, 96)),
    ("1X3X128X128", (1, 3, 128, 128)),
    (" 2, 3, 32, 48 ", (2, 3, 32, 48)),
    ("8,10", (8, 10)),
])
def test_input_shape_good(text, value):
    assert parse_input_shape(text) == value


@pytest.mark.parametrize("text", ["", "96", "1,3,0,96", "1,-3,96,96", "1,3,96.0,96",
                                  "1,,3", "1,3x96,96", "a,b", "1;3;96;96", "1,3,96,"])
def test_input_shape_bad(text):
    _rejects(parse_input_shape, text)


@pytest.mark.parametrize("text, value", [
    ("none", UpdateSpec("none")),
    ("all", UpdateSpec("all")),
    ("ALL", UpdateSpec("all")),
    ("bias-only", UpdateSpec("bias-only")),
    ("last-layers:3", UpdateSpec("last-layers", k=3)),
    ("last-blocks:12", UpdateSpec("last-blocks", k=12)),
    ("last-blocks: 2", UpdateSpec("last-blocks", k=2)),
    ("policy.json", UpdateSpec("policy", path="policy.json")),
    ("runs/My Policy.JSON", UpdateSpec("policy", path="runs/My Policy.JSON")),
])
def test_update_good(text, value):
    assert parse_update(text) == value


@pytest.mark.parametrize("text", ["", "some", "bias", "last-layers", "last-layers:0",
                                  "last-layers:-1", "last-blocks:1.5", "last-blocks:x",
                                  "first-layers:2", ".json", "policy.yaml"])
def test_update_bad(text):
    _rejects(parse_update, text)
    with pytest.raises(SpecError, match="last-blocks:K"):
        parse_update(text)


@pytest.mark.parametrize("text, value", [
    ("4096", 4096),
    ("1", 1),
    ("1MB", 1_000_000),
    ("1mb", 1_000_000),
    ("256kB", 256_000),
    ("256KB", 256_000),
    ("256 kb", 256_000),
    ("1.5MB", 1_500_000),
    ("1.1MB", 1_100_000),
    ("4.35kB", 4350),
    ("2GB", 2_000_000_000),
    ("1KiB", 1024),
    ("1.5 KiB", 1536),
    ("1MiB", 1_048_576),
    ("1gib", 1_073_741_824),
    ("100B", 100),
    ("1.9", 1),
    ("0.0015kB", 1),
])
def test_bytes_good(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "MB", "-1MB", "0", "0kB", "0.0001kB", "nan", "inf",
                                  "1e6", "1TB", "1 mega", "1.2.3MB", "1,000", "1 M B"])
def test_bytes_bad(text):
    _rejects(parse_bytes, text)


@pytest.mark.parametrize("text, value", [
    ("15%", ComputeBudget(fraction=0.15)),
    ("100%", ComputeBudget(fraction=1.0)),
    ("0.5 %", ComputeBudget(fraction=0.005)),
    ("6.5M", ComputeBudget(macs=6_500_000)),
    ("6500000", ComputeBudget(macs=6_500_000)),
    ("1.2G", ComputeBudget(macs=1_200_000_000)),
    ("500k", ComputeBudget(macs=500_000)),
    ("500K", ComputeBudget(macs=500_000)),
    ("6.5M MACs", ComputeBudget(macs=6_500_000)),
    ("6.5Mmacs", ComputeBudget(macs=6_500_000)),
    ("1000 MACs", ComputeBudget(macs=1000)),
])
def test_compute_good(text, value):
    assert parse_compute(text) == value


@pytest.mark.parametrize("text", ["", "0%", "101%", "-5%", "%", "0", "0M", "-1M", "5T",
                                  "nan", "abc", "15%%", "1e6"])
def test_compute_bad(text):
    _rejects(parse_compute, text)


def test_compute_resolve():
    assert parse_compute("6.5M").resolve(10**9) == 6_500_000
    assert parse_compute("15%").resolve(1000) == 150
    # 0.29 * 100 is 28.999... in floating point; the budget must still be 29 MACs.
    assert parse_compute("29%").resolve(100) == 29
    assert parse_compute("33.3%").resolve(1000) == 333
    assert parse_compute("100%").resolve(123_456_789) == 123_456_789
    with pytest.raises(ValueError):
        ComputeBudget()
    with pytest.raises(ValueError):
        ComputeBudget(macs=1, fraction=0.5)


@given(st.integers(min_value=1, max_value=1000), st.integers(min_value=0, max_value=10**12))
def test_percent_resolve_matches_integer_arithmetic(tenths_of_percent, full_macs):
    # Percentages with one decimal, 0.1 % .. 100.0 %, against exact integer arithmetic.
    text = f"{tenths_of_percent // 10}.{tenths_of_percent % 10}%"
    assert parse_compute(text).resolve(full_macs) == full_macs * tenths_of_percent // 1000


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 16, 32])
def test_bits_good(bits):
    assert CostOptions(weight_bits=str(bits)).weight_bits == bits
    assert CostOptions(activation_bits=f" {bits} ").activation_bits == bits
    assert CostOptions(gradient_bits=bits).gradient_bits == bits


@pytest.mark.parametrize("value", ["", "0", "3", "64", "8.0", "-8", "int8", "eight", "٨", -8,
                                   8.0, True, None])
def test_bits_bad(value):
    with pytest.raises(SpecError) as err:
        CostOptions(weight_bits=value)
    assert "\n" not in str(err.value) and "bit-width" in str(err.value)
