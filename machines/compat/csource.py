"""What QEMU's C sources say about compat properties: every array and machine.

``query-machines`` gives each machine type's compat properties as one flat
list, and only from QEMU 9.1 on.  Which entries came from ``hw_compat_9_2``
and which from ``pc_compat_9_2``, which machine types default to a split
irqchip, and the whole lists of older builds are only written in the sources.
This module reads just enough of a QEMU tree (upstream or Debian-patched) to
know, for each versioned pc machine type of ``qemu-system-x86_64``:

* every ``GlobalProperty`` array as (driver, property, value) strings, with
  the C preprocessor's work redone: string-literal concatenation, object-like
  macros such as ``TYPE_X86_CPU`` from the tree's headers, function-like
  macros that expand to runs of entries (``PC_CPU_MODEL_IDS(v)``),
  ``stringify()``;
* the ordered list of arrays its ``*_machine_options()`` chain passes to
  ``compat_props_add()``, and so its flat list in QEMU's order;
* ``default_kernel_irqchip_split``, ``alias``, ``is_default`` and an explicit
  ``deprecation_reason`` where the chain (or the defining macro) sets them.

It knows two ways of defining machines: ``DEFINE_Q35_MACHINE(v5_2,
"pc-q35-5.2", NULL, pc_q35_5_2_machine_options)`` (QEMU up to 8.x) and
``DEFINE_Q35_MACHINE(10, 0)`` over ``DEFINE_PC_VER_MACHINE`` (9.x on).

It is a scanner for the few regular shapes these files use, not a C parser.
Where it cannot resolve a token exactly as the compiler would, it raises
:class:`DataError` naming the array and entry; it never guesses.  Conditional
compilation is evaluated for ``qemu-system-x86_64`` as Debian configures it
(:data:`CONFIG`); a condition on any other symbol in the scanned files is an
error too.  The importer never trusts it alone: the labelled tables must add up
to the binary's own flat lists, entry by entry, or the import fails.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from attrs import frozen

from machines.errors import DataError

Entry = tuple[str, str, str]

#: ``#if`` symbols as they are when Debian builds qemu-system-x86_64 (amd64).
#: CONFIG_MICROVM_DEFAULT belongs to Debian's separate qemu-system-x86_64-microvm.
CONFIG: Mapping[str, bool] = {
    "TARGET_X86_64": True,
    "CONFIG_MICROVM_DEFAULT": False,
    "CONFIG_XEN": True,
    "CONFIG_XEN_EMU": True,
    "CONFIG_ISAPC": True,
    "CONFIG_IDE_ISA": True,
    "CONFIG_FDC_ISA": True,
    "CONFIG_HPET": True,
    "CONFIG_FDT": True,
    "CONFIG_VMPORT": True,
    "CONFIG_POSIX": True,
    "CONFIG_LINUX": True,
    "CONFIG_KVM": True,
    "CONFIG_IGVM": False,  # Debian does not build with libigvm (10.2)
}

SCHEMA = "machines/source-arrays/v1"
HEADER_DIRS = ("include", "hw", "target/i386")

_TOKEN = re.compile(
    r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|[A-Za-z_]\w*|\.?\d(?:[eEpP][+-]|[\w.])*'
    r"|##|\.\.\.|&&|\|\||->|<<|>>|[=!<>]=|\S")
_COMMENT = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|/\*.*?\*/|//[^\n]*', re.S)
_DIRECTIVE = re.compile(r"\s*#\s*(\w+)\s*(.*)$", re.S)
_DEFINE = re.compile(r"(\w+)(\(([^)]*)\))?\s*(.*)$", re.S)
_IDENT = re.compile(r"[A-Za-z_]\w*$")
_ARRAY = re.compile(r"\bGlobalProperty\s+(\w+)\s*\[\s*\]\s*=\s*\{")
_FUNCTION = re.compile(
    r"^(?:static\s+)?void\s+(\w+)\s*\(\s*MachineClass\s*\*\s*(\w+)\s*\)\s*\{", re.M)
_USE = re.compile(r"\b(DEFINE_\w+_MACHINE\w*)\s*\(")
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "0": "\0"}


@frozen
class Macro:
    """A ``#define``: ``params`` is None for an object-like macro."""

    params: tuple[str, ...] | None
    body: tuple[str, ...]


@frozen
class SourceTable:
    """One ``GlobalProperty`` array: its name, file, and resolved entries.

    A function-local array (``static GlobalProperty compat[]`` inside
    ``pc_i440fx_1_3_machine_options``) is named ``FUNCTION.ARRAY``.
    """

    name: str
    file: str
    entries: tuple[Entry, ...]
    optional: frozenset[int] = frozenset()  # indexes of entries with .optional = true

    @property
    def properties(self) -> tuple[str, ...]:
        return tuple(prop for _, prop, _ in self.entries)


