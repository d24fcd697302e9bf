// A replica mirrors whatever the server stores (DESIGN §5): messages that
// another NATS client can legally store in a KV stream, written here with
// raw nats.c (js_PublishMsg) or, for a damaged message, the raw protocol.
// For each case, a replica that existed before the message and a new one
// bootstrapping over it both go on applying revkv's writes, Sync succeeds,
// and both agree with the server key by key: value, revision, time and
// operation, or absence.

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/raw_publish.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using namespace std::chrono_literals;
using testing::NatsServer;
using testing::TempDir;

// The latest message of one key as the server holds it.
struct ServerEntry {
  std::string value;
  uint64_t revision = 0;
  int64_t created_ns = 0;
  Operation operation = Operation::kPut;
  bool damaged = false;  // its headers cannot be parsed
  std::string marker;    // Nats-Marker-Reason, if any
};

// The test's own reading of a KV message, as nats.go reads it: KV-Operation
// DEL or PURGE is a tombstone and any other value a Put; without it, a limit
// marker's Nats-Marker-Reason MaxAge or Purge is a Purge and Remove a Delete.
ServerEntry ReadServerMessage(natsMsg* m) {
  ServerEntry e;
  jsMsgMetaData* meta = nullptr;
  if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
    e.revision = meta->Sequence.Stream;
    e.created_ns = meta->Timestamp;
    jsMsgMetaData_Destroy(meta);
  }
  const char* op = nullptr;
  const natsStatus hs = natsMsgHeader_Get(m, "KV-Operation", &op);
  if (hs != NATS_OK && hs != NATS_NOT_FOUND) {
    e.damaged = true;
    return e;
  }
  const char* reason = nullptr;
  if (natsMsgHeader_Get(m, "Nats-Marker-Reason", &reason) == NATS_OK) e.marker = reason;
  if (op != nullptr) {
    if (std::strcmp(op, "DEL") == 0) e.operation = Operation::kDelete;
    if (std::strcmp(op, "PURGE") == 0) e.operation = Operation::kPurge;
  } else if (e.marker == "MaxAge" || e.marker == "Purge") {
    e.operation = Operation::kPurge;
  } else if (e.marker == "Remove") {
    e.operation = Operation::kDelete;
  }
  if (e.operation == Operation::kPut && natsMsg_GetDataLength(m) > 0) {
    e.value.assign(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
  }
  return e;
}

class ForeignWritesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start()) << server_.error();
    ASSERT_EQ(testing::ConnectClient(server_.url(), &nc_, &js_), NATS_OK);
  }
  void TearDown() override {
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
  }

  // A replica of `bucket` in its own directory, through the public API.
  struct Replica {
    std::unique_ptr<TempDir> dir = std::make_unique<TempDir>();
    std::unique_ptr<Engine> engine;
    std::shared_ptr<Bucket> bucket;
  };
  Replica OpenReplica(const std::string& bucket) {
    Replica r;
    Reopen(r, bucket);
    return r;
  }
  // Closes the replica's engine, if open, and opens it again on its store.
  void Reopen(Replica& r, const std::string& bucket) {
    r.bucket.reset();
    r.engine.reset();
    Options o;
    o.path = r.dir->path();
    o.nats.servers = {server_.url()};
    auto e = Engine::Open(o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    if (!e.ok()) return;
    r.engine = std::move(*e);
    auto b = r.engine->OpenBucket(bucket, {.history = 5});
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    if (b.ok()) r.bucket = std::move(*b);
  }

  // Publishes with the raw protocol (tests/raw_publish.h): `headers` is the
  // whole header block, sent as is. Returns the revision it got (the
  // stream's new last sequence).
  uint64_t RawPublish(const std::string& bucket, const std::string& key, const std::string& headers,
                      const std::string& payload) {
    const uint64_t before = StreamLast(bucket);
    const std::string error =
        testing::RawPublish(server_.port(), "$KV." + bucket + "." + key, headers, payload);
    EXPECT_EQ(error, "");
    // The stream stores it shortly after the server answered the PING.
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    uint64_t last = StreamLast(bucket);
    while (last == before && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
      last = StreamLast(bucket);
    }
    EXPECT_EQ(last, before + 1) << "the server did not store the raw message";
    return last;
  }

  uint64_t StreamLast(const std::string& bucket) {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const std::string stream = "KV_" + bucket;
    EXPECT_EQ(js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, &jerr), NATS_OK) << jerr;
    const uint64_t last = si != nullptr ? si->State.LastSeq : 0;
    jsStreamInfo_Destroy(si);
    return last;
  }

  // Creates the bucket's stream with limit markers (2.11+), through a raw
  // JetStream API request: nats.c 3.4.1's jsStreamConfig lacks
  // subject_delete_marker_ttl and allow_msg_ttl. The rest is the KV layout.
  void CreateMarkerStream(const std::string& bucket, std::chrono::seconds marker_ttl) {
    const std::string config =
        "{\"name\":\"KV_" + bucket + "\",\"subjects\":[\"$KV." + bucket +
        ".>\"],\"retention\":\"limits\",\"max_msgs_per_subject\":5,\"discard\":\"new\","
        "\"allow_rollup_hdrs\":true,\"deny_delete\":true,\"allow_direct\":true,"
        "\"storage\":\"file\",\"num_replicas\":1,\"max_age\":0,\"max_msg_size\":-1,"
        "\"subject_delete_marker_ttl\":" +
        std::to_string(std::chrono::nanoseconds(marker_ttl).count()) + ",\"allow_msg_ttl\":true}";
    natsMsg* reply = nullptr;
    const std::string subject = "$JS.API.STREAM.CREATE.KV_" + bucket;
    ASSERT_EQ(natsConnection_RequestString(&reply, nc_, subject.c_str(), config.c_str(), 5000),
              NATS_OK);
    const std::string answer(natsMsg_GetData(reply),
                             static_cast<size_t>(natsMsg_GetDataLength(reply)));
    natsMsg_Destroy(reply);
    ASSERT_EQ(answer.find("\"error\""), std::string::npos) << answer;
    ASSERT_NE(answer.find("\"subject_delete_marker_ttl\""), std::string::npos) << answer;
  }

  // Publishes with raw nats.c, as any other client could; returns the
  // revision (stream sequence) the server gave it.
  uint64_t Publish(const std::string& bucket, const std::string& key, const std::string& value,
                   const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    const std::string subject = "$KV." + bucket + "." + key;
    natsMsg* m = nullptr;
    EXPECT_EQ(
        natsMsg_Create(&m, subject.c_str(), nullptr, value.data(), static_cast<int>(value.size())),
        NATS_OK);
    for (const auto& [name, v] : headers) {
      EXPECT_EQ(natsMsgHeader_Set(m, name.c_str(), v.c_str()), NATS_OK);
    }
    jsPubAck* ack = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const natsStatus s = js_PublishMsg(&ack, js_, m, nullptr, &jerr);
    natsMsg_Destroy(m);
    EXPECT_EQ(s, NATS_OK) << natsStatus_GetText(s) << " " << jerr << " "
                          << nats_GetLastError(nullptr);
    const uint64_t seq = ack != nullptr ? ack->Sequence : 0;
    jsPubAck_Destroy(ack);
    return seq;
  }

  // The server's latest message of every key of `bucket`, read with an
  // ordered consumer that delivers the last message per subject.
  std::map<std::string, ServerEntry> ServerState(const std::string& bucket) {
    std::map<std::string, ServerEntry> out;
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const std::string stream = "KV_" + bucket;
    EXPECT_EQ(js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, &jerr), NATS_OK);
    const uint64_t messages = si != nullptr ? si->State.Msgs : 0;
    jsStreamInfo_Destroy(si);
    if (messages == 0) return out;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Ordered = true;
    so.Stream = stream.c_str();
    so.Config.DeliverPolicy = js_DeliverLastPerSubject;
    natsSubscription* sub = nullptr;
    const std::string filter = "$KV." + bucket + ".>";
    EXPECT_EQ(js_SubscribeSync(&sub, js_, filter.c_str(), nullptr, &so, &jerr), NATS_OK);
    const std::string prefix = "$KV." + bucket + ".";
    while (sub != nullptr) {
      natsMsg* m = nullptr;
      if (natsSubscription_NextMsg(&m, sub, 5000) != NATS_OK) {
        ADD_FAILURE() << "the server's last messages of bucket '" << bucket << "' stopped coming";
        break;
      }
      jsMsgMetaData* meta = nullptr;
      uint64_t pending = 0;
      if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
        pending = meta->NumPending;
        jsMsgMetaData_Destroy(meta);
      }
      out[std::string(natsMsg_GetSubject(m)).substr(prefix.size())] = ReadServerMessage(m);
      natsMsg_Destroy(m);
      if (pending == 0) break;
    }
    natsSubscription_Destroy(sub);
    return out;
  }

  // The replica agrees with the server on every key: a live key has the
  // server's value, revision and time; a tombstone reads as NotFound with
  // the server's revision and operation; a damaged message is not applied
  // (its key, written only by it, is absent). Keys() lists the live keys.
  void ExpectMirrors(Bucket& replica, const std::string& bucket, const std::string& who) {
    const auto state = ServerState(bucket);
    ASSERT_FALSE(state.empty());
    std::vector<std::string> live;
    for (const auto& [key, want] : state) {
      SCOPED_TRACE(who + ": key of " + std::to_string(key.size()) + " bytes '" + key.substr(0, 40) +
                   "', revision " + std::to_string(want.revision));
      auto mine = replica.GetEntry(key);
      if (want.damaged) {
        EXPECT_TRUE(mine.status().IsNotFound()) << mine.status().ToString();
        EXPECT_TRUE(replica.History(key).status().IsNotFound());
        continue;
      }
      if (want.operation == Operation::kPut) {
        live.push_back(key);
        ASSERT_TRUE(mine.ok()) << mine.status().ToString();
        EXPECT_EQ(mine->key, key);
        EXPECT_EQ(mine->revision, want.revision);
        EXPECT_EQ(mine->created_ns, want.created_ns);
        EXPECT_TRUE(mine->value == want.value)
            << "value of " << mine->value.size() << " bytes, the server's " << want.value.size();
        auto got = replica.Get(key);
        ASSERT_TRUE(got.ok()) << got.status().ToString();
        EXPECT_EQ(got->size(), want.value.size());
      } else {
        ASSERT_TRUE(mine.status().IsNotFound()) << mine.status().ToString();
        EXPECT_EQ(mine.status().revision(), want.revision);
        auto hist = replica.History(key);
        ASSERT_TRUE(hist.ok()) << hist.status().ToString();
        ASSERT_FALSE(hist->empty());
        EXPECT_EQ(hist->back().revision, want.revision);
        EXPECT_EQ(hist->back().operation, want.operation);
        EXPECT_EQ(hist->back().value, "") << "a marker or tombstone stored as a value";
      }
    }
    auto keys = replica.Keys(">");
    ASSERT_TRUE(keys.ok()) << keys.status().ToString();
    std::sort(live.begin(), live.end());
    EXPECT_TRUE(*keys == live) << who << ": Keys() lists " << keys->size() << " keys, the server "
                               << live.size() << ": " << ::testing::PrintToString(*keys) << " vs "
                               << ::testing::PrintToString(live);
  }

  // The case: a replica opened before `foreign_write`, and one opened after
  // it, both apply it, go on applying revkv's writes, and mirror the server.
  void ExpectMirroredBeforeAndAfter(const std::string& bucket,
                                    const std::function<void()>& foreign_write,
                                    const std::function<void(Bucket&)>& extra_checks = {}) {
    Replica before = OpenReplica(bucket);
    ASSERT_NE(before.bucket, nullptr);
    ASSERT_TRUE(before.bucket->Put("revkv.before", "1").ok());
    foreign_write();
    auto after = before.bucket->Put("revkv.after", "2");
    ASSERT_TRUE(after.ok()) << after.status().ToString();
    Status synced = before.bucket->Sync(5s);
    ASSERT_TRUE(synced.ok()) << "the replica that existed before: " << synced.ToString();
    EXPECT_EQ(*before.bucket->Get("revkv.after"), "2");

    Replica fresh = OpenReplica(bucket);
    ASSERT_NE(fresh.bucket, nullptr);
    synced = fresh.bucket->Sync(5s);
    ASSERT_TRUE(synced.ok()) << "the new replica: " << synced.ToString();
    auto later = fresh.bucket->Put("revkv.fresh", "3");
    ASSERT_TRUE(later.ok()) << later.status().ToString();
    for (Replica* r : {&before, &fresh}) {
      synced = r->bucket->Sync(5s);
      ASSERT_TRUE(synced.ok()) << synced.ToString();
      EXPECT_EQ(r->bucket->LastRevision(), *later);
    }
    ExpectMirrors(*before.bucket, bucket, "the replica that existed before");
    ExpectMirrors(*fresh.bucket, bucket, "the new replica");
    if (extra_checks) {
      extra_checks(*before.bucket);
      extra_checks(*fresh.bucket);
    }
  }

  NatsServer server_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

