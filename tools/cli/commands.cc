#include "commands.h"

#include <algorithm>

namespace revkv::cli {
namespace {

constexpr Command kCommands[] = {
    {"put", 2, 2, "put KEY VALUE", "write VALUE; prints the new revision", true, RunPut},
    {"get", 1, 1, "get KEY", "print the value", false, RunGet},
    {"entry", 1, 1, "entry KEY", "print the latest entry (key, revision, operation, ...)", false,
     RunEntry},
    {"create", 2, 2, "create KEY VALUE", "write only if KEY is absent or deleted", true, RunCreate},
    {"update", 3, 3, "update KEY VALUE REVISION", "write only if KEY's latest revision is REVISION",
     true, RunUpdate},
    {"delete", 1, 1, "delete KEY [--revision N]", "write a delete tombstone; prints its revision",
     true, RunDelete},
    {"purge", 1, 1, "purge KEY [--revision N]",
     "write a purge tombstone, dropping KEY's history", true, RunPurge},
    {"keys", 0, 1, "keys [FILTER]", "list live keys; FILTER takes '*' and '>' wildcards", false,
     RunKeys, EmptyKeys},
    {"entries", 0, 1, "entries [FILTER]",
     "print KEY REVISION VALUE of every live key, all\nfrom one snapshot", false, RunEntries,
     EmptyEntries},
    {"txn", 0, 0, "txn < OPERATIONS",
     "commit the operations on standard input at once,\n"
     "one per line: put KEY VALUE, create KEY VALUE,\n"
     "update KEY VALUE REVISION, delete KEY [REVISION],\n"
     "purge KEY [REVISION], check KEY REVISION (0: absent\n"
     "or deleted); prints the last revision. With --json,\n"
     "one JSON object per line instead, e.g.\n"
     "{\"op\":\"update\",\"key\":\"a\",\"value\":\"v\",\"revision\":5}\n"
     "(\"value_encoding\":\"base64\" or \"key_encoding\":\n"
     "\"base64\" for bytes, as entries --json prints them)",
     true, RunTxn},
    {"history", 1, 1, "history KEY", "print KEY's retained revisions, oldest first", false,
     RunHistory},
    {"watch", 0, 1, "watch [FILTER]",
     "print changes as they happen, until interrupted;\nwith --nats it follows the local replica DIR",
     false, RunWatch},
    {"status", 0, 0, "status [--disk-usage]",
     "print the applied revision, the stream's last\n"
     "revision, the lag, whether NATS is reachable, the\n"
     "server's version and how many stream messages the\n"
     "replica skipped; --disk-usage adds the bytes the\n"
     "store's directory takes on disk (disk_bytes)",
     false, RunStatus, EmptyStatus},
    {"lock", 1, 1, "lock NAME [--lease DUR] [--timeout DUR] -- CMD [ARGS...]",
     "run CMD while holding the lease lock NAME (see\n'revkv --help')", true, RunLock},
};

constexpr size_t kSynopsisWidth = 32;

// "  SYNOPSIS   first line\n" and the summary's other lines under the first.
std::string CommandLines(const Command& c) {
  std::string out = "  " + std::string(c.synopsis);
  std::string_view summary = c.summary;
  bool first = true;
  while (!summary.empty()) {
    const size_t nl = summary.find('\n');
    const std::string_view line = summary.substr(0, nl);
    if (!first || out.size() >= kSynopsisWidth + 2) {
      out += "\n" + std::string(kSynopsisWidth + 2, ' ');
    } else {
      out += std::string(kSynopsisWidth + 2 - out.size(), ' ');
    }
    out += line;
    first = false;
    summary = nl == std::string_view::npos ? std::string_view() : summary.substr(nl + 1);
  }
  return out + "\n";
}

constexpr std::string_view kHead =
    "Usage: revkv --db DIR [--bucket NAME] [--json] [--history N] [--sync] COMMAND ...\n"
    "       revkv --db DIR --nats URL [NATS OPTIONS] COMMAND ...\n"
    "       revkv [--nats URL [NATS OPTIONS]] --version\n"
    "       revkv [COMMAND] --help\n"
    "\n"
    "Commands:\n";

constexpr std::string_view kOptions =
    "\n"
    "Options (anywhere on the command line, as --flag VALUE or --flag=VALUE):\n"
    "  --db DIR         the store's directory (required)\n"
    "  --bucket NAME    the bucket (default: default)\n"
    "  --json           print entries and key lists as JSON; txn reads JSON lines\n"
    "  --history N      revisions kept per key (1..64), applied when the bucket is created\n"
    "  --sync           fsync every write before it returns\n"
    "  --revision N     delete/purge: only if KEY's latest revision is N\n"
    "  --fence NAME:TOKEN\n"
    "                   writes: only while TOKEN is lock NAME's fencing token (in\n"
    "                   --locks-bucket); else exit 9 and nothing is written\n"
    "  --locks-bucket NAME\n"
    "                   the bucket that holds lock records (default: locks); with\n"
    "                   --nats, fencing needs the lock in the written bucket\n"
    "  --ttl DUR        put/create/update: the entry expires after DUR (whole\n"
    "                   seconds, at least 1s); put and update need history 1\n"
    "  --lease DUR      lock: the lease, renewed while CMD runs (default: 30s)\n"
    "  --timeout DUR    lock: how long to wait for the store and the lock (default: 30s)\n"
    "  --disk-usage     status: also print the store directory's size in bytes\n"
    "  --version        print revkv's version; with --nats also the version of the\n"
    "                   server it connects to (no store or bucket is needed)\n"
    "  -h, --help       print this help, or with COMMAND that command's usage\n"
    "\n"
    "NATS replication (DIR is then one replica of the bucket's JetStream KV stream):\n"
    "  --nats URL       a server, e.g. nats://127.0.0.1:4222; repeat it or give a\n"
    "                   comma-separated list for several\n"
    "  --user U, --password P, --token T, --creds FILE\n"
    "                   credentials for the server (one kind)\n"
    "  --tls-ca F, --tls-cert F, --tls-key F\n"
    "                   TLS: a CA to trust, a client certificate and its key\n"
    "  --allow-atomic   turn on atomic batches (allow_atomic, 2.12+) in an existing\n"
    "                   bucket's stream that lacks them, keeping its other settings;\n"
    "                   txn and fenced writes need them\n"
    "  --limit-marker-ttl DUR\n"
    "                   when the bucket is created: its stream allows --ttl, and the\n"
    "                   server marks each expiry with a marker kept for DUR (2.11+)\n"
    "  --write-timeout DUR\n"
    "                   how long a write, or a read's catch-up, may wait for the\n"
    "                   server (default: 5s); connecting may take 2s\n"
    "  --local          reads answer from DIR without catching up with the server\n"
    "  --               treat every later argument as a positional one; for lock,\n"
    "                   every argument after it is CMD and its ARGS, verbatim\n"
    "\n"
    "A VALUE of '-' reads the value from standard input. DUR is a whole number with\n"
    "a unit: 500ms, 10s or 2m.\n"
    "\n"
    "With --nats, writes go through the server and reads (get, entry, keys, history)\n"
    "first catch DIR up with it. If the server cannot be reached, a read answers from\n"
    "DIR, which may be stale, with one 'revkv: warning:' line on stderr, and a write\n"
    "fails with exit 6. status prints 'unknown' (JSON null) for the stream's last\n"
    "revision and the lag when the server cannot be reached. It also counts the\n"
    "stream messages the replica skipped because they can never be applied (e.g.\n"
    "damaged headers), with the first one's revision and why.\n"
    "\n"
    "Writes take keys of the NATS KV rules: A-Z a-z 0-9 _ = / \\ . - tokens joined\n"
    "by '.', at most 1024 bytes. Reads (get, entry, history, keys, watch) take every\n"
    "key a replica can hold, as other NATS clients may store it: any length, any\n"
    "bytes but space, tab, CR, LF, form feed and NUL (e.g. non-ASCII UTF-8).\n"
    "\n"
    "lock waits until it can open the store and acquire NAME (a name follows the key\n"
    "rules), then runs CMD, searched for in PATH, with REVKV_FENCING_TOKEN set to the\n"
    "lock's fencing token (REVKV_LOCK_NAME and REVKV_LOCKS_BUCKET name the lock), and\n"
    "releases the lock when CMD exits. SIGINT, SIGTERM and SIGHUP are passed on to\n"
    "CMD. If the lease is lost while CMD runs, CMD is sent\n"
    "SIGTERM (SIGKILL 5s later) and lock exits 9. With --nats the lock lives in the\n"
    "server's locks bucket, so processes with their own DIR on any machine exclude\n"
    "each other.\n"
    "\n"
    "Exit codes: 0 ok, 1 usage or other error, 2 not found, 3 exists, 4 conflict,\n"
    "5 timeout, 6 unavailable (store held by another process, or NATS unreachable),\n"
    "7 invalid argument, 9 lock lost (a --fence whose token is stale).\n"
    "lock exits with CMD's status (128+N if CMD was killed by signal N), or 5 if the\n"
    "store or the lock was not free within --timeout, 9 if the lease was lost, 127 if\n"
    "CMD could not be started.\n";

}  // namespace

std::span<const Command> Commands() { return kCommands; }

const Command* FindCommand(std::string_view name) {
  const auto it = std::find_if(std::begin(kCommands), std::end(kCommands),
                               [name](const Command& c) { return c.name == name; });
  return it == std::end(kCommands) ? nullptr : &*it;
}

std::string Usage() {
  std::string out(kHead);
  for (const Command& c : kCommands) out += CommandLines(c);
  return out + std::string(kOptions);
}

std::string CommandUsage(const Command& command) {
  std::string out = "Usage: revkv --db DIR [OPTIONS] " + std::string(command.synopsis) + "\n\n  ";
  for (char c : command.summary) out += c == '\n' ? std::string("\n  ") : std::string(1, c);
  return out + "\n\nOptions and exit codes: revkv --help\n";
}

}  // namespace revkv::cli