@frozen
class SourceMachine:
    """A versioned machine type as its options chain defines it."""

    name: str
    tables: tuple[str, ...]
    kernel_irqchip_split: bool
    entries: tuple[Entry, ...] = ()
    alias: str | None = None
    is_default: bool = False
    deprecation_reason: str | None = None


@frozen
class SourceFacts:
    version: str
    tables: dict[str, SourceTable]
    machines: dict[str, SourceMachine]


# --- preprocessing ---------------------------------------------------------


def _strip_comments(text: str) -> str:
    return _COMMENT.sub(lambda m: m.group(0) if m.group(0)[0] in "\"'" else " ", text)


def _lines(text: str) -> list[str]:
    return _strip_comments(text.replace("\\\r\n", "").replace("\\\n", "")).splitlines()


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _condition(expr: str, config: Mapping[str, bool]) -> bool | None:
    """A ``#if`` expression of defined(), !, &&, || and integers; None if unknown."""
    toks = _tokens(expr)
    values: list[str] = []
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok == "defined":
            paren = i + 1 < len(toks) and toks[i + 1] == "("
            name = toks[i + 2] if paren else toks[i + 1] if i + 1 < len(toks) else ""
            if name not in config:
                return None
            values.append("1" if config[name] else "0")
            i += 4 if paren else 2
            continue
        if _IDENT.match(tok):
            return None  # a macro's value: not something this scanner evaluates
        if not re.fullmatch(r"\d+|[()!]|&&|\|\|", tok):
            return None
        values.append(tok)
        i += 1

    pos = 0

    def primary() -> int:
        nonlocal pos
        tok = values[pos]
        pos += 1
        if tok == "!":
            return int(not primary())
        if tok == "(":
            val = disjunction()
            pos += 1
            return val
        return int(tok)

    def conjunction() -> int:
        nonlocal pos
        val = primary()
        while pos < len(values) and values[pos] == "&&":
            pos += 1
            val = int(primary() and val)
        return val

    def disjunction() -> int:
        nonlocal pos
        val = conjunction()
        while pos < len(values) and values[pos] == "||":
            pos += 1
            val = int(conjunction() or val)
        return val

    try:
        return bool(disjunction())
    except (IndexError, ValueError):
        return None


def _parse_define(rest: str) -> tuple[str, Macro] | None:
    m = _DEFINE.match(rest)
    if not m:
        return None
    name, paren, params, body = m.groups()
    if paren is not None:
        plist = tuple(p.strip() for p in params.split(",") if p.strip())
        return name, Macro(plist, tuple(_tokens(body)))
    return name, Macro(None, tuple(_tokens(body)))


def _preprocess(text: str, where: str,
                config: Mapping[str, bool]) -> tuple[str, dict[str, Macro]]:
    """A .c file's active lines (directives removed) and the macros it defines."""
    out: list[str] = []
    macros: dict[str, Macro] = {}
    stack: list[tuple[bool, bool]] = []  # (this branch active, some branch taken)

    def active() -> bool:
        return all(a for a, _ in stack)

    def evaluate(expr: str) -> bool:
        value = _condition(expr, config)
        if value is None:
            raise DataError(f"{where}: cannot evaluate '#if {expr.strip()}' for "
                            "qemu-system-x86_64: unknown symbol (see csource.CONFIG)")
        return value

    for line in _lines(text):
        d = _DIRECTIVE.match(line)
        if not d:
            if active():
                out.append(line)
            continue
        kind, rest = d.group(1), d.group(2).strip()
        if kind in ("if", "ifdef", "ifndef"):
            if not active():
                stack.append((False, True))
                continue
            expr = rest if kind == "if" else f"{'!' if kind == 'ifndef' else ''}defined({rest})"
            value = evaluate(expr)
            stack.append((value, value))
        elif kind == "elif":
            _, taken = stack.pop()
            outer = active()
            value = not taken and outer and evaluate(rest)
            stack.append((value, taken or value))
        elif kind == "else":
            _, taken = stack.pop()
            stack.append((not taken, True))
        elif kind == "endif":
            stack.pop()
        elif kind == "define" and active():
            parsed = _parse_define(rest)
            if parsed:
                macros[parsed[0]] = parsed[1]
        elif kind == "undef" and active():
            macros.pop(rest, None)
        out.append("")  # keep line numbers roughly aligned; directives vanish
    return "\n".join(out), macros


