// revkv: the command-line tool over the public revkv API.
//
//   revkv --db DIR [--bucket NAME] [--json] [--history N] [--sync] COMMAND ...
//   revkv --db DIR lock NAME [--lease DUR] [--timeout DUR] -- CMD [ARGS...]
//
// Scripts depend on the exit codes and output formats, so they are a
// contract: see Usage() in commands.cc.

#include <cstdio>
#include <exception>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "context.h"

namespace revkv::cli {
namespace {

int Run(int argc, char** argv) {
  Args args;
  const std::string usage_error = ParseArgs(argc, argv, &args);
  if (args.help) {
    const Command* command = args.positional.empty() ? nullptr : FindCommand(args.positional[0]);
    Write(command != nullptr ? CommandUsage(*command) : Usage());
    return FinishOutput();
  }
  if (!usage_error.empty()) return UsageError(usage_error);
  if (args.version) return PrintVersion(args);
  if (!args.db) return UsageError("missing --db DIR");
  if (args.db->empty()) return UsageError("--db needs a directory, not an empty string");
  if (args.positional.empty()) return UsageError("missing COMMAND");
  const Command* command = FindCommand(args.positional[0]);
  if (command == nullptr) return UsageError("unknown command " + Quote(args.positional[0]));
  Context ctx{args, *command};
  if (int rc = PrepareContext(ctx); rc != kExitOk) return rc;
  return command->run(ctx);
}

}  // namespace
}  // namespace revkv::cli

int main(int argc, char** argv) {
  int rc;
  try {
    rc = revkv::cli::Run(argc, argv);
  } catch (const std::exception& e) {
    rc = revkv::cli::Fail(revkv::cli::kExitError, std::string("internal error: ") + e.what());
  } catch (...) {
    rc = revkv::cli::Fail(revkv::cli::kExitError, "internal error: unknown exception");
  }
  // Every engine was closed inside Run. Leave without running static
  // destructors: RocksDB 7.8 keeps static mutexes (its periodic task timer)
  // that its own threads may still lock while they are destroyed, which
  // aborted this process with "pthread lock: Invalid argument" once in a
  // test run after `lock ... -- false` had finished.
  std::fflush(nullptr);
  _exit(rc);
}
