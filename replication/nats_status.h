// The one place where nats.c's natsStatus (and a JetStream error code)
// becomes a revkv Status.

#ifndef REVKV_REPLICATION_NATS_STATUS_H_
#define REVKV_REPLICATION_NATS_STATUS_H_

#include <nats/nats.h>

#include <string_view>

#include "revkv/status.h"

namespace revkv::replication {

// Converts `s` (with `jerr`, the JetStream error code, when the call gave
// one). `context` says what was being done and leads the message; nats.c's
// last error text follows it.
Status FromNats(natsStatus s, std::string_view context, jsErrCode jerr = static_cast<jsErrCode>(0));

}  // namespace revkv::replication

#endif  // REVKV_REPLICATION_NATS_STATUS_H_
