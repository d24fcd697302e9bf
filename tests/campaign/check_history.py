#!/usr/bin/env python3
"""Offline history checker of revkv's fault campaign (DESIGN §9).

Usage: python3 check_history.py RUN_DIR [--json]

It reads the history that the workload runner and the nemesis recorded in RUN_DIR,
checks it against every guarantee revkv makes, and prints one line per anomaly:

    ANOMALY <kind>: <what>; ops: <op ids>

then `WARNING: ...` lines for checks it had to skip, the line
`operations by op (ok/fail/unknown): <op> <ok>/<fail>/<unknown>, ...`, then the
summary line

    campaign check: <N> operations, <M> anomalies

With --json it prints the verdict as JSON instead. Either way it writes
RUN_DIR/verdict.json:

    {"operations": N,
     "anomalies": [{"kind": ..., "detail": ..., "ops": [ids]}, ...],
     "counts_by_kind": {kind: count, ...},     # every kind, 0 included
     "warnings": [...]}

Exit status: 0 with no anomaly, 1 with anomalies, 2 when the input is unreadable.
Importers call `check(run_dir)`, which returns the verdict dict (and raises
InputError on unreadable input).

RUN FOLDER FORMAT
-----------------
worker-<W>.jsonl
    One JSON object per line, appended by worker W across its restarts; each restart
    is a new incarnation `inc`. The last line may be truncated (kill -9): an
    unparsable LAST line is ignored; an unparsable line elsewhere is an input error.
    Times `t` are CLOCK_MONOTONIC ns of the one machine, comparable across workers;
    `wall` is wall-clock ns (not used).
    invoke      {"ev":"invoke","id":"<W>-<inc>-<seq>","w":W,"inc":I,"op":OP,"key":K,
                 ...args, "t":mono_ns, "wall":wall_ns}
                args by OP:
                  put, get, create, uwr (UpdateWithRetry): none
                  cas           "exp":E  expected revision, 0 = key has no message
                  delete        optional "exp":E
                  acquire       "lock":L
                  release       "lock":L, "token":T
                  locked_write  "lock":L, "token":T, "exp":E: a CAS write of K made
                                while holding lock L with token T (value carries T);
                                with "fenced":true the server checked the fence
                  fenced_put    "lock":L, "token":T: a Put of K fenced by lock L's
                                token T, whose record is the bucket's key L
                  create        optional "ttl_ms":D: the entry expires D ms after the
                                server stored it
                  transfer      "keys":[K1,K2],"exp":[E1,E2],"amount":A,"vals":[V1,V2]:
                                one transaction (an atomic batch) of a CAS write of
                                each bank key Ki expecting revision Ei, writing the
                                balance Vi (A moved from K1 to K2); no "key"
                  snapshot      "keys":[K...]: a snapshot read (GetMany) of the bank
                                keys; no "key"
    completion  {"ev":"ok"|"fail"|"unknown","id":...,"t":...,"wall":...} plus
                  "code": "Conflict"|"Exists"|"NotFound"|"Timeout"|"Unavailable"|
                          "LockLost"|"Busy"|...          on fail/unknown
                  "rev":R       revision written, or read, or the token of an acquire
                  "applied":b   writes: had the worker's replica applied R on return
                  get:          "rev":R,"value_id":ID on ok; "code":"NotFound" with
                                "rev" of the tombstone, or 0
                  transfer:     "rev":R (the last), "revs":[R1,R2] per key, on ok
                  snapshot:     "rev":R (the revision the snapshot is at), and per key
                                "revs":[..] (its revision, 0: no entry), "vals":[..]
                                (its balance, null: absent) and "value_ids":[..]
                `unknown` is Timeout/Unavailable after the write was sent: it may or
                may not have happened. An invoke with no completion (the worker was
                killed) is unknown too.
    watch_start {"ev":"watch_start","w":W,"inc":I,"watch":WID,"filter":F,"from_rev":R,"t":...}
                F is a NATS subject filter over keys: tokens split by '.', `*` is one
                token, `>` the rest (one token or more).
    watch       {"ev":"watch","w":W,"inc":I,"watch":WID,"key":K,"rev":R,
                 "op":"PUT"|"DEL"|"PURGE","value_id":ID|null,"t":...}
    watch_end   {"ev":"watch_end","watch":WID,"last_rev":R,...}   absent if killed
    lock_lost   {"ev":"lock_lost","w":W,"inc":I,"lock":L,"token":T,"t":...}
    Other "ev" values are ignored.
server.jsonl
    The server's history of the bucket, recorded live, in stream order:
        {"seq":S,"key":K,"op":"PUT"|"DEL"|"PURGE","value_id":ID|null,"token":T|null,
         "lock_token":T|null}
    lock_token is the token a lock's record (key "lock.*") holds. A limit marker
    (expiry) is a PURGE with value_id null.
    value_id is the id of the operation that wrote the message (null for tombstones
    without one and foreign writes, lock records included). Sequences strictly
    increase. Sequences missing between lines hold nothing the checks need (other
    keys); sequences the recorder could NOT see are marked by
        {"gap_from":A,"gap_to":B}
    and every check that needs a sequence in such a gap is skipped with a warning.
    A truncated last line is ignored, as in worker files.
final-server.json      {"K": {"rev":R,"op":...,"value_id":ID|null}, ...} the server's
                       last entry per key after the run.
final-replica-<W>.json The same shape: worker W's replica after a final Sync.
nemesis.jsonl          Faults: {"fault":"kill"|"pause"|"resume"|"server_restart"|
                       "leader_kill"|"partition"|"heal"|"delay"|"undelay","target":...,
                       "t":mono_ns,"wall":...}
                       and {"ev":"paused","w":W,"from_t":...,"to_t":...} intervals.
                       A worker target is W, "W", "worker-W", "wW" or {"worker":W}.
                       Optional: no file means no fault.
run.json               {"lease_ms":..,"margin_ms":..,"max_clock_skew_ms":..,
                       "limit_marker_ttl_ms":..,"workers":N,...}; the lease and margin
                       are needed only when the history holds lock acquisitions, the
                       skew only with TTL creates.

GUARANTEES (anomaly kinds)
--------------------------
cas-chain           In server.jsonl, each message written by a cas, a locked_write or a
                    delete with exp follows, on its key, the message at seq exp (exp 0:
                    no message at all before it); a transfer's message of key Ki, the
                    message at seq Ei. A create follows nothing, or a DEL or
                    PURGE tombstone.
ack-missing         Each write acknowledged ok is in server.jsonl at its revision, on its
                    key, with its id (a delete: a DEL at that seq, id or null).
unknown-duplicated  No write id appears more than once in server.jsonl (a transfer's: more
                    than once on one key).
conflict-applied    No write (transfer included) that completed `fail` appears in
                    server.jsonl.
create-twice        At most one acknowledged create per absence or tombstone of a key.
monotonic-read      Per worker (across incarnations) and key, a read invoked after another
                    read completed returns the same revision or a newer one.
read-your-writes    A read invoked after the worker's own acknowledged write of the key
                    completed with applied:true returns that revision or a newer one.
lock-token-order    Per lock, an acquisition that completed before another was invoked
                    has the smaller token; no two acknowledged acquisitions share a token.
stale-token-applied Per key (and lock), fencing tokens in server.jsonl never decrease.
lock-overlap        Two sections of one lock (acquire ok to release completion, lock_lost,
                    kill, or the worker's next incarnation, whichever is first) overlap
                    only if the earlier holder (smaller token) was paused or partitioned
                    for lease - margin in one stretch between its acquire and the later
                    acquire's completion; and no locked_write acknowledged with token T1
                    was written at a revision above a newer acquisition's token T2 > T1.
fence-violated      Each message of a fenced write (fenced_put, or locked_write with
                    "fenced") with token T was stored while its lock's record held T: the
                    last message of the lock's key before it is a record with token T.
ttl-not-expired     No read invoked once ttl_ms + max_clock_skew_ms (run.json) + 1 s
                    have passed since a create with a TTL completed returns that create's
                    entry.
watch-order         Per watch, revisions strictly increase: no duplicate, no step back.
watch-missed        Per watch and key matching its filter, the key's last message with
                    seq <= the watch's last revision (watch_end.last_rev, or its last
                    delivered revision) and seq > from_rev was delivered.
txn-partial         Each transfer in server.jsonl (any outcome) has exactly one message
                    per key of its own, at consecutive sequences; and each snapshot at
                    revision R saw every key at the key's last message with seq <= R
                    (0: none): never part of a transaction, nor a mix of states.
bank-total          Each snapshot that saw any bank key saw every one, with balances
                    summing to run.json's bank_total.
txn-lost            Each transfer acknowledged ok is in server.jsonl, each of its writes
                    at the revision acknowledged for it (one that is stored only in part
                    is txn-partial).
replica-diverged    Each final-replica-W.json equals final-server.json key by key (revision,
                    operation, value, and the creation time where both give one), except
                    that a replica may keep as a tombstone the key's last message on the
                    server, a limit marker (PURGE or DEL, value_id null), that expired
                    there since; and a replica may show no entry where the server's last
                    message is the marker of a TTL'd create that the replica expired on
                    its own before the marker came (after its final sync).

Choices where the format leaves room:
- A second acknowledged create with no tombstone since the first is reported once, as
  create-twice, not also as cas-chain.
- A cas or locked_write with exp != 0 and no earlier message on its key is a cas-chain
  anomaly (the recorder sees the bucket from its start), unless a gap precedes it.
- Reads are ordered by real time (a read invoked after another completed), which is
  completion order for a single-threaded worker and never flags concurrent calls.
  monotonic-read compares reads with reads; an own write counts in read-your-writes
  only, and only with applied:true (a write acknowledged before its apply may legally
  be followed by an older read, DESIGN §5).
- lock-token-order compares acquisitions ordered in real time, not by completion
  time alone: a holder paused between its grant and its log line completes "after"
  a later holder yet rightly has the smaller token.
- lock-overlap counts as cut off: pause..resume, `paused` lines, partition..heal (a
  heal naming no worker heals every partition); a pause or partition never closed
  lasts to the end of the run. server_restart and leader_kill have no duration and
  excuse nothing; nor does a delay..undelay (a slow link), which a holder's
  time-based lease must absorb.
- A read may miss a revision that a create with a TTL wrote once that TTL has passed
  since the create was invoked, and the marker of its expiry once the marker TTL has
  passed too: monotonic-read and read-your-writes excuse it then.
- Transfers with an unknown outcome (Timeout/Unavailable, or killed) may be stored or
  not, as other unknown writes, but only whole. The bank's creation (value id "init",
  written by the runner) is no operation of any worker.
- Lock records written by the engine carry no op id (value_id null); only ids of the
  write operations above are checked for duplicates and failed writes.
"""

