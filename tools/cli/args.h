// The command line: global options (anywhere on the line, as --flag VALUE or
// --flag=VALUE), COMMAND and its arguments, and "--".

#ifndef REVKV_TOOLS_CLI_ARGS_H_
#define REVKV_TOOLS_CLI_ARGS_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace revkv::cli {

struct Args {
  std::optional<std::string> db;
  std::optional<std::string> bucket;
  bool json = false;
  bool sync = false;
  bool help = false;
  bool version = false;
  bool disk_usage = false;        // status --disk-usage
  bool local = false;             // --local: no catch-up before reads
  bool allow_atomic = false;      // --allow-atomic
  std::vector<std::string> nats;  // every --nats value, comma lists split
  std::optional<std::string> user;
  std::optional<std::string> password;
  std::optional<std::string> token;
  std::optional<std::string> creds;
  std::optional<std::string> tls_ca;
  std::optional<std::string> tls_cert;
  std::optional<std::string> tls_key;
  // Raw text of the options whose values are checked after the usage checks.
  std::optional<std::string> write_timeout;
  std::optional<std::string> history;
  std::optional<std::string> revision;
  std::optional<std::string> lease;
  std::optional<std::string> timeout;
  std::optional<std::string> ttl;
  std::optional<std::string> limit_marker_ttl;
  std::optional<std::string> locks_bucket;
  std::optional<std::string> fence;  // NAME:TOKEN
  std::vector<std::string> positional;  // COMMAND and its arguments
  // Where the first "--" stood: the number of positional arguments before it.
  std::optional<size_t> separator;
};

// Parses the command line with CLI11. Returns the usage error, or an empty
// string. -h or --help anywhere before "--" sets `help` even then, so that
// help wins over a mistake elsewhere on the line.
std::string ParseArgs(int argc, char** argv, Args* args);

}  // namespace revkv::cli

#endif  // REVKV_TOOLS_CLI_ARGS_H_
