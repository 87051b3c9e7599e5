"""Values as QEMU's string-input visitor reads them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from machines.errors import PropertyError
from machines.values import (
    format_value,
    parse_bool,
    parse_size,
    parse_value,
    strtoll,
    strtoull,
)


@pytest.mark.parametrize(("text", "value"), [
    ("0x11", 17), ("17", 17), ("021", 17), ("0X11", 17), ("0", 0), (" 5", 5), ("+7", 7),
    ("-1", 2**64 - 1), ("18446744073709551615", 2**64 - 1),
])
def test_strtoull_base_zero_like_glibc(text: str, value: int) -> None:
    assert strtoull(text) == value


@pytest.mark.parametrize("text", ["08", "0x", "", "12abc", "0x1g", "1 ", "--1"])
def test_strtoull_rejects_partial_numbers(text: str) -> None:
    with pytest.raises(ValueError):
        strtoull(text)


def test_strtoull_overflow() -> None:
    with pytest.raises(OverflowError):
        strtoull("18446744073709551616")


def test_strtoll_range() -> None:
    assert strtoll("-0x10") == -16
    with pytest.raises(OverflowError):
        strtoll("9223372036854775808")


@pytest.mark.parametrize(("text", "value"), [
    ("on", True), ("yes", True), ("true", True), ("y", True),
    ("off", False), ("no", False), ("false", False), ("n", False),
])
def test_bool_words(text: str, value: bool) -> None:
    assert parse_value("bool", text, "p") is value


@pytest.mark.parametrize("text", ["ON", "True", "1", "0", "maybe", ""])
def test_bool_words_are_case_sensitive_and_exact(text: str) -> None:
    with pytest.raises(PropertyError, match=r"Parameter 'p' expects 'on' or 'off'"):
        parse_value("bool", text, "p")


def test_uint8_range_message_names_the_c_type() -> None:
    assert parse_value("uint8", "0xff", "version") == 255
    with pytest.raises(PropertyError, match=r"^Parameter 'version' expects uint8_t$"):
        parse_value("uint8", "300", "version")


def test_unparsable_unsigned_says_uint64_as_qemu_does() -> None:
    # QEMU fails in qemu_strtou64 before the width check: "expects uint64".
    with pytest.raises(PropertyError, match=r"^Parameter 'version' expects uint64$"):
        parse_value("uint8", "08", "version")


def test_signed_widths() -> None:
    assert parse_value("int32", "-2147483648", "x") == -(2**31)
    with pytest.raises(PropertyError, match="expects int32_t"):
        parse_value("int32", "2147483648", "x")


@pytest.mark.parametrize(("text", "value"), [
    ("1024", 1024), ("1k", 1024), ("1K", 1024), ("2M", 2 << 20), ("1.5G", 3 << 29),
    ("0x1000", 4096), ("1T", 1 << 40), ("0B", 0),
])
def test_sizes(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["1.5", "0x10k", "k", "-1", "1.x"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(PropertyError):
        parse_value("size", text, "s")


def test_enums_known_and_open() -> None:
    assert parse_value("OnOffAuto", "auto", "p") == "auto"
    assert parse_value("on|off|split", "split", "kernel-irqchip") == "split"
    with pytest.raises(PropertyError, match="does not accept value 'maybe'"):
        parse_value("on|off|split", "maybe", "kernel-irqchip")
    assert parse_value("SomeEnumWeDoNotKnow", "whatever", "p") == "whatever"


def test_strings_pass_through() -> None:
    assert parse_value("str", "a,b=c", "p") == "a,b=c"


def test_format_value() -> None:
    assert format_value(True) == "on"
    assert format_value(17) == "17"


# Each refusal of the public readers names the text it refused (the one it was given, not a
# part of it), whichever step refused it: one row per place that raises.
REFUSED = [
    (strtoull, "x"), (strtoull, "08 "), (strtoull, "18446744073709551616"),
    (strtoll, "x"), (strtoll, "9223372036854775808"),
    (parse_bool, "maybe"),
    (parse_size, "-1"),       # ERANGE, nothing left over
    (parse_size, "-1x"),      # ERANGE with something left over: EINVAL
    (parse_size, "0x1."),     # hex with a fraction
    (parse_size, "x.5"),      # the fraction does not parse
    (parse_size, "abc"),      # no number
    (parse_size, "1.5"),      # a fraction with no scale
    (parse_size, "1kx"),      # left over after the suffix
    (parse_size, "16E"),      # out of range after scaling
]


@pytest.mark.parametrize(("reader", "text"), REFUSED,
                         ids=[f"{r.__name__}({t!r})" for r, t in REFUSED])
def test_a_refusal_names_the_text(reader: Callable[[str], object], text: str) -> None:
    with pytest.raises((ValueError, OverflowError)) as err:
        reader(text)
    assert str(err.value) in (text, f"not a number: {text!r}")
