#include "core/stop_matcher.h"

#include <algorithm>
#include <utility>

namespace skillpack {

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (size_t i = 0; i < stops.size(); ++i) {
    if (stops[i].empty()) continue;
    max_len_ = std::max(max_len_, stops[i].size());
    stops_.push_back(std::move(stops[i]));
    stop_index_.push_back(static_cast<int>(i));
  }
}

StopMatcher::Result StopMatcher::Push(absl::string_view text) {
  if (stopped_) return {std::string(), true};
  held_.append(text.data(), text.size());
  if (stops_.empty()) {
    Result r{std::move(held_), false};
    held_.clear();
    return r;
  }

  // held_ never contains a whole stop string and every occurrence that began
  // in already-emitted text would have kept that text held (see below), so
  // searching held_ alone finds the first stop of the whole stream.
  size_t best_end = std::string::npos;
  size_t best_start = 0;
  int best = -1;
  for (size_t i = 0; i < stops_.size(); ++i) {
    const size_t start = held_.find(stops_[i]);
    if (start == std::string::npos) continue;
    const size_t end = start + stops_[i].size();
    if (best < 0 || end < best_end || (end == best_end && start < best_start)) {
      best_end = end;
      best_start = start;
      best = static_cast<int>(i);
    }
  }
  if (best >= 0) {
    Result r{held_.substr(0, best_start), true};
    held_.clear();
    stopped_ = true;
    matched_index_ = stop_index_[best];
    return r;
  }

  // Hold back the longest suffix that is a proper prefix of some stop string.
  const absl::string_view held(held_);
  size_t hold = std::min(held.size(), max_len_ - 1);
  for (; hold > 0; --hold) {
    const absl::string_view suffix = held.substr(held.size() - hold);
    bool is_prefix = false;
    for (const std::string& s : stops_) {
      if (s.size() > hold && absl::string_view(s).substr(0, hold) == suffix) {
        is_prefix = true;
        break;
      }
    }
    if (is_prefix) break;
  }
  Result r{held_.substr(0, held_.size() - hold), false};
  held_.erase(0, held_.size() - hold);
  return r;
}

std::string StopMatcher::Flush() {
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace skillpack
