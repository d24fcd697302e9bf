// Shared by every part of the revkv CLI: the exit-code contract, the one-line
// error reporting, standard input and output, and the number and duration
// syntax of the command line.

#ifndef REVKV_TOOLS_CLI_COMMON_H_
#define REVKV_TOOLS_CLI_COMMON_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "revkv/revkv.h"

namespace revkv::cli {

// Scripts depend on these: see the usage text.
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,  // usage errors and every code without its own number
  kExitNotFound = 2,
  kExitExists = 3,
  kExitConflict = 4,
  kExitTimeout = 5,
  kExitUnavailable = 6,
  kExitInvalidArgument = 7,
  kExitLockLost = 9,     // the lease was lost while CMD ran, or a fenced write's lock
  kExitCannotRun = 127,  // lock: CMD could not be started
};

// Error text ends up on one stderr line, so anything that could break the
// line or the terminal is escaped as \xNN.
std::string Printable(std::string_view s);
// 's', Printable.
std::string Quote(std::string_view s);

// Every failure goes through here so that each prints exactly one line.
int Fail(int code, std::string_view message);
int UsageError(std::string_view message);
int ExitCodeFor(revkv::Code code);
int FailStatus(const revkv::Status& status);
// One "revkv: warning: ..." line on stderr.
void Warn(std::string_view message);

bool Write(std::string_view s);
// Output errors (a full disk, a closed pipe) must not pass for success.
int FinishOutput();
// Reads all of stdin, refusing more than any bucket accepts.
int ReadStdin(std::string* out);

// A full decimal uint64: digits only, no sign, no spaces, no overflow.
std::optional<uint64_t> ParseUint64(std::string_view text);
// A whole number with a unit, "ms", "s" or "m"; at most a year.
std::optional<std::chrono::milliseconds> ParseDuration(std::string_view text);
// The shortest exact spelling of `d` in ParseDuration's syntax.
std::string FormatDuration(std::chrono::milliseconds d);

}  // namespace revkv::cli

#endif  // REVKV_TOOLS_CLI_COMMON_H_
