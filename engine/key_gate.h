// KeyGate: one mutex per key, created on demand and dropped when unused, so
// that threads of this process updating the same key queue up locally
// instead of conflicting, while different keys proceed in parallel.

#ifndef REVKV_ENGINE_KEY_GATE_H_
#define REVKV_ENGINE_KEY_GATE_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace revkv::engine {

class KeyGate {
  struct Slot {
    std::mutex mu;
    int users = 0;  // GUARDED_BY(KeyGate::mu_)
  };
  using Slots = std::map<std::string, std::unique_ptr<Slot>, std::less<>>;

 public:
  // Holds the gate of one key for its lifetime.
  class Pass {
   public:
    Pass(KeyGate* gate, std::string_view key) : gate_(gate) {
      {
        std::lock_guard<std::mutex> lock(gate_->mu_);
        auto [it, inserted] = gate_->slots_.try_emplace(std::string(key));
        if (inserted) it->second = std::make_unique<Slot>();
        slot_ = it;
        ++slot_->second->users;
      }
      slot_->second->mu.lock();
    }
    ~Pass() {
      slot_->second->mu.unlock();
      std::lock_guard<std::mutex> lock(gate_->mu_);
      if (--slot_->second->users == 0) gate_->slots_.erase(slot_);
    }
    Pass(const Pass&) = delete;
    Pass& operator=(const Pass&) = delete;

   private:
    KeyGate* gate_;
    Slots::iterator slot_;
  };

 private:
  std::mutex mu_;
  Slots slots_;  // GUARDED_BY(mu_)
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_KEY_GATE_H_
