// Path of a file under runtime/tokenizer/testdata/ in a test's runfiles.
#ifndef APRUNTIME_RUNTIME_TOKENIZER_TESTDATA_PATH_H_
#define APRUNTIME_RUNTIME_TOKENIZER_TESTDATA_PATH_H_

#include <cstdlib>
#include <string>

namespace apr {

inline std::string TestdataPath(const std::string& name) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  const std::string root =
      srcdir != nullptr && workspace != nullptr ? std::string(srcdir) + "/" + workspace : ".";
  return root + "/runtime/tokenizer/testdata/" + name;
}

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_TOKENIZER_TESTDATA_PATH_H_
