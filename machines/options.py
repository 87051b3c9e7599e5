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
from collections.abc import Iterator, Mapping, Sequence
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
                s = s[length + 1 :]  # past the comma (or the end)
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
    """system/vl.c's keyval_dashify on the merged ``-machine`` options.

    QEMU merges every ``-machine`` into one dictionary (a key spelled the same
    way again replaces the earlier value), then turns ``_`` into ``-`` in its
    top-level keys (``a_b.c_d`` is ``a-b.c_d``: ``c_d`` is a member of ``a_b``;
    a downstream ``__vendor.com_name`` is one key); a key whose two spellings
    were both given is refused, whichever came first.
    """
    out: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for key, value in merged.items():
        top = key[: _qapi_name_len(key)]  # a name keyval_parse checked; '__a.b_c' is one
        dashed = top.replace("_", "-")
        if spelled.setdefault(dashed, top) != top:
            renamed = top if "_" in top else spelled[dashed]
            raise UsageError(f"Conflict between '{renamed}' and '{dashed}'")
        out[dashed + key[len(top) :]] = value
    return tuple(out.items())


def _cspn(s: str, reject: str) -> int:
    for i, ch in enumerate(s):
        if ch in reject:
            return i
    return len(s)


class _Help(Exception):
    pass


# --------------------------------------------------------------- QemuOpts

def _opt_items(params: str, implied: str | None) -> Iterator[tuple[str, str, str | None]]:
    """get_opt_name_value over ``params``: ``(name, value, flag)`` for each option.

    ``flag`` is a short-form boolean as typed (``foo`` or ``nofoo``), else None.  Only
    values take ``,,`` for a literal comma; names and flags end at the first comma.
    """
    s = params
    while s:
        length = _cspn(s, "=,")
        flag = None
        if length < len(s) and s[length] == "=":
            name = s[:length]
            value, s = _opt_value(s[length + 1 :])
        elif implied is not None:
            name = implied
            value, s = _opt_value(s)
        else:
            flag = name = s[:length]
            s = s[length:]
            name, value = (name[2:], "off") if name.startswith("no") else (name, "on")
        implied = None
        yield name, value, flag
        s = s[1:]  # the comma that ended this option


def opts_id(params: str) -> str | None:
    """opts_parse_id: the first ``id=`` (also a short-form ``id``), read with no implied key."""
    return next((value for name, value, _ in _opt_items(params, None) if name == "id"), None)


def opts_parse(params: str, implied: str | None,
               known: tuple[str, ...] | None = None) -> tuple[list[tuple[str, str]], list[str]]:
    """QemuOpts' opts_do_parse: pairs (``id`` left out, as QEMU does), and QEMU's warnings.

    ``known`` is the option list's description: with one, a short-form ``help`` asks for
    help and a name not in it is refused; without (-accel, -device take any name), a
    short-form ``help`` is an option like any other.
    """
    pairs: list[tuple[str, str]] = []
    warnings: list[str] = []
    for name, value, flag in _opt_items(params, implied):
        if flag in _HELP:
            if known is not None:
                raise _Help()
        elif flag is not None:
            warnings.append(f"short-form boolean option '{flag}' deprecated")
        if name == "id":
            continue
        if known is not None and name not in known:
            raise ValueError(f"Invalid parameter '{name}'")
        pairs.append((name, value))
    return pairs, warnings


def check_id(ident: str | None, ids: dict[str, set[str]], group: str) -> None:
    """qemu_opts_create: an option's ``id`` must be an identifier, once per option group
    (``ids``: the ids given so far, by group)."""
    if ident is None:
        return
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", ident):
        raise ValueError("Parameter 'id' expects an identifier")
    seen = ids.setdefault(group, set())
    if ident in seen:
        raise ValueError(f"Duplicate ID '{ident}' for {group}")
    seen.add(ident)


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


def parse_global(text: str, option: str = "-global",
                 ids: dict[str, set[str]] | None = None) -> GlobalOption:
    """qemu_global_option: ``driver.prop=value`` or ``driver=,property=,value=``.

    The long form is a QemuOpts option: its ``id`` is checked (``ids``: the ids given so
    far, by group) and left out, as QEMU does.
    """
    match = _GLOBAL_SHORT.match(text)
    if match:
        return GlobalOption(match.group(1), match.group(2), text[match.end():], text)
    try:
        check_id(opts_id(text), {} if ids is None else ids, "global")
        pairs, _ = opts_parse(text, None, ("driver", "property", "value"))
    except ValueError as err:
        raise OptionError(option, text, str(err)) from None
    except _Help:
        raise OptionError(option, text, "help is not available here; see 'machines show'") \
            from None
    found = dict(pairs)
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
    ids: dict[str, set[str]] = {}  # QemuOpts ids, per option group
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if not token.startswith("-"):
            continue  # QEMU takes a bare argument as a disk image (-hda); '-' is an option
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
                check_id(opts_id(arg), ids, "accel")
                pairs, warns = opts_parse(arg, "accel")
                warnings += [f"{token} {arg}: {w}" for w in warns]
                accel = dict(pairs).get("accel")
                if accel is None or accel in _HELP:
                    raise _Help()  # QEMU lists its accelerators and exits
                accels.append(AccelOption(accel, tuple(p for p in pairs if p[0] != "accel"),
                                          f"{token} {arg}"))
            elif name == "global":
                globals_.append(parse_global(arg, token, ids))
            elif name == "cpu":
                if arg in _HELP:
                    raise _Help()
                cpu = parse_cpu(arg)
            elif name == "device":
                device, warns = _parse_device(token, arg, ids)
                devices.append(device)
                warnings += [f"{token} {arg}: {w}" for w in warns]
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


def _parse_device(token: str, arg: str,
                  ids: dict[str, set[str]]) -> tuple[DeviceOption, list[str]]:
    if arg.startswith("{"):
        import json  # here: JSON -device options are rare, and a cold start skips json

        try:
            spec = json.loads(arg, object_pairs_hook=_json_object)
        except json.JSONDecodeError as err:
            raise OptionError(token, arg, f"JSON parse error, {err.msg}") from None
        if not isinstance(spec, dict) or not isinstance(spec.get("driver"), str):
            raise OptionError(token, arg, "Parameter 'driver' is missing")
        props = tuple((str(k), json.dumps(v) if not isinstance(v, str) else v)
                      for k, v in spec.items() if k != "driver")
        return DeviceOption(spec["driver"], props, f"{token} {arg}"), []
    ident = opts_id(arg)
    check_id(ident, ids, "device")
    pairs, warnings = opts_parse(arg, "driver")
    found = dict(pairs)
    if found.get("driver") in _HELP or any(name in _HELP for name, _ in pairs):
        raise _Help()  # qdev_device_help: a driver or a property named help
    if "driver" not in found:
        raise OptionError(token, arg, "Parameter 'driver' is missing")
    props = (("id", ident),) if ident is not None else ()
    return DeviceOption(found["driver"], props + tuple(p for p in pairs if p[0] != "driver"),
                        f"{token} {arg}"), warnings


def _json_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """QEMU's JSON parser refuses a key given twice in one object (json-parser.c)."""
    import json  # loaded already: this is json.loads' object hook

    found = dict(pairs)
    if len(found) != len(pairs):
        raise json.JSONDecodeError("duplicate key", "", 0)
    return found


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
