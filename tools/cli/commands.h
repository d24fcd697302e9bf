// The command table: every command's name, arguments, usage and handler,
// and the context a handler runs in.

#ifndef REVKV_TOOLS_CLI_COMMANDS_H_
#define REVKV_TOOLS_CLI_COMMANDS_H_

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "args.h"
#include "revkv/revkv.h"

namespace revkv::cli {

struct Command;

// One invocation, checked: everything a handler needs before the store is
// opened, and the store and bucket once OpenBucket has opened them.
struct Context {
  Context(const Args& a, const Command& c) : args(a), command(c) {}
  const Args& args;
  const Command& command;
  std::string bucket_name;
  std::vector<std::string> params;    // the command's arguments
  std::vector<std::string> lock_cmd;  // lock: CMD and its ARGS
  std::string filter;                 // keys, entries, watch: ">" when not given
  std::string value;                  // put, create, update
  std::optional<uint64_t> expected_revision;
  revkv::NatsOptions nats;
  revkv::BucketOptions bucket_options;
  revkv::WriteOptions write_options;

  std::unique_ptr<revkv::Engine> engine;
  std::shared_ptr<revkv::Bucket> bucket;
  bool connected = false;  // the engine is connected to NATS

  bool replicated() const { return !args.nats.empty(); }
  const std::string& key() const { return params.empty() ? filter : params[0]; }
};

using Handler = int (*)(Context& ctx);

struct Command {
  std::string_view name;
  size_t min_args;
  size_t max_args;
  std::string_view synopsis;  // after "revkv"
  std::string_view summary;   // lines of the help text
  bool writes;
  Handler run;
  // A read of a bucket that does not exist: what it prints instead of
  // failing with exit 2 (nullptr: it fails).
  Handler on_missing_bucket = nullptr;
};

std::span<const Command> Commands();
const Command* FindCommand(std::string_view name);
// `revkv --help` and `revkv COMMAND --help`.
std::string Usage();
std::string CommandUsage(const Command& command);

// Opens the store and the bucket (a read never creates either), and with
// `catch_up` brings a replica up to date for a read. Returns kExitOk, or the
// exit code after reporting why not.
int OpenBucket(Context& ctx, bool catch_up = true);
// OpenBucket for a handler: false when the handler is done (an error, or a
// missing bucket's output), with `*rc` its exit code.
inline bool Open(Context& ctx, int* rc, bool catch_up = true) {
  *rc = OpenBucket(ctx, catch_up);
  return *rc == 0 && ctx.bucket != nullptr;
}

// The handlers, by file.
int RunGet(Context& ctx);  // read_commands.cc
int RunEntry(Context& ctx);
int RunKeys(Context& ctx);
int RunEntries(Context& ctx);
int RunHistory(Context& ctx);
int EmptyKeys(Context& ctx);
int EmptyEntries(Context& ctx);
int RunPut(Context& ctx);  // write_commands.cc
int RunCreate(Context& ctx);
int RunUpdate(Context& ctx);
int RunDelete(Context& ctx);
int RunPurge(Context& ctx);
int RunTxn(Context& ctx);     // txn_command.cc
int RunWatch(Context& ctx);   // watch_command.cc
int RunLock(Context& ctx);    // lock_command.cc
int RunStatus(Context& ctx);  // status_command.cc
int EmptyStatus(Context& ctx);
int PrintVersion(const Args& args);

}  // namespace revkv::cli

#endif  // REVKV_TOOLS_CLI_COMMANDS_H_
