#include "replication/nats_connection.h"

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "replication/nats_status.h"

namespace revkv::replication {

Result<std::unique_ptr<NatsConnection>> NatsConnection::Connect(const NatsOptions& o) {
  if (o.servers.empty()) return Status::InvalidArgument("NatsOptions::servers is empty");
  const int kinds = (!o.user.empty() || !o.password.empty()) + !o.token.empty() +
                    !o.creds_file.empty();
  if (kinds > 1) {
    return Status::InvalidArgument("give one kind of NATS credential: user/password, a token or "
                                   "a creds file");
  }
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return Status::InvalidArgument("a TLS client certificate needs its key and the key its "
                                   "certificate; give both or neither");
  }
  if (o.connect_timeout.count() <= 0 || o.write_timeout.count() <= 0) {
    return Status::InvalidArgument("NATS connect and write timeouts must be positive");
  }
  if (o.max_writes_in_flight == 0) {
    return Status::InvalidArgument("NatsOptions::max_writes_in_flight is 0; allow at least one "
                                   "asynchronous write in flight (the default is 1024)");
  }
  std::unique_ptr<NatsConnection> conn(new NatsConnection(o));
  natsOptions* opts = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  std::vector<const char*> urls;
  for (const auto& u : o.servers) urls.push_back(u.c_str());
  if (s == NATS_OK) s = natsOptions_SetServers(opts, urls.data(), static_cast<int>(urls.size()));
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, o.connect_timeout.count());
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);  // forever
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, 250);
  if (s == NATS_OK && o.ignore_discovered_servers) {
    s = natsOptions_SetIgnoreDiscoveredServers(opts, true);
  }
  if (s == NATS_OK) s = natsOptions_SetErrorHandler(opts, &NatsConnection::OnAsyncError, conn.get());
  if (s == NATS_OK) {
    s = natsOptions_SetReconnectedCB(opts, &NatsConnection::OnReconnected, conn.get());
  }
  if (s == NATS_OK) s = natsOptions_SetClosedCB(opts, &NatsConnection::OnClosed, conn.get());
  if (s == NATS_OK && (!o.user.empty() || !o.password.empty())) {
    s = natsOptions_SetUserInfo(opts, o.user.c_str(), o.password.c_str());
  }
  if (s == NATS_OK && !o.token.empty()) s = natsOptions_SetToken(opts, o.token.c_str());
  if (s == NATS_OK && !o.creds_file.empty()) {
    s = natsOptions_SetUserCredentialsFromFiles(opts, o.creds_file.c_str(), nullptr);
  }
  const bool tls = !o.tls_ca.empty() || !o.tls_cert.empty();
  // The message of `s` in `context`, for a Status of a more precise code.
  auto text = [&s](const std::string& context) {
    return std::string(FromNats(s, context).message());
  };
  if (s == NATS_OK && tls) s = natsOptions_SetSecure(opts, true);
  if (s == NATS_OK && !o.tls_ca.empty()) {
    s = natsOptions_LoadCATrustedCertificates(opts, o.tls_ca.c_str());
    if (s != NATS_OK) {
      natsOptions_Destroy(opts);
      return Status::InvalidArgument(text("loading the TLS CA file '" + o.tls_ca + "'") +
                                     "; check NatsOptions::tls_ca (a PEM file of the CA that "
                                     "signed the server's certificate)");
    }
  }
  if (s == NATS_OK && !o.tls_cert.empty()) {
    s = natsOptions_LoadCertificatesChain(opts, o.tls_cert.c_str(), o.tls_key.c_str());
    if (s != NATS_OK) {
      natsOptions_Destroy(opts);
      return Status::InvalidArgument(
          text("loading the TLS client certificate '" + o.tls_cert + "' and key '" + o.tls_key +
               "'") +
          "; check NatsOptions::tls_cert and tls_key (PEM files of a certificate and its key)");
    }
  }
  if (s != NATS_OK) {
    natsOptions_Destroy(opts);
    return FromNats(s, "setting up the NATS connection options");
  }
  s = natsConnection_Connect(&conn->nc_, opts);
  natsOptions_Destroy(opts);
  if (s == NATS_SSL_ERROR) {
    // The TLS handshake failed: the server's certificate is not trusted, or
    // ours was refused. A configuration problem, not an outage.
    return Status::PermissionDenied(
        text("TLS handshake with NATS at " + o.servers.front()) +
        "; check NatsOptions::tls_ca, tls_cert and tls_key against the server's TLS settings");
  }
  if (s == NATS_PROTOCOL_ERROR || s == NATS_SECURE_CONNECTION_REQUIRED ||
      s == NATS_SECURE_CONNECTION_WANTED) {
    // The server ended the handshake (one that requires a client
    // certificate drops a client without one), or only one side wants TLS.
    return Status::PermissionDenied(
        text("connecting to NATS at " + o.servers.front()) +
        (tls ? "; the server refused the connection: check that it accepts this client "
               "certificate (NatsOptions::tls_cert, tls_key)"
             : "; the server refused the connection: if it requires TLS, set "
               "NatsOptions::tls_ca, and tls_cert and tls_key for a client certificate"));
  }
  if (s != NATS_OK) return FromNats(s, "connecting to NATS at " + o.servers.front());
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = o.write_timeout.count();
  s = natsConnection_JetStream(&conn->js_, conn->nc_, &jo);
  if (s != NATS_OK) return FromNats(s, "opening JetStream on the NATS connection");
  return conn;
}

