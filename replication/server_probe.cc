#include "replication/server_probe.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>

#include <nlohmann/json.hpp>

namespace revkv::replication {
namespace {

using Clock = std::chrono::steady_clock;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

Status NotAVersion(std::string_view text) {
  std::string msg(1, '\'');
  msg.append(text).append("' is not a server version like 2.10.27");
  return Status::InvalidArgument(msg);
}

int RemainingMs(Clock::time_point deadline) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms < 0 ? 0 : static_cast<int>(ms);
}

}  // namespace

Result<ServerVersion> ServerVersion::Parse(std::string_view text) {
  if (!text.empty() && text.front() == 'v') text.remove_prefix(1);
  ServerVersion v;
  int* parts[] = {&v.major, &v.minor, &v.patch};
  const char* p = text.data();
  const char* end = text.data() + text.size();
  for (int i = 0; i < 3; ++i) {
    auto [next, ec] = std::from_chars(p, end, *parts[i]);
    if (ec != std::errc() || next == p) {
      return NotAVersion(text);
    }
    p = next;
    if (i < 2) {
      if (p == end || *p != '.') {
        return NotAVersion(text);
      }
      ++p;
    }
  }
  return v;
}

std::string ServerVersion::ToString() const {
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

Result<HostPort> ParseNatsUrl(std::string_view url) {
  std::string_view rest = url;
  if (size_t scheme = rest.find("://"); scheme != std::string_view::npos) {
    rest.remove_prefix(scheme + 3);
  }
  if (size_t at = rest.rfind('@'); at != std::string_view::npos) rest.remove_prefix(at + 1);
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) rest = rest.substr(0, slash);
  HostPort hp;
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {  // [IPv6]:port
    size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      return Status::InvalidArgument("NATS URL '" + std::string(url) + "' has an unclosed '['");
    }
    hp.host = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
    if (!rest.empty() && rest.front() == ':') port_text = rest.substr(1);
  } else {
    size_t colon = rest.rfind(':');
    hp.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) port_text = rest.substr(colon + 1);
  }
  if (hp.host.empty()) {
    return Status::InvalidArgument("NATS URL '" + std::string(url) +
                                   "' names no host; use nats://HOST:PORT");
  }
  if (!port_text.empty()) {
    auto [next, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), hp.port);
    if (ec != std::errc() || next != port_text.data() + port_text.size() || hp.port < 1 ||
        hp.port > 65535) {
      return Status::InvalidArgument("NATS URL '" + std::string(url) + "' has a bad port '" +
                                     std::string(port_text) + "'");
    }
  }
  return hp;
}

Result<ServerInfo> ParseInfoLine(std::string_view line) {
  if (line.substr(0, 5) != "INFO ") {
    return Status::Corruption("the server's first line is not a NATS INFO line: '" +
                              std::string(line.substr(0, 40)) + "'");
  }
  const std::string_view text = line.substr(5);
  const nlohmann::json json =
      nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return Status::Corruption("the server's INFO line is not a JSON object: '" +
                              std::string(text.substr(0, 80)) + "'");
  }
  auto string_field = [&json](const char* key) -> std::optional<std::string> {
    auto it = json.find(key);
    if (it == json.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
  };
  auto bool_field = [&json](const char* key) {
    auto it = json.find(key);
    return it != json.end() && it->is_boolean() && it->get<bool>();
  };
  ServerInfo info;
  auto version = string_field("version");
  if (!version) return Status::Corruption("the server's INFO line has no version");
  info.version_text = *version;
  auto parsed = ServerVersion::Parse(*version);
  if (!parsed.ok()) return Status::Corruption(std::string(parsed.status().message()));
  info.version = *parsed;
  info.server_id = string_field("server_id").value_or("");
  info.server_name = string_field("server_name").value_or("");
  if (auto level = json.find("api_lvl"); level != json.end() && level->is_number_integer()) {
    info.api_level = level->get<int>();
  }
  info.jetstream = bool_field("jetstream");
  info.tls_required = bool_field("tls_required");
  return info;
}

Result<ServerInfo> ProbeServer(std::string_view url, std::chrono::milliseconds timeout) {
  auto hp = ParseNatsUrl(url);
  if (!hp.ok()) return hp.status();
  const auto deadline = Clock::now() + timeout;
  const std::string where = hp->host + ":" + std::to_string(hp->port);

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(hp->host.c_str(), std::to_string(hp->port).c_str(), &hints, &found);
      rc != 0) {
    return Status::Unavailable("cannot resolve NATS server " + where + ": " + gai_strerror(rc));
  }
  std::string last_error = "no address";
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    Fd fd(socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
    if (fd.get() < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    if (connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last_error = std::strerror(errno);
      continue;
    }
    pollfd p{fd.get(), POLLOUT, 0};
    if (poll(&p, 1, RemainingMs(deadline)) <= 0) {
      last_error = "connect timed out";
      continue;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      last_error = std::strerror(err);
      continue;
    }
    std::string line;
    char buf[4096];
    while (line.find("\r\n") == std::string::npos) {
      if (line.size() > 64 * 1024) {
        freeaddrinfo(found);
        return Status::Corruption("NATS server " + where + " sent over 64 KiB without a line end");
      }
      pollfd r{fd.get(), POLLIN, 0};
      if (poll(&r, 1, RemainingMs(deadline)) <= 0) {
        freeaddrinfo(found);
        return Status::Unavailable("NATS server " + where + " sent no INFO within " +
                                   std::to_string(timeout.count()) + " ms");
      }
      ssize_t n = read(fd.get(), buf, sizeof(buf));
      if (n <= 0) {
        freeaddrinfo(found);
        return Status::Unavailable("NATS server " + where + " closed the connection before INFO");
      }
      line.append(buf, static_cast<size_t>(n));
    }
    freeaddrinfo(found);
    return ParseInfoLine(std::string_view(line).substr(0, line.find("\r\n")));
  }
  freeaddrinfo(found);
  return Status::Unavailable("cannot connect to NATS server " + where + ": " + last_error +
                             "; check that it runs and the URL is right");
}

}  // namespace revkv::replication
