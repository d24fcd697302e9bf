// Workload pieces shared by the contention suites (contention_bench.cc,
// replicated_contention_bench.cc, txn_contention_bench.cc): the counter value
// every strategy increments (or, for transfers, the balance), and the key
// choice (uniform or Zipf, one key or a pair of distinct keys).

#ifndef REVKV_BENCH_WORKLOAD_H_
#define REVKV_BENCH_WORKLOAD_H_

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace revkv::bench {

// A counter value: 20 decimal digits, padded to kValueSize bytes.
inline constexpr size_t kValueSize = 100;
inline constexpr size_t kDigits = 20;

inline std::string EncodeCounter(uint64_t n) {
  char buf[kDigits + 1];
  std::snprintf(buf, sizeof(buf), "%020llu", static_cast<unsigned long long>(n));
  std::string v(buf, kDigits);
  v.resize(kValueSize, '_');
  return v;
}

inline std::optional<uint64_t> DecodeCounter(std::string_view v) {
  if (v.size() != kValueSize) return std::nullopt;
  uint64_t n = 0;
  const char* end = v.data() + kDigits;
  auto [ptr, ec] = std::from_chars(v.data(), end, n);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return n;
}

// xorshift64*, seeded per thread.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull) {}
  uint64_t Next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545F4914F6CDD1Dull;
  }
  // Uniform in [0, 1).
  double NextDouble() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t s_;
};

// Zipf over ranks 0..n-1, P(rank k) proportional to 1 / (k + 1)^theta. Gray
// et al.'s closed-form approximation (YCSB ZipfianGenerator): one uniform draw
// and one pow() per sample, after computing zeta(n, theta) once.
class ZipfParams {
 public:
  ZipfParams(uint64_t n, double theta)
      : n_(n), alpha_(1.0 / (1.0 - theta)), zetan_(Zeta(n, theta)) {
    const double zeta2 = Zeta(2, theta);
    eta_ = (1.0 - std::pow(2.0 / static_cast<double>(n), 1.0 - theta)) / (1.0 - zeta2 / zetan_);
    half_pow_theta_ = 1.0 + std::pow(0.5, theta);
  }

  uint64_t Sample(double u) const {
    const double uz = u * zetan_;
    if (uz < 1.0) return 0;
    if (uz < half_pow_theta_) return 1;
    const auto k =
        static_cast<uint64_t>(static_cast<double>(n_) * std::pow(eta_ * u - eta_ + 1.0, alpha_));
    return std::min(k, n_ - 1);
  }

 private:
  static double Zeta(uint64_t n, double theta) {
    double sum = 0;
    for (uint64_t i = 1; i <= n; ++i) sum += 1.0 / std::pow(static_cast<double>(i), theta);
    return sum;
  }

  uint64_t n_;
  double alpha_;
  double zetan_;
  double eta_ = 0;
  double half_pow_theta_ = 0;
};

// Picks keys 0..n-1: uniform (zipf == nullptr) or from `zipf`, whose n must
// match; Pair() gives two distinct ones, the first drawn first, the second
// drawn again until it differs (so under Zipf both ends of a pair lean to the
// hot keys).
class KeyChooser {
 public:
  KeyChooser(size_t n, const ZipfParams* zipf, uint64_t seed) : n_(n), zipf_(zipf), rng_(seed) {}

  size_t Next() {
    if (zipf_ != nullptr) return static_cast<size_t>(zipf_->Sample(rng_.NextDouble()));
    return static_cast<size_t>(rng_.Next() % n_);
  }

  // REQUIRES: n >= 2.
  std::pair<size_t, size_t> Pair() {
    const size_t a = Next();
    size_t b = Next();
    while (b == a) b = Next();
    return {a, b};
  }

 private:
  size_t n_;
  const ZipfParams* zipf_;
  Rng rng_;
};

// Nearest-rank percentile `p` (0..1), in microseconds, of samples in
// nanoseconds (which it reorders); 0 when there are none.
template <typename Int>
double PercentileUs(std::vector<Int>* v, double p) {
  if (v->empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(v->size())));
  rank = std::clamp<size_t>(rank, 1, v->size());
  std::nth_element(v->begin(), v->begin() + static_cast<std::ptrdiff_t>(rank - 1), v->end());
  return static_cast<double>((*v)[rank - 1]) / 1e3;
}

}  // namespace revkv::bench

#endif  // REVKV_BENCH_WORKLOAD_H_
