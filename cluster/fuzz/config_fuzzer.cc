// libFuzzer entry point for cluster configs (text format, cluster/config.h): any bytes
// either fail with file:line:column errors or give a config that prints and parses back
// to the same config. Built by tools/fuzz/run_fuzzers.sh.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cluster/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = apr::cluster::ParseConfig(text, "fuzz.textproto");
  if (!config.ok()) {
    if (config.status().message().empty()) {
      std::fprintf(stderr, "an error without a message\n");
      std::abort();
    }
    return 0;
  }
  const std::string printed = apr::cluster::ConfigToText(*config);
  auto again = apr::cluster::ParseConfig(printed, "printed.textproto");
  if (!again.ok()) {
    std::fprintf(stderr, "a printed config does not parse: %s\n%s\n",
                 std::string(again.status().message()).c_str(), printed.c_str());
    std::abort();
  }
  if (again->SerializeAsString() != config->SerializeAsString()) {
    std::fprintf(stderr, "a config changed through print and parse:\n%s\n", printed.c_str());
    std::abort();
  }
  return 0;
}
