#include "replication/jetstream_api.h"

#include <nats/nats.h>

#include <exception>
#include <nlohmann/json.hpp>
#include <string>

#include "replication/nats_connection.h"

namespace revkv::replication {
namespace {

using nlohmann::json;

// Parsed without exceptions: nullopt unless `text` is one JSON object.
std::optional<json> ParseObject(std::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

// Never throws: invalid UTF-8 (which no parsed reply holds) is replaced.
std::string Dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<uint64_t> UintField(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_unsigned()) return std::nullopt;
  return it->get<uint64_t>();
}

std::optional<int64_t> IntField(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

bool BoolField(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() && it->get<bool>();
}

std::string StringField(const json& obj, const char* key, std::string fallback) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return fallback;
  return it->get<std::string>();
}

// The error of an error reply: OK if `reply` has none.
Status ReplyError(const json& reply, const std::string& context) {
  auto it = reply.find("error");
  if (it == reply.end()) return Status::OK();
  int code = -1;
  std::string description = "no description";
  if (it->is_object()) {
    code = static_cast<int>(IntField(*it, "err_code").value_or(-1));
    description = StringField(*it, "description", description);
  }
  return ApiErrorStatus(code, description, context);
}

// The request, its reply parsed (its text in `*text` when given); an
// error reply is its Status.
Result<json> Request(const NatsConnection& conn, const std::string& subject,
                     const std::string& body, const std::string& context,
                     std::string* text = nullptr) {
  natsMsg* msg = nullptr;
  const uint64_t since = conn.permission_errors();
  natsStatus s = natsConnection_Request(&msg, conn.nc(), subject.c_str(), body.data(),
                                        static_cast<int>(body.size()),
                                        conn.options().write_timeout.count());
  if (s != NATS_OK) {
    natsMsg_Destroy(msg);
    return conn.FromRequest(s, context, static_cast<jsErrCode>(0), since, subject);
  }
  const char* data = natsMsg_GetData(msg);
  std::string raw(data != nullptr ? data : "", static_cast<size_t>(natsMsg_GetDataLength(msg)));
  natsMsg_Destroy(msg);
  auto reply = ParseObject(raw);
  if (!reply) {
    return Status::IOError(context + ": the server's reply is not a JSON object: " + raw);
  }
  if (Status error = ReplyError(*reply, context); !error.ok()) return error;
  if (text != nullptr) *text = std::move(raw);
  return std::move(*reply);
}

Result<json> ReadConfig(const NatsConnection& conn, const std::string& stream,
                        const std::string& context) {
  auto info = Request(conn, "$JS.API.STREAM.INFO." + stream, "", context);
  if (!info.ok()) return info.status();
  auto config = info->find("config");
  if (config == info->end() || !config->is_object()) {
    return Status::IOError(context + ": the server's stream info has no config: " + Dump(*info));
  }
  return *config;
}

}  // namespace

Status ApiErrorStatus(int code, std::string_view description, const std::string& context) {
  if (code == JSStreamNameExistErr) return Status::Exists(context + ": it exists");
  std::string said = context + ": the server said '";
  said.append(description).append("' (error ").append(std::to_string(code)).append(")");
  if (code == JSStreamNotFoundErr) return Status::NotFound(said);
  return Status::InvalidArgument(said);
}

Status JsApiRequest(const NatsConnection& conn, const std::string& subject,
                    const std::string& body, const std::string& context, std::string* reply) {
  try {
    return Request(conn, subject, body, context, reply).status();
  } catch (const std::exception& e) {
    return Status::IOError(context + ": cannot read the server's reply (" + e.what() + ")");
  }
}

Status CreateKvStreamRaw(const NatsConnection& conn, const KvStreamSpec& spec,
                         const std::string& context) {
  try {
    json config = {
        {"name", spec.name},
        {"subjects", json::array({spec.subject})},
        {"retention", "limits"},
        {"max_consumers", -1},
        {"max_msgs", -1},
        {"max_bytes", -1},
        {"discard", "new"},
        {"max_age", static_cast<int64_t>(spec.max_age.count())},
        {"max_msgs_per_subject", spec.history},
        {"max_msg_size", spec.max_msg_size},
        {"storage", spec.memory_storage ? "memory" : "file"},
        {"num_replicas", spec.replicas},
        {"deny_delete", true},
        {"allow_rollup_hdrs", true},
        {"allow_direct", true},
    };
    if (spec.marker_ttl.count() > 0) {
      config["allow_msg_ttl"] = true;
      config["subject_delete_marker_ttl"] = static_cast<int64_t>(spec.marker_ttl.count());
    }
    if (spec.allow_atomic) config["allow_atomic"] = true;
    auto created = Request(conn, "$JS.API.STREAM.CREATE." + spec.name, Dump(config), context);
    return created.status();
  } catch (const std::exception& e) {
    return Status::IOError(context + ": " + e.what());
  }
}

Result<StreamInfoJson> ReadStreamInfoJson(const NatsConnection& conn, const std::string& stream,
                                          const std::string& context) {
  try {
    auto info = Request(conn, "$JS.API.STREAM.INFO." + stream, "", context);
    if (!info.ok()) return info.status();
    auto config = info->find("config");
    if (config == info->end() || !config->is_object()) {
      return Status::IOError(context + ": the server's stream info has no config: " +
                             Dump(*info));
    }
    StreamInfoJson out;
    out.config = Dump(*config);
    auto state = info->find("state");
    out.state = state != info->end() && state->is_object() ? Dump(*state) : "{}";
    return out;
  } catch (const std::exception& e) {
    return Status::IOError(context + ": " + e.what());
  }
}

Result<NewerStreamSettings> ReadNewerStreamSettings(const NatsConnection& conn,
                                                    const std::string& stream,
                                                    const std::string& context) {
  try {
    auto config = ReadConfig(conn, stream, context);
    if (!config.ok()) return config.status();
    NewerStreamSettings out;
    out.allow_msg_ttl = BoolField(*config, "allow_msg_ttl");
    out.subject_delete_marker_ttl =
        std::chrono::nanoseconds(IntField(*config, "subject_delete_marker_ttl").value_or(0));
    out.allow_atomic = BoolField(*config, "allow_atomic");
    return out;
  } catch (const std::exception& e) {
    return Status::IOError(context + ": " + e.what());
  }
}

Status UpdateStreamConfig(const NatsConnection& conn, const std::string& stream,
                          const std::string& merge_patch, const std::string& context,
                          std::string* updated_config) {
  try {
    auto patch = ParseObject(merge_patch);
    if (!patch) {
      return Status::InvalidArgument(context + ": the change '" + merge_patch +
                                     "' is not a JSON object");
    }
    auto config = ReadConfig(conn, stream, context);
    if (!config.ok()) return config.status();
    config->merge_patch(*patch);
    // The name the subject names, whatever the patch said.
    (*config)["name"] = stream;
    auto updated = Request(conn, "$JS.API.STREAM.UPDATE." + stream, Dump(*config), context);
    if (!updated.ok()) return updated.status();
    if (updated_config != nullptr) {
      auto held = updated->find("config");
      *updated_config = held != updated->end() && held->is_object() ? Dump(*held) : "{}";
    }
    return Status::OK();
  } catch (const std::exception& e) {
    return Status::IOError(context + ": " + e.what());
  }
}

Status EnableAllowAtomic(const NatsConnection& conn, const std::string& stream,
                         const std::string& context) {
  std::string held;
  if (Status s = UpdateStreamConfig(conn, stream, R"({"allow_atomic":true})", context, &held);
      !s.ok()) {
    return s;
  }
  auto config = ParseObject(held);
  if (!config || !BoolField(*config, "allow_atomic")) {
    return Status::InvalidArgument(context + ": the server took the update but stream " + stream +
                                   " still does not allow atomic batches (allow_atomic needs "
                                   "nats-server 2.12.0 or newer)");
  }
  return Status::OK();
}

std::optional<PubAckReply> ParsePubAck(std::string_view body) {
  try {
    auto reply = ParseObject(body);
    if (!reply) return std::nullopt;
    PubAckReply out;
    auto error = reply->find("error");
    if (error != reply->end()) {
      out.is_error = true;
      if (error->is_object()) {
        out.error_code = static_cast<int>(IntField(*error, "err_code").value_or(0));
        out.description = StringField(*error, "description", "no description");
      } else {
        out.description = "no description";
      }
      return out;
    }
    out.seq = UintField(*reply, "seq");
    out.count = UintField(*reply, "count");
    out.duplicate = BoolField(*reply, "duplicate");
    return out;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace revkv::replication