class _Headers:
    """Every ``#define`` in the tree's headers, with whether it is compiled in."""

    def __init__(self, root: Path, config: Mapping[str, bool]) -> None:
        self.defs: dict[str, list[tuple[Macro, bool | None, str]]] = {}
        for sub in HEADER_DIRS:
            base = root / sub
            if not base.is_dir():
                continue
            for path in sorted(base.rglob("*.h")):
                text = path.read_text(encoding="utf-8", errors="replace")
                if "#define" in text or "# define" in text:
                    self._scan(text, str(path.relative_to(root)), config)

    def _scan(self, text: str, rel: str, config: Mapping[str, bool]) -> None:
        lines = _lines(text)
        stack: list[tuple[bool | None, bool | None]] = []  # (branch value, some taken)
        for i, line in enumerate(lines):
            d = _DIRECTIVE.match(line)
            if not d:
                continue
            kind, rest = d.group(1), d.group(2).strip()
            if kind in ("if", "ifdef", "ifndef"):
                if kind == "ifndef" and self._guard(lines, i, rest):
                    value: bool | None = True
                else:
                    expr = rest if kind == "if" else \
                        f"{'!' if kind == 'ifndef' else ''}defined({rest})"
                    value = _condition(expr, config)
                stack.append((value, value))
            elif kind == "elif" and stack:
                _, taken = stack.pop()
                value = None if taken is None else False if taken else _condition(rest, config)
                stack.append((value, None if taken is None or value is None
                              else taken or value))
            elif kind == "else" and stack:
                _, taken = stack.pop()
                stack.append((None if taken is None else not taken, True))
            elif kind == "endif" and stack:
                stack.pop()
            elif kind == "define":
                parsed = _parse_define(rest)
                if not parsed:
                    continue
                values = [v for v, _ in stack]
                state = False if False in values else None if None in values else True
                if state is not False:
                    self.defs.setdefault(parsed[0], []).append((parsed[1], state, rel))

    @staticmethod
    def _guard(lines: list[str], i: int, name: str) -> bool:
        for line in lines[i + 1:]:
            if line.strip():
                return re.match(rf"\s*#\s*define\s+{re.escape(name)}\s*$", line) is not None
        return False

    def get(self, name: str) -> Macro | None:
        found = self.defs.get(name)
        if not found:
            return None
        distinct = {macro for macro, _, _ in found}
        if len(distinct) == 1:
            return found[0][0]  # defined one way only: if the build uses it, it is this
        sure = {macro for macro, state, _ in found if state is True}
        unsure = [where for _, state, where in found if state is None]
        if len(sure) == 1 and not unsure:
            return next(iter(sure))
        raise DataError(f"macro {name} has {len(distinct)} definitions "
                        f"({', '.join(sorted({w for _, _, w in found}))}) and this scanner "
                        "cannot tell which one qemu-system-x86_64 compiles")


# --- macro expansion ---------------------------------------------------------


Lookup = Callable[[str], Macro | None]


def _arguments(toks: list[str], start: int) -> tuple[list[list[str]], int]:
    """The arguments of a call whose '(' is just before ``start``; and the index after ')'."""
    args: list[list[str]] = [[]]
    depth = 0
    i = start
    while i < len(toks):
        tok = toks[i]
        if tok == "(":
            depth += 1
        elif tok == ")":
            if depth == 0:
                return ([] if args == [[]] else args), i + 1
            depth -= 1
        elif tok == "," and depth == 0:
            args.append([])
            i += 1
            continue
        args[-1].append(tok)
        i += 1
    raise DataError("unbalanced parentheses in a macro call")


def _stringify(arg: list[str]) -> str:
    if len(arg) != 1:
        raise DataError(f"cannot stringify '{' '.join(arg)}' exactly (more than one token)")
    return '"' + arg[0].replace("\\", "\\\\").replace('"', '\\"') + '"'


