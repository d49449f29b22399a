#pragma once

// The two directions of a fuzz input's encoding, shared by the targets' case headers
// (layout_case.h, sim_case.h): CaseReader decodes fields from fuzzer bytes with
// FuzzedDataProvider, CaseWriter encodes a readable case into the bytes that decode to it (the
// seed writers). A case header lists its fields once, in a template over the coder, so seeds
// cannot drift from what the target decodes.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

namespace dwdp::fuzz {

// Reads a case from fuzzer bytes.
class CaseReader {
 public:
  explicit CaseReader(FuzzedDataProvider& provider) : provider_(provider) {}
  template <typename T>
  void Field(T& value, T min, T max) {
    value = provider_.ConsumeIntegralInRange<T>(min, max);
  }
  void Flag(bool& value) { value = provider_.ConsumeBool(); }
  // The number of repeated items; the reader resizes, the writer keeps what it has.
  template <typename Item>
  void Count(std::vector<Item>& items, int min, int max) {
    int count = 0;
    Field(count, min, max);
    items.assign(static_cast<size_t>(count), Item{});
  }

 private:
  FuzzedDataProvider& provider_;
};

// Writes the bytes that CaseReader reads back as the same case. FuzzedDataProvider takes
// integers from the end of the data, most significant byte first, using just enough bytes for
// the range; this mirrors that.
class CaseWriter {
 public:
  template <typename T>
  void Field(T& value, T min, T max) {
    const uint64_t range = static_cast<uint64_t>(max) - static_cast<uint64_t>(min);
    const uint64_t offset = static_cast<uint64_t>(value) - static_cast<uint64_t>(min);
    int bytes = 0;
    for (int bits = 0; bits < static_cast<int>(sizeof(T)) * 8 && (range >> bits) > 0; bits += 8) {
      ++bytes;
    }
    for (int i = bytes - 1; i >= 0; --i) {
      consumed_.push_back(static_cast<uint8_t>(offset >> (8 * i)));
    }
  }
  void Flag(bool& value) {
    uint8_t byte = value ? 1 : 0;
    Field(byte, uint8_t{0}, uint8_t{255});
  }
  template <typename Item>
  void Count(std::vector<Item>& items, int min, int max) {
    int count = static_cast<int>(items.size());
    Field(count, min, max);
  }
  // The file: the byte consumed first is the last one.
  std::string Bytes() const { return std::string(consumed_.rbegin(), consumed_.rend()); }

 private:
  std::vector<uint8_t> consumed_;
};

}  // namespace dwdp::fuzz