import bisect
import json
import os
import re
import sys
import traceback
from collections import defaultdict

KINDS = [
    "cas-chain",
    "ack-missing",
    "unknown-duplicated",
    "conflict-applied",
    "create-twice",
    "monotonic-read",
    "read-your-writes",
    "lock-token-order",
    "stale-token-applied",
    "lock-overlap",
    "fence-violated",
    "ttl-not-expired",
    "watch-order",
    "watch-missed",
    "txn-partial",
    "bank-total",
    "txn-lost",
    "replica-diverged",
]

WRITE_OPS = {"put", "cas", "create", "delete", "uwr", "locked_write", "fenced_put"}
CAS_OPS = {"cas", "locked_write"}
TXN_OPS = {"transfer"}
TOMBSTONES = {"DEL", "PURGE"}
COMPLETIONS = {"ok", "fail", "unknown"}


class InputError(Exception):
    """The run folder cannot be read as a history."""


def anomaly(kind, detail, ops=()):
    ids = []
    for i in ops:
        if i is not None and i not in ids:
            ids.append(i)
    return {"kind": kind, "detail": detail, "ops": ids}


# ---------------------------------------------------------------------------
# Reading the run folder


def read_jsonl(path, tolerate_truncated_tail=True):
    """Returns [(line number, object)]. An unparsable last line is dropped."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise InputError(f"{path}: {e}")
    lines = raw.split(b"\n")
    numbered = [(n + 1, line) for n, line in enumerate(lines) if line.strip()]
    out = []
    for i, (lineno, line) in enumerate(numbered):
        try:
            obj = json.loads(line.decode("utf-8"))
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            if tolerate_truncated_tail and i == len(numbered) - 1:
                break  # a writer killed mid-line
            raise InputError(f"{path}:{lineno}: unparsable line: {e}")
        out.append((lineno, obj))
    return out


def read_json(path):
    try:
        with open(path, "rb") as f:
            obj = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: {e}")
    if not isinstance(obj, dict):
        raise InputError(f"{path}: not a JSON object")
    return obj


def norm_worker(x):
    """A worker id as a string ("3"), from 3, "3", "worker-3", "w3" or {"worker": 3}."""
    if isinstance(x, dict):
        x = x.get("worker", x.get("w"))
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, int):
        return str(x)
    if isinstance(x, str):
        m = re.fullmatch(r"(?:worker-?|w)?(\w+)", x)
        if m and not x.lower() in ("all", "none"):
            return m.group(1)
    return None


def need(obj, field, where):
    if field not in obj:
        raise InputError(f"{where}: missing field {field!r}")
    return obj[field]


class Op:
    """One operation: its invoke line and its completion line (None if killed)."""

    def __init__(self, inv, w, where):
        self.id = need(inv, "id", where)
        self.op = need(inv, "op", where)
        self.t_inv = need(inv, "t", where)
        self.w = w
        self.inc = inv.get("inc")
        self.key = inv.get("key")
        self.exp = inv.get("exp")
        self.lock = inv.get("lock")
        self.token = inv.get("token")
        self.ttl_ms = inv.get("ttl_ms")
        self.fenced = inv.get("fenced") is True or self.op == "fenced_put"
        self.keys = inv.get("keys")
        if self.op in TXN_OPS or self.op == "snapshot":
            if not isinstance(self.keys, list) or not self.keys:
                raise InputError(f"{where}: {self.op} without its keys")
            if self.op in TXN_OPS and (not isinstance(self.exp, list)
                                       or len(self.exp) != len(self.keys)):
                raise InputError(f"{where}: {self.op} without an expected revision per key")
        self.done = None

    @property
    def outcome(self):
        return self.done["ev"] if self.done else "unknown"

    @property
    def t_done(self):
        return self.done["t"] if self.done else None

    @property
    def rev(self):
        return self.done.get("rev") if self.done else None

    @property
    def code(self):
        return self.done.get("code") if self.done else "killed"

    def per_key(self, field):
        """A completion's list field with one item per key, or None."""
        v = self.done.get(field) if self.done else None
        return v if isinstance(v, list) and len(v) == len(self.keys or ()) else None

    @property
    def applied(self):
        return bool(self.done and self.done.get("applied") is True)

    def __repr__(self):
        return f"{self.op} {self.id}"


