// Turning the parsed command line into a checked Context.

#ifndef REVKV_TOOLS_CLI_CONTEXT_H_
#define REVKV_TOOLS_CLI_CONTEXT_H_

#include "commands.h"

namespace revkv::cli {

// Checks everything that can be checked without the store, so that a bad
// invocation neither creates a store nor takes its lock: usage errors exit
// 1, bad values 7. Returns kExitOk or the exit code after reporting.
int PrepareContext(Context& ctx);

// The options of an engine for `args` (its --db, --sync, NATS and locks
// bucket).
revkv::Options EngineOptions(const Args& args, const revkv::NatsOptions& nats);

}  // namespace revkv::cli

#endif  // REVKV_TOOLS_CLI_CONTEXT_H_
