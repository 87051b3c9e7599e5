"""QEMU's command line, parsed the way QEMU 10 parses it.

Three grammars meet on a QEMU command line and each is followed here:

* ``-machine``/``-M`` use *keyval* (util/keyval.c): ``key=value`` pairs,
  ``,,`` for a literal comma in a value, an implied ``type`` key for the
  first element, later keys replacing earlier ones, several ``-machine``
  options merged into one.
* ``-accel``, ``-device`` and ``-global driver=...`` use *QemuOpts*
  (util/qemu-option.c): an implied first key, ``,,`` escapes, and the
  deprecated short-form booleans ``flag``/``noflag``.
* ``-global driver.prop=value`` is split at the first ``.`` and ``=``; the
  value is everything after the ``=``, commas included.  ``-cpu`` splits at
  plain commas: ``model,+feat,-feat,feat=value``.

Error messages are QEMU's own, with the option as typed in front, so what
this tool says about a bad option is what QEMU would have said.
"""

import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import NamedTuple

from machines.errors import OptionError, UsageError

_HELP = ("help", "?")


class GlobalOption(NamedTuple):
    """One ``-global``, as QEMU registers it."""

    driver: str
    property: str
    value: str
    text: str = ""


class AccelOption(NamedTuple):
    """One ``-accel``: the accelerator name and its properties in order."""

    name: str
    props: tuple[tuple[str, str], ...] = ()
    text: str = ""


class CpuOption(NamedTuple):
    """``-cpu model,features``: features as QEMU's featurestr parser sees them."""

    model: str
    props: tuple[tuple[str, str], ...] = ()  # feat=value and bare feat (=on), in order
    plus: tuple[str, ...] = ()
    minus: tuple[str, ...] = ()
    text: str = ""


class DeviceOption(NamedTuple):
    driver: str
    props: tuple[tuple[str, str], ...] = ()
    text: str = ""


class QemuOptions(NamedTuple):
    """What a QEMU command line asks for, before any build is consulted."""

    binary: str | None = None
    machine: tuple[tuple[str, str], ...] = ()  # merged -machine keys, dashified
    machine_text: str = ""  # the -machine options as typed, for messages
    accels: tuple[AccelOption, ...] = ()
    globals: tuple[GlobalOption, ...] = ()
    cpu: CpuOption | None = None
    devices: tuple[DeviceOption, ...] = ()
    incoming: str | None = None
    loadvm: str | None = None
    warnings: tuple[str, ...] = ()
    machine_type_text: str = ""  # the -machine option that named the type, for messages

    def machine_opt(self, key: str) -> str | None:
        return dict(self.machine).get(key)


# ---------------------------------------------------------------- keyval

def _qapi_name_len(s: str) -> int:
    """parse_qapi_name(s, false): length of a leading QAPI name, or -1."""
    p = 0
    if s[:1] == "_":
        if s[1:2] != "_":
            return -1
        p = 2
        while p < len(s) and ((s[p].isalnum() and s[p].isascii()) or s[p] in "-."):
            p += 1
        if s[p : p + 1] != "_":
            return -1
        p += 1
    if not (s[p : p + 1].isascii() and s[p : p + 1].isalpha()):
        return -1
    p += 1
    while p < len(s) and ((s[p].isascii() and s[p].isalnum()) or s[p] in "-_"):
        p += 1
    return p


def keyval_parse(params: str, implied_key: str | None) -> list[tuple[str, str]]:
    """util/keyval.c's keyval_parse: ``[(key, value)]`` or ValueError(message)."""
    pairs: list[tuple[str, str]] = []
    s = params
    while s:
        length = _cspn(s, "=,")
        if length and (length == len(s) or s[length] != "="):
            if s[:length] in _HELP:
                raise _Help()
            if implied_key is not None:
                pairs.append((implied_key, s[:length]))
                s = s[length + 1 :] if length < len(s) else ""
                implied_key = None
                continue
        implied_key = None
        key = s[:length]
        pos = 0
        while True:  # key fragments separated by '.'
            if pos and key[pos:].split(".")[0].isdigit():
                n = len(key[pos:].split(".")[0])
            else:
                n = max(_qapi_name_len(key[pos:]), 0)
            if not n or (pos + n < len(key) and key[pos + n] != "."):
                raise ValueError(f"Invalid parameter '{key}'")
            if n >= 128:
                fragment = " fragment" if pos or pos + n != len(key) else ""
                raise ValueError(f"Parameter{fragment} '{key[pos:pos + n]}' is too long")
            pos += n
            if pos >= len(key) or key[pos] != ".":
                break
            pos += 1
        s = s[length:]
        if not s.startswith("="):
            raise ValueError(f"Expected '=' after parameter '{key}'")
        s = s[1:]
        value = []
        while s:
            if s[0] == ",":
                s = s[1:]
                if not s.startswith(","):
                    break
            value.append(s[0])
            s = s[1:]
        pairs.append((key, "".join(value)))
    return pairs


