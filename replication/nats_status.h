// The one place where nats.c's natsStatus (and a JetStream error code)
// becomes a revkv Status.

#ifndef REVKV_REPLICATION_NATS_STATUS_H_
#define REVKV_REPLICATION_NATS_STATUS_H_

#include <nats/nats.h>

#include <string_view>

#include "revkv/status.h"

namespace revkv::replication {

// JetStream error codes that nats.c 3.4.1's jsErrCode does not name.
// 10164: from 2.11, a clustered stream refuses an expected-sequence publish
// while another one on the same subject is in flight ("wrong last
// sequence", with no number). Nothing was stored; the winner is unknown.
inline constexpr int kJsWrongLastSequenceInFlight = 10164;
// 10163: "expected last sequence per subject temporarily unavailable", a
// new leader not ready to check expected sequences yet. Released servers
// wait instead of sending it, but pre-releases of 2.11 did; nothing was
// stored.
inline constexpr int kJsExpectedSequenceNotReady = 10163;
// 10167 (2.11+): the stream leader's inbound queue is full; the message was
// dropped before it was queued, so it was not stored.
inline constexpr int kJsTooManyRequests = 10167;
// 10194 (2.12+): "stream is offline: <reason>".
inline constexpr int kJsStreamOfflineReason = 10194;
// 10174 (2.12+): "atomic publish is disabled", a batch sent to a stream
// without allow_atomic. Nothing was stored.
inline constexpr int kJsAtomicPublishDisabled = 10174;

// Whether a JetStream publish that failed with `s` and `jerr` certainly
// stored nothing and may be sent again as it is: no server had interest in
// the subject (a stream electing its leader; nats.c then reports
// JSNotEnabledErr), a new leader not ready yet (10163), or the leader shed
// load (10167).
bool PublishNotStoredAndRetryable(natsStatus s, jsErrCode jerr);

// Converts `s` (with `jerr`, the JetStream error code, when the call gave
// one). `context` says what was being done and leads the message; nats.c's
// last error text follows it.
Status FromNats(natsStatus s, std::string_view context, jsErrCode jerr = static_cast<jsErrCode>(0));

}  // namespace revkv::replication

#endif  // REVKV_REPLICATION_NATS_STATUS_H_
