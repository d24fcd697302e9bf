// Bootstrap from a snapshot: how a new replica of a history-1 bucket loads
// the latest entry of every key on nats-server 2.11+, instead of replaying
// the stream through the ordered consumer (README "Bootstrap of a new
// replica").
//
// The snapshot is a sequence of batched direct gets (JSApiMsgGetRequest with
// `seq`, `batch` and `next_by_subj` $KV.<bucket>.>), each page answered by
// direct-get messages and an EOB status message, read up to `up_to_seq`, the
// stream's last sequence when the bootstrap began. With history 1 the
// stream holds one message per key, so every message at or below
// `up_to_seq` is the latest of its key as of `up_to_seq`, and the pages come
// in sequence order: after each page the replica holds every message up to
// the last one it loaded, which is therefore its applied revision. A
// bootstrap that stops part way (a failure, a crash) resumes through the
// consumer from there and loses nothing. Once complete the replica's
// revision is `up_to_seq`, and the consumer starts at `up_to_seq + 1`.
//
// Why not `multi_last`: the server answers a multi_last request that
// matches more than 1,024 subjects with 413 Too Many Results (its
// maxAllowedResponses, nats-server 2.11 to 2.14), whatever its batch size,
// so it cannot page through a large bucket. With history > 1 the stream
// holds older revisions as well, which a sequential read would load and a
// new replica does not keep (the replay starts at the last message per
// key): such buckets keep the replay.

#ifndef REVKV_REPLICATION_SNAPSHOT_BOOTSTRAP_H_
#define REVKV_REPLICATION_SNAPSHOT_BOOTSTRAP_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

#include "engine/log.h"
#include "engine/replica_sink.h"
#include "replication/kv_stream.h"
#include "revkv/options.h"
#include "revkv/result.h"

namespace revkv::replication {

class NatsConnection;

// How a new replica came to its state.
enum class BootstrapPath {
  kReplay,    // not applicable: the consumer replays the stream
  kSnapshot,  // loaded up to the stream's last sequence at start
  kPartial,   // the snapshot stopped part way; the consumer goes on from there
};

// Bootstraps `replica` (empty: LastRevision() 0) of `stream` from a
// snapshot when the server has batched direct get (capabilities.h
// kBatchedDirectGet), the stream allows direct gets and keeps one revision
// per key; else returns kReplay and changes nothing. `progress`, if set, is
// called after each page and once at the end.
// A failure of the server or the connection part way is not an error: what
// was loaded stays, the reason is logged, and the result is kPartial, so
// that the consumer resumes after it. So is a message whose headers arrive
// damaged (the consumer then skips it as the replay does; nothing is logged
// here). Errors: the local store's (IOError, Corruption), after which the
// bucket cannot be opened.
Result<BootstrapPath> BootstrapFromSnapshot(
    const NatsConnection& conn, const KvStream& stream, const std::string& bucket,
    engine::ReplicaSink* replica,
    const std::function<void(const BootstrapProgress&)>& progress,
    const engine::Log& log = engine::Log());

// Parses a time as Go's time.RFC3339Nano writes it (nats-server's
// Nats-Time-Stamp header), into nanoseconds since the Unix epoch.
std::optional<int64_t> ParseRfc3339Nano(std::string_view text);

// Tests: with false, every bootstrap replays (as on a server without
// batched direct get), so that both paths can be compared on one server.
void TEST_SetSnapshotBootstrap(bool enabled);
// Tests: the messages per page (0: the default), to cover many pages.
void TEST_SetSnapshotPageMessages(int messages);

}  // namespace revkv::replication

#endif  // REVKV_REPLICATION_SNAPSHOT_BOOTSTRAP_H_