// Reads that take a key accept every key the replica holds.
void ExpectReadable(Bucket& b, const std::string& key, const std::string& value,
                    const std::string& filter) {
  auto got = b.Get(key);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, value);
  auto hist = b.History(key);
  ASSERT_TRUE(hist.ok()) << hist.status().ToString();
  EXPECT_EQ(hist->back().key, key);
  auto keys = b.Keys(filter);
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  EXPECT_EQ(std::count(keys->begin(), keys->end(), key), 1) << "filter " << filter;
  auto w = b.Watch(filter, {.start = WatchStart::kLatest});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  auto first = (*w)->Next(5s);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->key, key);
  auto changes = b.ChangesSince(0, 1000);
  ASSERT_TRUE(changes.ok()) << changes.status().ToString();
  EXPECT_EQ(
      std::count_if(changes->begin(), changes->end(), [&](const Entry& e) { return e.key == key; }),
      1);
}

TEST_F(ForeignWritesTest, KeyLongerThanRevkvsLimitIsMirrored) {
  const std::string key = "long." + std::string(2000 - 5, 'k');
  ASSERT_EQ(key.size(), 2000u);
  ASSERT_GT(key.size(), kMaxKeyLength);
  ExpectMirroredBeforeAndAfter(
      "fw", [&] { Publish("fw", key, "long value"); },
      [&](Bucket& b) { ExpectReadable(b, key, "long value", "long.*"); });
}

