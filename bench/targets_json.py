"""A report's DESIGN §8 targets, written for bench/targets.py to gather.

Each report script that checks a target passes its verdicts here:
    entry(name, ratio, target, higher_is_better) -> dict
    write(path, entries)
`name` is the target's name in bench/targets.py (TARGETS); `ratio` the
measured ratio, revkv against its baseline; `target` the bound.
"""

import json
import sys


def entry(name, ratio, target, higher_is_better=True, detail=""):
    met = ratio >= target if higher_is_better else ratio <= target
    return {"name": name, "ratio": round(ratio, 4), "target": target,
            "bound": "min" if higher_is_better else "max", "met": bool(met), "detail": detail}


def write(path, entries):
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"targets": entries}, f, indent=1)
            f.write("\n")
    except OSError as e:
        print(f"targets_json: error: cannot write '{path}': {e}", file=sys.stderr)
        sys.exit(1)
