// Raw JetStream API requests, for the stream settings nats.c 3.4.1 does not
// know: its jsStreamConfig has no allow_msg_ttl, subject_delete_marker_ttl
// or allow_atomic, so its js_UpdateStream would drop them. Requests and
// replies are JSON; the parsing stays in jetstream_api.cc, and this header
// is free of any JSON library.

#ifndef REVKV_REPLICATION_JETSTREAM_API_H_
#define REVKV_REPLICATION_JETSTREAM_API_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "revkv/result.h"

namespace revkv::replication {

class NatsConnection;

// Sends `body` (JSON, or empty) to the JetStream API subject `subject` and
// puts the reply, a JSON object, in `*reply`. Errors: what the server
// answered with {"error":{...}} as ApiErrorStatus; a reply that is not a
// JSON object is IOError; no reply as NatsConnection::FromRequest
// (Timeout, Unavailable, or PermissionDenied for a request the server
// denied). `context` leads every message.
Status JsApiRequest(const NatsConnection& conn, const std::string& subject,
                    const std::string& body, const std::string& context, std::string* reply);

// The Status of a JetStream API error reply with `code` and `description`:
// Exists for JSStreamNameExistErr ("<context>: it exists"), NotFound for
// JSStreamNotFoundErr, else InvalidArgument ("<context>: the server said
// '<description>' (error <code>)").
Status ApiErrorStatus(int code, std::string_view description, const std::string& context);

// The layout of a KV bucket's stream, as nats.c and the nats CLI create it
// (limits retention, discard new, deny_delete, allow_rollup_hdrs,
// allow_direct, one subject), with the settings nats.c cannot send.
struct KvStreamSpec {
  std::string name;     // KV_<bucket>
  std::string subject;  // $KV.<bucket>.>
  int64_t history = 1;  // max_msgs_per_subject
  int64_t replicas = 1;
  bool memory_storage = false;
  std::chrono::nanoseconds max_age{0};
  int32_t max_msg_size = -1;
  // Not 0: allow_msg_ttl and subject_delete_marker_ttl of this (limit
  // markers, as nats.go's LimitMarkerTTL).
  std::chrono::nanoseconds marker_ttl{0};
  bool allow_atomic = false;  // atomic batch publish (2.12+)
};

// Creates the stream. Exists: a stream of that name exists. Otherwise as
// JsApiRequest.
Status CreateKvStreamRaw(const NatsConnection& conn, const KvStreamSpec& spec,
                         const std::string& context);

// A stream's configuration and state as the server returned them
// (STREAM.INFO), each a JSON object, every field kept.
struct StreamInfoJson {
  std::string config;
  std::string state;
};

// NotFound: no such stream. Otherwise as JsApiRequest.
Result<StreamInfoJson> ReadStreamInfoJson(const NatsConnection& conn, const std::string& stream,
                                          const std::string& context);

// The settings of a stream nats.c's stream info does not carry.
struct NewerStreamSettings {
  bool allow_msg_ttl = false;
  std::chrono::nanoseconds subject_delete_marker_ttl{0};
  bool allow_atomic = false;
};

Result<NewerStreamSettings> ReadNewerStreamSettings(const NatsConnection& conn,
                                                    const std::string& stream,
                                                    const std::string& context);

// Updates the stream's configuration by `merge_patch`, a JSON object
// applied to the configuration the server returns as an RFC 7396 merge
// patch (e.g. {"allow_atomic":true}), and sends the whole result with
// STREAM.UPDATE, so that every other field, including those revkv does not
// know, stays as it was. The configuration the server then holds goes to
// `*updated_config` when given. InvalidArgument: `merge_patch` is not a JSON
// object, or the server refused the update. Otherwise as JsApiRequest.
Status UpdateStreamConfig(const NatsConnection& conn, const std::string& stream,
                          const std::string& merge_patch, const std::string& context,
                          std::string* updated_config = nullptr);

// Turns on allow_atomic in the stream's configuration (nothing else
// changes). InvalidArgument if the server took the update but the stream
// still lacks allow_atomic (a server without atomic batches). Otherwise as
// UpdateStreamConfig.
Status EnableAllowAtomic(const NatsConnection& conn, const std::string& stream,
                         const std::string& context);

// A publish acknowledgement ({"stream":..,"seq":N}, with "count" for an
// atomic batch's commit) or an error reply ({"error":{"err_code":..,
// "description":..}}).
struct PubAckReply {
  bool is_error = false;
  int error_code = 0;           // the error's err_code
  std::string description;      // the error's description
  std::optional<uint64_t> seq;  // the acknowledgement's
  std::optional<uint64_t> count;
  bool duplicate = false;  // a repeat of a Nats-Msg-Id within the window
};

// nullopt: `body` is not a JSON object.
std::optional<PubAckReply> ParsePubAck(std::string_view body);

}  // namespace revkv::replication

#endif  // REVKV_REPLICATION_JETSTREAM_API_H_
