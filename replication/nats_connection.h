// NatsConnection: the engine's one NATS connection and its JetStream
// context, built from NatsOptions. Reconnects by itself, forever.

#ifndef REVKV_REPLICATION_NATS_CONNECTION_H_
#define REVKV_REPLICATION_NATS_CONNECTION_H_

#include <nats/nats.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "replication/capabilities.h"
#include "replication/server_probe.h"
#include "revkv/options.h"
#include "revkv/result.h"

namespace revkv::replication {

class NatsConnection {
 public:
  // InvalidArgument: more than one kind of credential, a TLS key without a
  // certificate. Unavailable: no server answered within connect_timeout.
  // PermissionDenied: the server refused the credentials.
  static Result<std::unique_ptr<NatsConnection>> Connect(const NatsOptions& options);
  ~NatsConnection();
  NatsConnection(const NatsConnection&) = delete;
  NatsConnection& operator=(const NatsConnection&) = delete;

  natsConnection* nc() const { return nc_; }
  jsCtx* js() const { return js_; }
  bool connected() const { return natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED; }
  const NatsOptions& options() const { return options_; }

  // The server this connection is on now, from its INFO line: read once per
  // connection and again after each reconnect (a rolling upgrade changes
  // it), from the connected URL, and checked against the connected server's
  // id, never from a fixed entry of the server list.
  // Unavailable: not connected now, or the server at the connected URL is
  // not the one the connection is on (a proxy or load balancer in front of
  // several servers).
  Result<ServerInfo> Server() const;
  // OK if the server this connection is on has `feature` (capabilities.h);
  // InvalidArgument naming the versions if not. `context` leads the message.
  Status Require(Feature feature, std::string_view context) const;
  // How many times the connection has reconnected.
  uint64_t reconnects() const;

  // The server reports a denied publish asynchronously, so a write to a
  // subject the user may not publish to only times out. The connection's
  // error handler remembers such violations: a write that timed out asks
  // whether one named its subject since `since` (a count taken before it
  // published), and reports PermissionDenied instead.
  uint64_t permission_errors() const;
  bool PermissionDeniedSince(uint64_t since, const std::string& subject) const;

  // Whether the server denied `verb` ("Publish" or "Subscription") on
  // `subject`, or on a subject under it (`subject` + ".…"), since
  // permission_errors() was `since`. Also reads the connection's last error,
  // which nats.c sets before its error handler runs: a caller that has just
  // flushed sees a denial the handler has not recorded yet.
  bool DeniedSince(uint64_t since, std::string_view verb, std::string_view subject) const;

  // A JetStream API request the server denies gets no answer, only an
  // asynchronous violation, so it times out. As FromNats, but a timeout of a
  // request to `api_subject` (begun when permission_errors() was `since`)
  // that the server denied is PermissionDenied.
  Status FromRequest(natsStatus s, std::string_view context, jsErrCode jerr, uint64_t since,
                     std::string_view api_subject) const;

  // A push subscription the server refuses still "succeeds" in nats.c: the
  // server only reports the violation, and the subscription never receives
  // a message. Flushes (one round trip, bounded by the write timeout), then
  // returns PermissionDenied if the server refused `sub`'s subject since
  // `since`; `what` names the subscription in the message.
  Status CheckSubscribed(natsSubscription* sub, uint64_t since, std::string_view what) const;

 private:
  explicit NatsConnection(NatsOptions options) : options_(std::move(options)) {}

  static void OnAsyncError(natsConnection* nc, natsSubscription* sub, natsStatus err,
                           void* closure);
  static void OnReconnected(natsConnection* nc, void* closure);
  static void OnClosed(natsConnection* nc, void* closure);

  const NatsOptions options_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;

  mutable std::mutex server_mu_;
  mutable std::optional<ServerInfo> server_;  // GUARDED_BY(server_mu_): of connection number
  mutable uint64_t server_of_ = 0;            // GUARDED_BY(server_mu_): ...this one
  std::atomic<uint64_t> reconnects_{0};

  // nats.c runs the callbacks above on its own thread, in order, and may
  // still run one after natsConnection_Destroy returns; the closed callback
  // is the last. The destructor waits for it before this object goes away.
  std::mutex closed_mu_;
  std::condition_variable closed_cv_;
  bool closed_ = false;  // GUARDED_BY(closed_mu_)

  mutable std::mutex mu_;
  uint64_t permission_errors_ = 0;           // GUARDED_BY(mu_)
  std::deque<std::string> recent_denials_;   // GUARDED_BY(mu_): newest last, bounded
};

}  // namespace revkv::replication

#endif  // REVKV_REPLICATION_NATS_CONNECTION_H_