void NatsConnection::OnReconnected(natsConnection*, void* closure) {
  // The new server is read when next needed, not on nats.c's thread.
  static_cast<NatsConnection*>(closure)->reconnects_.fetch_add(1);
}

uint64_t NatsConnection::reconnects() const { return reconnects_.load(); }

Result<ServerInfo> NatsConnection::Server() const {
  constexpr int kTries = 3;
  std::string last;
  for (int attempt = 0; attempt < kTries; ++attempt) {
    const uint64_t generation = reconnects_.load();
    {
      std::lock_guard<std::mutex> lock(server_mu_);
      if (server_ && server_of_ == generation) return *server_;
    }
    char url[512] = {0};
    char id[256] = {0};
    if (natsConnection_GetConnectedUrl(nc_, url, sizeof(url)) != NATS_OK || url[0] == '\0' ||
        natsConnection_GetConnectedServerId(nc_, id, sizeof(id)) != NATS_OK || id[0] == '\0') {
      return Status::Unavailable("not connected to a NATS server now, so its version is not "
                                 "known; retry once the connection is back");
    }
    auto info = ProbeServer(url, options_.connect_timeout);
    if (!info.ok()) return info.status();
    if (info->server_id != id) {
      // The URL now leads elsewhere (the connection moved on since, or a
      // proxy spreads connections): ask again.
      last = std::string(url) + " answered as server " + info->server_id +
             ", but this connection is on server " + id;
      continue;
    }
    std::lock_guard<std::mutex> lock(server_mu_);
    if (reconnects_.load() == generation) {
      server_ = *info;
      server_of_ = generation;
    }
    return *info;
  }
  return Status::Unavailable("cannot tell which NATS server this connection is on: " + last +
                             "; connect to the servers directly, not through a proxy");
}

Status NatsConnection::Require(Feature feature, std::string_view context) const {
  auto server = Server();
  if (!server.ok()) return server.status();
  return replication::Require(feature, *server, context);
}

void NatsConnection::OnAsyncError(natsConnection* nc, natsSubscription*, natsStatus err,
                                  void* closure) {
  if (err != NATS_NOT_PERMITTED) return;
  auto* self = static_cast<NatsConnection*>(closure);
  char text[512] = {0};
  const char* last = nullptr;
  natsConnection_GetLastError(nc, &last);
  if (last != nullptr) std::snprintf(text, sizeof(text), "%s", last);
  std::lock_guard<std::mutex> lock(self->mu_);
  ++self->permission_errors_;
  self->recent_denials_.emplace_back(text);
  if (self->recent_denials_.size() > 64) self->recent_denials_.pop_front();
}

uint64_t NatsConnection::permission_errors() const {
  std::lock_guard<std::mutex> lock(mu_);
  return permission_errors_;
}

