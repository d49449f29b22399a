// The one symbol libdwdp_cuda.so exports (everything else is hidden). Its name is
// kCudaBackendEntryPoint; the loader test opens the built module and looks it up by that name.

#include <cstdint>
#include <type_traits>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_backend_factory.h"
#include "backends/cuda/cuda_streams.h"
#include "backends/cuda/dep/dep_runner.h"
#include "backends/cuda/moe/moe_runner.h"

extern "C" __attribute__((visibility("default"))) dwdp::cuda::CudaBackendFactory*
dwdp_cuda_backend_factory(uint32_t abi_version) {
  if (abi_version != dwdp::cuda::kCudaBackendAbiVersion) return nullptr;
  // The module links the real MoE kernel (cuBLAS); the CudaStreams it creates use it.
  dwdp::cuda::SetMoeExtensionFactory(&dwdp::cuda::moe::MakeMoeRunner);
  // ... and the DEP baseline (NCCL).
  dwdp::cuda::SetDepRunnerMaker(&dwdp::cuda::MakeDepRunner);
  return &dwdp::cuda::GetCudaBackendFactory();
}

static_assert(std::is_same_v<decltype(&dwdp_cuda_backend_factory), DwdpCudaBackendFactoryFn>);