class Watch:
    def __init__(self, start):
        self.start = start
        self.entries = []
        self.end = None


class Run:
    """Everything recorded in a run folder, with indexes the checks share."""

    def __init__(self):
        self.ops = {}
        self.server = []
        self.gaps = []
        self.final_server = None
        self.final_replicas = {}
        self.faults = []
        self.paused = []  # (w, from_t, to_t)
        self.watches = {}  # (w, inc, wid) -> Watch
        self.lock_lost = []  # (w, inc, lock, token, t)
        self.inc_first_t = {}  # (w, inc) -> first t seen
        self.conf = {}
        self.end_t = 0
        self.warnings = []
        self.skipped = defaultdict(int)  # kind -> checks skipped for recorder gaps
        self._cache = {}

    # -- indexes over server.jsonl
    def index_server(self):
        self.by_seq = {m["seq"]: m for m in self.server}
        self.by_key = defaultdict(list)
        self.by_id = defaultdict(list)
        self.prev = {}
        for m in self.server:
            msgs = self.by_key[m["key"]]
            self.prev[m["seq"]] = msgs[-1] if msgs else None
            msgs.append(m)
            if m.get("value_id") is not None:
                self.by_id[m["value_id"]].append(m)

    def gap_between(self, lo, hi):
        """True if the recorder missed a sequence strictly between lo and hi."""
        return any(a < hi and b > lo for a, b in self.gaps)

    def in_gap(self, seq):
        return any(a <= seq <= b for a, b in self.gaps)

    def write_op(self, value_id):
        op = self.ops.get(value_id) if value_id is not None else None
        return op if op is not None and op.op in WRITE_OPS else None

    def ops_of(self, *names):
        return [o for o in self.ops.values() if o.op in names]

    def txn_op(self, value_id):
        op = self.ops.get(value_id) if value_id is not None else None
        return op if op is not None and op.op in TXN_OPS else None

    def last_at(self, key, rev):
        """The key's last message with seq <= rev, or None."""
        msgs = self.by_key.get(key, ())
        seqs = self._cache.setdefault(("seqs", key), [m["seq"] for m in msgs])
        i = bisect.bisect_right(seqs, rev)
        return msgs[i - 1] if i else None


def describe(m):
    if m is None:
        return "no earlier message"
    by = f" by {m['value_id']}" if m.get("value_id") else ""
    tok = f" token {m['token']}" if m.get("token") is not None else ""
    return f"seq {m['seq']} {m['op']} {m['key']!r}{by}{tok}"


def load_worker(run, path, file_w):
    latest_watch = {}  # wid -> watch key, for watch_end lines without inc
    for lineno, ev in read_jsonl(path):
        where = f"{path}:{lineno}"
        kind = ev.get("ev")
        w = norm_worker(ev.get("w", file_w)) or file_w
        inc = ev.get("inc")
        t = ev.get("t")
        if isinstance(t, int):
            run.end_t = max(run.end_t, t)
            if inc is not None and (w, inc) not in run.inc_first_t:
                run.inc_first_t[(w, inc)] = t
        if kind == "invoke":
            op = Op(ev, w, where)
            if op.id in run.ops:
                raise InputError(f"{where}: operation id {op.id} invoked twice")
            run.ops[op.id] = op
        elif kind in COMPLETIONS:
            oid = need(ev, "id", where)
            need(ev, "t", where)
            op = run.ops.get(oid)
            if op is None:
                raise InputError(f"{where}: completion of {oid}, never invoked")
            if op.done is not None:
                raise InputError(f"{where}: {oid} completed twice")
            op.done = ev
        elif kind == "watch_start":
            wkey = (w, inc, need(ev, "watch", where))
            need(ev, "filter", where)
            run.watches[wkey] = Watch(ev)
            latest_watch[wkey[2]] = wkey
        elif kind in ("watch", "watch_end"):
            wid = need(ev, "watch", where)
            wkey = (w, inc, wid) if inc is not None else latest_watch.get(wid)
            watch = run.watches.get(wkey)
            if watch is None:
                raise InputError(f"{where}: {kind} of watch {wid} with no watch_start")
            if kind == "watch":
                need(ev, "rev", where)
                watch.entries.append(ev)
            else:
                watch.end = ev
        elif kind == "lock_lost":
            run.lock_lost.append((w, inc, ev.get("lock"), ev.get("token"), need(ev, "t", where)))


def load_server(run, path):
    last = 0
    for lineno, m in read_jsonl(path):
        where = f"{path}:{lineno}"
        if "gap_from" in m:
            run.gaps.append((need(m, "gap_from", where), need(m, "gap_to", where)))
            run.warnings.append(
                f"server.jsonl: the recorder missed seq {m['gap_from']}..{m['gap_to']}")
            continue
        seq = need(m, "seq", where)
        need(m, "key", where)
        need(m, "op", where)
        if seq <= last:
            raise InputError(f"{where}: seq {seq} after seq {last}")
        last = seq
        m.setdefault("value_id", None)
        m.setdefault("token", None)
        m.setdefault("lock_token", None)
        run.server.append(m)


def load_nemesis(run, path):
    for lineno, f in read_jsonl(path):
        where = f"{path}:{lineno}"
        if f.get("ev") == "paused":
            w = norm_worker(need(f, "w", where))
            run.paused.append((w, need(f, "from_t", where), need(f, "to_t", where)))
            run.end_t = max(run.end_t, f["to_t"])
        elif "fault" in f:
            run.end_t = max(run.end_t, need(f, "t", where))
            run.faults.append(f)


