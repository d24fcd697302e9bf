"""Tests of the campaign's history checker on synthetic runs.

One clean history exercises every guarantee and must give no anomaly. Each other
test plants one anomaly in a copy of it and asserts the checker reports that kind,
and only that kind. Run: python3 -m unittest -v test_check_history
"""

import copy
import json
import os
import subprocess
import sys
import tempfile
import unittest
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_history  # noqa: E402

MS = 1_000_000
LOCK_KEY = "_lock.L1"


class Builder:
    """Writes a run folder in the runner's format. Times are in ms; each operation
    completes 5 ms after its invoke."""

    def __init__(self):
        self.lines = defaultdict(list)  # worker -> dicts (or raw strings)
        self.server = []
        self.seq = 0
        self.nemesis = []
        self.conf = {"lease_ms": 300, "margin_ms": 50, "max_clock_skew_ms": 500,
                     "limit_marker_ttl_ms": 1000, "workers": 2, "bank_keys": 4,
                     "bank_total": 400}
        self.bank = {}  # bank key -> (seq, balance) on the server
        self.inc = defaultdict(lambda: 1)
        self.n = defaultdict(int)
        self.watch_inc = {}
        self.replica_patch = defaultdict(dict)  # worker -> {key: entry or None}
        self.server_expired = set()  # keys whose last message (a marker) expired

    # -- primitives
    def invoke(self, w, op, key, t, **args):
        inc = self.inc[w]
        self.n[(w, inc)] += 1
        oid = f"{w}-{inc}-{self.n[(w, inc)]}"
        ev = {"ev": "invoke", "id": oid, "w": w, "inc": inc, "op": op}
        if key is not None:
            ev["key"] = key
        ev.update(args)
        ev.update({"t": t * MS, "wall": 1_700_000_000_000_000_000 + t * MS})
        self.lines[w].append(ev)
        return oid

    def complete(self, w, oid, ev, t, **fields):
        self.lines[w].append({"ev": ev, "id": oid, "t": t * MS,
                              "wall": 1_700_000_000_000_000_000 + t * MS, **fields})

    def msg(self, key, op="PUT", value_id=None, token=None, seq=None, lock_token=None):
        """lock_token "own": a lock record whose token is its own sequence."""
        self.seq = seq if seq is not None else self.seq + 1
        self.server.append({"seq": self.seq, "key": key, "op": op,
                            "value_id": value_id, "token": token,
                            "lock_token": self.seq if lock_token == "own" else lock_token})
        return self.seq

    # -- operations
    def write(self, w, op, key, t, applied=True, **args):
        """An acknowledged write, stored on the server. Returns (id, seq)."""
        oid = self.invoke(w, op, key, t, **args)
        seq = self.msg(key, "DEL" if op == "delete" else "PUT", oid, args.get("token"))
        self.complete(w, oid, "ok", t + 5, rev=seq, applied=applied)
        return oid, seq

    def unknown(self, w, op, key, t, stored=1, **args):
        """A write that timed out after sending; the server stored it `stored` times."""
        oid = self.invoke(w, op, key, t, **args)
        for _ in range(stored):
            self.msg(key, "DEL" if op == "delete" else "PUT", oid, args.get("token"))
        self.complete(w, oid, "unknown", t + 5, code="Timeout")
        return oid

    def fail(self, w, op, key, t, code, **args):
        oid = self.invoke(w, op, key, t, **args)
        self.complete(w, oid, "fail", t + 5, code=code)
        return oid

    def get(self, w, key, t, rev, value_id=None, notfound=False):
        oid = self.invoke(w, "get", key, t)
        if notfound:
            self.complete(w, oid, "fail", t + 5, code="NotFound", rev=rev)
        else:
            self.complete(w, oid, "ok", t + 5, rev=rev, value_id=value_id)
        return oid

    def acquire(self, w, lock, t, token=None):
        """An acknowledged acquire; stores the lock record unless a token is forced."""
        oid = self.invoke(w, "acquire", None, t, lock=lock)
        if token is None:
            token = self.msg(LOCK_KEY)
        self.complete(w, oid, "ok", t + 5, rev=token)
        return oid, token

    def release(self, w, lock, token, t):
        oid = self.invoke(w, "release", None, t, lock=lock, token=token)
        self.msg(LOCK_KEY, "DEL")
        self.complete(w, oid, "ok", t + 5, rev=self.seq)
        return oid

    def record_acquire(self, w, lock, t):
        """An acknowledged acquire of a lock whose record is the data bucket's key
        `lock`."""
        oid = self.invoke(w, "acquire", None, t, lock=lock)
        token = self.msg(lock, lock_token="own")
        self.complete(w, oid, "ok", t + 5, rev=token)
        return oid, token

    def record_release(self, w, lock, token, t):
        oid = self.invoke(w, "release", None, t, lock=lock, token=token)
        self.msg(lock, "DEL")
        self.complete(w, oid, "ok", t + 5)
        return oid

    def lock_lost(self, w, lock, token, t):
        self.lines[w].append({"ev": "lock_lost", "w": w, "inc": self.inc[w],
                              "lock": lock, "token": token, "t": t * MS})

    def watch_start(self, w, wid, filt, t, from_rev=0):
        self.watch_inc[wid] = (w, self.inc[w])
        self.lines[w].append({"ev": "watch_start", "w": w, "inc": self.inc[w], "watch": wid,
                              "filter": filt, "from_rev": from_rev, "t": t * MS})

    def deliver(self, wid, seq, t):
        w, inc = self.watch_inc[wid]
        m = next(m for m in self.server if m["seq"] == seq)
        self.lines[w].append({"ev": "watch", "w": w, "inc": inc, "watch": wid,
                              "key": m["key"], "rev": seq, "op": m["op"],
                              "value_id": m["value_id"], "t": t * MS})

    def watch_end(self, wid, last_rev, t):
        w, inc = self.watch_inc[wid]
        self.lines[w].append({"ev": "watch_end", "w": w, "inc": inc, "watch": wid,
                              "last_rev": last_rev, "t": t * MS})

    def fault(self, fault, target, t):
        self.nemesis.append({"fault": fault, "target": target, "t": t * MS,
                             "wall": 1_700_000_000_000_000_000 + t * MS})

    def restart(self, w):
        self.inc[w] += 1

    # -- the bank
    BANK = ["b.0", "b.1", "b.2", "b.3"]

    def bank_init(self):
        """The runner's creation of the bank: one batch, value id "init"."""
        for k in self.BANK:
            self.bank[k] = (self.msg(k, value_id="init"), 100)

    def snapshot(self, w, t, at=None, revs=None, vals=None):
        """A snapshot read of every bank key; by default the server's state now."""
        oid = self.invoke(w, "snapshot", None, t, keys=list(self.BANK))
        at = self.seq if at is None else at
        revs = [self.bank[k][0] if k in self.bank else 0 for k in self.BANK] \
            if revs is None else revs
        vals = [self.bank[k][1] if k in self.bank else None for k in self.BANK] \
            if vals is None else vals
        ids = [next((m["value_id"] for m in self.server if m.get("seq") == r), None)
               for r in revs]
        self.complete(w, oid, "ok", t + 5, rev=at, revs=revs, vals=vals, value_ids=ids)
        return oid

    def transfer(self, w, t, src, dst, amount, outcome="ok", stored=(0, 1), exp=None,
                 revs=None, code=None):
        """A transfer of `amount` from bank key src to dst; `stored` lists which of its
        two writes the server stored, in order (None: completes with no line at all,
        as if killed)."""
        keys = [src, dst]
        exp = [self.bank[k][0] for k in keys] if exp is None else exp
        vals = [self.bank[src][1] - amount, self.bank[dst][1] + amount]
        oid = self.invoke(w, "transfer", None, t, keys=keys, exp=exp, amount=amount,
                          vals=vals)
        seqs = []
        for i in stored:
            seqs.append(self.msg(keys[i], value_id=oid))
            self.bank[keys[i]] = (self.seq, vals[i])
        if outcome == "ok":
            self.complete(w, oid, "ok", t + 5, rev=(revs or seqs)[-1], revs=revs or seqs,
                          applied=True)
        elif outcome == "fail":
            self.complete(w, oid, "fail", t + 5, code=code or "Conflict")
        elif outcome == "unknown":
            self.complete(w, oid, "unknown", t + 5, code=code or "Timeout")
        return oid, seqs

    # -- the folder
    def final_server(self):
        final = {}
        for m in self.server:
            if "seq" not in m:
                continue  # a recorder gap
            final[m["key"]] = {"rev": m["seq"], "op": m["op"], "value_id": m["value_id"],
                               "created": 1_700_000_000_000_000_000 + m["seq"]}
        return final

    def write_dir_finals(self):
        """final-server.json's content, and each replica's starting point."""
        final = self.final_server()
        server = {k: v for k, v in final.items() if k not in self.server_expired}
        return server, final

    def write_dir(self, path):
        def dump_lines(name, items):
            with open(os.path.join(path, name), "w") as f:
                for item in items:
                    f.write(item if isinstance(item, str) else json.dumps(item) + "\n")

        for w, items in self.lines.items():
            dump_lines(f"worker-{w}.jsonl", items)
        dump_lines("server.jsonl", self.server)
        dump_lines("nemesis.jsonl", self.nemesis)
        server, final = self.write_dir_finals()
        with open(os.path.join(path, "final-server.json"), "w") as f:
            json.dump(server, f)
        for w in self.lines:
            replica = copy.deepcopy(final)
            for key, e in self.replica_patch[w].items():
                if e is None:
                    replica.pop(key, None)
                else:
                    replica[key] = e
            with open(os.path.join(path, f"final-replica-{w}.json"), "w") as f:
                json.dump(replica, f)
        with open(os.path.join(path, "run.json"), "w") as f:
            json.dump(self.conf, f)


