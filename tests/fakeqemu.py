"""Stand-ins for a QEMU binary that misbehaves in one chosen way.

The real QEMU is tested everywhere else; these exist because a real one
cannot be made to hang, crash at start or talk garbage on request.  Each is a
small executable script: ``-machine help`` answers like QEMU (unless the mode
breaks it), and a QMP start connects to the socket QEMU would be given.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

MODES = ("help-fails", "help-hangs", "exits", "never-connects", "garbage", "wrong-shape",
         "errors", "hangs-mid-session", "type-loop")

_SCRIPT = r'''
import json, os, re, socket, sys, time
MODE = {mode!r}
args = sys.argv[1:]
if args == ["-machine", "help"]:
    if MODE == "help-fails":
        sys.stderr.write("qemu-system-x86_64: could not load PC BIOS\n")
        sys.exit(1)
    if MODE == "help-hangs":
        time.sleep(3600)
    print("Supported machines are:")
    print("pc-q35-10.0          Standard PC (Q35 + ICH9, 2009)")
    sys.exit(0)
if MODE == "exits":
    sys.stderr.write("qemu-system-x86_64: -accel tcg: invalid accelerator tcg\n")
    sys.exit(1)
if MODE == "never-connects":
    time.sleep(3600)
path = re.search(r"path=([^, ]+)", " ".join(args)).group(1)
sock = socket.socket(socket.AF_UNIX)
sock.connect(path)

def send(doc):
    sock.sendall(json.dumps(doc).encode() + b"\r\n")

def requests():
    """QMP clients send JSON objects back to back, not lines: decode as they come."""
    decoder, buffer = json.JSONDecoder(), ""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return
        buffer += chunk.decode()
        while buffer.strip():
            try:
                doc, end = decoder.raw_decode(buffer.lstrip())
            except ValueError:
                break
            buffer = buffer.lstrip()[end:]
            yield doc

send({{"QMP": {{"version": {{"qemu": {{"major": 10, "minor": 0, "micro": 2}},
                            "package": ""}}, "capabilities": []}}}})
for request in requests():
    command, ident = request.get("execute"), request.get("id")
    if command == "qmp_capabilities":
        send({{"return": {{}}, "id": ident}})
    elif command == "quit":
        send({{"return": {{}}, "id": ident}})
        break
    elif MODE == "garbage":
        sock.sendall(b"\x00\xff{{not json at all\r\n")
    elif MODE == "errors":
        send({{"error": {{"class": "GenericError", "desc": "nope"}}, "id": ident}})
    elif MODE == "hangs-mid-session":
        time.sleep(3600)
    elif command == "query-version":
        send({{"return": {{"qemu": {{"major": 10, "minor": 0, "micro": 2}}, "package": ""}},
               "id": ident}})
    elif MODE == "wrong-shape":
        send({{"return": {{"machines": "banana"}}, "id": ident}})
    elif command == "query-machines":
        send({{"return": [{{"name": "pc-q35-10.0", "compat-props": []}}], "id": ident}})
    elif command == "qom-list-types":  # type-loop: a parent chain that never ends
        send({{"return": [{{"name": "a", "parent": "b"}}, {{"name": "b", "parent": "a"}}],
               "id": ident}})
    else:
        send({{"return": [], "id": ident}})
'''


def make(directory: Path, mode: str) -> str:
    """Write the stand-in for ``mode`` into ``directory``; return its path."""
    if mode not in MODES:
        raise ValueError(mode)
    path = directory / f"qemu-{mode}"
    path.write_text(f"#!{sys.executable}\n" + _SCRIPT.format(mode=mode))
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return str(path)