def _substitute(name: str, macro: Macro, args: list[list[str]], lookup: Lookup,
                hide: frozenset[str]) -> list[str]:
    params = macro.params or ()
    variadic = bool(params) and params[-1] == "..."
    named = params[:-1] if variadic else params
    if len(args) < len(named) or (len(args) > len(named) and not variadic):
        if not (len(named) == 1 and not args):
            raise DataError(f"macro {name} takes {len(named)} arguments, got {len(args)}")
        args = [[]]
    bind: dict[str, list[str]] = dict(zip(named, args, strict=False))
    if variadic:
        rest = args[len(named):]
        va: list[str] = []
        for k, arg in enumerate(rest):
            va.extend([","] if k else [])
            va.extend(arg)
        bind["__VA_ARGS__"] = va
    body = list(macro.body)
    out: list[str] = []
    i = 0
    while i < len(body):
        tok = body[i]
        if tok == "#" and i + 1 < len(body) and body[i + 1] in bind:
            out.append(_stringify(bind[body[i + 1]]))
            i += 2
            continue
        pasting = (i + 1 < len(body) and body[i + 1] == "##") or (i and body[i - 1] == "##")
        if tok in bind:
            out.extend(bind[tok] if pasting else _expand(bind[tok], lookup, hide))
        else:
            out.append(tok)
        i += 1
    pasted: list[str] = []
    i = 0
    while i < len(out):
        if out[i] == "##" and pasted and i + 1 < len(out):
            pasted[-1] += out[i + 1]
            i += 2
            continue
        pasted.append(out[i])
        i += 1
    return pasted


def _expand(toks: list[str], lookup: Lookup, hide: frozenset[str] = frozenset()) -> list[str]:
    """Macro-expand tokens, rescanning each replacement with what follows it."""
    work: list[tuple[str, frozenset[str]]] = [(t, hide) for t in toks]
    i = 0
    while i < len(work):
        tok, painted = work[i]
        macro = lookup(tok) if tok not in painted and _IDENT.match(tok) else None
        if macro is None:
            i += 1
        elif macro.params is None:
            work[i:i + 1] = [(t, painted | {tok}) for t in macro.body]
        elif i + 1 < len(work) and work[i + 1][0] == "(":
            args, end = _arguments([t for t, _ in work], i + 2)
            body = _substitute(tok, macro, args, lookup, painted)
            work[i:end] = [(t, painted | {tok}) for t in body]
        else:
            i += 1
    return [t for t, _ in work]


_OPS: dict[str, Callable[[int, int], int]] = {
    "||": lambda a, b: int(bool(a or b)), "&&": lambda a, b: int(bool(a and b)),
    "==": lambda a, b: int(a == b), "!=": lambda a, b: int(a != b),
    "<": lambda a, b: int(a < b), ">": lambda a, b: int(a > b),
    "<=": lambda a, b: int(a <= b), ">=": lambda a, b: int(a >= b),
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: int(a / b), "%": lambda a, b: a - b * int(a / b),  # C truncates
}


def _integer(toks: list[str], what: str) -> int:
    """A C integer constant expression of literals and operators (after expansion)."""
    binary = [("||",), ("&&",), ("==", "!="), ("<", ">", "<=", ">="), ("+", "-"),
              ("*", "/", "%")]
    pos = 0

    def fail() -> DataError:
        return DataError(f"{what}: cannot evaluate '{' '.join(toks)}' as an integer")

    def unary() -> int:
        nonlocal pos
        if pos >= len(toks):
            raise fail()
        tok = toks[pos]
        pos += 1
        if tok in ("!", "-", "+"):
            val = unary()
            return int(not val) if tok == "!" else -val if tok == "-" else val
        if tok == "(":
            val = level(0)
            if pos >= len(toks) or toks[pos] != ")":
                raise fail()
            pos += 1
            return val
        m = re.fullmatch(r"(0[xX][0-9a-fA-F]+|\d+)[uUlL]*", tok)
        if not m:
            raise fail()
        return int(m.group(1), 0) if not re.fullmatch(r"0\d+", m.group(1)) \
            else int(m.group(1), 8)

    def level(n: int) -> int:
        nonlocal pos
        if n == len(binary):
            return unary()
        val = level(n + 1)
        while pos < len(toks) and toks[pos] in binary[n]:
            op = toks[pos]
            pos += 1
            rhs = level(n + 1)
            if op in ("/", "%") and rhs == 0:
                raise fail()
            val = _OPS[op](val, rhs)
        return val

    val = level(0)
    if pos != len(toks):
        raise fail()
    return val