def keyval_dashify(merged: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """util/keyval.c's keyval_dashify on the merged ``-machine`` options.

    QEMU merges every ``-machine`` into one dictionary (a key spelled the same
    way again replaces the earlier value), then turns ``_`` into ``-``; a key
    whose two spellings were both given is refused, whichever came first.
    """
    out: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for key, value in merged.items():
        dashed = key.replace("_", "-")
        if dashed in spelled:
            renamed = key if "_" in key else spelled[dashed]
            raise UsageError(f"Conflict between '{renamed}' and '{dashed}'")
        spelled[dashed] = key
        out[dashed] = value
    return tuple(out.items())


def _cspn(s: str, reject: str) -> int:
    for i, ch in enumerate(s):
        if ch in reject:
            return i
    return len(s)


class _Help(Exception):
    pass


# --------------------------------------------------------------- QemuOpts

def opts_parse(params: str, implied: str | None) -> tuple[list[tuple[str, str]], list[str]]:
    """QemuOpts' opts_do_parse: pairs, and the warnings QEMU would print."""
    pairs: list[tuple[str, str]] = []
    warnings: list[str] = []
    s = params
    first = True
    while s:
        length = _cspn(s, "=,")
        if length == len(s) or s[length] != "=":
            if first and implied is not None:
                name = implied
                value, s = _opt_value(s)
            else:
                name = s[:length]
                s = s[length:]
                if name.startswith("no"):
                    name, value, prefix = name[2:], "off", "no"
                else:
                    value, prefix = "on", ""
                if name in _HELP:
                    raise _Help()
                warnings.append(f"short-form boolean option '{prefix}{name}' deprecated")
        else:
            name = s[:length]
            value, s = _opt_value(s[length + 1 :])
        if value in _HELP and (name == implied or first):
            raise _Help()
        pairs.append((name, value))
        first = False
        if s.startswith(","):
            s = s[1:]
    return pairs, warnings


def _opt_value(s: str) -> tuple[str, str]:
    """get_opt_value: up to a single comma; ',,' is a literal comma."""
    out = []
    while True:
        comma = s.find(",")
        if comma < 0:
            out.append(s)
            return "".join(out), ""
        if s[comma + 1 : comma + 2] == ",":
            out.append(s[: comma + 1])
            s = s[comma + 2 :]
            continue
        out.append(s[:comma])
        return "".join(out), s[comma:]


# --------------------------------------------------------------- options

_GLOBAL_SHORT = re.compile(r"^([^.=]{1,63})\.([^=]{1,63})=")


def parse_global(text: str, option: str = "-global") -> GlobalOption:
    """qemu_global_option: ``driver.prop=value`` or ``driver=,property=,value=``."""
    match = _GLOBAL_SHORT.match(text)
    if match:
        return GlobalOption(match.group(1), match.group(2), text[match.end():], text)
    try:
        pairs, _ = opts_parse(text, None)
    except _Help:
        raise OptionError(option, text, "help is not available here; see 'machines show'") \
            from None
    found = dict(pairs)
    unknown = [k for k, _ in pairs if k not in ("driver", "property", "value")]
    if unknown:
        raise OptionError(option, text, f"Invalid parameter '{unknown[0]}'")
    if not all(k in found for k in ("driver", "property", "value")):
        raise OptionError(option, text, "options 'driver', 'property', and 'value' are required")
    return GlobalOption(found["driver"], found["property"], found["value"], text)


def parse_cpu(text: str) -> CpuOption:
    """parse_cpu_option + x86_cpu_parse_featurestr."""
    model, _, rest = text.partition(",")
    props: list[tuple[str, str]] = []
    plus: list[str] = []
    minus: list[str] = []
    for feat in (f for f in rest.split(",") if f):  # strtok skips empty tokens
        if feat[0] == "+":
            plus.append(feat[1:])
        elif feat[0] == "-":
            minus.append(feat[1:])
        else:
            name, eq, value = feat.partition("=")
            name = name.replace("_", "-")
            if name == "tsc-freq":
                name = "tsc-frequency"
            props.append((name, value if eq else "on"))
    return CpuOption(model, tuple(props), tuple(plus), tuple(minus), text)


@cache
def option_table() -> Mapping[str, bool]:
    """QEMU's options for x86 and whether each takes an argument (qemu-options.hx)."""
    from machines.registry import model_doc

    table = model_doc().get("options")
    if not table:
        raise UsageError("the model data has no command-line option table")
    return dict(table)


def parse_args(args: Sequence[str], binary: str | None = None) -> QemuOptions:
    """Parse QEMU arguments (without the program name)."""
    program = (binary or "").rsplit("/", 1)[-1]
    target = _QEMU_PROGRAM.match(program)
    if target and target.group(1) not in ("system-x86_64", "system-i386", "kvm"):
        raise UsageError(f"{program}: only x86 is modelled (qemu-system-x86_64, "
                         "qemu-system-i386)")
    table = option_table()
    machine: dict[str, str] = {}
    machine_texts: list[str] = []
    type_text = ""
    accels: list[AccelOption] = []
    globals_: list[GlobalOption] = []
    devices: list[DeviceOption] = []
    warnings: list[str] = []
    cpu = incoming = loadvm = None
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if not token.startswith("-") or token == "-":
            continue  # QEMU takes a bare argument as a disk image (-hda)
        name = token[2:] if token.startswith("--") else token[1:]
        if name not in table:
            raise UsageError(f"{token}: invalid option")
        arg = ""
        if table[name]:
            if i >= len(args):
                raise UsageError(f"{token}: requires an argument")
            arg = args[i]
            i += 1
        try:
            if name in ("machine", "M"):
                machine_texts.append(f"{token} {arg}")
                for key, value in keyval_parse(arg, "type"):
                    machine[key] = value  # same spelling: the later value replaces
                    if key == "type":
                        type_text = f"{token} {arg}"
            elif name == "enable-kvm":
                machine["accel"] = "kvm"
            elif name == "accel":
                pairs, warns = opts_parse(arg, "accel")
                warnings += [f"{token} {arg}: {w}" for w in warns]
                accel = dict(pairs).get("accel")
                if not accel:
                    raise OptionError(token, arg, "Parameter 'accel' is missing")
                accels.append(AccelOption(accel, tuple(p for p in pairs if p[0] != "accel"),
                                          f"{token} {arg}"))
            elif name == "global":
                globals_.append(parse_global(arg, token))
            elif name == "cpu":
                if arg in _HELP:
                    raise _Help()
                cpu = parse_cpu(arg)
            elif name == "device":
                devices.append(_parse_device(token, arg))
            elif name == "incoming":
                incoming = arg
            elif name == "loadvm":
                loadvm = arg
        except ValueError as err:
            raise OptionError(token, arg, str(err)) from None
        except _Help:
            raise OptionError(token, arg, "help is not available here; "
                              "see 'machines list' and 'machines show'") from None
    return QemuOptions(binary, keyval_dashify(machine), " ".join(machine_texts), tuple(accels),
                       tuple(globals_), cpu, tuple(devices), incoming, loadvm, tuple(warnings),
                       type_text)


def _parse_device(token: str, arg: str) -> DeviceOption:
    if arg.startswith("{"):
        import json  # here: JSON -device options are rare, and a cold start skips json

        try:
            spec = json.loads(arg)
        except json.JSONDecodeError as err:
            raise OptionError(token, arg, f"JSON parse error, {err.msg}") from None
        if not isinstance(spec, dict) or not isinstance(spec.get("driver"), str):
            raise OptionError(token, arg, "Parameter 'driver' is missing")
        props = tuple((str(k), json.dumps(v) if not isinstance(v, str) else v)
                      for k, v in spec.items() if k != "driver")
        return DeviceOption(spec["driver"], props, f"{token} {arg}")
    pairs, _ = opts_parse(arg, "driver")
    found = dict(pairs)
    if "driver" not in found:
        raise OptionError(token, arg, "Parameter 'driver' is missing")
    return DeviceOption(found["driver"], tuple(p for p in pairs if p[0] != "driver"),
                        f"{token} {arg}")


def split_command_line(text: str) -> tuple[str | None, list[str]]:
    """A pasted command line (as libvirt logs it) -> (binary, arguments).

    Backslash-newline continuations are joined; anything before the QEMU
    program (a log line's preamble, ``VAR=value`` environment assignments) is
    dropped.  Without a recognisable program, the words are all arguments.
    """
    import shlex  # here: only --cmdline needs it

    text = text.replace("\\\n", " ")
    try:
        words = shlex.split(text, comments=False, posix=True)
    except ValueError as err:
        raise UsageError(f"cannot split the command line: {err}") from None
    if not words:
        # A script that grepped nothing from a log must not get an answer for
        # a VM it never described.
        raise UsageError("the command line is empty: give the QEMU command line to judge")
    for i, word in enumerate(words):
        if _QEMU_PROGRAM.match(word.rsplit("/", 1)[-1]):
            return word, words[i + 1 :]
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words.pop(0)
    if not words:
        raise UsageError("the command line has only environment assignments, no QEMU "
                         "arguments")
    return None, words


_QEMU_PROGRAM = re.compile(r"^qemu-(system-[\w.]+|kvm)$")
