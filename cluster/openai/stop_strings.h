// OpenAI's `stop` strings on a stream of text: the text is cut before the first match of
// any stop string, and the match may straddle chunks, so the last (longest stop - 1) bytes
// are held back until they can no longer start a match.
#ifndef APRUNTIME_CLUSTER_OPENAI_STOP_STRINGS_H_
#define APRUNTIME_CLUSTER_OPENAI_STOP_STRINGS_H_

#include <string>
#include <vector>

namespace apr::cluster::openai {

class StopStrings {
 public:
  explicit StopStrings(std::vector<std::string> stops);
  // Appends `chunk`; returns the text that is now safe to send. After a match it returns
  // the text before the match and stopped() turns true; later calls return "".
  std::string Push(const std::string& chunk);
  // The end of the stream: whatever was held back (nothing after a match).
  std::string Flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  size_t hold_ = 0;      // bytes kept back: the longest stop string minus one
  std::string pending_;  // text not yet sent
  bool stopped_ = false;
};

}  // namespace apr::cluster::openai

#endif  // APRUNTIME_CLUSTER_OPENAI_STOP_STRINGS_H_