def _string(toks: list[str]) -> str | None:
    """Adjacent string literals, possibly parenthesized, as one string; else None."""
    while len(toks) >= 2 and toks[0] == "(" and toks[-1] == ")":
        toks = toks[1:-1]
    if not toks or not all(t.startswith('"') for t in toks):
        return None
    parts = []
    for tok in toks:
        body = tok[1:-1]
        parts.append(re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\x00BAD"), body))
    text = "".join(parts)
    return None if "\x00BAD" in text else text


def _split(toks: list[str]) -> list[list[str]]:
    """Split at commas outside parentheses and braces."""
    fields: list[list[str]] = [[]]
    depth = 0
    for tok in toks:
        if tok in "({":
            depth += 1
        elif tok in ")}":
            depth -= 1
        if tok == "," and depth == 0:
            fields.append([])
        else:
            fields[-1].append(tok)
    return fields


def _entries(name: str, toks: list[str]) -> tuple[tuple[Entry, ...], frozenset[int]]:
    """The resolved ``{ driver, property, value }`` initializers of one array."""
    entries: list[Entry] = []
    optional: set[int] = set()
    for item in _split(toks):
        if not item:
            continue
        text = " ".join(item)
        if item[0] != "{" or item[-1] != "}":
            raise DataError(f"array {name}: entry {len(entries) + 1} '{text}' is not an "
                            "initializer after macro expansion")
        fields = [f for f in _split(item[1:-1]) if f]
        positional: list[str] = []
        for field in fields:
            if field[0] == "." and len(field) >= 3 and field[2] == "=":
                key, value = field[1], field[3:]
                if key == "optional" and value in (["true"], ["false"]):
                    if value == ["true"]:
                        optional.add(len(entries))
                    continue
                raise DataError(f"array {name}: entry {len(entries) + 1} '{text}': "
                                f"unknown designated field .{key}")
            resolved = _string(field)
            if resolved is None:
                raise DataError(f"array {name}: entry {len(entries) + 1} '{text}': "
                                f"cannot resolve '{' '.join(field)}' to a string")
            positional.append(resolved)
        if len(positional) != 3:
            raise DataError(f"array {name}: entry {len(entries) + 1} '{text}' has "
                            f"{len(positional)} fields, not driver, property, value")
        entries.append((positional[0], positional[1], positional[2]))
    return tuple(entries), frozenset(optional)


# --- the files ---------------------------------------------------------------


def _block(text: str, open_brace: int) -> str:
    """The text between the brace at ``open_brace`` and its partner."""
    depth = 0
    for m in re.finditer(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|[{}]', text[open_brace:]):
        if m.group(0) == "{":
            depth += 1
        elif m.group(0) == "}":
            depth -= 1
            if depth == 0:
                return text[open_brace + 1 : open_brace + m.start()]
    raise DataError("unbalanced braces")


@frozen
class _File:
    rel: str
    text: str
    macros: dict[str, Macro]
    functions: dict[str, tuple[str, str]]  # name -> (parameter, body)


class _Tree:
    def __init__(self, root: Path, config: Mapping[str, bool]) -> None:
        self.root = root
        self.config = config
        self.headers = _Headers(root, config)
        self.files: dict[str, _File] = {}
        self.tables: dict[str, SourceTable] = {}

    def load(self, key: str, path: Path) -> _File:
        rel = str(path.relative_to(self.root))
        text, macros = _preprocess(path.read_text(encoding="utf-8", errors="replace"), rel,
                                   self.config)
        functions: dict[str, tuple[str, str]] = {}
        spans: list[tuple[int, int, str]] = []
        for m in _FUNCTION.finditer(text):
            if m.group(1) in functions:
                raise DataError(f"{rel}: {m.group(1)} is defined twice")
            body = _block(text, m.end() - 1)
            functions[m.group(1)] = (m.group(2), body)
            spans.append((m.end(), m.end() + len(body), m.group(1)))
        file = _File(rel, text, macros, functions)
        self.files[key] = file
        lookup = self.lookup(file)
        for m in _ARRAY.finditer(text):
            owner = next((fn for start, end, fn in spans if start <= m.start() < end), None)
            name = f"{owner}.{m.group(1)}" if owner else m.group(1)
            if name in self.tables:
                raise DataError(f"{rel}: array {name} is defined twice")
            body = _block(text, m.end() - 1)
            try:
                toks = _expand(_tokens(body), lookup)
            except DataError as err:
                raise DataError(f"array {name} ({rel}): {err}") from None
            entries, optional = _entries(name, toks)
            self.tables[name] = SourceTable(name, rel, entries, optional)
        return file

    def lookup(self, file: _File) -> Lookup:
        def find(name: str) -> Macro | None:
            return file.macros[name] if name in file.macros else self.headers.get(name)
        return find


def _value(toks: list[str], what: str) -> str | None:
    if toks == ["NULL"]:
        return None
    text = _string(toks)
    if text is None:
        raise DataError(f"{what}: cannot resolve '{' '.join(toks)}' to a string")
    return text


def _bool(toks: list[str], what: str) -> bool:
    if toks in (["true"], ["1"]):
        return True
    if toks in (["false"], ["0"]):
        return False
    raise DataError(f"{what}: '{' '.join(toks)}' is not true or false")


@frozen
class _Chain:
    tables: tuple[str, ...] = ()
    split: bool | None = None
    alias: tuple[bool, str | None] = (False, None)  # (set, value)
    is_default: bool | None = None
    deprecation: tuple[bool, str | None] = (False, None)


def _chain(tree: _Tree, file: _File, fn: str, seen: tuple[str, ...] = ()) -> _Chain:
    """Follow one options function as it runs: calls, compat_props_add, fields set."""
    if fn in seen or fn not in file.functions:
        raise DataError(f"{file.rel}: cannot follow machine options function {fn}")
    param, body = file.functions[fn]
    p = re.escape(param)
    statement = re.compile(
        rf"\bcompat_props_add\s*\(\s*{p}\s*->\s*compat_props\s*,\s*(?P<table>\w+)\s*,"
        rf"|\b(?P<call>\w+)\s*\(\s*{p}\s*\)\s*;"
        rf"|\b{p}\s*->\s*(?P<field>default_kernel_irqchip_split|alias|is_default"
        rf"|deprecation_reason)\s*=\s*(?P<value>[^;]+);")
    state = _Chain()
    adds = 0
    lookup = tree.lookup(file)
    for m in statement.finditer(body):
        if m.group("table"):
            adds += 1
            table = m.group("table")
            local = f"{fn}.{table}"
            name = local if local in tree.tables else table
            state = _Chain((*state.tables, name), state.split, state.alias,
                           state.is_default, state.deprecation)
        elif m.group("call"):
            if m.group("call") not in file.functions:
                continue
            sub = _chain(tree, file, m.group("call"), (*seen, fn))
            state = _Chain(state.tables + sub.tables,
                           sub.split if sub.split is not None else state.split,
                           sub.alias if sub.alias[0] else state.alias,
                           sub.is_default if sub.is_default is not None else state.is_default,
                           sub.deprecation if sub.deprecation[0] else state.deprecation)
        else:
            field, toks = m.group("field"), _expand(_tokens(m.group("value")), lookup)
            what = f"{fn}: {field}"
            if field == "default_kernel_irqchip_split":
                state = _Chain(state.tables, _bool(toks, what), state.alias, state.is_default,
                               state.deprecation)
            elif field == "alias":
                state = _Chain(state.tables, state.split, (True, _value(toks, what)),
                               state.is_default, state.deprecation)
            elif field == "is_default":
                state = _Chain(state.tables, state.split, state.alias, _bool(toks, what),
                               state.deprecation)
            else:
                state = _Chain(state.tables, state.split, state.alias, state.is_default,
                               (True, _value(toks, what)))
    if adds != len(re.findall(r"\bcompat_props_add\b", body)) \
            or adds != len(re.findall(r"->\s*compat_props\b", body)):
        raise DataError(f"{file.rel}: {fn} touches compat_props in a way this scanner "
                        "does not follow")
    return state


def _machines(tree: _Tree, file: _File) -> dict[str, SourceMachine]:
    """Every machine a DEFINE_*_MACHINE* macro of this file defines."""
    lookup = tree.lookup(file)
    machines: dict[str, SourceMachine] = {}
    toks_cache: list[str] = []
    for m in _USE.finditer(file.text):
        macro = file.macros.get(m.group(1))
        if macro is None or macro.params is None:
            continue
        toks_cache = _tokens(file.text[m.end():m.end() + 2000])
        args, _ = _arguments(toks_cache, 0)
        bind = dict(zip(macro.params, args, strict=False))
        body = list(macro.body)
        where = f"{file.rel}: {m.group(1)}({', '.join(' '.join(a) for a in args)})"
        forced: tuple[bool, str | None] | None = None
        deprecation: tuple[bool, str | None] = (False, None)
        if "DEFINE_PC_VER_MACHINE" in body:
            inner, _ = _arguments(body, body.index("DEFINE_PC_VER_MACHINE") + 2)
            if len(inner) < 7:
                raise DataError(f"{where}: unexpected DEFINE_PC_VER_MACHINE shape")
            inner = [[x for t in a for x in bind.get(t, [t])] for a in inner]
            sym, prefix, default, malias = inner[0], inner[1], inner[3], inner[4]
            numbers = [" ".join(a) for a in inner[5:]]
            if not all(re.fullmatch(r"\d+", n) for n in numbers) or len(sym) != 1:
                raise DataError(f"{where}: unexpected version arguments")
            pre = _value(_expand(prefix, lookup), where)
            name = f"{pre}-{'.'.join(numbers)}"
            options = f"{sym[0]}_machine_{'_'.join(numbers)}_options"
            forced = (_bool(_expand(default, lookup), where),
                      _value(_expand(malias, lookup), where))
            if "MACHINE_VER_DEPRECATION" in (lookup("DEFINE_PC_VER_MACHINE") or
                                             Macro(None, ())).body:
                deprecation = (True, _age_deprecation(tree, lookup, numbers, where))
        elif "DEFINE_PC_MACHINE" in body:
            inner, _ = _arguments(body, body.index("DEFINE_PC_MACHINE") + 2)
            if len(inner) != 4 or len(inner[1]) != 1 or len(inner[3]) != 1:
                raise DataError(f"{where}: unexpected DEFINE_PC_MACHINE shape")
            name_toks = bind.get(inner[1][0], inner[1])
            opt_toks = bind.get(inner[3][0], inner[3])
            found = _value(_expand(name_toks, lookup), where)
            if found is None or len(opt_toks) != 1:
                raise DataError(f"{where}: no machine name or options function")
            name, options = found, opt_toks[0]
        else:
            continue
        chain = _chain(tree, file, options)
        alias = chain.alias[1]
        is_default = bool(chain.is_default)
        if forced is not None:
            is_default, alias = forced
        reason = deprecation[1] if deprecation[0] else chain.deprecation[1]
        if name in machines:
            raise DataError(f"{where}: machine {name} is defined twice")
        entries: list[Entry] = []
        for table in chain.tables:
            if table not in tree.tables:
                raise DataError(f"{where}: {options} adds array {table}, which was not found")
            entries.extend(tree.tables[table].entries)
        machines[name] = SourceMachine(name, chain.tables, bool(chain.split), tuple(entries),
                                       alias, is_default, reason)
    return machines


def _age_deprecation(tree: _Tree, lookup: Lookup, numbers: list[str],
                     where: str) -> str | None:
    """MACHINE_VER_DEPRECATION (QEMU 9.1 on): deprecation by age, against VERSION.

    boards.h's own rule is expanded and evaluated with QEMU_VERSION_MAJOR, _MINOR
    and _MICRO taken from the tree's VERSION file, as meson defines them.
    """
    setter = lookup("MACHINE_VER_DEPRECATION")
    if setter is None or not {"MACHINE_VER_IS_DEPRECATED", "MACHINE_VER_DEPRECATION_MSG"} \
            <= set(setter.body):
        raise DataError(f"{where}: MACHINE_VER_DEPRECATION is not the age rule this "
                        "scanner knows")
    version = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)\S*",
                           (tree.root / "VERSION").read_text().strip())
    if not version:
        raise DataError(f"{tree.root / 'VERSION'}: not MAJOR.MINOR.MICRO")
    defined = {f"QEMU_VERSION_{part}": Macro(None, (value,))
               for part, value in zip(("MAJOR", "MINOR", "MICRO"), version.groups(),
                                      strict=True)}

    def find(name: str) -> Macro | None:
        return defined[name] if name in defined else lookup(name)

    call = ["MACHINE_VER_IS_DEPRECATED", "("]
    for k, n in enumerate(numbers):
        call.extend([",", n] if k else [n])
    if _integer(_expand([*call, ")"], find), f"{where}: MACHINE_VER_IS_DEPRECATED"):
        return _value(_expand(["MACHINE_VER_DEPRECATION_MSG"], find), where)
    return None