def load_run(run_dir):
    if not os.path.isdir(run_dir):
        raise InputError(f"{run_dir}: not a folder")
    run = Run()
    names = sorted(os.listdir(run_dir))
    workers = []
    for name in names:
        m = re.fullmatch(r"worker-(.+)\.jsonl", name)
        if m:
            workers.append(m.group(1))
            load_worker(run, os.path.join(run_dir, name), m.group(1))
    if not workers:
        run.warnings.append("no worker-<W>.jsonl file: no operation to check")
    load_server(run, os.path.join(run_dir, "server.jsonl"))
    run.index_server()
    p = os.path.join(run_dir, "final-server.json")
    if os.path.exists(p):
        run.final_server = read_json(p)
    else:
        run.warnings.append("no final-server.json: replica convergence not checked")
    for name in names:
        m = re.fullmatch(r"final-replica-(.+)\.json", name)
        if m:
            run.final_replicas[m.group(1)] = read_json(os.path.join(run_dir, name))
    for w in workers:
        if w not in run.final_replicas:
            run.warnings.append(f"no final-replica-{w}.json: worker {w}'s replica not checked")
    p = os.path.join(run_dir, "nemesis.jsonl")
    if os.path.exists(p):
        load_nemesis(run, p)
    p = os.path.join(run_dir, "run.json")
    if os.path.exists(p):
        run.conf = read_json(p)
    return run


# ---------------------------------------------------------------------------
# Per-key CAS linearizability, judged on the server's history


def unseparated_creates(run):
    """Pairs (first, second) of ok creates of one key with no tombstone between them."""
    if "creates" in run._cache:
        return run._cache["creates"]
    pairs = []
    by_key = defaultdict(list)
    for op in run.ops_of("create"):
        if op.outcome == "ok" and op.rev is not None:
            by_key[op.key].append(op)
    for key, creates in by_key.items():
        creates.sort(key=lambda o: o.rev)
        tombstones = [m["seq"] for m in run.by_key.get(key, ()) if m["op"] in TOMBSTONES]
        for a, b in zip(creates, creates[1:]):
            if run.gap_between(a.rev, b.rev):
                run.skipped["create-twice"] += 1
                continue
            i = bisect.bisect_right(tombstones, a.rev)
            if i == len(tombstones) or tombstones[i] >= b.rev:  # none strictly between
                pairs.append((a, b))
    run._cache["creates"] = pairs
    return pairs


def check_cas_chain(run):
    out = []
    second_creates = {b.id for _, b in unseparated_creates(run)}  # reported as create-twice
    for m in run.server:
        txn = run.txn_op(m["value_id"])
        if txn is not None and m["key"] in txn.keys:
            exp = txn.exp[txn.keys.index(m["key"])]
            prev = run.prev[m["seq"]]
            if run.gap_between(prev["seq"] if prev else 0, m["seq"]):
                run.skipped["cas-chain"] += 1
            elif (prev is not None) if exp == 0 else (prev is None or prev["seq"] != exp):
                out.append(anomaly(
                    "cas-chain",
                    f"{txn} expected revision {exp} of {m['key']!r}, but server seq "
                    f"{m['seq']} follows {describe(prev)}",
                    [txn.id] + ([prev["value_id"]] if prev else [])))
            continue
        op = run.write_op(m["value_id"])
        if op is None:
            continue
        prev = run.prev[m["seq"]]
        is_cas = op.op in CAS_OPS or (op.op == "delete" and op.exp is not None)
        if not is_cas and op.op != "create":
            continue
        if op.op in CAS_OPS and op.exp is None:
            continue
        if run.gap_between(prev["seq"] if prev else 0, m["seq"]):
            run.skipped["cas-chain"] += 1
            continue
        prev_ops = [prev["value_id"]] if prev else []
        if is_cas:
            if op.exp == 0:
                bad = prev is not None
            else:
                bad = prev is None or prev["seq"] != op.exp
            if bad:
                out.append(anomaly(
                    "cas-chain",
                    f"{op} expected revision {op.exp} of {m['key']!r}, but server seq "
                    f"{m['seq']} follows {describe(prev)}",
                    [op.id] + prev_ops))
        elif prev is not None and prev["op"] not in TOMBSTONES and op.id not in second_creates:
            out.append(anomaly(
                "cas-chain",
                f"{op} of {m['key']!r} stored at seq {m['seq']} over a live value: "
                f"{describe(prev)}",
                [op.id] + prev_ops))
    return out


def check_ack_missing(run):
    out = []
    for op in sorted(run.ops_of(*WRITE_OPS), key=lambda o: o.t_inv):
        if op.outcome != "ok":
            continue
        if op.rev is None:
            if not run.by_id.get(op.id):
                out.append(anomaly("ack-missing",
                                   f"{op} of {op.key!r} acknowledged (no revision), "
                                   f"never in the server's history", [op.id]))
            continue
        m = run.by_seq.get(op.rev)
        if m is None:
            if run.in_gap(op.rev):
                run.skipped["ack-missing"] += 1
                continue
            out.append(anomaly("ack-missing",
                               f"{op} of {op.key!r} acknowledged at revision {op.rev}, "
                               f"but the server has no message at seq {op.rev}", [op.id]))
            continue
        want_op = "DEL" if op.op == "delete" else "PUT"
        id_ok = m["value_id"] == op.id or (op.op == "delete" and m["value_id"] is None)
        if m["key"] != op.key or m["op"] != want_op or not id_ok:
            out.append(anomaly("ack-missing",
                               f"{op} of {op.key!r} acknowledged at revision {op.rev}, "
                               f"but the server holds {describe(m)} there",
                               [op.id, m["value_id"]]))
    return out


def check_unknown_duplicated(run):
    out = []
    for vid, msgs in run.by_id.items():
        txn = run.txn_op(vid)
        if txn is not None:
            per_key = defaultdict(list)
            for m in msgs:
                per_key[m["key"]].append(m["seq"])
            for key, seqs in sorted(per_key.items()):
                if len(seqs) > 1:
                    out.append(anomaly("unknown-duplicated",
                                       f"{txn} ({txn.outcome}) wrote {key!r} {len(seqs)} "
                                       f"times: seq {', '.join(map(str, seqs))}", [txn.id]))
            continue
        op = run.write_op(vid)
        if op is not None and len(msgs) > 1:
            seqs = ", ".join(str(m["seq"]) for m in msgs)
            out.append(anomaly("unknown-duplicated",
                               f"{op} ({op.outcome}) of {op.key!r} is in the server's "
                               f"history {len(msgs)} times: seq {seqs}", [op.id]))
    return out


def check_conflict_applied(run):
    out = []
    for vid, msgs in run.by_id.items():
        op = run.write_op(vid) or run.txn_op(vid)
        if op is not None and op.outcome == "fail":
            out.append(anomaly("conflict-applied",
                               f"{op} of {op.key!r} failed with {op.code}, but the server "
                               f"stored it at seq {msgs[0]['seq']}", [op.id]))
    return out