TEST_F(ForeignWritesTest, NonAsciiKeyIsMirrored) {
  const std::string key = "caf\xc3\xa9.\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87";  // café.ключ
  ExpectMirroredBeforeAndAfter(
      "fw", [&] { Publish("fw", key, "utf-8"); },
      [&](Bucket& b) { ExpectReadable(b, key, "utf-8", "caf\xc3\xa9.>"); });
}

// Every character the server takes in a subject token: wildcard characters
// as literal tokens, control bytes, quotes, bytes that are not UTF-8.
// (Not 0x7f: nats-server 2.15.1 stores such a message, but a consumer that
// delivers the last message per subject leaves it out, so a new replica
// never sees it, nor does this test's reading of the server's state.)
TEST_F(ForeignWritesTest, AnyKeyTheServerAcceptsIsMirrored) {
  const std::vector<std::string> keys = {"star.*",
                                         "gt.>",
                                         "ctl\x01"
                                         "x",
                                         "q\"uote",
                                         "not.utf8\xff\xfe",
                                         "a*b.c>d"};
  ExpectMirroredBeforeAndAfter(
      "fw",
      [&] {
        for (const std::string& key : keys) Publish("fw", key, "odd " + key);
      },
      [&](Bucket& b) {
        for (const std::string& key : keys) {
          auto got = b.Get(key);
          ASSERT_TRUE(got.ok()) << key << ": " << got.status().ToString();
          EXPECT_EQ(*got, "odd " + key);
        }
      });
}

