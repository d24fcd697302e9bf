// What a transaction (revkv/txn.h) may hold, checked the same way by local
// and replicated buckets before anything is read or written.

#ifndef REVKV_ENGINE_TXN_RULES_H_
#define REVKV_ENGINE_TXN_RULES_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "engine/expiry.h"
#include "revkv/entry.h"
#include "revkv/options.h"
#include "revkv/status.h"
#include "revkv/txn.h"

namespace revkv::engine {

// OK, or InvalidArgument saying what is wrong: no operation, more than
// kMaxTxnOps, a key twice (in compares and operations together), a key
// revkv does not write (operations) or cannot read (compares), an Update
// without its expected revision, a value over `max_value_size`, or `ttl`
// where the single-key write of that kind may not take it.
Status CheckTxn(const Txn& txn, const std::string& bucket, int history, uint32_t max_value_size,
                std::chrono::seconds ttl);

// OK, or InvalidArgument when a value of `size` bytes is over the bucket's
// `max_value_size`; `what` names the key ("key 'k' of bucket 'b'").
Status CheckValueSize(std::string_view what, size_t size, uint32_t max_value_size);

// The Conflict of a compare-and-swap on `what` that expected `expected`
// while the key is at `current`; with `at_least`, at `current` or later (a
// replica that may be behind says so). Carries `current` as its revision.
Status WrongRevisionConflict(std::string_view what, uint64_t expected, uint64_t current,
                             bool at_least = false);

// OK, or InvalidArgument: WriteOptions::idempotency_key on anything but a
// Put without a fence (`plain_put`), or an id that is not 1..256 printable
// ASCII characters.
Status CheckIdempotencyKey(const WriteOptions& options, bool plain_put);

// The entry operation an operation writes.
Operation OperationOf(const TxnOp& op);

// The TtlWrite rules of an operation.
TtlWrite TtlWriteOf(const TxnOp& op);

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_TXN_RULES_H_