def check_create_twice(run):
    return [anomaly("create-twice",
                    f"two acknowledged creates of {a.key!r}, at revisions {a.rev} and "
                    f"{b.rev}, with no tombstone between them", [a.id, b.id])
            for a, b in unseparated_creates(run)]


# ---------------------------------------------------------------------------
# Reads per worker


def read_rev(op):
    """The revision a get observed, or None."""
    if op.op != "get" or op.done is None:
        return None
    if op.outcome == "ok" or (op.outcome == "fail" and op.code == "NotFound"):
        return op.rev
    return None


def earlier_max(observations, t):
    """observations: [(t_done, rev, op)] sorted by t_done, with prefix maxima
    precomputed by prefix_max(). Returns (rev, op) of the highest revision among
    those completed strictly before t, or None."""
    times, maxima = observations
    i = bisect.bisect_left(times, t)
    return maxima[i - 1] if i else None


def prefix_max(obs):
    obs.sort(key=lambda x: x[0])
    times, maxima, best = [], [], None
    for t, rev, op in obs:
        if best is None or rev > best[0]:
            best = (rev, op)
        times.append(t)
        maxima.append(best)
    return times, maxima


def reads_by_worker_key(run):
    reads = defaultdict(list)
    for op in run.ops_of("get"):
        rev = read_rev(op)
        if rev is not None:
            reads[(op.w, op.key)].append((op.t_done, rev, op))
    return reads


def ttl_passed(op, read, extra_ms=0):
    """True if write `op` had a TTL, and `read` was invoked at least that TTL (plus
    extra_ms) after op was (the server stamps the entry after the invoke, and
    expiry counts from that stamp)."""
    return (op is not None and op.ttl_ms is not None and
            read.t_inv >= op.t_inv + (op.ttl_ms + extra_ms) * 1_000_000)


def may_have_expired(run, rev, seen, key, read):
    """Whether `read` of `key` may rightly not see revision `rev` any more, where `seen`
    is the operation that saw or wrote rev: True if rev was written by a create with a
    TTL that has passed (see ttl_passed), or is the limit marker of such an entry and
    the marker TTL (run.json's limit_marker_ttl_ms) has passed too; None if that cannot
    be told, because rev is in a recorder gap; False otherwise."""
    writer = run.write_op(seen.id) if seen.op in WRITE_OPS else None
    if writer is None and seen.done is not None and seen.done.get("value_id") is not None:
        writer = run.write_op(seen.done["value_id"])  # a read of a live entry
    if writer is not None:
        return ttl_passed(writer, read)
    msg = run.by_seq.get(rev)
    if msg is None:
        return None if run.in_gap(rev) else False
    if msg["key"] != key or msg["op"] not in TOMBSTONES or msg["value_id"] is not None:
        return False
    # A limit marker, written when the entry before it expired, expires in its
    # turn after the marker TTL.
    marker_ms = run.conf.get("limit_marker_ttl_ms")
    before = run.prev.get(rev)
    if marker_ms is None or before is None:
        return None if before is None and run.gap_between(0, rev) else False
    return ttl_passed(run.write_op(before["value_id"]), read, marker_ms)


def excused_by_expiry(run, kind, rev, seen, key, read):
    """may_have_expired, counting the checks a recorder gap left undecided."""
    verdict = may_have_expired(run, rev, seen, key, read)
    if verdict is None:
        run.skipped[kind] += 1
        return True
    return verdict


def check_monotonic_read(run):
    out = []
    for (w, key), reads in sorted(reads_by_worker_key(run).items(), key=lambda kv: str(kv[0])):
        before = prefix_max(list(reads))
        for _, rev, op in sorted(reads, key=lambda x: x[2].t_inv):
            seen = earlier_max(before, op.t_inv)
            if seen and rev < seen[0] and not excused_by_expiry(
                    run, "monotonic-read", seen[0], seen[1], key, op):
                out.append(anomaly("monotonic-read",
                                   f"worker {w} read {key!r} at revision {rev} ({op.id}) "
                                   f"after reading revision {seen[0]} ({seen[1].id})",
                                   [seen[1].id, op.id]))
    return out


def check_read_your_writes(run):
    out = []
    writes = defaultdict(list)
    for op in run.ops_of(*WRITE_OPS):
        if op.outcome == "ok" and op.applied and op.rev is not None:
            writes[(op.w, op.key)].append((op.t_done, op.rev, op))
    writes = {k: prefix_max(v) for k, v in writes.items()}
    for (w, key), reads in sorted(reads_by_worker_key(run).items(), key=lambda kv: str(kv[0])):
        if (w, key) not in writes:
            continue
        for _, rev, op in sorted(reads, key=lambda x: x[2].t_inv):
            wrote = earlier_max(writes[(w, key)], op.t_inv)
            if wrote and rev < wrote[0] and not excused_by_expiry(
                    run, "read-your-writes", wrote[0], wrote[1], key, op):
                out.append(anomaly("read-your-writes",
                                   f"worker {w} read {key!r} at revision {rev} ({op.id}) "
                                   f"after its write {wrote[1]} completed, applied, at "
                                   f"revision {wrote[0]}", [wrote[1].id, op.id]))
    return out


# ---------------------------------------------------------------------------
# Locks


def acquisitions(run):
    """lock -> ok acquires with a token, sorted by token."""
    locks = defaultdict(list)
    for op in run.ops_of("acquire"):
        if op.outcome == "ok" and op.rev is not None:
            locks[op.lock].append(op)
    for acqs in locks.values():
        acqs.sort(key=lambda o: o.rev)
    return locks


def check_lock_token_order(run):
    out = []
    for lock, acqs in sorted(acquisitions(run).items(), key=lambda kv: str(kv[0])):
        for a, b in zip(acqs, acqs[1:]):
            if a.rev == b.rev:
                out.append(anomaly("lock-token-order",
                                   f"lock {lock!r}: {a} and {b} both got token {a.rev}",
                                   [a.id, b.id]))
        before = prefix_max([(o.t_done, o.rev, o) for o in acqs])
        for op in sorted(acqs, key=lambda o: o.t_inv):
            prior = earlier_max(before, op.t_inv)
            if prior and op.rev < prior[0]:
                out.append(anomaly("lock-token-order",
                                   f"lock {lock!r}: {op} got token {op.rev}, lower than "
                                   f"token {prior[0]} of {prior[1]} which completed "
                                   f"before it was invoked", [prior[1].id, op.id]))
    return out


def check_stale_token_applied(run):
    out = []
    highest = {}  # (key, lock) -> message with the highest token so far
    for m in run.server:
        if m["token"] is None:
            continue
        op = run.ops.get(m["value_id"]) if m["value_id"] is not None else None
        group = (m["key"], op.lock if op is not None else None)
        top = highest.get(group)
        if top is not None and m["token"] < top["token"]:
            out.append(anomaly("stale-token-applied",
                               f"{describe(m)} was applied after {describe(top)}",
                               [m["value_id"], top["value_id"]]))
        elif top is None or m["token"] > top["token"]:
            highest[group] = m
    return out


