#!/usr/bin/env python3
"""Runs examples/metrics_exporter on a scratch store and scrapes it as
Prometheus would: the counters of its writes and lock, the histograms'
cumulative buckets, and a 404 for any other path.

    scrape_metrics.py EXPORTER
"""
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request


def main():
    exporter = sys.argv[1]
    with tempfile.TemporaryDirectory() as db:
        proc = subprocess.Popen([exporter, "--db", db, "--requests", "2"],
                                stdout=subprocess.PIPE, text=True)
        try:
            first = proc.stdout.readline()
            m = re.match(r"listening on (http://127\.0\.0\.1:\d+)/metrics$", first.strip())
            assert m, f"unexpected first line: {first!r}"
            base = m.group(1)
            with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/plain")
                text = r.read().decode()
            try:
                urllib.request.urlopen(base + "/other", timeout=10)
                raise AssertionError("GET /other did not fail")
            except urllib.error.HTTPError as e:
                assert e.code == 404, e.code
            assert proc.wait(timeout=10) == 0, "the exporter did not exit after 2 requests"
        finally:
            if proc.poll() is None:
                proc.kill()

    values = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, value = line.rsplit(" ", 1)
        values[name] = float(value)

    def want(name, value):
        assert values.get(name) == value, f"{name} is {values.get(name)}, not {value}"

    want('revkv_operations_total{operation="put",outcome="ok"}', 3)
    want('revkv_operations_total{operation="update",outcome="conflict"}', 1)
    want('revkv_operation_latency_seconds_count{operation="put"}', 3)
    want('revkv_operation_latency_seconds_bucket{operation="put",le="+Inf"}', 3)
    want("revkv_lock_acquires_total", 1)
    want("revkv_lock_wait_seconds_count", 1)
    want("revkv_apply_batches_total", 0)
    # Buckets are cumulative: never decreasing, ending at the count.
    buckets = [v for k, v in values.items()
               if k.startswith('revkv_operation_latency_seconds_bucket{operation="put"')]
    assert buckets == sorted(buckets) and buckets[-1] == 3, buckets
    assert "# TYPE revkv_operation_latency_seconds histogram" in text
    assert "# TYPE revkv_lock_losses_total counter" in text
    print(f"scraped {len(values)} series: ok")


if __name__ == "__main__":
    main()
