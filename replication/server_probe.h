// A short probe connection that reads the INFO line a NATS server sends first
// on every plain TCP connection. nats.c 3.4.1 has no getter for the server's
// version, and the replication layer needs it to gate features through the
// capability table (capabilities.h).

#ifndef REVKV_REPLICATION_SERVER_PROBE_H_
#define REVKV_REPLICATION_SERVER_PROBE_H_

#include <chrono>
#include <string>
#include <string_view>

#include "revkv/result.h"

namespace revkv::replication {

struct ServerVersion {
  int major = 0;
  int minor = 0;
  int patch = 0;

  // Parses "2.10.27" (a suffix such as "-beta.1" is ignored).
  static Result<ServerVersion> Parse(std::string_view text);
  constexpr bool AtLeast(int maj, int min, int pat) const {
    if (major != maj) return major > maj;
    if (minor != min) return minor > min;
    return patch >= pat;
  }
  std::string ToString() const;
};

struct ServerInfo {
  std::string server_id;
  std::string server_name;
  ServerVersion version;
  std::string version_text;
  int api_level = 0;  // JetStream API level, from 2.12 ("api_lvl"); 0 before
  bool jetstream = false;
  bool tls_required = false;
};

// Host and port of a NATS URL: "nats://user:pass@host:4222", "tls://host",
// "host:port" or "[::1]:4222". The port defaults to 4222.
struct HostPort {
  std::string host;
  int port = 4222;
};
Result<HostPort> ParseNatsUrl(std::string_view url);

// Connects to `url`, reads the server's INFO line and closes.
// Unavailable: nothing accepted the connection or no INFO came within
// `timeout`. InvalidArgument: a malformed URL. Corruption: the first line
// was not a NATS INFO line.
Result<ServerInfo> ProbeServer(std::string_view url, std::chrono::milliseconds timeout);

// Parses an INFO line ("INFO {...}\r\n"), for tests and for ProbeServer.
Result<ServerInfo> ParseInfoLine(std::string_view line);

}  // namespace revkv::replication

#endif  // REVKV_REPLICATION_SERVER_PROBE_H_