class Section:
    def __init__(self, acquire, end, why):
        self.op = acquire
        self.w = acquire.w
        self.token = acquire.rev
        self.start = acquire.t_done
        self.end = end
        self.why = why


def fault_target(f):
    return norm_worker(f.get("target"))


def kill_times(run):
    kills = defaultdict(list)
    for f in run.faults:
        if f["fault"] == "kill" and fault_target(f) is not None:
            kills[fault_target(f)].append(f["t"])
    return kills


def cutoff_intervals(run, w):
    """Merged intervals in which worker w was paused or partitioned from its server."""
    spans = [(a, b) for pw, a, b in run.paused if pw == w]
    paused_at = partitioned_at = None
    for f in sorted(run.faults, key=lambda f: f["t"]):
        target, fault, t = fault_target(f), f["fault"], f["t"]
        if fault == "pause" and target == w and paused_at is None:
            paused_at = t
        elif fault == "resume" and target == w and paused_at is not None:
            spans.append((paused_at, t))
            paused_at = None
        elif fault == "partition" and target == w and partitioned_at is None:
            partitioned_at = t
        elif fault == "heal" and partitioned_at is not None and target in (w, None):
            spans.append((partitioned_at, t))  # a heal naming no worker heals all
            partitioned_at = None
    for open_at in (paused_at, partitioned_at):
        if open_at is not None:
            spans.append((open_at, run.end_t))
    merged = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def lock_sections(run):
    """lock -> [Section], each from an ok acquire to the first end of its holding."""
    kills = kill_times(run)
    releases = defaultdict(list)
    for op in run.ops_of("release"):
        if op.done is not None:
            releases[(op.w, op.inc, op.lock, op.token)].append(op)
    lost = defaultdict(list)
    for w, inc, lock, token, t in run.lock_lost:
        lost[(w, lock, token)].append((inc, t))
    sections = defaultdict(list)
    for lock, acqs in acquisitions(run).items():
        for a in acqs:
            ends = [(run.end_t, "end of run")]
            # The holder stops using the lock when it asks to release it;
            # the release's own completion may come after the next holder,
            # woken by the release, has acquired.
            for r in releases.get((a.w, a.inc, lock, a.rev), ()):
                if r.t_inv >= a.t_done:
                    ends.append((r.t_inv, f"release {r.id}"))
            for inc, t in lost.get((a.w, lock, a.rev), ()):
                if inc in (a.inc, None) and t >= a.t_done:
                    ends.append((t, "lock_lost"))
            ends += [(t, "kill") for t in kills.get(a.w, ()) if t > a.t_done]
            if isinstance(a.inc, int):
                ends += [(t, f"incarnation {inc}") for (w, inc), t in run.inc_first_t.items()
                         if w == a.w and isinstance(inc, int) and inc > a.inc]
            end, why = min(ends, key=lambda e: e[0])
            sections[lock].append(Section(a, end, why))
    return sections


def excused(run, earlier, later, cutoff_ns):
    """Was the earlier holder cut off for cutoff_ns in one stretch before the takeover?"""
    lo, hi = earlier.op.t_inv, later.start
    return any(min(b, hi) - max(a, lo) >= cutoff_ns for a, b in cutoff_intervals(run, earlier.w))


def check_lock_overlap(run):
    out = []
    sections = lock_sections(run)
    if sections and ("lease_ms" not in run.conf or "margin_ms" not in run.conf):
        raise InputError("run.json with lease_ms and margin_ms is needed to judge locks")
    if sections:
        cutoff_ns = (run.conf["lease_ms"] - run.conf["margin_ms"]) * 1_000_000
    for lock, secs in sorted(sections.items(), key=lambda kv: str(kv[0])):
        secs.sort(key=lambda s: s.start)
        for i, s in enumerate(secs):
            for o in secs[i + 1:]:
                if o.start >= s.end:
                    break
                if o.token == s.token or o.end <= s.start:
                    continue
                earlier, later = (s, o) if s.token < o.token else (o, s)
                if not excused(run, earlier, later, cutoff_ns):
                    out.append(anomaly(
                        "lock-overlap",
                        f"lock {lock!r}: worker {earlier.w}'s section (token {earlier.token},"
                        f" until {earlier.why}) overlaps worker {later.w}'s (token "
                        f"{later.token}) by {(min(s.end, o.end) - o.start) / 1e6:.1f} ms, and "
                        f"worker {earlier.w} was not paused or cut off for "
                        f"{cutoff_ns / 1e6:.0f} ms before the takeover",
                        [earlier.op.id, later.op.id]))
    if sections:
        out += takeover_writes(run, sections)
    return out


def takeover_writes(run, sections):
    """Fenced writes an earlier holder started after a newer holder had the lock.

    Tokens are revisions of the locks bucket and writes are revisions of the
    data bucket, so the two are ordered by time: a locked_write acknowledged
    ok, invoked after a holder with a larger token completed its acquire, is
    an anomaly even if its writer was paused: an overlap may be excused, a
    stale holder's write landing after the takeover never is.
    """
    out = []
    for op in run.ops_of("locked_write"):
        if op.outcome != "ok" or op.token is None:
            continue
        secs = sections.get(op.lock, [])
        earlier = next((s for s in secs if s.token == op.token and s.w == op.w), None)
        later = next((s for s in sorted(secs, key=lambda s: s.start)
                      if s.token > op.token and s.start < op.t_inv), None)
        if earlier is None or later is None:
            continue
        out.append(anomaly("lock-overlap",
                           f"lock {op.lock!r}: {op} with token {op.token} was invoked "
                           f"{(op.t_inv - later.start) / 1e6:.1f} ms after {later.op} took the "
                           f"lock with token {later.token}, and was applied",
                           [op.id, later.op.id]))
    return out


# ---------------------------------------------------------------------------
# Watches


def check_fence_violated(run):
    """Each message of a fenced write (token T, lock L) was stored while L's record on
    the server held T: the last message of L's key before it is a record with token T."""
    out = []
    current = {}  # lock key -> (lock token or None, message)
    last_lock_seq = {}  # lock key -> seq of its last message
    fenced_locks = {op.lock for op in run.ops.values() if op.fenced and op.lock}
    for m in run.server:
        if m["key"] in fenced_locks:
            current[m["key"]] = (m["lock_token"] if m["op"] == "PUT" else None, m)
            last_lock_seq[m["key"]] = m["seq"]
            continue
        op = run.write_op(m["value_id"])
        if op is None or not op.fenced or op.lock is None:
            continue
        if run.gap_between(last_lock_seq.get(op.lock, 0), m["seq"]):
            run.skipped["fence-violated"] += 1
            continue
        token, record = current.get(op.lock, (None, None))
        if token != op.token:
            held = (f"record {describe(record)} with token {token}" if record is not None
                    and token is not None else describe(record) if record is not None
                    else "no record")
            out.append(anomaly("fence-violated",
                               f"{op} fenced with token {op.token} of lock {op.lock!r} was "
                               f"stored at seq {m['seq']} while the lock's key held {held}",
                               [op.id] + ([record["value_id"]] if record is not None else [])))
    return out


