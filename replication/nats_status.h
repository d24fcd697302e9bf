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

// Converts `s` (with `jerr`, the JetStream error code, when the call gave
// one). `context` says what was being done and leads the message; nats.c's
// last error text follows it.
Status FromNats(natsStatus s, std::string_view context, jsErrCode jerr = static_cast<jsErrCode>(0));

}  // namespace revkv::replication

#endif  // REVKV_REPLICATION_NATS_STATUS_H_
