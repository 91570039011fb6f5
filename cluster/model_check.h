// Checks of a cluster config against the model folder it names, made before any process
// starts (the launcher, `launch --check`), so that a config the workers would refuse stops
// with a clear error and nothing half-started: an offloaded KV cache without the attention
// predictor's weights, a decode budget outside what the model's context allows.
#ifndef APRUNTIME_CLUSTER_MODEL_CHECK_H_
#define APRUNTIME_CLUSTER_MODEL_CHECK_H_

#include "absl/status/status.h"
#include "cluster/config.h"

namespace apr::cluster {

// Reads <model.path>/config.json (resolved as the launcher resolves it). Every problem is
// reported, one per line, naming the config field and the file or value at fault.
absl::Status CheckConfigAgainstModel(const ClusterConfig& config);

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_MODEL_CHECK_H_
