// The test kernels' random numbers: reproducible from a seed printed in the
// report, no state but one word, nothing from a library.
#pragma once

#include "ptkit/addr.hpp"

namespace kernel {

/// splitmix64 (Steele, Lea, Flood 2014): one multiply-xorshift chain per
/// number, enough for choosing test cases, and reproducible from the seed.
class Rng {
  using u64 = ptkit::u64;

 public:
  explicit Rng(u64 seed) : state_(seed) {}
  u64 next() {
    u64 z = (state_ += 0x9E37'79B9'7F4A'7C15);
    z = (z ^ (z >> 30)) * 0xBF58'476D'1CE4'E5B9;
    z = (z ^ (z >> 27)) * 0x94D0'49BB'1331'11EB;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, n), n > 0 (the modulo bias is irrelevant here).
  u64 below(u64 n) { return next() % n; }
  bool chance(unsigned percent) { return below(100) < percent; }

 private:
  u64 state_;
};

}  // namespace kernel