def check_ttl_not_expired(run):
    """A read invoked once a TTL'd entry's TTL, plus the replica's clock-skew tolerance
    and a second of slack for the apply, has passed since its create completed does not
    return that entry."""
    out = []
    skew_ms = run.conf.get("max_clock_skew_ms")
    ttl_ops = [o for o in run.ops_of("create") if o.ttl_ms is not None]
    if not ttl_ops:
        return out
    if skew_ms is None:
        raise InputError("run.json with max_clock_skew_ms is needed to judge TTL expiry")
    for op in run.ops_of("get"):
        if op.outcome != "ok" or op.done.get("value_id") is None:
            continue
        w = run.ops.get(op.done["value_id"])
        if w is None or w.ttl_ms is None or w.t_done is None or w.outcome != "ok":
            continue
        due = w.t_done + (w.ttl_ms + skew_ms + 1000) * 1_000_000
        if op.t_inv >= due:
            out.append(anomaly("ttl-not-expired",
                               f"{op} of {op.key!r} returned revision {op.rev} of {w}, "
                               f"invoked {(op.t_inv - w.t_done) / 1e6:.0f} ms after that "
                               f"create with a TTL of {w.ttl_ms} ms completed",
                               [w.id, op.id]))
    return out


def filter_matches(filt, key):
    f, k = filt.split("."), key.split(".")
    for i, tok in enumerate(f):
        if tok == ">":
            return len(k) > i
        if i >= len(k) or (tok != "*" and tok != k[i]):
            return False
    return len(k) == len(f)


def watch_name(wkey):
    w, inc, wid = wkey
    return f"watch {wid} of worker {w} (incarnation {inc})"


def check_watch_order(run):
    out = []
    for wkey, watch in sorted(run.watches.items(), key=lambda kv: str(kv[0])):
        prev = None
        for e in watch.entries:
            if prev is not None and e["rev"] <= prev["rev"]:
                what = "again" if e["rev"] == prev["rev"] else f"after revision {prev['rev']}"
                out.append(anomaly("watch-order",
                                   f"{watch_name(wkey)} delivered revision {e['rev']} of "
                                   f"{e.get('key')!r} {what}",
                                   [prev.get("value_id"), e.get("value_id")]))
            if prev is None or e["rev"] > prev["rev"]:
                prev = e
    return out


def check_watch_missed(run):
    out = []
    for wkey, watch in sorted(run.watches.items(), key=lambda kv: str(kv[0])):
        filt = watch.start["filter"]
        from_rev = watch.start.get("from_rev", 0) or 0
        delivered = {e["rev"] for e in watch.entries}
        if watch.end is not None and watch.end.get("last_rev") is not None:
            last_rev = watch.end["last_rev"]
        else:
            last_rev = max(delivered, default=from_rev)
        for key, msgs in sorted(run.by_key.items(), key=lambda kv: str(kv[0])):
            if not filter_matches(filt, key):
                continue
            seqs = [m["seq"] for m in msgs]
            i = bisect.bisect_right(seqs, last_rev)
            if i == 0:
                continue
            m = msgs[i - 1]
            if m["seq"] <= from_rev or m["seq"] in delivered:
                continue
            if run.gap_between(m["seq"], last_rev + 1):
                run.skipped["watch-missed"] += 1
                continue
            out.append(anomaly("watch-missed",
                               f"{watch_name(wkey)} on {filt!r} (from {from_rev} to "
                               f"{last_rev}) never delivered {describe(m)}, the key's last "
                               f"message by then", [m["value_id"]]))
    return out


# ---------------------------------------------------------------------------
# Transactions and the bank


def check_txn_partial(run):
    out = []
    # Stored transactions: all of their writes, at consecutive sequences.
    for op in run.ops_of(*TXN_OPS):
        msgs = run.by_id.get(op.id, [])
        if not msgs:
            continue
        seqs = sorted(m["seq"] for m in msgs)
        n = len(op.keys)
        if run.gap_between(seqs[0] - n, seqs[-1] + n):
            run.skipped["txn-partial"] += 1
            continue
        stored = {m["key"] for m in msgs}
        if stored != set(op.keys) or any(m["op"] != "PUT" for m in msgs):
            out.append(anomaly("txn-partial",
                               f"{op} ({op.outcome}) of {op.keys} is in the server's history "
                               f"only as {', '.join(describe(m) for m in msgs)}", [op.id]))
        elif seqs[-1] - seqs[0] != len(seqs) - 1:
            between = [describe(run.by_seq[q]) for q in range(seqs[0] + 1, seqs[-1])
                       if q in run.by_seq and q not in seqs]
            out.append(anomaly("txn-partial",
                               f"{op} ({op.outcome}) of {op.keys} was stored at seq "
                               f"{seqs}, not consecutive: between them {', '.join(between)}",
                               [op.id] + [run.by_seq[q]["value_id"]
                                          for q in range(seqs[0] + 1, seqs[-1])
                                          if q in run.by_seq]))
    # Snapshots: one consistent state, the server's at the snapshot's revision.
    for op in run.ops_of("snapshot"):
        if op.outcome != "ok":
            continue
        at, revs = op.rev, op.per_key("revs")
        if at is None or revs is None:
            raise InputError(f"snapshot {op.id}: completed ok without rev and revs per key")
        for key, seen in zip(op.keys, revs):
            want = run.last_at(key, at)
            want_seq = want["seq"] if want is not None else 0
            if seen == want_seq:
                continue
            if run.gap_between(min(seen, want_seq) - 1, at + 1):
                run.skipped["txn-partial"] += 1
                continue
            got = run.by_seq.get(seen)
            out.append(anomaly("txn-partial",
                               f"{op} at revision {at} saw {key!r} at revision {seen} "
                               f"({describe(got) if got else 'no message'}), but the "
                               f"server's state at {at} is {describe(want)}",
                               [op.id] + [m["value_id"] for m in (got, want) if m]))
    return out


def check_bank_total(run):
    out = []
    snapshots = [o for o in run.ops_of("snapshot") if o.outcome == "ok"]
    if not snapshots:
        return out
    total = run.conf.get("bank_total")
    if total is None:
        raise InputError("run.json with bank_total is needed to judge snapshots")
    for op in snapshots:
        vals = op.per_key("vals")
        if vals is None:
            raise InputError(f"snapshot {op.id}: completed ok without vals per key")
        if all(v is None for v in vals):
            continue  # before the bank was created (as the replica had it)
        if any(v is None for v in vals):
            missing = [k for k, v in zip(op.keys, vals) if v is None]
            out.append(anomaly("bank-total",
                               f"{op} at revision {op.rev} saw no balance for {missing} "
                               f"but saw the other accounts", [op.id]))
        elif sum(vals) != total:
            out.append(anomaly("bank-total",
                               f"{op} at revision {op.rev} saw balances {vals}, summing to "
                               f"{sum(vals)}, not {total}",
                               [op.id] + list(op.per_key("value_ids") or ())))
    return out


