// TcpRelay: a TCP relay on a kernel-chosen loopback port in front of a
// server. It can cut its clients off silently, as a network partition does:
// the sockets stay open, every byte is dropped, nothing is answered. It can
// also delay every byte, as a slow link does. Used by the lock tests and the
// fault campaign's nemesis.

#ifndef REVKV_TESTS_TCP_RELAY_H_
#define REVKV_TESTS_TCP_RELAY_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace revkv::testing {

class TcpRelay {
 public:
  explicit TcpRelay(int server_port) : server_port_(server_port) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listen_fd_, 16) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      error_ = std::string("relay socket: ") + strerror(errno);
      return;
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }
  ~TcpRelay() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    for (auto& [a, b] : pairs_) {
      close(a);
      close(b);
    }
    if (listen_fd_ >= 0) close(listen_fd_);
  }
  TcpRelay(const TcpRelay&) = delete;
  TcpRelay& operator=(const TcpRelay&) = delete;

  bool ok() const { return port_ > 0; }
  const std::string& error() const { return error_; }

  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  // From now on nothing gets through, in either direction.
  void Cut() { cut_ = true; }
  // Ends the partition: the cut connections are closed (their streams lost
  // bytes), so clients reconnect through the relay, which forwards again.
  void Heal() { heal_ = true; }
  // From now on every byte is held for `delay` before it is forwarded, in
  // order, in both directions. Zero ends the delay; bytes already held still
  // wait their turn, so nothing is reordered.
  void Delay(std::chrono::milliseconds delay) { delay_ms_ = delay.count(); }

 private:
  using Clock = std::chrono::steady_clock;
  // Bytes read from one side, held until `due` and then written to `to`.
  struct Held {
    int to;
    Clock::time_point due;
    std::string bytes;
  };

  static void WriteAll(int to, const char* data, size_t n) {
    for (size_t done = 0; done < n;) {
      const ssize_t w = write(to, data + done, n - done);
      if (w <= 0) return;
      done += static_cast<size_t>(w);
    }
  }
  // Forwards the held bytes that are due; returns the poll timeout until the
  // next one is.
  int ForwardDue() {
    while (!held_.empty() && held_.front().due <= Clock::now()) {
      WriteAll(held_.front().to, held_.front().bytes.data(), held_.front().bytes.size());
      held_.pop_front();
    }
    if (held_.empty()) return 20;
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
        held_.front().due - Clock::now()).count();
    return static_cast<int>(std::clamp<int64_t>(wait, 1, 20));
  }
  // Forgets held bytes for a connection being closed (its descriptor number
  // may be reused).
  void DropHeld(int a, int b) {
    std::erase_if(held_, [a, b](const Held& h) { return h.to == a || h.to == b; });
  }

  void Loop() {
    while (!stop_) {
      if (heal_.exchange(false)) {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto& [a, b] : pairs_) {
          close(a);
          close(b);
        }
        pairs_.clear();
        held_.clear();
        cut_ = false;
      }
      const int timeout_ms = ForwardDue();
      std::vector<pollfd> fds = {{listen_fd_, POLLIN, 0}};
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto& [a, b] : pairs_) {
          fds.push_back({a, POLLIN, 0});
          fds.push_back({b, POLLIN, 0});
        }
      }
      if (poll(fds.data(), fds.size(), timeout_ms) <= 0) continue;
      if (fds[0].revents & POLLIN) Accept();
      for (size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        const int from = fds[i].fd;
        const size_t pair = (i - 1) / 2;
        char buf[65536];
        const ssize_t n = read(from, buf, sizeof(buf));
        std::lock_guard<std::mutex> lock(mu_);
        if (pair >= pairs_.size() || (pairs_[pair].first != from && pairs_[pair].second != from)) {
          continue;
        }
        const int to = pairs_[pair].first == from ? pairs_[pair].second : pairs_[pair].first;
        if (n <= 0) {
          DropHeld(pairs_[pair].first, pairs_[pair].second);
          close(pairs_[pair].first);
          close(pairs_[pair].second);
          pairs_.erase(pairs_.begin() + static_cast<std::ptrdiff_t>(pair));
          break;  // indices moved: poll again
        }
        if (cut_) continue;
        const int64_t delay_ms = delay_ms_.load();
        if (delay_ms > 0 || !held_.empty()) {
          held_.push_back({to, Clock::now() + std::chrono::milliseconds(delay_ms),
                           std::string(buf, static_cast<size_t>(n))});
        } else {
          WriteAll(to, buf, static_cast<size_t>(n));
        }
      }
    }
  }
  void Accept() {
    const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) return;
    const int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(server_port_));
    if (cut_ || server < 0 ||
        connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(client);
      if (server >= 0) close(server);
      return;
    }
    // No Nagle delay on the relayed request/reply traffic.
    const int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    std::lock_guard<std::mutex> lock(mu_);
    pairs_.emplace_back(client, server);
  }

  const int server_port_;
  std::string error_;
  int listen_fd_ = -1;
  int port_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> cut_{false};
  std::atomic<bool> heal_{false};
  std::atomic<int64_t> delay_ms_{0};
  std::deque<Held> held_;  // only the relay's thread uses it
  std::mutex mu_;
  std::vector<std::pair<int, int>> pairs_;  // GUARDED_BY(mu_): client, server
};

}  // namespace revkv::testing

#endif  // REVKV_TESTS_TCP_RELAY_H_
