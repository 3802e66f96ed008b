#include "core/stop_matcher.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace skillpack {
namespace {

// Reference: the text truncated before the stop occurrence that ends first
// (ties: the one starting first). Sets *stopped and *index (constructor index).
std::string TruncateAtFirstStop(const std::string& text, const std::vector<std::string>& stops, bool* stopped,
                                int* index) {
  for (size_t end = 1; end <= text.size(); ++end) {
    size_t best_start = std::string::npos;
    int best = -1;
    for (size_t i = 0; i < stops.size(); ++i) {
      const std::string& s = stops[i];
      if (s.empty() || s.size() > end) continue;
      if (text.compare(end - s.size(), s.size(), s) == 0 && end - s.size() < best_start) {
        best_start = end - s.size();
        best = static_cast<int>(i);
      }
    }
    if (best >= 0) {
      *stopped = true;
      *index = best;
      return text.substr(0, best_start);
    }
  }
  *stopped = false;
  *index = -1;
  return text;
}

struct StreamOutcome {
  std::string emitted;  // all emits, plus Flush() when not stopped
  bool stopped = false;
  int index = -1;
};

// Feeds `chunks`; checks after every push that what was emitted so far is a
// prefix of `expected` (no part of a stop string ever leaks).
StreamOutcome Stream(const std::vector<std::string>& stops, const std::vector<std::string>& chunks,
                     const std::string& expected) {
  StopMatcher m(stops);
  StreamOutcome out;
  for (const std::string& c : chunks) {
    StopMatcher::Result r = m.Push(c);
    out.emitted += r.emit;
    EXPECT_EQ(expected.compare(0, out.emitted.size(), out.emitted), 0)
        << "leaked: '" << out.emitted << "' vs '" << expected << "'";
    if (r.stopped) {
      out.stopped = true;
      break;
    }
  }
  if (!out.stopped) out.emitted += m.Flush();
  out.index = m.matched_index();
  return out;
}

std::vector<std::string> OneCharChunks(const std::string& text) {
  std::vector<std::string> chunks;
  for (char c : text) chunks.push_back(std::string(1, c));
  return chunks;
}

TEST(StopMatcherTest, StopSplitAcrossOneCharChunks) {
  StopMatcher m({"STOP"});
  const std::string text = "Hello STOP world";
  std::string emitted;
  size_t i = 0;
  for (; i < text.size(); ++i) {
    StopMatcher::Result r = m.Push(text.substr(i, 1));
    emitted += r.emit;
    EXPECT_EQ(emitted.find('S'), std::string::npos);
    if (r.stopped) break;
  }
  EXPECT_EQ(i, 9u);  // stopped on the final 'P'
  EXPECT_EQ(emitted, "Hello ");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.matched_index(), 0);
  // Anything after the stop is swallowed.
  StopMatcher::Result after = m.Push(" more");
  EXPECT_TRUE(after.stopped);
  EXPECT_EQ(after.emit, "");
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopMatcherTest, NoStopEmitsEverythingAfterFlush) {
  StopMatcher m({"</s>", "###"});
  std::string emitted;
  for (const char* c : {"The ", "answer is #", "# not", " quite<", "/"}) {
    StopMatcher::Result r = m.Push(c);
    EXPECT_FALSE(r.stopped);
    emitted += r.emit;
  }
  EXPECT_EQ(emitted, "The answer is ## not quite");  // "</" held
  emitted += m.Flush();
  EXPECT_EQ(emitted, "The answer is ## not quite</");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.matched_index(), -1);
}

TEST(StopMatcherTest, PartialPrefixHeldThenReleased) {
  StopMatcher m({"</s>"});
  StopMatcher::Result r = m.Push("abc<");
  EXPECT_EQ(r.emit, "abc");
  EXPECT_FALSE(r.stopped);
  r = m.Push("/");
  EXPECT_EQ(r.emit, "");
  r = m.Push("x>");
  EXPECT_EQ(r.emit, "</x>");
  EXPECT_FALSE(r.stopped);
  // A held prefix whose tail starts a new candidate keeps only that tail.
  r = m.Push("<<");
  EXPECT_EQ(r.emit, "<");
  r = m.Push("/s>tail");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.emit, "");
}

TEST(StopMatcherTest, EarliestStopWins) {
  // Both present; "lo" completes first.
  StopMatcher a({"world", "lo"});
  StopMatcher::Result r = a.Push("hello world");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.emit, "hel");
  EXPECT_EQ(a.matched_index(), 1);
  // Same in one chunk as in single characters: "b" completes before "abc".
  for (bool one_char : {false, true}) {
    const std::vector<std::string> stops = {"abc", "b"};
    const std::vector<std::string> chunks = one_char ? OneCharChunks("xabcd") : std::vector<std::string>{"xabcd"};
    StreamOutcome o = Stream(stops, chunks, "xa");
    EXPECT_TRUE(o.stopped);
    EXPECT_EQ(o.emitted, "xa");
    EXPECT_EQ(o.index, 1);
  }
  // Ending at the same byte: the earlier start (longer string) wins.
  StopMatcher c({"bc", "abc"});
  r = c.Push("xabcd");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.emit, "x");
  EXPECT_EQ(c.matched_index(), 1);
}

TEST(StopMatcherTest, NoStopsPassesThrough) {
  StopMatcher m({"", ""});
  StopMatcher::Result r = m.Push("anything at all");
  EXPECT_EQ(r.emit, "anything at all");
  EXPECT_FALSE(r.stopped);
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopMatcherTest, OutputIsTextTruncatedBeforeStopForAnyChunking) {
  const std::vector<std::vector<std::string>> stop_sets = {{"abc"}, {"abc", "ca", "bbb"}, {"aab", "ab", "cccc"}, {"a"}};
  std::mt19937 gen(1234);
  int stopped_cases = 0;
  for (const auto& stops : stop_sets) {
    for (int trial = 0; trial < 300; ++trial) {
      std::string text;
      const int len = std::uniform_int_distribution<int>(0, 24)(gen);
      for (int i = 0; i < len; ++i) {
        text += "abc"[std::uniform_int_distribution<int>(0, 2)(gen)];
      }
      bool ref_stopped;
      int ref_index;
      const std::string expected = TruncateAtFirstStop(text, stops, &ref_stopped, &ref_index);
      stopped_cases += ref_stopped;
      // Random chunking, sometimes with empty chunks.
      std::vector<std::string> chunks;
      for (size_t pos = 0; pos < text.size();) {
        const size_t n = std::uniform_int_distribution<size_t>(0, 5)(gen);
        chunks.push_back(text.substr(pos, n));
        pos += n;
      }
      for (const auto& split : {chunks, OneCharChunks(text), std::vector<std::string>{text}}) {
        StreamOutcome o = Stream(stops, split, expected);
        EXPECT_EQ(o.emitted, expected) << "text '" << text << "'";
        EXPECT_EQ(o.stopped, ref_stopped) << "text '" << text << "'";
        EXPECT_EQ(o.index, ref_index) << "text '" << text << "'";
      }
    }
  }
  EXPECT_GT(stopped_cases, 300);  // the sample covers both outcomes
  EXPECT_LT(stopped_cases, 1200);
}

}  // namespace
}  // namespace skillpack
