#!/usr/bin/env python3
"""README's CLI reference is `revkv --help` and `revkv COMMAND --help`, word for word.

  cli_readme_test.py REVKV README.md            check (exit 1 and a diff on drift)
  cli_readme_test.py REVKV README.md --update   rewrite the generated blocks

The blocks sit between <!-- BEGIN NAME --> and <!-- END NAME --> markers in
README's CLI reference; the commands are those `revkv --help` lists.
"""
import difflib
import re
import subprocess
import sys


def run(revkv, *args):
    done = subprocess.run([revkv, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0 or done.stderr:
        sys.exit(f"revkv {' '.join(args)}: exit {done.returncode}, stderr {done.stderr!r}")
    return done.stdout


def commands(usage):
    listing = usage.split("\nCommands:\n", 1)[1].split("\n\n", 1)[0]
    return [m.group(1) for m in re.finditer(r"^  ([a-z]+)\b", listing, re.M)]


def blocks(revkv):
    usage = run(revkv, "--help")
    per_command = "\n".join(f"$ revkv {c} --help\n{run(revkv, c, '--help')}" for c in commands(usage))
    return {"revkv --help": usage, "revkv COMMAND --help": per_command}


def main():
    revkv, readme = sys.argv[1], sys.argv[2]
    update = sys.argv[3:] == ["--update"]
    text = original = open(readme, encoding="utf-8").read()
    for name, body in blocks(revkv).items():
        pattern = re.compile(rf"(<!-- BEGIN {re.escape(name)} -->\n)(.*?)(<!-- END {re.escape(name)} -->)", re.S)
        if not pattern.search(text):
            sys.exit(f"{readme}: no <!-- BEGIN {name} --> ... <!-- END {name} --> block")
        text = pattern.sub(lambda m: m.group(1) + "```text\n" + body + "```\n" + m.group(3), text)
    if text == original:
        return 0
    if update:
        open(readme, "w", encoding="utf-8").write(text)
        print(f"{readme}: CLI reference regenerated")
        return 0
    sys.stdout.writelines(difflib.unified_diff(original.splitlines(True), text.splitlines(True),
                                               readme, "revkv --help"))
    print(f"\n{readme}'s CLI reference differs from revkv's help; run {sys.argv[0]} "
          f"{revkv} {readme} --update")
    return 1


if __name__ == "__main__":
    sys.exit(main())
