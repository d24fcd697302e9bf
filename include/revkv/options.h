// Options for an Engine and for the buckets it opens. Plain structs with
// in-class defaults; fields are grouped by whether they change behaviour or
// only performance.

#ifndef REVKV_OPTIONS_H_
#define REVKV_OPTIONS_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace revkv {

// The largest value a bucket accepts unless told otherwise: 1 MiB (the NATS
// server's default max_payload) minus 1 KiB of room for the headers a
// replicated write carries, so every value revkv accepts can be mirrored.
inline constexpr uint32_t kDefaultMaxValueSize = 1024 * 1024 - 1024;
// The largest max_value_size a bucket may be given: NATS's own ceiling.
inline constexpr uint32_t kMaxMaxValueSize = 64 * 1024 * 1024;
// History limits, as in NATS KV.
inline constexpr int kMaxHistory = 64;

// How much a log message matters.
enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Receives the engine's log messages: one line each, without a newline or a
// "revkv:" prefix. It is called from the engine's own threads (the apply
// loop, the reaper, an opening thread), possibly at once from several: it
// must be thread-safe, return quickly and not call back into the engine.
using Logger = std::function<void(LogLevel level, std::string_view message)>;

// "debug", "info", "warning" or "error".
const char* LogLevelName(LogLevel level);

// Where and how to reach NATS. With no servers the engine is local-only.
struct NatsOptions {
  // Server URLs, e.g. "nats://127.0.0.1:4222". Empty: no replication.
  // Default: empty.
  std::vector<std::string> servers{};

  // Credentials, passed through to the server: user/password, a token, or a
  // creds file (JWT + NKey). At most one kind.
  std::string user{};
  std::string password{};
  std::string token{};
  std::string creds_file{};

  // TLS: a CA to trust, and a client certificate and key when the server
  // asks for one. Setting any of them makes the connection use TLS.
  std::string tls_ca{};
  std::string tls_cert{};
  std::string tls_key{};

  // How long connecting may take before Engine::Open gives Unavailable.
  // Default: 2 s.
  std::chrono::milliseconds connect_timeout{2000};

  // How long a replicated write may wait for the server's acknowledgement
  // before it fails with Unavailable or Timeout. A write is one message, so
  // it is never half applied, but after either error it may or may not have
  // been stored (the connection or the acknowledgement was lost): Sync and
  // re-read the key before retrying a Put; a CAS retry is safe either way.
  // Also bounds the wait for the local replica to apply an acknowledged
  // write (read-your-writes); past it the write still succeeds.
  // Default: 5 s.
  std::chrono::milliseconds write_timeout{5000};

  // The most asynchronous writes (Bucket::PutAsync and the others) one
  // bucket keeps in flight; a call beyond it waits until one completes.
  // At least 1.
  // Default: 1024.
  size_t max_writes_in_flight = 1024;

  // Connect only to `servers`, never to the other nodes a cluster
  // advertises. Set it when the listed addresses are the only way in, such
  // as a proxy or a port forward in front of each node: a cluster advertises
  // the addresses its nodes listen on, which may not be reachable from here,
  // or would bypass the proxy.
  // Default: false (a client follows the cluster's membership).
  bool ignore_discovered_servers = false;

  // How far this machine's clock may be from the servers'. A replica judges
  // expiry (a message's Nats-TTL, the bucket's max_age) from the server's
  // timestamp on each message and this machine's clock, so it treats an
  // entry as expired only once this much more time has passed: while the
  // clocks differ by no more than this, it never hides an entry the server
  // still serves. It may show an entry for up to twice this long after the
  // server removed it, unless the server's limit marker (a tombstone)
  // reaches it first.
  // Default: 2 s.
  std::chrono::milliseconds max_clock_skew{2000};
};

struct Options {
  // ---- Behaviour ----

  // The data directory. One Engine per directory at a time: a second opener,
  // in this process or another, gets Unavailable.
  // REQUIRES: not empty.
  std::string path{};

  // Create the directory and store when missing. When false, opening a
  // missing store returns NotFound.
  // Default: true.
  bool create_if_missing = true;

  // Durability of each committed write.
  //
  // false: a write is in the operating system's page cache (RocksDB's WAL)
  // when it returns. It survives the process crashing or being killed at any
  // moment, but the last writes before a machine crash or power loss may be
  // lost. Either all of a write survives or none of it does.
  //
  // true: every write is fsync'ed before it returns, so it also survives a
  // machine crash. Each write then costs a disk flush.
  // Default: false.
  bool sync = false;

  // Open the store as a read-only follower of the process that holds it
  // (RocksDB secondary instance). A follower takes no lock, sees the holder's
  // commits after Engine::CatchUp(), and refuses writes with InvalidArgument.
  // Buckets must already exist. Used by `revkv watch`.
  // Default: false.
  bool read_only_follower = false;

