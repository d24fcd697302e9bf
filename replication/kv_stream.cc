#include "replication/kv_stream.h"

#include <string>

#include "replication/capabilities.h"
#include "replication/jetstream_api.h"
#include "replication/nats_connection.h"
#include "replication/nats_status.h"
#include "revkv/validation.h"

namespace revkv::replication {

std::string KvStreamName(std::string_view bucket) { return "KV_" + std::string(bucket); }
std::string KvSubjectPrefix(std::string_view bucket) { return "$KV." + std::string(bucket) + "."; }
std::string KvSubjects(std::string_view bucket) { return KvSubjectPrefix(bucket) + ">"; }

namespace {

KvStream FromInfo(const jsStreamInfo* si) {
  KvStream out;
  out.name = si->Config->Name != nullptr ? si->Config->Name : "";
  out.created_ns = si->Created;
  out.history = static_cast<int>(si->Config->MaxMsgsPerSubject);
  out.replicas = static_cast<int>(si->Config->Replicas);
  out.memory_storage = si->Config->Storage == js_MemoryStorage;
  out.max_age = std::chrono::nanoseconds(si->Config->MaxAge);
  out.max_value_size = si->Config->MaxMsgSize;
  out.last_sequence = si->State.LastSeq;
  out.last_time_ns = si->State.LastTime;
  out.allow_direct = si->Config->AllowDirect;
  return out;
}


// A failed JetStream API request to `api_subject`, begun when `conn` (if
// given) had seen `since` permission violations.
Status RequestFailed(const NatsConnection* conn, uint64_t since, const std::string& api_subject,
                     natsStatus s, const std::string& context, jsErrCode jerr) {
  if (conn == nullptr) return FromNats(s, context, jerr);
  return conn->FromRequest(s, context, jerr, since, api_subject);
}

uint64_t PermissionErrors(const NatsConnection* conn) {
  return conn != nullptr ? conn->permission_errors() : 0;
}

// Reads allow_msg_ttl, subject_delete_marker_ttl and allow_atomic, which
// nats.c's stream info does not carry, into `out`.
Status ReadNewerSettings(const NatsConnection& conn, const std::string& bucket, KvStream* out) {
  const std::string name = KvStreamName(bucket);
  auto settings = ReadNewerStreamSettings(
      conn, name, "reading the TTL and batch settings of stream " + name);
  if (!settings.ok()) return settings.status();
  out->allow_msg_ttl = settings->allow_msg_ttl;
  out->limit_marker_ttl = settings->subject_delete_marker_ttl;
  out->allow_atomic = settings->allow_atomic;
  return Status::OK();
}

// Creates the stream through the raw API, for the settings nats.c 3.4.1
// cannot send: the standard KV layout, plus allow_msg_ttl and
// subject_delete_marker_ttl when `marker_ttl` is not 0 (as nats.go's
// LimitMarkerTTL), and allow_atomic (atomic batch publish) when
// `allow_atomic`. An existing stream is Exists.
Status CreateRaw(const NatsConnection& conn, const KvStreamRequest& req,
                 std::chrono::seconds marker_ttl, bool allow_atomic) {
  KvStreamSpec spec;
  spec.name = KvStreamName(req.bucket);
  spec.subject = KvSubjects(req.bucket);
  spec.history = req.history.value_or(1);
  spec.replicas = req.replicas.value_or(1);
  spec.memory_storage = req.memory_storage.value_or(false);
  spec.max_age = req.max_age.value_or(req.max_age_if_created);
  spec.max_msg_size = req.max_value_size.value_or(-1);
  spec.marker_ttl = marker_ttl;
  spec.allow_atomic = allow_atomic;
  return CreateKvStreamRaw(conn, spec,
                           "creating stream " + spec.name + " for bucket '" + req.bucket + "'");
}

std::string AtomicContext(const std::string& bucket) {
  return "turning on atomic batches (allow_atomic) in stream " + KvStreamName(bucket) +
         " of bucket '" + bucket + "'";
}

// BucketOptions::allow_atomic_batches needs a 2.12+ server.
Status RequireAtomicBatches(const NatsConnection* conn, const std::string& bucket) {
  const std::string context =
      "bucket '" + bucket + "' asks for atomic batches (BucketOptions::allow_atomic_batches)";
  if (conn == nullptr) {
    return Status::InvalidArgument(context + ", which needs the bucket's NATS connection");
  }
  return conn->Require(Feature::kAtomicBatch, context);
}

}  // namespace

Result<KvStream> ReadKvStream(jsCtx* js, const std::string& bucket, const NatsConnection* conn) {
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  const std::string name = KvStreamName(bucket);
  const uint64_t since = PermissionErrors(conn);
  natsStatus s = js_GetStreamInfo(&si, js, name.c_str(), nullptr, &jerr);
  if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
    jsStreamInfo_Destroy(si);
    return Status::NotFound("bucket '" + bucket + "' has no stream " + name + " on the server");
  }
  if (s != NATS_OK) {
    jsStreamInfo_Destroy(si);
    return RequestFailed(conn, since, "$JS.API.STREAM.INFO." + name, s,
                         "reading stream " + name + " of bucket '" + bucket + "'", jerr);
  }
  bool kv_subjects = false;
  for (int i = 0; i < si->Config->SubjectsLen; ++i) {
    if (KvSubjects(bucket) == si->Config->Subjects[i]) kv_subjects = true;
  }
  KvStream out = FromInfo(si);
  jsStreamInfo_Destroy(si);
  if (!kv_subjects || out.history < 1) {
    return Status::InvalidArgument("stream " + name + " is not a KV bucket (it needs subjects " +
                                   KvSubjects(bucket) +
                                   " and a per-subject limit); use another bucket name");
  }
  return out;
}

