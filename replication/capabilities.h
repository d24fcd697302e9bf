// The one table of server features revkv needs, and the versions that bring
// them. Every feature gate reads this table: a server that lacks
// a feature gives InvalidArgument naming its version and the minimum.
//
// The version is the one of the server the connection is on now
// (NatsConnection::Server): read from that server's INFO line once per
// connection, and again after a reconnect, so that a rolling upgrade is
// seen as it happens.

#ifndef REVKV_REPLICATION_CAPABILITIES_H_
#define REVKV_REPLICATION_CAPABILITIES_H_

#include <string_view>

#include "replication/server_probe.h"
#include "revkv/status.h"

namespace revkv::replication {

enum class Feature {
  // CAS, Create and locks on R>1 buckets: before 2.9.21 two CAS writers with
  // the same expected revision can both win (nats-server PR #4319).
  kClusteredCas,
  // Per-message TTL (Nats-TTL, stream allow_msg_ttl).
  kMessageTtl,
  // Limit markers (subject_delete_marker_ttl) for MaxAge removals.
  kLimitMarkers,
  // Limit markers for per-message TTL expiry as well.
  kTtlLimitMarkers,
  // Nats-Expected-Last-Subject-Sequence-Subject: an expected-sequence check
  // on another subject of the stream (fencing by the server).
  kSubjectSequenceFence,
  // Batched direct get (multi_last, up_to_seq).
  kBatchedDirectGet,
  // Atomic batch publish (allow_atomic, Nats-Batch-*), at most 1,000
  // messages.
  kAtomicBatch,
};

struct Capability {
  Feature feature;
  std::string_view what;  // names the feature in messages
  ServerVersion minimum;
};

// The table, one row per Feature.
inline constexpr Capability kCapabilities[] = {
    {Feature::kClusteredCas, "compare-and-swap (CAS, Create, locks) on a bucket with replicas",
     {2, 9, 21}},
    {Feature::kMessageTtl, "per-key TTL (Nats-TTL)", {2, 11, 0}},
    {Feature::kLimitMarkers, "limit markers (subject_delete_marker_ttl)", {2, 11, 0}},
    {Feature::kTtlLimitMarkers, "limit markers for TTL expiry", {2, 11, 2}},
    {Feature::kSubjectSequenceFence,
     "fenced writes checked by the server (Nats-Expected-Last-Subject-Sequence-Subject)",
     {2, 11, 0}},
    {Feature::kBatchedDirectGet, "batched direct get (multi_last)", {2, 11, 0}},
    {Feature::kAtomicBatch, "atomic batch publish (transactions)", {2, 12, 0}},
};

const Capability& CapabilityOf(Feature feature);

// Whether a server of `version` has `feature`.
bool Supports(const ServerVersion& version, Feature feature);

// OK if `server` has `feature`; else InvalidArgument that says what needs
// it (`context`, e.g. "bucket 'jobs' has 3 replicas"), the server's version
// and the minimum.
Status Require(Feature feature, const ServerInfo& server, std::string_view context);

}  // namespace revkv::replication

#endif  // REVKV_REPLICATION_CAPABILITIES_H_
