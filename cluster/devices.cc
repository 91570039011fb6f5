#include "cluster/devices.h"

#include "absl/strings/str_cat.h"
#include "runtime/cpu/cpu_decoder.h"

namespace apr::cluster {

std::string ResolveDevice(const std::string& device) {
  return device == "auto" || device.empty() ? "cpu" : device;
}

absl::StatusOr<std::unique_ptr<Decoder>> OpenDecoder(const std::string& device,
                                                     const std::string& model_dir) {
  const std::string d = ResolveDevice(device);
  if (d == "cpu") {
    auto decoder = cpu::CpuDecoder::Load(model_dir);
    if (!decoder.ok()) return decoder.status();
    return std::unique_ptr<Decoder>(std::move(*decoder));
  }
  return absl::UnimplementedError(
      absl::StrCat("device ", d, ": this build has no CUDA backend yet; use cpu or auto"));
}

}  // namespace apr::cluster