def read_source(root: Path, config: Mapping[str, bool] = CONFIG) -> SourceFacts:
    """Scan a QEMU source tree for the pc machine facts of qemu-system-x86_64."""
    files = {
        "machine": root / "hw/core/machine.c",
        "pc": root / "hw/i386/pc.c",
        "q35": root / "hw/i386/pc_q35.c",
        "piix": root / "hw/i386/pc_piix.c",
    }
    for path in files.values():
        if not path.is_file():
            raise DataError(f"not a QEMU source tree: {path} is missing")
    version_file = root / "VERSION"
    version = version_file.read_text().strip() if version_file.is_file() else "unknown"
    tree = _Tree(root, config)
    loaded = {key: tree.load(key, path) for key, path in files.items()}
    machines: dict[str, SourceMachine] = {}
    for key in ("q35", "piix"):
        machines.update(_machines(tree, loaded[key]))
    if not machines:
        raise DataError(f"{root}: no versioned pc machine definitions found")
    return SourceFacts(version, tree.tables, machines)


# --- the committed snapshot ------------------------------------------------------


def _debian(root: Path) -> tuple[str | None, dict[str, Any] | None]:
    """The Debian version from debian/changelog, and the orig tarball the .dsc names."""
    changelog = root / "debian/changelog"
    if not changelog.is_file():
        return None, None
    head = re.match(r"(\S+) \(([^)]+)\)", changelog.read_text(errors="replace"))
    if not head:
        raise DataError(f"{changelog}: no version on its first line")
    package, version = head.groups()
    dsc = root.parent / f"{package}_{version.split(':', 1)[-1]}.dsc"
    if not dsc.is_file():
        raise DataError(f"{dsc} is missing: cannot name the orig tarball")
    sums = re.search(r"^Checksums-Sha256:\n((?: .*\n?)+)", dsc.read_text(), re.M)
    orig = [line.split() for line in (sums.group(1).splitlines() if sums else [])
            if ".orig.tar." in line and not line.endswith(".asc")]
    if len(orig) != 1:
        raise DataError(f"{dsc}: expected one orig tarball")
    sha, _size, tarball = orig[0]
    local = root.parent / tarball
    if local.is_file():
        digest = hashlib.sha256()
        with local.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != sha:
            raise DataError(f"{local}: sha256 differs from {dsc.name}")
    return version, {"package": package, "version": version, "orig_tarball": tarball,
                     "sha256": sha}


