// The JetStream stream behind a replicated bucket: created with the standard
// KV layout (as the nats CLI and nats.c create it) when missing, bound to
// when present.

#ifndef REVKV_REPLICATION_KV_STREAM_H_
#define REVKV_REPLICATION_KV_STREAM_H_

#include <nats/nats.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "revkv/result.h"

namespace revkv::replication {

class NatsConnection;

// What the caller asks of the bucket. An unset field takes the existing
// stream's value, or the default when the stream is created; a set field
// that differs from an existing stream is an error.
struct KvStreamRequest {
  std::string bucket;
  std::optional<int> history;                   // default 1
  std::optional<int> replicas;                  // default 1
  std::optional<bool> memory_storage;           // default false: file storage
  std::optional<std::chrono::nanoseconds> max_age;  // default 0: none
  std::optional<int32_t> max_value_size;        // default -1: server limit
  // Limit markers (nats-server 2.11+): the stream allows per-message TTL
  // and the server writes a marker, which expires after this, when max_age
  // or a TTL removes a key's last message. Unset or 0: none when created,
  // and an existing stream keeps its own. Needs `conn`.
  std::optional<std::chrono::seconds> limit_marker_ttl;
  // The limit marker TTL to create the stream with when limit_marker_ttl is
  // unset and the server has limit markers for TTL expiry (2.11.2+); 0:
  // none. An existing stream keeps its own.
  std::chrono::seconds limit_marker_ttl_if_created{0};
  // The max_age to create the stream with when max_age is unset; an
  // existing stream keeps its own.
  std::chrono::nanoseconds max_age_if_created{0};
  // With false, a missing bucket is NotFound instead of being created.
  bool create_if_missing = true;
  // Turn on atomic batches (allow_atomic, 2.12+) in an existing stream that
  // lacks them, keeping every other setting; a stream created here has them
  // on 2.12+ anyway. Needs `conn`; InvalidArgument on an older server.
  bool allow_atomic_batches = false;
};

// The names NATS KV gives a bucket's parts, as nats.go and nats.c build
// them: the stream "KV_<bucket>", whose subjects are "$KV.<bucket>.>", and a
// key's subject "$KV.<bucket>.<key>" (the prefix below, then the key).
std::string KvStreamName(std::string_view bucket);
std::string KvSubjectPrefix(std::string_view bucket);
std::string KvSubjects(std::string_view bucket);

// The bound stream's identity and settings.
struct KvStream {
  std::string name;        // "KV_<bucket>"
  int64_t created_ns = 0;  // identifies this incarnation of the stream
  int history = 1;
  int replicas = 1;
  bool memory_storage = false;
  std::chrono::nanoseconds max_age{0};
  int32_t max_value_size = -1;
  uint64_t last_sequence = 0;
  int64_t last_time_ns = 0;  // the last message's server timestamp (0: empty stream)
  bool allow_direct = false;  // direct gets (KV streams have them)
  // Read by BindKvStream only (with a connection): whether messages may
  // carry Nats-TTL, the limit marker TTL (0: no markers), and whether the
  // stream takes atomic batches (revkv creates it so on 2.12+).
  bool allow_msg_ttl = false;
  std::chrono::nanoseconds limit_marker_ttl{0};
  bool allow_atomic = false;
};

// Binds to the bucket's stream, creating it when missing.
// InvalidArgument: bad bucket name, history outside 1..64, or a requested
// setting that differs from the existing stream (each difference listed),
// or a stream that is not a KV bucket. PermissionDenied, Unavailable,
// Timeout: as the server answers. The server answers a request it denies
// with nothing but an asynchronous violation; given `conn` (the connection
// `js` belongs to), such a request is PermissionDenied rather than Timeout.
Result<KvStream> BindKvStream(jsCtx* js, const KvStreamRequest& request,
                              const NatsConnection* conn = nullptr);

// Turns on atomic batches (allow_atomic) in the bucket's stream if it lacks
// them, with a stream update that keeps every other setting, including
// those nats.c does not know. InvalidArgument: a server before 2.12.0 (or
// no connection). NotFound: the stream is gone. Otherwise as BindKvStream.
Status AllowAtomicBatches(const NatsConnection* conn, const std::string& bucket);

// Reads the stream's current identity and last sequence.
// NotFound: the stream is gone. Otherwise as BindKvStream.
Result<KvStream> ReadKvStream(jsCtx* js, const std::string& bucket,
                              const NatsConnection* conn = nullptr);

}  // namespace revkv::replication

#endif  // REVKV_REPLICATION_KV_STREAM_H_
