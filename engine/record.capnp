# On-disk records of the local store. Stored unpacked (the plain segment
# format) so that reads are a bounds-checked pointer walk over the pinned
# RocksDB value, with no decode pass.
#
# Rules for changing this file: add fields at the end with the next ordinal;
# never renumber, retype or remove a field. Bump kRecordSchemaVersion in
# record_codec.h when readers must tell old records from new ones.

@0xcda2a39b24891f3d;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("revkv::engine::schema");

enum Operation {
  put @0;
  delete @1;
  purge @2;
}

# One revision of one key.
struct Record {
  schemaVersion @0 :UInt16;
  operation @1 :Operation;
  revision @2 :UInt64;
  createdNs @3 :Int64;
  key @4 :Text;
  value @5 :Data;
  # In the key's latest record only: the earlier revisions still retained
  # under the bucket's history setting, oldest first. Lets a write trim
  # history without scanning.
  olderRevisions @6 :List(UInt64);
  # The entry's own time to live, in nanoseconds: a per-key TTL written by
  # revkv, or a Nats-TTL another client's message carried; 0 for none. The
  # entry expires at createdNs + ttlNs.
  ttlNs @7 :Int64;
}

# A bucket's settings, kept in the meta column family.
struct BucketConfig {
  schemaVersion @0 :UInt16;
  history @1 :UInt8;
  maxValueSize @2 :UInt32;
}

# The value of a lock's entry in the locks bucket. Any NATS client reading
# the locks bucket sees these bytes.
struct LockRecord {
  schemaVersion @0 :UInt16;
  # Who holds it: "<host>/<pid>/<random>", for humans and diagnostics.
  owner @1 :Text;
  # The holder's lease. Waiters time expiry with it on their own clocks.
  leaseNs @2 :Int64;
  # Holder's wall clock at acquisition; informational only, never compared.
  acquiredAtNs @3 :Int64;
  # 0 in the acquiring write, whose revision is the fencing token; renewals
  # carry that token here, since their own revisions differ.
  token @4 :UInt64;
}