  // NATS replication. With servers set, buckets are replicated unless their
  // options say local_only.
  NatsOptions nats{};

  // The bucket that holds lock records (see lock.h). It may be a data
  // bucket too (locks and data then share its keys: prefix lock names, e.g.
  // "lock."); on a replicated engine that is what lets the server enforce
  // fenced writes to it.
  // Default: "locks".
  std::string locks_bucket = "locks";

  // With NatsOptions::servers: the max_age the locks bucket is created with
  // on the server, a backstop that removes the records of abandoned locks
  // (waiters take over an expired lock after its lease either way). Leases
  // must be shorter than the bucket's max_age. An existing locks bucket is
  // bound with its own max_age. On nats-server 2.11.2+, the locks bucket is
  // also created with limit markers, and lock records carry a TTL of three
  // leases, so an abandoned record goes long before this.
  std::chrono::seconds locks_max_age = std::chrono::hours(24);

  // Where the engine's log messages go (see Logger); the engine itself never
  // writes to stderr or stdout. Empty: each message at or above log_level
  // is written to stderr as "revkv: <level>: <message>".
  // Default: empty.
  Logger logger{};
  // Messages below this level are not passed on.
  // Default: kInfo.
  LogLevel log_level = LogLevel::kInfo;

  // ---- Performance ----

  // Size of the shared block cache, in bytes.
  // Default: 64 MiB.
  size_t block_cache_bytes = 64 << 20;

  // A cache of latest entries for hot keys, per bucket, in bytes (keys,
  // values and about 100 bytes each); 0: none. Get and GetEntry of a cached
  // key read no store at all. Every commit (a write, a transaction, an entry
  // the replica applies) updates the cache before it returns, so reads from
  // it are exactly as current as reads from the store. Least recently used
  // entries go first. A read-only follower keeps no cache.
  // Default: 0.
  size_t entry_cache_bytes = 0;
};

// How far a new replica's bootstrap from a snapshot has come (see
// BucketOptions::bootstrap_progress).
struct BootstrapProgress {
  // Messages loaded so far (entries and tombstones, one per key).
  uint64_t loaded = 0;
  // The highest revision loaded so far (the replica's revision).
  uint64_t revision = 0;
  // The revision the snapshot loads up to: the stream's last sequence when
  // the bootstrap began. Writes after it arrive through the consumer.
  uint64_t target = 0;
};

struct BucketOptions {
  // How many revisions of each key to keep, 1..64, as NATS KV's "history".
  // 0 means: the stored setting for an existing bucket, 1 for a new one.
  // A non-zero value that differs from an existing bucket's is an error.
  // Default: 0.
  int history = 0;

  // The largest value accepted, in bytes, 1..kMaxMaxValueSize. A larger value
  // is refused with InvalidArgument, never truncated.
  // 0 means: the stored setting, or kDefaultMaxValueSize for a new bucket.
  // Default: 0.
  uint32_t max_value_size = 0;

  // ---- Replicated buckets (engines with NatsOptions::servers) ----

  // Keep this bucket in the local store only, even on an engine with NATS.
  // Default: false.
  bool local_only = false;

  // Stream replicas (1..5); 0 means the server's bucket as it is, or 1 when
  // the bucket is created. A non-zero value that differs from an existing
  // bucket is an error.
  // Default: 0.
  int replicas = 0;

  // Memory instead of file storage when the bucket is created.
  // Default: false.
  bool memory_storage = false;

  // Server-side expiry of entries (JetStream max_age); 0: none. Replicas
  // stop serving an entry once it is this old (by the server's timestamp,
  // within NatsOptions::max_clock_skew), whether or not the server's
  // removal has reached them.
  // Default: 0.
  std::chrono::seconds max_age{0};

  // Limit markers (nats-server 2.11+), as nats.go's LimitMarkerTTL: when
  // revkv creates the bucket, its stream allows per-key TTL
  // (WriteOptions::ttl) and the server writes a marker whenever max_age or
  // a TTL removes a key's last entry. Replicas apply the marker as a Purge
  // tombstone, so watchers see the expiry; the marker itself expires after
  // this long. At least 1 s; 0: none for a new bucket, and an existing
  // bucket as it is. Asking for a value an existing bucket does not have is
  // InvalidArgument: revkv never turns per-message TTL on in an existing
  // stream, since it cannot be turned off again.
  // Default: 0.
  std::chrono::seconds limit_marker_ttl{0};

  // Turn on atomic batch publish (allow_atomic, nats-server 2.12+) in an
  // existing bucket's stream that lacks it, with a stream update that keeps
  // every other setting. Buckets revkv creates on 2.12+ have it already; a
  // bucket another client created, or one revkv created on an older server
  // since upgraded, does not, and its transactions (Bucket::Commit) and
  // fenced writes are InvalidArgument until it is turned on. Once on, it
  // stays on for every client of the bucket. On an older server:
  // InvalidArgument naming 2.12.0. Local buckets ignore it.
  // Default: false.
  bool allow_atomic_batches = false;

