// NatsConnection: the engine's one NATS connection and its JetStream
// context, built from NatsOptions. Reconnects by itself, forever.

#ifndef REVKV_REPLICATION_NATS_CONNECTION_H_
#define REVKV_REPLICATION_NATS_CONNECTION_H_

#include <nats/nats.h>

#include <memory>

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

 private:
  explicit NatsConnection(NatsOptions options) : options_(std::move(options)) {}

  const NatsOptions options_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

}  // namespace revkv::replication

#endif  // REVKV_REPLICATION_NATS_CONNECTION_H_
