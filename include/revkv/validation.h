// The NATS KV naming rules, exposed so that callers can check input before
// they write. Every Bucket and Engine method applies them itself.

#ifndef REVKV_VALIDATION_H_
#define REVKV_VALIDATION_H_

#include <string_view>

#include "revkv/status.h"

namespace revkv {

// OK, or InvalidArgument naming the rule `key` breaks: characters
// [A-Za-z0-9_=/\\.-] (backslash included, as nats.c allows), 1..kMaxKeyLength
// bytes, no leading or trailing '.', and no empty token ("..").
Status ValidateKey(std::string_view key);

// OK, or InvalidArgument: a filter is a key pattern whose tokens may also be
// "*" (one token) or, as the last token only, ">" (one or more tokens).
// An empty filter is allowed and means ">".
Status ValidateFilter(std::string_view filter);

// OK, or InvalidArgument: bucket names use [A-Za-z0-9_-], 1..128 bytes.
Status ValidateBucketName(std::string_view name);

// True if the valid key `key` matches the valid filter `filter`.
bool FilterMatches(std::string_view filter, std::string_view key);

}  // namespace revkv

#endif  // REVKV_VALIDATION_H_
