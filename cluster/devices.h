// Opens a model on a device named in a config ("cpu", "cuda:N", "auto"). The CUDA backend
// registers itself here when it lands (runtime/cuda); until then cuda:N is an error and
// "auto" means cpu.
#ifndef APRUNTIME_CLUSTER_DEVICES_H_
#define APRUNTIME_CLUSTER_DEVICES_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/decoder.h"

namespace apr::cluster {

// The device "auto" stands for in this build on this machine.
std::string ResolveDevice(const std::string& device);

// Loads the model folder onto `device` (after ResolveDevice).
absl::StatusOr<std::unique_ptr<Decoder>> OpenDecoder(const std::string& device,
                                                     const std::string& model_dir);

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_DEVICES_H_