def check_txn_lost(run):
    out = []
    for op in sorted(run.ops_of(*TXN_OPS), key=lambda o: o.t_inv):
        if op.outcome != "ok":
            continue
        revs = op.per_key("revs")
        stored = run.by_id.get(op.id, [])
        if revs is None:
            if not stored:
                out.append(anomaly("txn-lost",
                                   f"{op} of {op.keys} acknowledged (no revisions), never in "
                                   f"the server's history", [op.id]))
            continue
        wrong = []
        for key, rev in zip(op.keys, revs):
            m = run.by_seq.get(rev)
            if m is None and run.in_gap(rev):
                run.skipped["txn-lost"] += 1
                continue
            if m is None or m["key"] != key or m["value_id"] != op.id or m["op"] != "PUT":
                wrong.append((key, rev, m))
        if not wrong:
            continue
        if not stored:
            out.append(anomaly("txn-lost",
                               f"{op} of {op.keys} acknowledged at revisions {revs}, never "
                               f"in the server's history", [op.id]))
        elif len(stored) == len(op.keys):  # stored whole, elsewhere: not partial
            what = "; ".join(f"{k!r} at {r}: {describe(m) if m else 'no message'}"
                             for k, r, m in wrong)
            out.append(anomaly("txn-lost",
                               f"{op} acknowledged at revisions {revs}, but the server holds "
                               f"{what}", [op.id] + [m["value_id"] for _, _, m in wrong if m]))
    return out


# ---------------------------------------------------------------------------
# Convergence


def entry(e):
    return None if e is None else (e.get("rev"), e.get("op"), e.get("value_id"))


def expired_marker(run, key, r):
    """True if replica entry r of `key` is the limit marker that was the key's last
    message on the server: markers expire on the server by themselves, and a replica
    keeps the tombstone."""
    if r is None or r[1] not in TOMBSTONES or r[2] is not None:
        return False
    msgs = run.by_key.get(key)
    return bool(msgs) and msgs[-1]["seq"] == r[0] and msgs[-1]["op"] == r[1]


def marker_not_yet_applied(run, key, s, r):
    """True if the server's last message of `key`, s, is a limit marker that came
    after the replica's final sync, which shows no entry r: the replica had expired
    the TTL'd entry before the marker on its own."""
    if r is not None or s is None or s[1] not in TOMBSTONES or s[2] is not None:
        return False
    before = run.prev.get(s[0])
    op = run.write_op(before["value_id"]) if before is not None else None
    return op is not None and op.ttl_ms is not None


def check_replica_diverged(run):
    out = []
    if run.final_server is None:
        return out
    for w, replica in sorted(run.final_replicas.items()):
        for key in sorted(set(run.final_server) | set(replica)):
            s, r = entry(run.final_server.get(key)), entry(replica.get(key))
            if s is None and expired_marker(run, key, r):
                continue
            if marker_not_yet_applied(run, key, s, r):
                continue
            if s != r:
                out.append(anomaly("replica-diverged",
                                   f"worker {w}'s replica has {key!r} as "
                                   f"(rev, op, value_id) {r}, the server {s}",
                                   [x[2] for x in (s, r) if x]))
                continue
            # The same entry, at the server's time: a write applied ahead of the
            # consumer has its time corrected once the consumer delivers it.
            sc = (run.final_server.get(key) or {}).get("created")
            rc = (replica.get(key) or {}).get("created")
            if s is not None and sc is not None and rc is not None and sc != rc:
                out.append(anomaly("replica-diverged",
                                   f"worker {w}'s replica has {key!r} at revision {s[0]} "
                                   f"created at {rc} ns, the server at {sc} ns",
                                   [s[2]] if s[2] else []))
    return out


# ---------------------------------------------------------------------------

CHECKS = [
    check_cas_chain,
    check_ack_missing,
    check_unknown_duplicated,
    check_conflict_applied,
    check_create_twice,
    check_monotonic_read,
    check_read_your_writes,
    check_lock_token_order,
    check_stale_token_applied,
    check_lock_overlap,
    check_fence_violated,
    check_ttl_not_expired,
    check_watch_order,
    check_watch_missed,
    check_txn_partial,
    check_bank_total,
    check_txn_lost,
    check_replica_diverged,
]


def check(run_dir, write=True):
    """Checks the run folder; returns the verdict and writes RUN_DIR/verdict.json."""
    run = load_run(run_dir)
    anomalies = []
    for c in CHECKS:
        anomalies += c(run)
    counts = {k: 0 for k in KINDS}
    for a in anomalies:
        counts[a["kind"]] += 1
    warnings = list(run.warnings)
    warnings += [f"{kind}: {n} check(s) skipped: they need sequences the recorder missed"
                 for kind, n in sorted(run.skipped.items())]
    by_op = defaultdict(lambda: {"ok": 0, "fail": 0, "unknown": 0})
    for op in run.ops.values():
        by_op[op.op][op.outcome] += 1
    verdict = {"operations": len(run.ops), "anomalies": anomalies,
               "counts_by_kind": counts, "warnings": warnings,
               "operations_by_op": {k: by_op[k] for k in sorted(by_op)}}
    if write:
        with open(os.path.join(run_dir, "verdict.json"), "w") as f:
            json.dump(verdict, f, indent=1)
            f.write("\n")
    return verdict


def operations_line(verdict):
    parts = [f"{op} {n['ok']}/{n['fail']}/{n['unknown']}"
             for op, n in verdict["operations_by_op"].items()]
    return "operations by op (ok/fail/unknown): " + (", ".join(parts) or "none")


def summary(verdict):
    return (f"campaign check: {verdict['operations']} operations, "
            f"{len(verdict['anomalies'])} anomalies")


def main(argv):
    args = [a for a in argv if a != "--json"]
    if len(args) != 1:
        print("usage: check_history.py RUN_DIR [--json]", file=sys.stderr)
        return 2
    try:
        verdict = check(args[0])
    except (InputError, OSError) as e:
        print(f"campaign check: unreadable input: {e}", file=sys.stderr)
        return 2
    except (TypeError, KeyError, ValueError, AttributeError):
        # A field of the wrong type: never let it pass for "anomalies found" (exit 1).
        traceback.print_exc()
        print("campaign check: unreadable input (see the traceback)", file=sys.stderr)
        return 2
    if "--json" in argv:
        json.dump(verdict, sys.stdout, indent=1)
        print()
    else:
        for a in verdict["anomalies"]:
            print(f"ANOMALY {a['kind']}: {a['detail']}; ops: {', '.join(map(str, a['ops'])) or '-'}")
        for w in verdict["warnings"]:
            print(f"WARNING: {w}")
        print(operations_line(verdict))
        print(summary(verdict))
    return 1 if verdict["anomalies"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