def source_arrays_doc(root: Path) -> dict[str, Any]:
    """The ``machines/source-arrays/v1`` snapshot of one tree."""
    facts = read_source(root)
    debian_version, source = _debian(root)
    used = sorted({t for m in facts.machines.values() for t in m.tables})
    machines: dict[str, Any] = {}
    for name in sorted(facts.machines, key=_machine_key):
        m = facts.machines[name]
        info: dict[str, Any] = {"tables": list(m.tables),
                                "kernel_irqchip_split": m.kernel_irqchip_split}
        if m.alias is not None:
            info["alias"] = m.alias
        if m.is_default:
            info["is_default"] = True
        if m.deprecation_reason is not None:
            info["deprecation_reason"] = m.deprecation_reason
        machines[name] = info
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "qemu": facts.version,
        "debian_version": debian_version,
        "source": source,
        "tables": {t: [list(e) for e in facts.tables[t].entries] for t in used},
        "machines": machines,
    }
    optional = {t: sorted(facts.tables[t].optional) for t in used if facts.tables[t].optional}
    if optional:
        doc["optional"] = optional
    return doc


def _machine_key(name: str) -> tuple[str, tuple[int, ...]]:
    family, _, ver = name.rpartition("-")
    nums = tuple(int(n) for n in ver.split(".") if n.isdigit())
    return family, nums


