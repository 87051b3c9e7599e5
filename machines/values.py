"""Property values as QEMU reads them from strings.

Compat properties, ``-global`` and ``-accel``/``-device`` options all reach a
property as a string that QEMU's string-input visitor converts by the
property's QAPI type.  The rules here follow that visitor and glibc's
``strtoull``/``strtoll`` (which QEMU calls with base 0), so ``0x11``, ``17``
and ``021`` are the same number and ``08`` is an error, exactly as in QEMU.

A parsed value has the Python type that ``qom-get`` returns over QMP: ``bool``
for ``bool``, ``int`` for every integer and ``size`` type, ``str`` otherwise.
"""

from __future__ import annotations

import math
import re
from typing import Final

from machines.errors import PropertyError

Value = bool | int | str

_SPACE: Final = " \t\n\v\f\r"
_UNSIGNED: Final = {"uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64}
_SIGNED: Final = {"int8": 8, "int16": 16, "int32": 32, "int64": 64, "int": 64}
_C_TYPE_NAME: Final = {
    "uint8": "uint8_t", "uint16": "uint16_t", "uint32": "uint32_t", "uint64": "uint64",
    "int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64", "int": "int64",
}
# Enumerations whose members QEMU fixes in the property's type name or QAPI.
_ENUMS: Final[dict[str, tuple[str, ...]]] = {
    "OnOffAuto": ("on", "off", "auto"),
    "OnOffSplit": ("on", "off", "split"),
    "on|off|split": ("on", "off", "split"),
    "LostTickPolicy": ("discard", "delay", "slew"),
    "SeoibPolicy": ("quirked", "respected", "not-advertised"),  # the opt-in design
}

TRUE_WORDS: Final = ("on", "yes", "true", "y")
FALSE_WORDS: Final = ("off", "no", "false", "n")


def _digits(text: str, pos: int, base: int) -> int:
    """Index just past the run of ``base`` digits starting at ``pos``."""
    while pos < len(text):
        ch = text[pos].lower()
        if ch.isascii() and ch.isdigit():
            digit = ord(ch) - ord("0")
        elif "a" <= ch <= "z":
            digit = ord(ch) - ord("a") + 10
        else:
            break
        if digit >= base:
            break
        pos += 1
    return pos


def _strto(text: str, base: int) -> tuple[int, bool, int]:
    """glibc's strtoX scanner: (magnitude, negative, end index); end 0 = no digits."""
    pos = 0
    while pos < len(text) and text[pos] in _SPACE:
        pos += 1
    negative = False
    if pos < len(text) and text[pos] in "+-":
        negative = text[pos] == "-"
        pos += 1
    start = pos
    hex_prefix = text[pos : pos + 2].lower() == "0x" and _digits(text, pos + 2, 16) > pos + 2
    if base in (0, 16) and hex_prefix:
        start, base = pos + 2, 16
    elif base == 0:
        base = 8 if text[pos : pos + 1] == "0" else 10
    end = _digits(text, start, base)
    if end == start:
        return 0, False, 0
    return int(text[start:end], base), negative, end


def strtoull(text: str, base: int = 0) -> int:
    """``qemu_strtou64(text, NULL, base)``: the whole string, negatives wrap."""
    magnitude, negative, end = _strto(text, base)
    if end == 0 or end != len(text):
        raise ValueError(f"not a number: {text!r}")
    if magnitude > 2**64 - 1:
        raise OverflowError(text)
    return (-magnitude) % 2**64 if negative else magnitude


def strtoll(text: str, base: int = 0) -> int:
    """``qemu_strtoi64(text, NULL, base)``: the whole string, range-checked."""
    magnitude, negative, end = _strto(text, base)
    if end == 0 or end != len(text):
        raise ValueError(f"not a number: {text!r}")
    value = -magnitude if negative else magnitude
    if not -(2**63) <= value <= 2**63 - 1:
        raise OverflowError(text)
    return value


def parse_bool(text: str) -> bool:
    """``qapi_bool_parse``: exactly these words, case-sensitive."""
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError(text)


_SUFFIXES: Final = {"B": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
_FLOAT_PREFIX: Final = re.compile(r"[ \t\n\v\f\r]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")


def _parse_uint(text: str) -> tuple[int, int, str | None]:
    """util/cutils.c parse_uint(base 10) with an end pointer: (value, end, error)."""
    magnitude, _, end = _strto(text, 10)
    if end == 0:
        return 0, 0, "EINVAL"
    if magnitude > 2**64 - 1 or text.lstrip(_SPACE).startswith("-"):
        return 0, end, "ERANGE"  # parse_uint refuses negative numbers as out of range
    return magnitude, end, None


def _strtod_fraction(copy: str) -> tuple[float, int, str | None]:
    """qemu_strtod_finite with an end pointer on a copy that has no exponent."""
    match = _FLOAT_PREFIX.match(copy)
    if match is None:
        return 0.0, 0, "EINVAL"
    value = float(match.group(0))
    tiny = value == 0.0 and any(c in "123456789" for c in match.group(0))
    return value, match.end(), "ERANGE" if tiny else None


def parse_size(text: str) -> int:
    """``qemu_strtosz`` (util/cutils.c do_strtosz, QEMU 8.0 on), step by step.

    The integral part is decimal (``0x`` reparses as hex, with no fraction or
    suffix); a fraction goes through a double into 64-bit fixed point, so that
    ``1.1k`` is 1126 and ``0.9999999999999999999B`` is 1, exactly as QEMU's
    arithmetic rounds them.  OverflowError is QEMU's ERANGE, ValueError its EINVAL.
    """
    def out_of_range(end: int) -> OverflowError | ValueError:
        # ERANGE, unless something is left over: then qemu_strtosz says EINVAL
        return OverflowError(text) if end == len(text) else ValueError(text)

    val, end, error = _parse_uint(text)
    if error == "ERANGE":
        raise out_of_range(end)
    valf = 0
    if error is None and val == 0 and text[end : end + 1] in ("x", "X"):
        magnitude, _, end = _strto(text, 16)
        if magnitude > 2**64 - 1:
            raise out_of_range(end)
        val = magnitude
        if text[end : end + 1] == "." or text[end : end + 1].upper() in _SUFFIXES:
            raise ValueError(text)
    elif text[end : end + 1] == "." or (end == 0 and "." in text):
        fraction = 0.0
        after = text[end + 1 : end + 2]
        if error is None and text[end] == "." and not (after.isascii() and after.isdigit()):
            end += 1  # "1.k": no fractional digits
        else:
            copy = re.split("[eE]", text[end:], maxsplit=1)[0]  # 'e' is a suffix here
            fraction, used, error = _strtod_fraction(copy)
            end += used
            if error == "EINVAL":
                raise ValueError(text)
            if math.copysign(1.0, fraction) < 0:
                raise out_of_range(end)
        if fraction == 1.0:
            val += 1
        elif error == "ERANGE":  # underflow: some non-zero fraction
            valf, error = 1, None
        else:
            # imported here: fractions (and decimal) cost a cold start 1.5 ms
            from fractions import Fraction

            valf = int(Fraction(fraction) * 2**64)
            if valf == 0 and fraction > 0.0:
                valf = 1
    if error is not None:
        raise ValueError(text)
    suffix = text[end : end + 1].upper()
    mul = 1
    if suffix in _SUFFIXES:
        mul = 1024 ** _SUFFIXES[suffix]
        end += 1
    overflow = False
    if mul == 1:
        if valf:  # a fraction needs a scale
            raise ValueError(text)
    else:
        low = valf * mul
        val = val * mul + (low >> 64) + ((low & (2**64 - 1)) >> 63)  # 64.64 fixed point,
        overflow = val > 2**64 - 1                                     # 0.5 rounds up
    if end != len(text):  # qemu_strtosz(NULL end): anything left over is EINVAL
        raise ValueError(text)
    if overflow:
        raise OverflowError(text)
    return val


def enum_members(qapi_type: str) -> tuple[str, ...] | None:
    """Members of an enumeration type we know, or None."""
    if qapi_type in _ENUMS:
        return _ENUMS[qapi_type]
    if "|" in qapi_type:  # class properties spell their choices in the type name
        return tuple(qapi_type.split("|"))
    return None


def parse_value(qapi_type: str, text: str, name: str) -> Value:
    """Convert ``text`` as QEMU would for a property of ``qapi_type``.

    Raises PropertyError with QEMU's own wording ("Parameter 'x' expects ...").
    Types we have no rule for (enumerations QEMU does not describe, links)
    are kept as strings, as ``qom-get`` would show them.
    """
    if qapi_type == "bool":
        try:
            return parse_bool(text)
        except ValueError:
            raise PropertyError(f"Parameter '{name}' expects 'on' or 'off'") from None
    if qapi_type == "size":
        try:
            return parse_size(text)
        except OverflowError:
            raise PropertyError(f"Value '{text}' is out of range for parameter '{name}'") from None
        except ValueError:
            raise PropertyError(f"Parameter '{name}' expects a non-negative number below 2^64") \
                from None
    if qapi_type in _UNSIGNED or qapi_type in _SIGNED:
        unsigned = qapi_type in _UNSIGNED
        try:  # parse as the 64-bit visitor does first, then check the width
            value = strtoull(text) if unsigned else strtoll(text)
        except (ValueError, OverflowError):
            raise PropertyError(f"Parameter '{name}' expects {'uint64' if unsigned else 'int64'}") \
                from None
        bits = _UNSIGNED[qapi_type] if unsigned else _SIGNED[qapi_type]
        low, high = (0, 2**bits) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1))
        if not low <= value < high:
            raise PropertyError(f"Parameter '{name}' expects {_C_TYPE_NAME[qapi_type]}")
        return value
    members = enum_members(qapi_type)
    if members is not None and text not in members:
        raise PropertyError(f"Parameter '{name}' does not accept value '{text}'")
    return text


def format_value(value: Value) -> str:
    """How QEMU's ``info qtree``-style text shows a typed value."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
