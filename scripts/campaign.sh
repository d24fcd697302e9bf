#!/usr/bin/env bash
# The fault campaign by hand (DESIGN §9): random workloads from worker
# processes, faults injected at random moments, and an offline check of the
# whole history. Each run writes its history and verdict to a folder and
# prints a one-line summary.
#
#   scripts/campaign.sh [--minutes N] [--server newest|2.10] [--topology single|r3]
#                       [--workers N] [--seed S] [--out DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
minutes=5 server=newest topology=single workers=3 seed="$RANDOM" out=""
while (($#)); do
  case "$1" in
    --minutes) minutes="$2" ;;
    --server) server="$2" ;;
    --topology) topology="$2" ;;
    --workers) workers="$2" ;;
    --seed) seed="$2" ;;
    --out) out="$2" ;;
    *) echo "unknown option $1; see the comment at the top of $0" >&2; exit 2 ;;
  esac
  shift 2
done
case "$server" in
  newest) binary="$ROOT/.deps/nats-server-newest/usr/sbin/nats-server" ;;
  2.10) binary="$ROOT/.deps/nats-server-2.10/usr/sbin/nats-server" ;;
  *) echo "--server is newest or 2.10" >&2; exit 2 ;;
esac
faults=kill,pause,restart,partition,delay
if [[ "$topology" == r3 ]]; then faults=kill,pause,restart,leader,partition,delay; fi
out="${out:-$ROOT/campaign-results/$topology-$server-$(date +%Y%m%d-%H%M%S)}"
"$ROOT/scripts/build.sh" >/dev/null
exec "$ROOT/build/tests/revkv_campaign" --out "$out" --topology "$topology" \
  --server "$binary" --seconds "$((minutes * 60))" --workers "$workers" --seed "$seed" \
  --faults "$faults" --pace-us 3000