def read_options(root: Path) -> dict[str, bool]:
    """qemu-options.hx: every x86 command-line option and whether it takes an argument."""
    path = root / "qemu-options.hx"
    if not path.is_file():
        raise DataError(f"not a QEMU source tree: {path} is missing")
    text = path.read_text(encoding="utf-8", errors="replace")
    options: dict[str, bool] = {}
    for start in (m.end() for m in re.finditer(r"^DEF\(", text, re.M)):
        depth, pos, in_string = 1, start, False
        while depth and pos < len(text):  # find the DEF's closing parenthesis
            ch = text[pos]
            if in_string:
                if ch == "\\":
                    pos += 1
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            pos += 1
        body = text[start : pos - 1]
        name = re.match(r'\s*"([^"]+)"\s*,\s*(\w+)', body)
        arch = re.search(r",\s*([A-Z0-9_|\s]+)\s*$", body)
        if not name or not arch:
            continue
        masks = {a.strip() for a in arch.group(1).split("|")}
        if masks & {"QEMU_ARCH_ALL", "QEMU_ARCH_I386"}:
            options[name.group(1)] = name.group(2) == "HAS_ARG"
    return options


def main(argv: list[str] | None = None) -> int:
    """``python -m machines.compat.csource TREE -o FILE``: write a tree's snapshot."""
    from machines.fileio import atomic_write_json

    parser = argparse.ArgumentParser(prog="python -m machines.compat.csource",
                                     description=main.__doc__)
    parser.add_argument("tree", type=Path, help="an unpacked QEMU source tree")
    parser.add_argument("-o", "--output", help="write here (atomically) instead of stdout")
    args = parser.parse_args(argv)
    try:
        doc = source_arrays_doc(args.tree)
    except DataError as err:
        print(f"csource: {err}", file=sys.stderr)
        return 1
    if args.output:
        atomic_write_json(args.output, doc)
    else:
        import json
        print(json.dumps(doc, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