def clean_history():
    """Every guarantee exercised, none broken: CAS chains, a Conflict, Create after a
    tombstone, an Exists, unknown writes stored once or never, reads on a replica
    that persists across a kill, a lock taken over from a paused holder, two watches
    (one killed before its end), and converged replicas."""
    b = Builder()
    b.watch_start(1, "wa", "c.*", t=1)
    b.watch_start(2, "wb", "k.>", t=2)
    ka1, s_ka1 = b.write(1, "create", "k.a", 10)
    kb1, s_kb1 = b.write(2, "put", "k.b", 20)
    c1, s_c1 = b.write(1, "cas", "c.1", 30, exp=0)
    c2, s_c2 = b.write(2, "cas", "c.1", 40, exp=s_c1)
    b.fail(1, "cas", "c.1", 50, "Conflict", exp=s_c1)
    b.get(1, "c.1", 60, rev=s_c2, value_id=c2)
    c3, s_c3 = b.write(1, "uwr", "c.1", 70)
    _, s_del = b.write(2, "delete", "k.a", 80, exp=s_ka1)
    ka2, s_ka2 = b.write(2, "create", "k.a", 90)
    b.fail(1, "create", "k.a", 100, "Exists")
    kb2 = b.unknown(1, "put", "k.b", 110, stored=1)
    b.unknown(2, "put", "k.b", 120, stored=0)
    s_kb2 = b.seq
    b.get(2, "k.b", 130, rev=s_kb2, value_id=kb2)
    b.get(1, "k.zzz", 135, rev=0, notfound=True)
    b.write(1, "put", "c.x.y", 140)  # outside the filter "c.*": never delivered
    # Locks: w1 holds and releases; w2 holds, is paused past its lease, w1 takes over.
    _, t1 = b.acquire(1, "L1", 200)
    _, s_f1 = b.write(1, "locked_write", "f.1", 210, lock="L1", token=t1, exp=0)
    _, s_f2 = b.write(1, "locked_write", "f.1", 220, lock="L1", token=t1, exp=s_f1)
    b.release(1, "L1", t1, 230)
    _, t2 = b.acquire(2, "L1", 240)
    _, s_f3 = b.write(2, "locked_write", "f.1", 250, lock="L1", token=t2, exp=s_f2)
    b.fault("pause", 2, 260)
    _, t3 = b.acquire(1, "L1", 600)
    b.fault("resume", 2, 700)
    b.lock_lost(2, "L1", t2, 702)
    b.fail(2, "locked_write", "f.1", 703, "LockLost", lock="L1", token=t2, exp=s_f3)
    _, s_f4 = b.write(1, "locked_write", "f.1", 720, lock="L1", token=t3, exp=s_f3)
    b.release(1, "L1", t3, 800)
    # w2 is killed with a put in flight (no completion); the put was stored.
    kb3 = b.invoke(2, "put", "k.b", 880)
    s_kb3 = b.msg("k.b", value_id=kb3)
    b.fault("kill", 2, 900)
    b.restart(2)
    b.get(2, "c.1", 950, rev=s_c3, value_id=c3)
    b.get(2, "k.b", 960, rev=s_kb3, value_id=kb3)
    for i, s in enumerate((s_c1, s_c2, s_c3)):
        b.deliver("wa", s, 31 + 20 * i)
    b.watch_end("wa", b.seq, 990)
    for i, s in enumerate((s_ka1, s_kb1, s_del, s_ka2, s_kb2)):
        b.deliver("wb", s, 11 + 20 * i)  # killed at 900: no watch_end
    # Fenced writes under the lock "lock.F", whose record is a key of the data
    # bucket: a fenced Put, then a fenced CAS (its batch rewrites the record first);
    # after w2 took the lock over, w1's fenced Put is refused.
    _, tf = b.record_acquire(1, "lock.F", 1100)
    _, s_g1 = b.write(1, "fenced_put", "g.1", 1110, lock="lock.F", token=tf)
    b.msg("lock.F", lock_token=tf)
    _, s_g2 = b.write(1, "locked_write", "g.1", 1120, lock="lock.F", token=tf, exp=s_g1,
                      fenced=True)
    b.record_release(1, "lock.F", tf, 1130)
    _, tg = b.record_acquire(2, "lock.F", 1140)
    b.fail(1, "fenced_put", "g.1", 1150, "LockLost", lock="lock.F", token=tf)
    _, s_g3 = b.write(2, "fenced_put", "g.1", 1160, lock="lock.F", token=tg)
    b.record_release(2, "lock.F", tg, 1170)
    # A create with a TTL of 1 s: read within it, missed once expired (before the
    # marker, and at the marker), then created again over the marker.
    tt, s_tt = b.write(2, "create", "t.0", 1200, ttl_ms=1000)
    b.get(2, "t.0", 1300, rev=s_tt, value_id=tt)
    b.get(2, "t.0", 2300, rev=0, notfound=True)
    s_marker = b.msg("t.0", "PURGE")
    b.get(2, "t.0", 2400, rev=s_marker, notfound=True)
    b.get(2, "t.0", 3300, rev=0, notfound=True)  # the marker expired too
    b.write(1, "create", "t.0", 3400, ttl_ms=1000)
    # t.1 expired too, and its marker has expired on the server since: the
    # replicas keep the marker's tombstone.
    b.write(2, "create", "t.1", 3500, ttl_ms=1000)
    b.msg("t.1", "PURGE")
    b.server_expired.add("t.1")
    # t.2's marker came after the replicas' final sync: they expired the entry
    # on their own and show nothing.
    b.write(1, "create", "t.2", 3600, ttl_ms=1000)
    b.msg("t.2", "PURGE")
    for w in (1, 2):
        b.replica_patch[w]["t.2"] = None
    # The bank: a snapshot of w2's replica from before its creation, the creation,
    # transfers acknowledged, refused (a stale revision), unknown and stored, unknown
    # and not stored, killed and stored; snapshots between them.
    b.snapshot(2, 3990, at=b.seq, revs=[0, 0, 0, 0], vals=[None] * 4)
    b.bank_init()
    b.snapshot(1, 4000)
    stale = [b.bank["b.0"][0], b.bank["b.2"][0]]  # b.0's revision before tr1
    b.transfer(1, 4010, "b.0", "b.1", 10)
    b.snapshot(2, 4020)
    b.transfer(2, 4030, "b.0", "b.2", 5, outcome="fail", stored=(), exp=stale)
    b.transfer(1, 4040, "b.3", "b.0", 7, outcome="unknown")
    b.transfer(2, 4050, "b.1", "b.3", 3, outcome="unknown", stored=())
    b.snapshot(1, 4060)
    b.transfer(1, 4070, "b.2", "b.1", 20, outcome="killed")
    b.snapshot(2, 4080)
    b.marks = dict(t1=t1, t2=t2, t3=t3, s_c3=s_c3, s_kb1=s_kb1, s_kb2=s_kb2,
                   s_ka2=s_ka2, s_f4=s_f4, s_c2=s_c2, tf=tf, tg=tg, s_g3=s_g3)
    return b


class CheckerTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.n = 0

    def folder(self, b):
        self.n += 1
        path = os.path.join(self.tmp.name, f"run{self.n}")
        os.mkdir(path)
        b.write_dir(path)
        return path

    def verdict(self, b):
        return check_history.check(self.folder(b))

    def kinds(self, b):
        return {a["kind"] for a in self.verdict(b)["anomalies"]}

    def assertOnly(self, b, kind):
        v = self.verdict(b)
        found = {a["kind"] for a in v["anomalies"]}
        self.assertEqual(found, {kind}, json.dumps(v["anomalies"], indent=1))
        return v["anomalies"]


class CleanHistory(CheckerTest):
    def test_clean_history_has_no_anomaly(self):
        b = clean_history()
        path = self.folder(b)
        v = check_history.check(path)
        self.assertEqual(v["anomalies"], [])
        self.assertEqual(v["warnings"], [])
        n_invokes = sum(1 for ls in b.lines.values() for e in ls if e["ev"] == "invoke")
        self.assertEqual(v["operations"], n_invokes)
        self.assertEqual(set(v["counts_by_kind"]), set(check_history.KINDS))
        self.assertEqual(sum(v["counts_by_kind"].values()), 0)
        with open(os.path.join(path, "verdict.json")) as f:
            self.assertEqual(json.load(f), v)

    def test_cli_clean_exits_0_with_the_summary_line(self):
        path = self.folder(clean_history())
        p = subprocess.run([sys.executable, check_history.__file__, path],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        v = check_history.check(path)
        n = v["operations"]
        self.assertEqual(v["operations_by_op"]["transfer"], {"ok": 1, "fail": 1, "unknown": 3})
        self.assertEqual(v["operations_by_op"]["snapshot"], {"ok": 5, "fail": 0, "unknown": 0})
        lines = p.stdout.strip().splitlines()
        self.assertEqual(len(lines), 2, lines)
        self.assertTrue(lines[0].startswith("operations by op (ok/fail/unknown): "), lines)
        self.assertIn("transfer 1/1/3", lines[0])
        self.assertEqual(lines[1], f"campaign check: {n} operations, 0 anomalies")

    def test_cli_reports_anomalies_and_exits_1(self):
        b = clean_history()
        b.get(1, "k.b", 1000, rev=b.marks["s_kb2"])
        b.get(1, "k.b", 1010, rev=b.marks["s_kb1"])
        path = self.folder(b)
        p = subprocess.run([sys.executable, check_history.__file__, path],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        lines = p.stdout.strip().splitlines()
        self.assertTrue(lines[0].startswith("ANOMALY monotonic-read: "), lines)
        self.assertIn("; ops: 1-1-", lines[0])
        self.assertRegex(lines[-1], r"^campaign check: \d+ operations, 1 anomalies$")
        p = subprocess.run([sys.executable, check_history.__file__, path, "--json"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(json.loads(p.stdout)["counts_by_kind"]["monotonic-read"], 1)

    def test_truncated_last_line_of_a_killed_worker_is_tolerated(self):
        b = clean_history()
        n = self.verdict(b)["operations"]
        b.lines[2].append('{"ev":"invoke","id":"2-2-9","w":2,"inc":2,"op":"pu')
        v = self.verdict(b)
        self.assertEqual(v["anomalies"], [])
        self.assertEqual(v["operations"], n)

    def test_unparsable_line_before_the_last_is_unreadable_input(self):
        b = clean_history()
        b.lines[1].insert(3, '{"ev":"invoke","id":"garbage\n')
        path = self.folder(b)
        with self.assertRaises(check_history.InputError):
            check_history.check(path)
        p = subprocess.run([sys.executable, check_history.__file__, path],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("worker-1.jsonl:4", p.stderr)

    def test_missing_server_history_is_unreadable_input(self):
        path = self.folder(clean_history())
        os.remove(os.path.join(path, "server.jsonl"))
        p = subprocess.run([sys.executable, check_history.__file__, path],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)

    def test_locks_without_lease_settings_are_unreadable_input(self):
        path = self.folder(clean_history())
        os.remove(os.path.join(path, "run.json"))
        with self.assertRaises(check_history.InputError):
            check_history.check(path)

    def test_invoke_without_completion_is_an_unknown_outcome(self):
        b = clean_history()
        oid = b.invoke(1, "put", "k.e", 1000)  # killed before it completed
        b.msg("k.e", value_id=oid)
        run = check_history.load_run(self.folder(b))
        self.assertEqual(run.ops[oid].outcome, "unknown")
        self.assertEqual(self.verdict(b)["anomalies"], [])  # stored once: allowed
        b.msg("k.e", value_id=oid)  # stored twice: not allowed
        anomalies = self.assertOnly(b, "unknown-duplicated")
        self.assertEqual(anomalies[0]["ops"], [oid])

    def test_write_acknowledged_before_its_apply_may_be_read_older(self):
        b = clean_history()
        b.write(1, "put", "k.d", 1000, applied=False)
        b.get(1, "k.d", 1010, rev=0, notfound=True)
        self.assertEqual(self.verdict(b)["anomalies"], [])

    def test_holder_paused_as_recorded_by_a_paused_line_excuses_the_overlap(self):
        b = clean_history()
        b.nemesis = [f for f in b.nemesis if f["fault"] not in ("pause", "resume")]
        b.nemesis.append({"ev": "paused", "w": 2, "from_t": 260 * MS, "to_t": 700 * MS})
        self.assertEqual(self.verdict(b)["anomalies"], [])

    def test_recorder_gap_skips_the_checks_that_need_it_with_a_warning(self):
        b = clean_history()
        # A CAS whose predecessor may lie in a gap, and an ack inside the gap.
        b.seq += 1
        b.server.append({"gap_from": b.seq, "gap_to": b.seq + 1})
        oid = b.invoke(1, "put", "c.1", 1000)
        b.complete(1, oid, "ok", 1005, rev=b.seq, applied=True)
        b.seq += 1
        b.write(2, "cas", "c.1", 1010, exp=b.seq)
        v = self.verdict(b)
        self.assertEqual(v["anomalies"], [])
        text = " ".join(v["warnings"])
        self.assertIn("missed seq", text)
        self.assertIn("cas-chain: 1 check(s) skipped", text)
        self.assertIn("ack-missing: 1 check(s) skipped", text)

    def test_expiry_of_entries_and_markers_the_recorder_missed_is_judged_or_skipped(self):
        b = clean_history()
        # w2's own TTL'd create, stored in a gap: its expiry is judged from the
        # create itself; a marker in a gap cannot be judged, and is skipped.
        b.seq += 1
        b.server.append({"gap_from": b.seq, "gap_to": b.seq + 1})
        oid = b.invoke(2, "create", "t.5", 5000, ttl_ms=1000)
        b.complete(2, oid, "ok", 5005, rev=b.seq, applied=True)
        b.get(2, "t.5", 5100, rev=0, notfound=True)  # before the TTL: a step back
        b.get(2, "t.5", 7000, rev=0, notfound=True)  # after it: expired
        b.seq += 1
        b.get(1, "t.5", 7100, rev=b.seq, notfound=True)  # the marker, in the gap
        b.get(1, "t.5", 9000, rev=0, notfound=True)
        v = self.verdict(b)
        ryw = [a for a in v["anomalies"] if a["kind"] == "read-your-writes"]
        self.assertEqual({a["kind"] for a in v["anomalies"]}, {"read-your-writes"})
        self.assertEqual(len(ryw), 1, ryw)
        self.assertIn("2-2-", ryw[0]["ops"][1])
        self.assertIn("monotonic-read: 1 check(s) skipped", " ".join(v["warnings"]))

    def test_filters(self):
        m = check_history.filter_matches
        self.assertTrue(m("c.*", "c.1"))
        self.assertFalse(m("c.*", "c.x.y"))
        self.assertFalse(m("c.*", "c"))
        self.assertTrue(m("k.>", "k.a.b"))
        self.assertFalse(m("k.>", "k"))
        self.assertTrue(m(">", "anything.at.all"))
        self.assertTrue(m("a.*.c", "a.b.c"))
        self.assertFalse(m("a.b", "a.c"))


class PlantedAnomalies(CheckerTest):
    """One anomaly of each kind, each planted in the clean history."""

    # 1. cas-chain
    def test_cas_written_over_a_revision_other_than_its_expected_one(self):
        b = clean_history()
        b.write(1, "cas", "c.1", 1000, exp=b.marks["s_c2"])  # c.1 is at s_c3 by then
        self.assertOnly(b, "cas-chain")

    def test_cas_expecting_no_message_written_over_one(self):
        b = clean_history()
        b.unknown(2, "cas", "c.1", 1000, exp=0)
        self.assertOnly(b, "cas-chain")

    def test_delete_with_expected_revision_written_over_another(self):
        b = clean_history()
        b.unknown(2, "delete", "k.b", 1000, exp=b.marks["s_kb1"])
        self.assertOnly(b, "cas-chain")

    def test_create_stored_over_a_live_value(self):
        b = clean_history()
        b.unknown(1, "create", "k.b", 1000)
        self.assertOnly(b, "cas-chain")

    # 2. ack-missing
    def test_acknowledged_write_absent_from_the_server(self):
        b = clean_history()
        oid = b.invoke(1, "put", "k.e", 1000)
        b.complete(1, oid, "ok", 1005, rev=b.seq + 50, applied=False)
        self.assertEqual(self.assertOnly(b, "ack-missing")[0]["ops"], [oid])

    def test_acknowledged_at_a_revision_another_write_holds(self):
        b = clean_history()
        oid = b.invoke(1, "cas", "c.1", 1000, exp=b.marks["s_c3"])
        b.complete(1, oid, "ok", 1005, rev=b.marks["s_c3"], applied=True)
        self.assertOnly(b, "ack-missing")

    # 3. unknown-duplicated
    def test_unknown_write_stored_twice(self):
        b = clean_history()
        oid = b.unknown(1, "put", "k.b", 1000, stored=2)
        self.assertEqual(self.assertOnly(b, "unknown-duplicated")[0]["ops"], [oid])

    # 4. conflict-applied
    def test_write_reported_as_conflict_is_stored(self):
        b = clean_history()
        oid = b.fail(1, "cas", "c.1", 1000, "Conflict", exp=b.marks["s_c3"])
        b.msg("c.1", value_id=oid)  # its expected revision did hold: the chain is fine
        self.assertEqual(self.assertOnly(b, "conflict-applied")[0]["ops"], [oid])

    # 5. create-twice
    def test_two_acknowledged_creates_with_no_tombstone_between(self):
        b = clean_history()
        a, _ = b.write(1, "create", "k.c", 1000)
        c, _ = b.write(2, "create", "k.c", 1001)
        self.assertEqual(self.assertOnly(b, "create-twice")[0]["ops"], [a, c])

    # 6. monotonic-read
    def test_read_goes_backwards_across_a_restart(self):
        b = clean_history()
        # w2 read k.b at s_kb2 before its kill; its new incarnation reads s_kb1.
        b.get(2, "k.b", 970, rev=b.marks["s_kb1"])
        self.assertOnly(b, "monotonic-read")

    # 7. read-your-writes
    def test_read_misses_an_applied_acknowledged_write(self):
        b = clean_history()
        w, _ = b.write(1, "put", "k.d", 1000, applied=True)
        r = b.get(1, "k.d", 1010, rev=0, notfound=True)
        self.assertEqual(self.assertOnly(b, "read-your-writes")[0]["ops"], [w, r])

    # 8. lock-token-order
    def test_later_acquisition_gets_a_lower_token(self):
        b = clean_history()
        b.acquire(2, "L1", 1000, token=b.marks["t2"] - 1)
        self.assertOnly(b, "lock-token-order")

    def test_two_acquisitions_share_a_token(self):
        b = clean_history()
        b.acquire(2, "L1", 1000, token=b.marks["t3"])
        self.assertOnly(b, "lock-token-order")

    # 9. stale-token-applied
    def test_fenced_write_with_a_stale_token_is_stored(self):
        b = clean_history()
        b.unknown(1, "locked_write", "f.1", 1000, lock="L1", token=b.marks["t1"],
                  exp=b.marks["s_f4"])
        self.assertOnly(b, "stale-token-applied")

    # 10. lock-overlap
    def test_sections_overlap_while_the_earlier_holder_ran_freely(self):
        b = clean_history()
        b.nemesis = [f for f in b.nemesis if f["fault"] not in ("pause", "resume")]
        self.assertOnly(b, "lock-overlap")

    def test_sections_overlap_after_a_pause_shorter_than_lease_minus_margin(self):
        b = clean_history()
        for f in b.nemesis:
            if f["fault"] == "pause":
                f["t"] = 500 * MS  # 105 ms before the takeover; lease - margin is 250
        self.assertOnly(b, "lock-overlap")

    def test_sections_overlap_while_the_earlier_holder_was_only_slowed(self):
        b = clean_history()
        for f in b.nemesis:  # the pause becomes a slow link: it excuses nothing
            if f["fault"] == "pause":
                f["fault"] = "delay"
            elif f["fault"] == "resume":
                f["fault"] = "undelay"
        self.assertOnly(b, "lock-overlap")

    def test_paused_holder_write_acknowledged_after_the_takeover(self):
        b = clean_history()
        b.write(2, "locked_write", "f.2", 701, lock="L1", token=b.marks["t2"], exp=0)
        self.assertOnly(b, "lock-overlap")

    # 11. watch-order
    def test_watch_delivers_a_revision_twice(self):
        b = clean_history()
        b.deliver("wa", b.marks["s_c3"], 75)
        self.assertOnly(b, "watch-order")

    def test_watch_steps_back(self):
        b = clean_history()
        b.deliver("wa", b.marks["s_c2"], 75)
        self.assertOnly(b, "watch-order")

    # 12. watch-missed
    def test_ended_watch_misses_the_last_revision_of_a_key(self):
        b = clean_history()
        w = b.lines[1]
        w[:] = [e for e in w if not (e.get("ev") == "watch" and e["rev"] == b.marks["s_c3"])]
        self.assertOnly(b, "watch-missed")

    def test_killed_watch_misses_a_revision_before_its_last_delivery(self):
        b = clean_history()
        w = b.lines[2]
        w[:] = [e for e in w if not (e.get("ev") == "watch" and e["rev"] == b.marks["s_ka2"])]
        self.assertOnly(b, "watch-missed")

    # fence-violated
    def test_fenced_put_stored_after_another_holder_took_the_lock(self):
        b = clean_history()
        _, t4 = b.record_acquire(2, "lock.F", 3000)
        b.write(1, "fenced_put", "g.2", 3010, lock="lock.F", token=b.marks["tf"])
        self.assertOnly(b, "fence-violated")

    def test_fenced_cas_stored_after_the_lock_was_released(self):
        b = clean_history()
        _, t4 = b.record_acquire(2, "lock.F", 3000)
        b.record_release(2, "lock.F", t4, 3010)
        b.write(2, "locked_write", "g.2", 3020, lock="lock.F", token=t4, exp=0, fenced=True)
        self.assertOnly(b, "fence-violated")

    # ttl-not-expired
    def test_read_returns_an_entry_long_past_its_ttl(self):
        b = clean_history()
        tt, s_tt = b.write(2, "create", "t.9", 3000, ttl_ms=1000)
        b.get(1, "t.9", 3005 + 1000 + 500 + 1000 + 1, rev=s_tt, value_id=tt)
        self.assertOnly(b, "ttl-not-expired")

    def test_marker_missed_before_it_could_expire_is_a_step_back(self):
        b = clean_history()
        tt, s_tt = b.write(2, "create", "t.9", 5000, ttl_ms=1000)
        s_marker = b.msg("t.9", "PURGE")
        b.get(1, "t.9", 6100, rev=s_marker, notfound=True)
        b.get(1, "t.9", 6500, rev=0, notfound=True)  # before 5000 + 1000 + 1000
        self.assertOnly(b, "monotonic-read")

    def test_entry_missed_before_its_ttl_passed_is_still_a_step_back(self):
        b = clean_history()
        tt, s_tt = b.write(2, "create", "t.9", 3000, ttl_ms=1000)
        b.get(1, "t.9", 3100, rev=s_tt, value_id=tt)
        b.get(1, "t.9", 3500, rev=0, notfound=True)
        self.assertOnly(b, "monotonic-read")

    # txn-partial
    def test_transaction_stored_in_part(self):
        b = clean_history()
        oid, _ = b.transfer(2, 5000, "b.1", "b.2", 4, outcome="unknown", stored=(0,))
        self.assertEqual(self.assertOnly(b, "txn-partial")[0]["ops"], [oid])

    def test_transaction_stored_with_another_write_between_its_own(self):
        b = clean_history()
        oid = b.invoke(1, "transfer", None, 5000, keys=["b.1", "b.2"],
                       exp=[b.bank["b.1"][0], b.bank["b.2"][0]], amount=1, vals=[0, 0])
        s1 = b.msg("b.1", value_id=oid)
        b.write(2, "put", "k.f", 5001)
        s2 = b.msg("b.2", value_id=oid)
        b.complete(1, oid, "ok", 5005, rev=s2, revs=[s1, s2], applied=True)
        self.assertOnly(b, "txn-partial")

    def test_snapshot_sees_part_of_a_transaction(self):
        b = clean_history()
        before = dict(b.bank)
        _, (s1, s2) = b.transfer(1, 5000, "b.0", "b.1", 10)
        # At revision s2 it saw b.0 as the transfer left it but b.1 from before it;
        # the balances it shows still sum to the total, so only this check sees it.
        vals = [b.bank["b.0"][1], before["b.1"][1] + 10, b.bank["b.2"][1], b.bank["b.3"][1]]
        oid = b.snapshot(2, 5010, at=s2, revs=[s1, before["b.1"][0], b.bank["b.2"][0],
                                              b.bank["b.3"][0]], vals=vals)
        self.assertEqual(self.assertOnly(b, "txn-partial")[0]["ops"][0], oid)

    # bank-total
    def test_snapshot_balances_do_not_sum_to_the_total(self):
        b = clean_history()
        vals = [v for _, v in (b.bank[k] for k in b.BANK)]
        vals[2] += 1
        b.snapshot(1, 5000, vals=vals)
        self.assertOnly(b, "bank-total")

    def test_snapshot_misses_one_account(self):
        b = clean_history()
        vals = [v for _, v in (b.bank[k] for k in b.BANK)]
        vals[3] = None
        b.snapshot(2, 5000, vals=vals)
        self.assertOnly(b, "bank-total")

    # txn-lost
    def test_acknowledged_transaction_absent_from_the_server(self):
        b = clean_history()
        oid, _ = b.transfer(1, 5000, "b.2", "b.3", 6, stored=(),
                            revs=[b.seq + 50, b.seq + 51])
        self.assertEqual(self.assertOnly(b, "txn-lost")[0]["ops"], [oid])

    def test_transaction_acknowledged_at_revisions_it_was_not_stored_at(self):
        b = clean_history()
        s = b.seq
        b.transfer(1, 5000, "b.2", "b.3", 6, revs=[s - 1, s])
        self.assertOnly(b, "txn-lost")

    # transactions in the per-write kinds
    def test_transaction_stored_over_a_revision_other_than_its_expected_one(self):
        b = clean_history()
        b.transfer(2, 5000, "b.0", "b.3", 2, outcome="unknown",
                   exp=[b.bank["b.0"][0] - 1, b.bank["b.3"][0]])
        self.assertOnly(b, "cas-chain")

    def test_refused_transaction_is_stored(self):
        b = clean_history()
        oid, _ = b.transfer(2, 5000, "b.0", "b.3", 2, outcome="fail")
        self.assertEqual(self.assertOnly(b, "conflict-applied")[0]["ops"], [oid])

    # 13. replica-diverged
    def test_replica_behind_the_server(self):
        b = clean_history()
        b.replica_patch[2]["k.b"] = {"rev": b.marks["s_kb2"], "op": "PUT",
                                     "value_id": "1-1-12"}
        self.assertOnly(b, "replica-diverged")

    def test_replica_without_a_marker_of_an_untimed_entry_diverges(self):
        b = clean_history()
        b.write(1, "put", "u.1", 3000)   # no TTL: its marker cannot be excused
        b.msg("u.1", "PURGE")
        b.replica_patch[2]["u.1"] = None
        self.assertOnly(b, "replica-diverged")

    def test_replica_keeps_a_tombstone_the_server_never_had_last(self):
        b = clean_history()
        b.server_expired.add("k.b")  # a live value, gone from the server's final state
        b.replica_patch[1]["k.b"] = {"rev": b.marks["s_kb2"] + 1000, "op": "PURGE",
                                     "value_id": None}
        self.assertOnly(b, "replica-diverged")

    def test_replica_keeps_a_provisional_time(self):
        b = clean_history()
        server = b.final_server()["k.b"]
        b.replica_patch[2]["k.b"] = dict(server, created=server["created"] + 250_000)
        self.assertOnly(b, "replica-diverged")

    def test_replica_missing_a_key(self):
        b = clean_history()
        b.replica_patch[1]["c.1"] = None
        self.assertOnly(b, "replica-diverged")

    def test_every_kind_is_planted(self):
        planted = set()
        for name in dir(self):
            if name.startswith("test_") and name != "test_every_kind_is_planted":
                src = getattr(self, name).__code__.co_consts
                planted |= {c for c in src if c in check_history.KINDS}
        self.assertEqual(planted, set(check_history.KINDS))


if __name__ == "__main__":
    unittest.main()
