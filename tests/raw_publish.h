// RawPublish: publishes one message over the raw NATS protocol, with a
// header block sent exactly as given. A client with its own header encoder
// can store headers that nats.c would never write (nats.c escapes what it
// sends), e.g. a block no client can parse; the server stores it as is.

#ifndef REVKV_TESTS_RAW_PUBLISH_H_
#define REVKV_TESTS_RAW_PUBLISH_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>

namespace revkv::testing {

// Sends CONNECT, HPUB `subject` with `headers` and `payload`, and PING to
// the server on 127.0.0.1:`port`, then waits for its PONG. Returns "" once
// the server answered, else what went wrong (or what the server said).
// The message is not acknowledged: a JetStream stream stores it shortly
// after; poll the stream for it.
inline std::string RawPublish(int port, const std::string& subject, const std::string& headers,
                              const std::string& payload) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "socket failed";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "cannot connect to port " + std::to_string(port);
  }
  const std::string out =
      "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\nHPUB " + subject + " " +
      std::to_string(headers.size()) + " " + std::to_string(headers.size() + payload.size()) +
      "\r\n" + headers + payload + "\r\nPING\r\n";
  std::string error;
  if (write(fd, out.data(), out.size()) != static_cast<ssize_t>(out.size())) error = "short write";
  std::string in;
  char buf[4096];
  while (error.empty() && in.find("PONG") == std::string::npos) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) {
      error = "the server closed the connection: " + in;
      break;
    }
    in.append(buf, static_cast<size_t>(n));
    if (in.find("-ERR") != std::string::npos) error = in;
  }
  close(fd);
  return error;
}

}  // namespace revkv::testing

#endif  // REVKV_TESTS_RAW_PUBLISH_H_
