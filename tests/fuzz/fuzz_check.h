#pragma once

// Failure reporting shared by the fuzz targets. A violated property prints what failed and then
// traps: libFuzzer records the input as a crash, and nothing (an exception handler, an abort
// hook) can swallow it on the way out.

#include <cstdio>
#include <string>

// `detail` is evaluated only on failure, so it may be an expensive absl::StrCat(...).
#define DWDP_FUZZ_CHECK(condition, detail)                                                    \
  do {                                                                                        \
    if (!(condition)) {                                                                       \
      const std::string dwdp_fuzz_detail_ = (detail);                                         \
      std::fprintf(stderr, "\n%s:%d: fuzz property violated: %s\n  %s\n", __FILE__, __LINE__, \
                   #condition, dwdp_fuzz_detail_.c_str());                                    \
      std::fflush(stderr);                                                                    \
      __builtin_trap();                                                                       \
    }                                                                                         \
  } while (false)