Result<KvStream> BindKvStream(jsCtx* js, const KvStreamRequest& req, const NatsConnection* conn) {
  if (Status s = ValidateBucketName(req.bucket); !s.ok()) return s;
  if (req.history && (*req.history < 1 || *req.history > kMaxHistory)) {
    return Status::InvalidArgument("history " + std::to_string(*req.history) +
                                   " is out of range; NATS KV allows 1.." +
                                   std::to_string(kMaxHistory));
  }
  if (req.replicas && (*req.replicas < 1 || *req.replicas > 5)) {
    return Status::InvalidArgument("replicas " + std::to_string(*req.replicas) +
                                   " is out of range; JetStream allows 1..5");
  }
  const bool markers = req.limit_marker_ttl && req.limit_marker_ttl->count() != 0;
  if (markers && req.limit_marker_ttl->count() < 1) {
    return Status::InvalidArgument("limit_marker_ttl is " +
                                   std::to_string(req.limit_marker_ttl->count()) +
                                   " s; give at least 1 s, or 0 for no limit markers");
  }
  if (markers && conn == nullptr) {
    return Status::InvalidArgument("limit markers need the bucket's NATS connection");
  }
  if (markers) {
    if (Status s = conn->Require(Feature::kLimitMarkers,
                                 "bucket '" + req.bucket + "' asks for limit markers");
        !s.ok()) {
      return s;
    }
  }

  if (req.allow_atomic_batches) {
    if (Status s = RequireAtomicBatches(conn, req.bucket); !s.ok()) return s;
  }

  auto existing = ReadKvStream(js, req.bucket, conn);
  if (existing.status().IsNotFound() && !req.create_if_missing) {
    return Status::NotFound("bucket '" + req.bucket + "' does not exist on the server; create it "
                            "(open it with BucketOptions::create_if_missing) or check the name");
  }
  // Limit markers by default (the locks bucket's), where the server has them.
  std::chrono::seconds create_markers =
      markers ? *req.limit_marker_ttl : std::chrono::seconds(0);
  if (!markers && req.limit_marker_ttl_if_created.count() > 0 && conn != nullptr &&
      existing.status().IsNotFound()) {
    auto server = conn->Server();
    if (server.ok() && Supports(server->version, Feature::kTtlLimitMarkers)) {
      create_markers = req.limit_marker_ttl_if_created;
    }
  }
  // Atomic batches (fenced compare-and-swap writes) where the server has
  // them; an existing stream keeps its own setting.
  bool create_atomic = false;
  if (conn != nullptr && existing.status().IsNotFound()) {
    auto server = conn->Server();
    create_atomic = server.ok() && Supports(server->version, Feature::kAtomicBatch);
  }
  if (existing.status().IsNotFound() && (create_markers.count() > 0 || create_atomic)) {
    Status created = CreateRaw(*conn, req, create_markers, create_atomic);
    if (!created.ok() && !created.IsExists()) return created;
    existing = ReadKvStream(js, req.bucket, conn);
  } else if (existing.status().IsNotFound()) {
    // The standard KV layout, as nats.c's js_CreateKeyValue builds it.
    const std::string name = KvStreamName(req.bucket);
    const std::string subject = KvSubjects(req.bucket);
    const char* subjects[] = {subject.c_str()};
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = name.c_str();
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.MaxMsgsPerSubject = req.history.value_or(1);
    sc.MaxBytes = -1;
    sc.MaxAge = req.max_age.value_or(req.max_age_if_created).count();
    sc.MaxMsgSize = req.max_value_size.value_or(-1);
    sc.Storage = req.memory_storage.value_or(false) ? js_MemoryStorage : js_FileStorage;
    sc.Replicas = req.replicas.value_or(1);
    sc.Discard = js_DiscardNew;
    sc.AllowRollup = true;
    sc.DenyDelete = true;
    sc.AllowDirect = true;
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const uint64_t since = PermissionErrors(conn);
    natsStatus s = js_AddStream(&si, js, &sc, nullptr, &jerr);
    if (s == NATS_OK) {
      KvStream out = FromInfo(si);  // without per-message TTL or markers
      jsStreamInfo_Destroy(si);
      return out;
    }
    jsStreamInfo_Destroy(si);
    // Another process may have created it first: bind to theirs below.
    if (jerr != JSStreamNameExistErr) {
      return RequestFailed(conn, since, "$JS.API.STREAM.CREATE." + name, s,
                           "creating stream " + name + " for bucket '" + req.bucket + "'", jerr);
    }
    existing = ReadKvStream(js, req.bucket, conn);
  }
  if (!existing.ok()) return existing.status();
  // Servers before 2.11 have neither setting.
  if (conn != nullptr) {
    auto server = conn->Server();
    if (server.ok() && Supports(server->version, Feature::kMessageTtl)) {
      if (Status s = ReadNewerSettings(*conn, req.bucket, &*existing); !s.ok()) return s;
    }
  }

  std::string diffs;
  auto differ = [&](bool asked_and_differs, const std::string& what) {
    if (asked_and_differs) diffs += " " + what + ";";
  };
  differ(req.history && *req.history != existing->history,
         "history " + std::to_string(existing->history) + " (asked " +
             std::to_string(req.history.value_or(0)) + ")");
  differ(req.replicas && *req.replicas != existing->replicas,
         "replicas " + std::to_string(existing->replicas) + " (asked " +
             std::to_string(req.replicas.value_or(0)) + ")");
  differ(req.memory_storage && *req.memory_storage != existing->memory_storage,
         std::string("storage ") + (existing->memory_storage ? "memory" : "file") + " (asked " +
             (req.memory_storage.value_or(false) ? "memory" : "file") + ")");
  differ(req.max_age && *req.max_age != existing->max_age,
         "max_age " + std::to_string(existing->max_age.count()) + " ns (asked " +
             std::to_string(req.max_age.value_or(std::chrono::nanoseconds(0)).count()) + " ns)");
  const auto marker_s =
      std::chrono::duration_cast<std::chrono::seconds>(existing->limit_marker_ttl).count();
  differ(markers && *req.limit_marker_ttl != existing->limit_marker_ttl,
         "limit_marker_ttl " + std::to_string(marker_s) + " s (asked " +
             std::to_string(req.limit_marker_ttl.value_or(std::chrono::seconds(0)).count()) +
             " s; revkv never turns per-message TTL on in an existing stream, since it cannot be "
             "turned off again)");
  differ(req.max_value_size && *req.max_value_size != existing->max_value_size,
         "max_value_size " + std::to_string(existing->max_value_size) + " (asked " +
             std::to_string(req.max_value_size.value_or(0)) + ")");
  if (!diffs.empty()) {
    diffs.pop_back();
    return Status::InvalidArgument("bucket '" + req.bucket +
                                   "' exists on the server with other settings:" + diffs +
                                   "; leave those options unset to take the server's");
  }
  if (req.allow_atomic_batches && !existing->allow_atomic) {
    if (Status s = EnableAllowAtomic(*conn, existing->name, AtomicContext(req.bucket)); !s.ok()) {
      return s;
    }
    existing->allow_atomic = true;
  }
  return existing;
}

Status AllowAtomicBatches(const NatsConnection* conn, const std::string& bucket) {
  if (Status s = RequireAtomicBatches(conn, bucket); !s.ok()) return s;
  const std::string name = KvStreamName(bucket);
  auto settings = ReadNewerStreamSettings(*conn, name, AtomicContext(bucket));
  if (!settings.ok()) return settings.status();
  if (settings->allow_atomic) return Status::OK();
  return EnableAllowAtomic(*conn, name, AtomicContext(bucket));
}

}  // namespace revkv::replication
