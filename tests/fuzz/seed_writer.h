#pragma once

// The command line of the seed writers (make_layout_seeds, make_sim_seeds):
//
//   make_X_seeds DIR          writes every named seed case, encoded, into DIR
//   make_X_seeds --print FILE prints the case a corpus file decodes to
//
// A seed that does not decode back to itself is refused (exit 1): it would not be the case its
// name says.

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

namespace dwdp::fuzz {

template <typename Case, typename Encode, typename Decode, typename Print>
int SeedWriterMain(int argc, char** argv, const std::vector<std::pair<std::string, Case>>& seeds,
                   Encode encode, Decode decode, Print print) {
  if (argc == 3 && std::string(argv[1]) == "--print") {
    std::ifstream in(argv[2], std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    FuzzedDataProvider provider(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    print(decode(provider));
    return 0;
  }
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR | --print FILE\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir(argv[1]);
  std::filesystem::create_directories(dir);
  for (const auto& [name, seed] : seeds) {
    const std::string bytes = encode(seed);
    FuzzedDataProvider provider(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    if (encode(decode(provider)) != bytes) {
      std::fprintf(stderr, "seed %s does not decode to itself\n", name.c_str());
      return 1;
    }
    std::ofstream(dir / name, std::ios::binary) << bytes;
  }
  return 0;
}

}  // namespace dwdp::fuzz