bool NatsConnection::PermissionDeniedSince(uint64_t since, const std::string& subject) const {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t fresh = permission_errors_ - since;
  for (size_t i = 0; i < recent_denials_.size() && i < fresh; ++i) {
    const std::string& text = recent_denials_[recent_denials_.size() - 1 - i];
    // "Permissions Violation for Publish to "$KV.b.k"" names the subject, or
    // a wildcard that covers it; either way it is about this write if it
    // names the bucket's prefix.
    const size_t dot = subject.find('.', 4);
    const std::string prefix = dot == std::string::npos ? subject : subject.substr(0, dot + 1);
    if (text.find("Publish") != std::string::npos &&
        (text.find(subject) != std::string::npos || text.find(prefix) != std::string::npos)) {
      return true;
    }
  }
  return false;
}

namespace {

// Whether `text`, a server error such as
//   Permissions Violation for Subscription to "_INBOX.x" using queue "q"
// denies `verb` on `subject` or on a subject under it.
bool DenialMatches(std::string_view text, std::string_view verb, std::string_view subject) {
  const std::string marker = "for " + std::string(verb) + " to ";
  size_t at = text.find(marker);
  if (at == std::string_view::npos) return false;
  std::string_view denied = text.substr(at + marker.size());
  if (!denied.empty() && denied.front() == '"') denied.remove_prefix(1);
  denied = denied.substr(0, denied.find_first_of("\" "));
  return denied == subject ||
         (denied.size() > subject.size() && denied.substr(0, subject.size()) == subject &&
          denied[subject.size()] == '.');
}

}  // namespace

bool NatsConnection::DeniedSince(uint64_t since, std::string_view verb,
                                 std::string_view subject) const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t fresh = permission_errors_ - since;
    for (size_t i = 0; i < recent_denials_.size() && i < fresh; ++i) {
      if (DenialMatches(recent_denials_[recent_denials_.size() - 1 - i], verb, subject)) {
        return true;
      }
    }
  }
  const char* last = nullptr;
  return natsConnection_GetLastError(nc_, &last) == NATS_NOT_PERMITTED && last != nullptr &&
         DenialMatches(last, verb, subject);
}

Status NatsConnection::FromRequest(natsStatus s, std::string_view context, jsErrCode jerr,
                                   uint64_t since, std::string_view api_subject) const {
  if (s == NATS_TIMEOUT && DeniedSince(since, "Publish", api_subject)) {
    return Status::PermissionDenied(std::string(context) + ": the server denied the request to '" +
                                    std::string(api_subject) +
                                    "'; grant the user publish rights on that JetStream API "
                                    "subject");
  }
  return FromNats(s, context, jerr);
}

Status NatsConnection::CheckSubscribed(natsSubscription* sub, uint64_t since,
                                       std::string_view what) const {
  const char* subject = natsSubscription_GetSubject(sub);
  if (subject == nullptr) return Status::OK();
  // The server handles the SUB before the PING, so once the PONG is back any
  // violation has been read. A failed flush (e.g. a disconnect) proves
  // nothing; the subscription resumes on reconnect.
  natsConnection_FlushTimeout(nc_, options_.write_timeout.count());
  if (!DeniedSince(since, "Subscription", subject)) return Status::OK();
  return Status::PermissionDenied(std::string(what) + ": the server denied subscribing to '" +
                                  subject +
                                  "', where the bucket's consumer delivers; grant the user "
                                  "subscribe rights on '_INBOX.>'");
}

void NatsConnection::OnClosed(natsConnection*, void* closure) {
  auto* self = static_cast<NatsConnection*>(closure);
  std::lock_guard<std::mutex> lock(self->closed_mu_);
  self->closed_ = true;
  self->closed_cv_.notify_all();
}

NatsConnection::~NatsConnection() {
  jsCtx_Destroy(js_);
  if (nc_ == nullptr) return;  // never connected: no callback can come
  natsConnection_Close(nc_);
  {
    // Every callback queued before the close has run once the closed
    // callback has; bounded, in case nats.c's callback thread is stuck.
    std::unique_lock<std::mutex> lock(closed_mu_);
    closed_cv_.wait_for(lock, std::chrono::seconds(5), [this] { return closed_; });
  }
  natsConnection_Destroy(nc_);
}

}  // namespace revkv::replication
