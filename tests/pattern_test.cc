// The functional-mode byte pattern: the fast word-wise fill gives exactly the bytes of the
// per-byte definition, and neighbouring experts, layers, weights and offsets differ.
#define BOOST_TEST_MODULE pattern
#include <boost/test/unit_test.hpp>

#include <random>

#include "core/backend.h"
#include "core/pattern.h"

namespace dwdp {

BOOST_AUTO_TEST_CASE(fill_matches_the_per_byte_definition) {
  std::mt19937_64 rng(11);
  for (int iter = 0; iter < 200; ++iter) {
    const PatternRef pattern{static_cast<int64_t>(rng() % 64), static_cast<int64_t>(rng() % 4),
                             1 + rng() % 5000};
    const uint64_t offset = rng() % 100000;
    const uint64_t bytes = rng() % 20000;
    std::vector<uint8_t> out(bytes);
    FillPattern(pattern, offset, out.data(), bytes);
    for (uint64_t i = 0; i < bytes; ++i) {
      const uint64_t x = offset + i;
      BOOST_REQUIRE_EQUAL(out[i], PatternValue(pattern.layer, pattern.weight,
                                               x / pattern.expert_bytes, x % pattern.expert_bytes));
      BOOST_REQUIRE_EQUAL(out[i], PatternByte(pattern, x));
    }
  }
}

BOOST_AUTO_TEST_CASE(neighbours_differ) {
  // Over 4 KiB, two different (layer, weight, expert) or an 8-byte shift agree on few bytes.
  const auto agreement = [](auto a, auto b) {
    int same = 0;
    for (uint64_t o = 0; o < 4096; ++o) same += a(o) == b(o);
    return same;
  };
  const auto at = [](int64_t layer, int64_t weight, uint64_t expert, int64_t shift) {
    return [=](uint64_t o) { return PatternValue(layer, weight, expert, o + shift); };
  };
  BOOST_TEST(agreement(at(3, 0, 5, 0), at(3, 0, 6, 0)) < 64);  // next expert
  BOOST_TEST(agreement(at(3, 0, 5, 0), at(5, 0, 5, 0)) < 64);  // other layer, same slot
  BOOST_TEST(agreement(at(3, 0, 5, 0), at(3, 1, 5, 0)) < 64);  // other weight
  BOOST_TEST(agreement(at(3, 0, 5, 0), at(3, 0, 5, 8)) < 64);  // shifted by a word
  BOOST_TEST(agreement(at(3, 0, 5, 0), at(3, 0, 5, 1)) < 64);  // shifted by a byte
}

}  // namespace dwdp