TEST_F(ForeignWritesTest, UnknownKvOperationIsAPut) {
  ExpectMirroredBeforeAndAfter(
      "fw",
      [&] {
        Publish("fw", "op.foo", "kept", {{"KV-Operation", "FOO"}});
      },
      [&](Bucket& b) { EXPECT_EQ(*b.Get("op.foo"), "kept"); });
}

// The local max_value_size (here the default, just under 1 MiB) limits
// revkv's own writes only; the server's max_payload (1 MiB) allows more.
TEST_F(ForeignWritesTest, ValueLargerThanTheLocalLimitIsMirrored) {
  std::string value(kDefaultMaxValueSize + 512, 'v');
  value.front() = 'a';
  value.back() = 'z';
  ExpectMirroredBeforeAndAfter(
      "fw", [&] { Publish("fw", "big", value); },
      [&](Bucket& b) {
        EXPECT_LT(b.max_value_size(), value.size());
        auto got = b.Get("big");
        ASSERT_TRUE(got.ok()) << got.status().ToString();
        EXPECT_TRUE(*got == value);
        EXPECT_TRUE(b.Put("mine", value).status().IsInvalidArgument())
            << "revkv's own writes keep the local limit";
      });
}

// A marker the server writes when a message's TTL (or max_age) removes a
// key: Nats-Marker-Reason: MaxAge, no KV-Operation, an empty payload. Both
// replicas read it as a Purge tombstone, never as an empty value.
TEST_F(ForeignWritesTest, LimitMarkerFromAnExpiredKeyIsAPurgeTombstone) {
  // The server raises a message's TTL to the marker TTL, and the marker
  // lives that long too: 5 s to bootstrap a new replica over it.
  CreateMarkerStream("fwm", 5s);
  uint64_t put = 0;
  ExpectMirroredBeforeAndAfter(
      "fwm",
      [&] {
        put = Publish("fwm", "session.1", "short-lived", {{"Nats-TTL", "1s"}});
        // Wait for the server to expire it and write its marker.
        const auto deadline = std::chrono::steady_clock::now() + 15s;
        while (true) {
          const auto state = ServerState("fwm");
          auto it = state.find("session.1");
          if (it != state.end() && it->second.marker == "MaxAge") break;
          ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no marker for the expired key";
          std::this_thread::sleep_for(100ms);
        }
      },
      [&](Bucket& b) {
        auto got = b.Get("session.1");
        EXPECT_TRUE(got.status().IsNotFound()) << "an expired key reads as present";
        EXPECT_GT(got.status().revision(), put);
        auto hist = b.History("session.1");
        ASSERT_TRUE(hist.ok());
        EXPECT_EQ(hist->size(), 1u) << "a purge marker drops the key's history";
        EXPECT_EQ(hist->back().operation, Operation::kPurge);
      });
  // Still there when the replicas were compared: the comparison covered it.
  const auto state = ServerState("fwm");
  auto it = state.find("session.1");
  ASSERT_TRUE(it != state.end() && it->second.marker == "MaxAge")
      << "the marker expired before the replicas were compared; the check proved nothing";
}

