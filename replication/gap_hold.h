// GapHold: when a replica's catch-up across a gap in the stream may be
// applied.
//
// A gap in the sequences a consumer delivers is messages the server removed
// before the consumer reached them: mostly a history-limited key written
// again (its newer message removes the older one), also TTLs, max_age and
// purges. Applied at once, the messages after a gap could show a removed
// message's key older than the messages around it, a state the stream never
// had (half of a transaction, say): the key's newer message may lie beyond
// what was delivered so far.
//
// That newer message was stored before the removal, so before the consumer
// passed the gap: its sequence is at most the stream's last sequence read
// after the message past the gap arrived. A catch-up is therefore held
// until the consumer has delivered that far (the bound). A further gap seen
// while holding needs a fresh bound, read once the current one is reached.
//
// The consumer's pending count is no such bound: nats-server can deliver a
// message with pending 0 while it stores an atomic batch whose messages
// already removed older ones (seen on a 2.15 cluster). It serves only when
// the bound cannot be read.
//
// Pure logic; the caller reads the stream and keeps the hold's time and
// size limits (ApplyLoop).

#ifndef REVKV_REPLICATION_GAP_HOLD_H_
#define REVKV_REPLICATION_GAP_HOLD_H_

#include <cstdint>
#include <optional>

namespace revkv::replication {

class GapHold {
 public:
  // `last_seen`: the highest sequence the replica already has.
  explicit GapHold(uint64_t last_seen = 0) : last_seen_(last_seen) {}

  // Whether the message at `seq` needs a bound: the stream's last sequence,
  // read after the message arrived and before Seen.
  bool NeedsBound(uint64_t seq) const {
    if (seq <= last_seen_) return false;  // a redelivery
    const bool gap = seq > last_seen_ + 1;
    if (!holding_) return gap;
    if (bound_ == 0) return false;  // unreadable before: the pending count decides
    return seq >= bound_ && (gap || rebound_);
  }

  // Records the message at `seq` with the consumer's `pending` count.
  // `bound`: what NeedsBound(seq) asked for, or nullopt when it did not ask
  // or the stream could not be read.
  void Seen(uint64_t seq, uint64_t pending, std::optional<uint64_t> bound) {
    if (seq <= last_seen_) return;
    const bool gap = seq > last_seen_ + 1;
    if (NeedsBound(seq)) {
      if (bound.has_value()) {
        holding_ = true;
        bound_ = *bound;
        rebound_ = false;
      } else {
        // No bound: hold as far as the consumer counts.
        if (!holding_) holding_ = pending > 0;
        bound_ = 0;
        rebound_ = false;
      }
    } else if (gap && holding_) {
      rebound_ = true;
    }
    last_seen_ = seq;
    if (!holding_) return;
    const bool reached = bound_ != 0 ? seq >= bound_ && !rebound_ : pending == 0;
    if (reached) Release();
  }

  bool holding() const { return holding_; }
  // Ends the hold (the caller's time or size limit passed).
  void Release() {
    holding_ = false;
    bound_ = 0;
    rebound_ = false;
  }

 private:
  uint64_t last_seen_;
  bool holding_ = false;
  uint64_t bound_ = 0;    // 0: unknown, the pending count decides
  bool rebound_ = false;  // a gap since bound_ was read
};

}  // namespace revkv::replication

#endif  // REVKV_REPLICATION_GAP_HOLD_H_
