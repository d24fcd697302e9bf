// revkv: an embedded key-value engine with per-key revisions, compare-and-swap
// and NATS KV semantics. Include this one header to use it.

#ifndef REVKV_REVKV_H_
#define REVKV_REVKV_H_

#include "revkv/bucket.h"    // IWYU pragma: export
#include "revkv/engine.h"    // IWYU pragma: export
#include "revkv/entry.h"     // IWYU pragma: export
#include "revkv/lock.h"      // IWYU pragma: export
#include "revkv/options.h"   // IWYU pragma: export
#include "revkv/result.h"    // IWYU pragma: export
#include "revkv/statistics.h"  // IWYU pragma: export
#include "revkv/status.h"    // IWYU pragma: export
#include "revkv/txn.h"       // IWYU pragma: export
#include "revkv/validation.h"  // IWYU pragma: export
#include "revkv/version.h"   // IWYU pragma: export
#include "revkv/watch.h"     // IWYU pragma: export

#endif  // REVKV_REVKV_H_