// Markers of every reason, as a client (or a future server) may store them,
// and KV-Operation taking precedence over a marker reason, as in nats.go.
TEST_F(ForeignWritesTest, MarkerReasonsMapToTombstones) {
  ExpectMirroredBeforeAndAfter(
      "fw",
      [&] {
        for (const char* key : {"m.remove", "m.purge", "m.maxage", "m.both"})
          Publish("fw", key, "v");
        Publish("fw", "m.remove", "", {{"Nats-Marker-Reason", "Remove"}});
        Publish("fw", "m.purge", "", {{"Nats-Marker-Reason", "Purge"}});
        Publish("fw", "m.maxage", "", {{"Nats-Marker-Reason", "MaxAge"}});
        Publish("fw", "m.both", "", {{"Nats-Marker-Reason", "MaxAge"}, {"KV-Operation", "DEL"}});
      },
      [&](Bucket& b) {
        const std::pair<const char*, Operation> want[] = {{"m.remove", Operation::kDelete},
                                                          {"m.purge", Operation::kPurge},
                                                          {"m.maxage", Operation::kPurge},
                                                          {"m.both", Operation::kDelete}};
        for (const auto& [key, op] : want) {
          EXPECT_TRUE(b.Get(key).status().IsNotFound()) << key;
          auto hist = b.History(key);
          ASSERT_TRUE(hist.ok()) << key;
          EXPECT_EQ(hist->back().operation, op) << key;
        }
      });
}

// A header block no client can parse: a line without a colon.
constexpr char kDamagedHeaders[] = "NATS/1.0\r\nno colon on this line\r\n\r\n";

// A message whose headers cannot be parsed may be a Put or a tombstone:
// nats.c cannot tell. It is skipped, counted and named in GetStatus, and
// the replica goes on past it; the key it alone wrote stays absent.
TEST_F(ForeignWritesTest, DamagedMessageIsSkippedCountedAndNamed) {
  uint64_t damaged = 0;
  ExpectMirroredBeforeAndAfter(
      "fw", [&] { damaged = RawPublish("fw", "damaged", kDamagedHeaders, "v"); },
      [&](Bucket& b) {
        EXPECT_TRUE(b.Get("damaged").status().IsNotFound());
        const BucketStatus st = b.GetStatus();
        EXPECT_EQ(st.skipped, 1u);
        EXPECT_EQ(st.first_skipped, damaged);
        EXPECT_NE(st.skipped_reason.find("headers cannot be parsed"), std::string::npos)
            << st.skipped_reason;
        EXPECT_GT(st.applied, damaged) << "the applied revision moved past it";
        EXPECT_EQ(st.lag, 0u);
      });
}

// The count lives in the replica's store: a restart neither loses nor
// recounts it (the loop resumes after the applied revision), and a later
// skip adds to it while the first stays named.
TEST_F(ForeignWritesTest, SkipCountIsKeptAcrossRestarts) {
  Replica r = OpenReplica("fw");
  ASSERT_NE(r.bucket, nullptr);
  EXPECT_EQ(r.bucket->GetStatus().skipped, 0u);
  const uint64_t first = RawPublish("fw", "bad.1", kDamagedHeaders, "v");
  Publish("fw", "good", "1");
  ASSERT_TRUE(r.bucket->Sync(5s).ok());
  EXPECT_EQ(r.bucket->GetStatus().skipped, 1u);

  Reopen(r, "fw");
  ASSERT_NE(r.bucket, nullptr);
  ASSERT_TRUE(r.bucket->Sync(5s).ok());
  BucketStatus st = r.bucket->GetStatus();
  EXPECT_EQ(st.skipped, 1u) << "counted again after a restart";
  EXPECT_EQ(st.first_skipped, first);

  RawPublish("fw", "bad.2", kDamagedHeaders, "v");
  auto later = r.bucket->Put("after", "x");
  ASSERT_TRUE(later.ok()) << later.status().ToString();
  ASSERT_TRUE(r.bucket->Sync(5s).ok());
  st = r.bucket->GetStatus();
  EXPECT_EQ(st.skipped, 2u);
  EXPECT_EQ(st.first_skipped, first);
  EXPECT_EQ(st.applied, *later);
  EXPECT_EQ(*r.bucket->Get("good"), "1");
  ExpectMirrors(*r.bucket, "fw", "the restarted replica");
}

}  // namespace
}  // namespace revkv
