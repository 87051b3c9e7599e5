"""values.py against its oracles: glibc's strtoull/strtoll, and QEMU's own qemu_strtosz.

The size rows are QEMU 10.0.2's answers (``-global mch.x-max-bounce-buffer-size=TEXT``
read back with qom-get; a value above the property's 32-bit maximum is read from QEMU's
"doesn't take value N" refusal): the fast test holds the model to them, the ``qemu`` test
asks the installed QEMU again, so a row cannot drift from QEMU unnoticed.  The integer
scanner is compared with the C library itself (ctypes), base by base.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import json
import re
import subprocess
from typing import Any

import pytest

from machines.errors import PropertyError
from machines.values import parse_value, strtoll, strtoull

# text -> the size QEMU reads, or the error it gives: ERANGE ("Value '...' is out of range
# for parameter ...") or EINVAL ("Parameter ... expects a non-negative number below 2^64").
SIZE_ROWS: list[tuple[str, int | str]] = [
    ('1024', 1024),
    ('1k', 1024),
    ('1K', 1024),
    ('2M', 2097152),
    ('1.5G', 1610612736),
    ('0x1000', 4096),
    ('1T', 1099511627776),
    ('0B', 0),
    ('1P', 1125899906842624),
    ('1E', 1152921504606846976),
    ('15E', 17293822569102704640),
    ('16E', 'ERANGE'),
    ('0.5K', 512),
    ('1.5k', 1536),
    ('1.1k', 1126),
    ('1.9k', 1946),
    ('0.0001k', 0),
    ('1.5', 'EINVAL'),
    ('0x10k', 'EINVAL'),
    ('k', 'EINVAL'),
    ('-1', 'ERANGE'),
    ('1.x', 'EINVAL'),
    ('1.', 1),
    ('1.k', 1024),
    ('.5k', 512),
    ('18446744073709551615', 18446744073709551615),
    ('18446744073709551616', 'ERANGE'),
    ('0x', 'EINVAL'),
    ('0xffffffffffffffff', 18446744073709551615),
    ('0x10000000000000000', 'ERANGE'),
    ('1b', 1),
    ('1 k', 'EINVAL'),
    (' 1k', 1024),
    ('1kB', 'EINVAL'),
    ('1.5e', 1729382256910270464),
    ('010', 10),
    ('1e3', 'EINVAL'),
    ('0X10', 16),
    ('1.0000000001k', 1024),
    ('17179869183.9999999999G', 'ERANGE'),
    ('0.9999999999999999999B', 1),
    ('1.5B', 'EINVAL'),
    ('2.5B', 'EINVAL'),
    ('3.5k', 3584),
    ('0x1b', 27),
    ('0xk', 'EINVAL'),
    ('1.\uff15k', 'EINVAL'),  # a fullwidth 5
    ('\u0661k', 'EINVAL'),  # an Arabic-Indic 1
    ('-1x', 'EINVAL'),
    ('-.5k', 'EINVAL'),
    ('.', 'EINVAL'),
    ('1..k', 'EINVAL'),
    ('', 'EINVAL'),
    (' ', 'EINVAL'),
    ('+1k', 1024),
    ('+.5k', 512),
    ('0x1.5', 'EINVAL'),
    ('1.5.k', 'EINVAL'),
    ('15.9999999999E', 18446744073594259456),
    ('0.5', 'EINVAL'),
    ('00x10', 'EINVAL'),
    ('1.5e3', 'EINVAL'),
    ('1.00000000000000000000000001k', 1024),
    ('0.000000000000000000001k', 0),
    ('16383.99999999999P', 18446744073709540357),
    ('0x0', 0),
    ('kk', 'EINVAL'),
    ('1kk', 'EINVAL'),
    ('0.1b', 'EINVAL'),
    ('12.', 12),
    ('٣', 'EINVAL'),
    ('1.٣k', 'EINVAL'),
    ('9', 9),
    ('2E', 2305843009213693952),
    ('0xffffffffffffffffk', 'EINVAL'),
    ('18446744073709551616k', 'EINVAL'),
    ('-0', 'ERANGE'),
    ('-0.0k', 'EINVAL'),
    ('-.5', 'ERANGE'),
    ('-.0', 'ERANGE'),
    ('.0', 0),
    ('1.0', 1),
    ('0x1.', 'EINVAL'),
    ('0x1k', 'EINVAL'),
    ('18446744073709551615.5k', 'ERANGE'),
    ('0.00000000000000000001B', 'EINVAL'),  # below 2^-64, above underflow: still a fraction
    ('0.00000000000000000001k', 0),
    ('0.00000000000000000001', 'EINVAL'),
    ('0.' + '0' * 334 + '1B', 'EINVAL'),  # strtod underflows
    ('0.' + '0' * 334 + '1k', 0),  # strtod underflows
    ('15.99999999999999999E', 'ERANGE'),
    ('16383.999999999999999P', 18446744073709551615),
    ('1.5e', 1729382256910270464),
    ('2.5E', 2882303761517117440),
    ('0.5e1', 'EINVAL'),
    ('1.e', 1152921504606846976),
    ('1.E', 1152921504606846976),
    ('0x', 'EINVAL'),
    ('0xfffffffffffffffe', 18446744073709551614),
    (' -1', 'ERANGE'),
    ('\\t1', 'EINVAL'),
    ('1.5K ', 'EINVAL'),
    ('3.9999999999999999999999B', 4),
    ('17592186044415.99999999T', 'ERANGE'),
]


def _model(text: str) -> int | str:
    try:
        value = parse_value("size", text, "x-max-bounce-buffer-size")
    except PropertyError as err:
        return "ERANGE" if "out of range" in str(err) else "EINVAL"
    assert isinstance(value, int)
    return value


@pytest.mark.parametrize(("text", "expected"), SIZE_ROWS)
def test_size_rows(text: str, expected: int | str) -> None:
    assert _model(text) == expected


def _qemu_size(binary: str, text: str) -> int | str:
    qmp = ('{"execute":"qmp_capabilities"}\n{"execute":"qom-get","arguments":{"path":'
           '"/machine/q35/mch","property":"x-max-bounce-buffer-size"}}\n{"execute":"quit"}\n')
    done = subprocess.run([binary, "-M", "pc-q35-10.0", "-accel", "tcg", "-S", "-nodefaults",
                           "-display", "none", "-global", f"mch.x-max-bounce-buffer-size={text}",
                           "-qmp", "stdio"], input=qmp, capture_output=True, text=True,
                          timeout=120, check=False)
    replies = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    values = [r["return"] for r in replies if "return" in r and r["return"] != {}]
    if values:
        return int(values[0])
    said = done.stderr.strip().splitlines()[0]
    bigger = re.search(r"doesn't take value (\d+)", said)
    if bigger:
        return int(bigger.group(1))
    if "out of range" in said:
        return "ERANGE"
    assert "expects a non-negative number below 2^64" in said, said
    return "EINVAL"


@pytest.mark.qemu
def test_size_rows_are_qemus_answers(qemu_binary: str) -> None:
    wrong = [(text, expected, got) for text, expected in SIZE_ROWS
             if (got := _qemu_size(qemu_binary, text)) != expected]
    assert not wrong


# -- the integer scanner against glibc -----------------------------------------------------

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.strtoull.restype = ctypes.c_ulonglong
_LIBC.strtoull.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]
_LIBC.strtoll.restype = ctypes.c_longlong
_LIBC.strtoll.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]


def _libc(function: Any, text: str, base: int) -> int | str:
    """The whole string as qemu_strtou64/qemu_strtoi64 take it: value, EINVAL or ERANGE."""
    raw = text.encode()
    buffer = ctypes.create_string_buffer(raw)
    end = ctypes.c_char_p()
    ctypes.set_errno(0)
    value = function(ctypes.cast(buffer, ctypes.c_char_p), ctypes.byref(end), base)
    fault = ctypes.get_errno()
    used = ctypes.cast(end, ctypes.c_void_p).value - ctypes.addressof(buffer)  # type: ignore[operator]
    if used == 0 or used != len(raw):
        return "EINVAL"
    if fault == errno.ERANGE:
        return "ERANGE"
    return int(value)


def _ours(function: Any, text: str, base: int) -> int | str:
    try:
        return int(function(text, base))
    except OverflowError:
        return "ERANGE"
    except ValueError:
        return "EINVAL"


LEADS = ["", " ", "  ", "\t \n", "+", "-", " -", "--", "+-", "X", "x"]
BODIES = ["0", "7", "08", "017", "19", "1a", "1A", "fF", "z", "Z", "0x", "0X1f", "0x1g", "0xG",
          "0x 1", "0b1", "1 ", "\u0661", "0x\u0661", "9223372036854775807", "9223372036854775808",
          "18446744073709551615", "18446744073709551616", "0xffffffffffffffff",
          "0x10000000000000000", "0777777777777777777777", "01777777777777777777777",
          "2000000000000000000000", "zzzzzzzzzzzzz", "10", "36", "a0", "1_", "1_0", "1[", "1`",
          "z{", "Z@"]


@pytest.mark.parametrize("base", [0, 8, 10, 16, 36])
def test_strtoull_and_strtoll_equal_glibc(base: int) -> None:
    wrong = []
    for lead, body in itertools.product(LEADS, BODIES):
        text = lead + body
        for ours, libc in ((strtoull, _LIBC.strtoull), (strtoll, _LIBC.strtoll)):
            if _ours(ours, text, base) != _libc(libc, text, base):
                wrong.append((ours.__name__, text, _ours(ours, text, base),
                              _libc(libc, text, base)))
    assert not wrong


# The C types' ranges (<stdint.h>): QEMU's visitors check each width after parsing 64 bits.
WIDTHS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64, "int": 64,
          "uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64}


@pytest.mark.parametrize("qapi_type", sorted(WIDTHS))
def test_integer_widths_are_the_c_ranges(qapi_type: str) -> None:
    bits = WIDTHS[qapi_type]
    signed = not qapi_type.startswith("u")
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    c_name = {"int": "int64", "int64": "int64", "uint64": "uint64"}.get(qapi_type,
                                                                        qapi_type + "_t")
    assert parse_value(qapi_type, str(low), "p") == low
    assert parse_value(qapi_type, hex(high), "p") == high
    if qapi_type == "uint64":
        assert parse_value(qapi_type, "-1", "p") == high
    # (uint64 takes -1 as 2^64 - 1: qemu_strtou64 wraps negatives, as strtoull does)
    for outside in (low - 1, high + 1) if qapi_type != "uint64" else (high + 1,):
        with pytest.raises(PropertyError) as info:
            parse_value(qapi_type, str(outside), "p")
        # past 64 bits QEMU's parse fails first: "expects int64/uint64"
        assert str(info.value) in (f"Parameter 'p' expects {c_name}",
                                   f"Parameter 'p' expects {'int64' if signed else 'uint64'}")
    if bits < 64:
        with pytest.raises(PropertyError, match=rf"^Parameter 'p' expects {c_name}$"):
            parse_value(qapi_type, str(high + 1), "p")
        with pytest.raises(PropertyError, match=rf"^Parameter 'p' expects {c_name}$"):
            parse_value(qapi_type, str(low - 1) if signed else "-1", "p")
    with pytest.raises(PropertyError,
                       match=rf"^Parameter 'p' expects {'int64' if signed else 'uint64'}$"):
        parse_value(qapi_type, "08", "p")


def test_choices_spelled_in_the_type_name_and_format() -> None:
    from machines.values import enum_members, format_value

    assert enum_members("alpha|beta|gamma") == ("alpha", "beta", "gamma")
    assert enum_members("str") is None
    assert parse_value("alpha|beta", "beta", "p") == "beta"
    with pytest.raises(PropertyError, match=r"^Parameter 'p' does not accept value 'delta'$"):
        parse_value("alpha|beta", "delta", "p")
    assert (format_value(True), format_value(False), format_value(0), format_value("x")) == \
        ("on", "off", "0", "x")
    with pytest.raises(PropertyError, match=r"^Parameter 'p' expects a non-negative number "
                                            r"below 2\^64$"):
        parse_value("size", "k", "p")
