// The NATS KV naming rules, exposed so that callers can check input before
// they write or read. Every Bucket and Engine method applies them itself.
//
// Two sets of rules, because a replica holds whatever any NATS client
// stored on the server, not only what revkv writes:
// - Writes (Put, Create, Update, Delete, Purge, UpdateWithRetry, lock names)
//   use ValidateKey: revkv's own, strict NATS KV key rules.
// - Reads (Get, GetEntry, History; Keys and Watch filters) use
//   ValidateReadKey and ValidateReadFilter: any key another client can store
//   in a KV stream, of any length, with any bytes a NATS subject may hold
//   (non-ASCII UTF-8 included). A replica applies exactly the keys that
//   ValidateReadKey accepts, so every key a replica holds can be read.

#ifndef REVKV_VALIDATION_H_
#define REVKV_VALIDATION_H_

#include <string_view>

#include "revkv/status.h"

namespace revkv {

// OK, or InvalidArgument naming the rule `key` breaks: characters
// [A-Za-z0-9_=/\\.-] (backslash included, as nats.c allows), 1..kMaxKeyLength
// bytes, no leading or trailing '.', and no empty token ("..").
Status ValidateKey(std::string_view key);

// OK, or InvalidArgument naming the rule `key` breaks, for reads: not empty,
// no leading or trailing '.', no empty token (".."), and none of the bytes
// no NATS subject holds (space, tab, CR, LF, form feed, NUL). Any length,
// any other byte: this is every key a replica can hold.
Status ValidateReadKey(std::string_view key);

// OK, or InvalidArgument: a filter is a key pattern (ValidateKey's rules)
// whose tokens may also be "*" (one token) or, as the last token only, ">"
// (one or more tokens). An empty filter is allowed and means ">".
Status ValidateFilter(std::string_view filter);

// As ValidateFilter, with ValidateReadKey's rules for the literal tokens:
// what Keys and Watch accept. A token that holds '*' or '>' among other
// characters is literal, as in NATS.
Status ValidateReadFilter(std::string_view filter);

// OK, or InvalidArgument: bucket names use [A-Za-z0-9_-], 1..128 bytes.
Status ValidateBucketName(std::string_view name);

// True if `key` matches the filter `filter` (both valid for reads).
bool FilterMatches(std::string_view filter, std::string_view key);

}  // namespace revkv

#endif  // REVKV_VALIDATION_H_
