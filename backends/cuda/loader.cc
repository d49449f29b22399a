#include "backends/cuda/loader.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace dwdp::cuda {
namespace {

std::string ExecutableDirectory() {
  char path[4096];
  const ssize_t length = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (length <= 0) return ".";
  std::string exe(path, static_cast<size_t>(length));
  const size_t slash = exe.rfind('/');
  return slash == std::string::npos ? "." : exe.substr(0, slash);
}

std::string LoadFailureHint(const std::string& error) {
  if (absl::StrContains(error, "libmpi")) {
    return " (the MPI runtime is missing: the cuda backend needs Open MPI's libmpi)";
  }
  if (absl::StrContains(error, "libcuda")) {
    return " (the CUDA driver library libcuda.so.1 is missing)";
  }
  return "";
}

std::mutex load_mutex;
CudaBackendFactory* loaded_factory = nullptr;  // guarded by load_mutex

}  // namespace

std::vector<std::string> CudaModuleCandidates() {
  std::vector<std::string> candidates;
  if (const char* explicit_path = std::getenv("DWDP_CUDA_MODULE");
      explicit_path != nullptr && explicit_path[0] != '\0') {
    candidates.emplace_back(explicit_path);
  }
  const std::string dir = ExecutableDirectory();
  candidates.push_back(absl::StrCat(dir, "/", kCudaBackendModuleFile));
  candidates.push_back(absl::StrCat(dir, "/lib/", kCudaBackendModuleFile));
  return candidates;
}

absl::StatusOr<CudaBackendFactory*> LoadCudaBackendFrom(const std::string& module_path) {
  std::lock_guard<std::mutex> lock(load_mutex);
  if (loaded_factory != nullptr) return loaded_factory;
  // RTLD_LOCAL: the module's copies of the CUDA runtime and MPI symbols stay out of the
  // binary's namespace (the module promotes libmpi itself, which MPI's own plugins need).
  void* module = ::dlopen(module_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (module == nullptr) {
    const char* error = ::dlerror();
    const std::string text = error != nullptr ? error : "unknown error";
    return absl::FailedPreconditionError(
        absl::StrFormat("the cuda backend module %s could not be loaded: %s%s", module_path, text,
                        LoadFailureHint(text)));
  }
  void* symbol = ::dlsym(module, kCudaBackendEntryPoint);
  if (symbol == nullptr) {
    ::dlclose(module);
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s is not a dwdp cuda backend module (no %s)", module_path, kCudaBackendEntryPoint));
  }
  CudaBackendFactory* factory =
      reinterpret_cast<DwdpCudaBackendFactoryFn>(symbol)(kCudaBackendAbiVersion);
  if (factory == nullptr) {
    ::dlclose(module);
    return absl::FailedPreconditionError(absl::StrFormat(
        "the cuda backend module %s was built from another version of dwdp (interface version "
        "mismatch); use the module built with this binary",
        module_path));
  }
  loaded_factory = factory;
  return factory;
}

absl::StatusOr<CudaBackendFactory*> LoadCudaBackend() {
  const std::vector<std::string> candidates = CudaModuleCandidates();
  for (const std::string& candidate : candidates) {
    if (::access(candidate.c_str(), F_OK) == 0) return LoadCudaBackendFrom(candidate);
  }
  return absl::FailedPreconditionError(absl::StrFormat(
      "the cuda backend is not available: this dwdp was built without it, or %s is not next "
      "to the binary (looked for %s)",
      kCudaBackendModuleFile, absl::StrJoin(candidates, ", ")));
}

}  // namespace dwdp::cuda
