#!/usr/bin/env python3
"""Fails if the library (engine/, replication/) writes to stderr or stdout
anywhere but engine/log.cc, the default of Options::logger.

    check_no_output.py SOURCE_DIR
"""
import pathlib
import re
import sys

PATTERN = re.compile(r"\b(std::)?(f?printf|fputs|puts|perror|putchar)\s*\(|std::(cerr|cout|clog)\b"
                     r"|\bstderr\b|\bstdout\b")
ALLOWED = {"engine/log.cc"}


def main():
    root = pathlib.Path(sys.argv[1])
    found = []
    for folder in ("engine", "replication"):
        for path in sorted((root / folder).glob("*.[ch]*")):
            rel = path.relative_to(root).as_posix()
            if rel in ALLOWED:
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("//", 1)[0]
                if PATTERN.search(code) and "snprintf" not in code:
                    found.append(f"{rel}:{n}: {line.strip()}")
    if found:
        print("the library writes output outside engine/log.cc (use engine::Log):")
        print("\n".join(found))
        return 1
    print("ok: only engine/log.cc writes output")
    return 0


if __name__ == "__main__":
    sys.exit(main())
