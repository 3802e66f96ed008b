// Stop strings over streamed text: StopMatcher takes generated text chunk by
// chunk, says when a stop string has appeared, and holds back any suffix that
// could still grow into one, so a streaming client never sees any part of a
// stop string.
#ifndef SKILLPACK_CORE_STOP_MATCHER_H_
#define SKILLPACK_CORE_STOP_MATCHER_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace skillpack {

// Which stop string "appears first": the one whose occurrence ENDS earliest in
// the text (the first a streaming generator could act on); among those ending
// at the same byte, the one starting earliest (the longest). The output is the
// text truncated right before that occurrence. With this rule the concatenated
// output does not depend on how the text is split into chunks.
//
// Matching is on bytes. Not thread-safe; use one per sequence.
class StopMatcher {
 public:
  // Empty strings in `stops` are ignored; with no stops everything passes
  // through unheld.
  explicit StopMatcher(std::vector<std::string> stops);

  struct Result {
    // Text safe to send now. Once stopped: the text before the stop string
    // (the stop string itself and anything after it are dropped).
    std::string emit;
    // True once a stop string has appeared; generation should end.
    bool stopped;
  };

  // Appends `text` to the stream. After a stop every call returns
  // {"", true}.
  Result Push(absl::string_view text);

  // At the end of generation without a stop: returns the held-back text and
  // clears it. Returns "" once stopped.
  std::string Flush();

  bool stopped() const { return stopped_; }
  // Index into the constructor's `stops` of the string that matched, or -1.
  int matched_index() const { return matched_index_; }

 private:
  std::vector<std::string> stops_;
  std::vector<int> stop_index_;  // stops_[i] was the constructor's stop_index_[i]
  size_t max_len_ = 0;           // longest stop string, bytes
  std::string held_;             // received, not yet emitted
  bool stopped_ = false;
  int matched_index_ = -1;
};

}  // namespace skillpack

#endif  // SKILLPACK_CORE_STOP_MATCHER_H_
