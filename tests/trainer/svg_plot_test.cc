#include "trainer/svg_plot.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace skillpack {
namespace {

// A strict little XML checker for what the writer emits: one prolog, then
// elements with quoted attributes, properly nested, text without raw '<' or
// unescaped '&'. Returns "" when well formed, else what is wrong; fills
// `count` with the number of each element name.
std::string CheckXml(const std::string& s, std::map<std::string, int>* count) {
  size_t i = 0;
  if (s.rfind("<?xml", 0) == 0) i = s.find("?>") + 2;
  std::vector<std::string> stack;
  bool root_seen = false;
  while (i < s.size()) {
    if (s[i] != '<') {
      if (s[i] == '&') {
        const size_t semi = s.find(';', i);
        const std::string ent = s.substr(i, semi - i + 1);
        if (ent != "&amp;" && ent != "&lt;" && ent != "&gt;" && ent != "&quot;" && ent != "&apos;") {
          return "bad entity at " + std::to_string(i);
        }
      }
      if (stack.empty() && !std::isspace(static_cast<unsigned char>(s[i]))) return "text outside the root";
      ++i;
      continue;
    }
    const size_t close = s.find('>', i);
    if (close == std::string::npos) return "unclosed tag";
    std::string tag = s.substr(i + 1, close - i - 1);
    i = close + 1;
    if (tag[0] == '/') {
      if (stack.empty() || stack.back() != tag.substr(1)) return "mismatched </" + tag.substr(1) + ">";
      stack.pop_back();
      continue;
    }
    const bool self_closing = tag.back() == '/';
    if (self_closing) tag.pop_back();
    const std::string name = tag.substr(0, tag.find(' '));
    if (stack.empty()) {
      if (root_seen) return "two roots";
      root_seen = true;
    }
    // Attributes: name="value" pairs, values without '<' or '"'.
    size_t a = name.size();
    while (a < tag.size()) {
      while (a < tag.size() && tag[a] == ' ') ++a;
      if (a >= tag.size()) break;
      const size_t eq = tag.find("=\"", a);
      if (eq == std::string::npos) return "attribute without a quoted value in <" + name + ">";
      const size_t end = tag.find('"', eq + 2);
      if (end == std::string::npos) return "unterminated attribute in <" + name + ">";
      if (tag.substr(eq + 2, end - eq - 2).find('<') != std::string::npos) return "'<' in an attribute";
      a = end + 1;
    }
    ++(*count)[name];
    if (!self_closing) stack.push_back(name);
  }
  if (!stack.empty()) return "unclosed <" + stack.back() + ">";
  return root_seen ? "" : "no root element";
}

LinePlot Example() {
  LinePlot p;
  p.title = "Packs & LoRA <bytes>";
  p.x_label = "ratio";
  p.y_label = "exact match";
  p.log2_x = true;
  p.series.push_back({"pack \"SFT\"", {{0.25, 0.9}, {0.125, 0.8}, {0.0625, 0.7}, {0.03125, 0.5}}, false});
  p.series.push_back({"LoRA", {{0.25, 0.6}, {0.03125, 0.2}}, true});
  p.hlines.push_back({"full FT", 0.95});
  return p;
}

TEST(SvgPlotTest, OutputIsWellFormedWithOneLinePerSeries) {
  auto svg = RenderLinePlot(Example());
  ASSERT_TRUE(svg.ok()) << svg.status();
  std::map<std::string, int> count;
  EXPECT_EQ(CheckXml(*svg, &count), "") << *svg;
  EXPECT_EQ(count["svg"], 1);
  EXPECT_EQ(count["polyline"], 2);
  EXPECT_EQ(count["circle"], 6);  // one marker per point
  EXPECT_NE(svg->find("xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  // Text is escaped, never raw.
  EXPECT_NE(svg->find("Packs &amp; LoRA &lt;bytes&gt;"), std::string::npos);
  EXPECT_NE(svg->find("pack &quot;SFT&quot;"), std::string::npos);
  EXPECT_EQ(svg->find("<bytes>"), std::string::npos);
  // log2 axis labels as fractions.
  EXPECT_NE(svg->find(">1/16<"), std::string::npos);
  EXPECT_NE(svg->find(">1/4<"), std::string::npos);
  EXPECT_NE(svg->find("stroke-dasharray=\"6 4\""), std::string::npos);  // the dashed series
}

TEST(SvgPlotTest, HigherValuesAreDrawnHigher) {
  LinePlot p = Example();
  p.series.resize(1);
  p.series[0].points = {{1, 0.0}, {2, 1.0}};
  p.log2_x = false;
  auto svg = *RenderLinePlot(p);
  const size_t at = svg.find("points=\"");
  ASSERT_NE(at, std::string::npos);
  float x0, y0, x1, y1;
  ASSERT_EQ(std::sscanf(svg.c_str() + at, "points=\"%f,%f %f,%f\"", &x0, &y0, &x1, &y1), 4);
  EXPECT_LT(x0, x1);
  EXPECT_GT(y0, y1);  // SVG y grows downwards
}

TEST(SvgPlotTest, BadPlotsAreRefused) {
  LinePlot p = Example();
  p.series.clear();
  EXPECT_EQ(RenderLinePlot(p).status().code(), absl::StatusCode::kInvalidArgument);
  p = Example();
  p.series[0].points.push_back({0.0, 0.5});  // x <= 0 on a log axis
  EXPECT_NE(RenderLinePlot(p).status().message().find("log2"), std::string::npos);
  p = Example();
  p.series[1].points.push_back({0.5, NAN});
  EXPECT_NE(RenderLinePlot(p).status().message().find("LoRA"), std::string::npos);
  p = Example();
  p.y_max = p.y_min;
  EXPECT_FALSE(RenderLinePlot(p).ok());
}

}  // namespace
}  // namespace skillpack