  // Create the bucket when it does not exist. With false, a missing bucket
  // is NotFound and nothing is created: locally, or on the server for a
  // replicated bucket (e.g. to read without leaving a mistyped bucket
  // behind).
  // Default: true.
  bool create_if_missing = true;

  // Called on OpenBucket's thread after each page a new replica loads from
  // a snapshot (nats-server 2.11+, history 1: see README "Bootstrap of a
  // new replica"), and once more at its end, where revision is target
  // unless the consumer has the rest to deliver. Not called when the
  // replica resumes, or bootstraps by replaying the stream (an older
  // server, history > 1). It must not call into the engine.
  // Default: none.
  std::function<void(const BootstrapProgress&)> bootstrap_progress{};
};

// A fencing check for one write: the write commits only if `token` is the
// current fencing token of the lock named `lock`, checked atomically with the
// write. A holder that lost its lock to a newer holder can then no longer
// write, even if it does not know yet that it lost it.
struct Fence {
  std::string lock{};
  uint64_t token = 0;
  // The bucket that holds the lock's record; empty: Options::locks_bucket.
  // Lock::fence() fills all three.
  std::string locks_bucket{};
};

struct WriteOptions {
  // Default: no fence.
  std::optional<Fence> fence{};

  // Replicated buckets: how long this write may wait for the server's
  // acknowledgement (and then for the local replica); Timeout or
  // Unavailable after it. 0 means NatsOptions::write_timeout. Local
  // buckets ignore it: their writes never wait for a server.
  // Default: 0.
  std::chrono::milliseconds timeout{0};

  // The entry's time to live, in whole seconds (at least 1 s, as NATS takes
  // it); 0: none. Once it passes, reads of the key are NotFound, as if it
  // were never written, and Create may write it again. A local bucket then
  // writes a Purge tombstone of its own (watchers and ChangesSince see it);
  // a replicated bucket sends the TTL as Nats-TTL and the server removes the
  // entry, leaving a limit marker when the bucket has them.
  // Create and Purge (a tombstone that removes itself) take a TTL in any
  // bucket; Put and Update only in a bucket with history 1, since with
  // more history the older revision would come back; Delete never.
  // InvalidArgument otherwise, and on a replicated bucket whose stream does
  // not allow per-message TTL (BucketOptions::limit_marker_ttl) or a server
  // before 2.11.
  // Default: 0.
  std::chrono::seconds ttl{0};

  // Put only: an id that makes retrying this Put safe. A replicated bucket
  // sends it as the message's Nats-Msg-Id, and the server stores a message
  // with an id it has already stored within the stream's duplicate window
  // (duplicate_window: 2 minutes for a KV bucket, or its max_age when
  // shorter) only once, answering the repeat with the first one's revision.
  // So a Put that ended in Timeout or Unavailable (outcome unknown) can be
  // sent again with the same id, within the window, and is stored at most
  // once. Reused after the window, the id writes again. Give each logical
  // write its own id (e.g. a UUID); 1..256 printable ASCII characters.
  // A local bucket's writes never end with an unknown outcome: it checks the
  // id and otherwise ignores it. InvalidArgument with any write but a Put,
  // with a fence, or for a bad id.
  // Default: empty (none).
  std::string idempotency_key{};
};

struct LockOptions {
  // Renew the lease automatically every lease/3 from a background thread
  // while the handle lives. With false, the holder must call Lock::Renew()
  // in time or lose the lock.
  // Default: true.
  bool auto_renew = true;

  // Safety margin for clock-rate differences. A waiter takes over an
  // unrenewed lock only after lease + margin on its own monotonic clock; a
  // holder considers itself lost once lease - margin passes without a
  // successful renewal. 0 means lease / 5.
  // Default: 0.
  std::chrono::milliseconds margin{0};

  // The bucket that holds this lock's record; empty: Options::locks_bucket.
  // Keeping a lock in the bucket of the data it guards lets a replicated
  // bucket's server enforce fenced writes (see lock.h). Locks and data then
  // share the bucket's keys: name locks with a prefix such as "lock.".
  // Default: empty.
  std::string locks_bucket{};
};

// How UpdateWithRetry retries after a conflict.
struct RetryPolicy {
  // Give up after this many attempts (reads + writes). REQUIRES: >= 1.
  // Default: 100.
  int max_attempts = 100;

  // Give up once this much time has passed; 0 means no deadline.
  // Default: 0.
  std::chrono::milliseconds deadline{0};

  // The first backoff; each conflict doubles it up to max_backoff. Each wait
  // is drawn uniformly from [0, backoff] ("full jitter").
  // Default: 50 microseconds and 20 milliseconds.
  std::chrono::microseconds initial_backoff{50};
  std::chrono::microseconds max_backoff{20000};
};

}  // namespace revkv

#endif  // REVKV_OPTIONS_H_
