#!/usr/bin/env python3
"""Checks the layering of revkv's sources from the build's compile commands.

replication/ must depend only on the engine's narrow interfaces and the
public API: no translation unit under replication/ may include, directly or
through an engine header, any RocksDB header. The check preprocesses each
such unit with its own compile command (-M lists every header it reads) and
fails naming the units and the RocksDB headers they reach.

Usage: check_layering.py COMPILE_COMMANDS_JSON SOURCE_DIR
"""

import json
import os
import shlex
import subprocess
import sys


def headers_of(entry):
    args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
    out = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
            continue
        if a in ("-c", "-MD", "-MMD"):
            continue
        out.append(a)
    out += ["-M", "-MF", "/dev/stdout", "-o", "/dev/null"]
    done = subprocess.run(out, cwd=entry["directory"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError("preprocessing %s failed: %s" % (entry["file"], done.stderr[:2000]))
    return done.stdout.replace("\\\n", " ").split()


def main():
    commands, source_dir = sys.argv[1], os.path.realpath(sys.argv[2])
    with open(commands) as f:
        entries = json.load(f)
    layer = os.path.join(source_dir, "replication") + os.sep
    units = [e for e in entries if os.path.realpath(e["file"]).startswith(layer)]
    if not units:
        print("no replication/ units in %s" % commands)
        return 1
    bad = {}
    for e in units:
        rocks = sorted({h for h in headers_of(e) if "/rocksdb/" in h})
        if rocks:
            bad[os.path.relpath(e["file"], source_dir)] = rocks
    for unit, rocks in sorted(bad.items()):
        print("%s reaches %d RocksDB headers, e.g. %s" % (unit, len(rocks), rocks[0]))
    print("%d replication/ units checked, %d reach RocksDB" % (len(units), len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
