// A small deterministic generator (xorshift64*, Vigna 2016) for the sampled
// addresses and the randomized phase: the same seed gives the same run, and
// the seed is printed so a failure can be replayed.
#pragma once

#include "ptkit/addr.hpp"

namespace kernel {

class Random {
 public:
  explicit Random(ptkit::u64 seed) : state_(seed != 0 ? seed : 1) {}
  ptkit::u64 next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545'F491'4F6C'DD1D;
  }
  /// Uniform enough in [0, n); n > 0.
  ptkit::u64 below(ptkit::u64 n) { return next() % n; }

 private:
  ptkit::u64 state_;
};

}  // namespace kernel
