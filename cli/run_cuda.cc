#include "cli/run_cuda.h"

#include <iostream>

namespace dwdp::cli {

int RunOnCuda(const CudaRunRequest&) {
  std::cerr << "error: this dwdp was built without the cuda backend (the CUDA toolkit or MPI was "
               "not found at build time); rebuild with DWDP_CUDA=ON or use --backend sim\n";
  return 2;
}

}  // namespace dwdp::cli
