#include "trainer/svg_plot.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace skillpack {
namespace {

// A colour-blind-safe palette (Okabe-Ito), cycled.
const char* const kColours[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"};

std::string Num(double v) { return absl::StrFormat("%.1f", v); }

std::string Text(double x, double y, const std::string& s, const char* anchor, int size, const char* extra = "") {
  return absl::StrCat("<text x=\"", Num(x), "\" y=\"", Num(y), "\" text-anchor=\"", anchor, "\" font-size=\"", size,
                      "\"", extra, ">", XmlEscape(s), "</text>\n");
}

}  // namespace

std::string XmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

StatusOr<std::string> RenderLinePlot(const LinePlot& plot) {
  if (plot.series.empty()) return absl::InvalidArgumentError("plot: no series");
  if (plot.width < 200 || plot.height < 150) return absl::InvalidArgumentError("plot: size under 200x150");
  if (!std::isfinite(plot.y_min) || !std::isfinite(plot.y_max) || plot.y_max <= plot.y_min) {
    return absl::InvalidArgumentError("plot: y_max must be > y_min (both finite)");
  }
  double x_lo = INFINITY, x_hi = -INFINITY;
  for (const PlotSeries& s : plot.series) {
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) {
        return absl::InvalidArgumentError(absl::StrCat("plot: series '", s.name, "' has a non-finite point"));
      }
      if (plot.log2_x && x <= 0) {
        return absl::InvalidArgumentError(absl::StrCat("plot: series '", s.name, "' has x <= 0 on a log2 axis"));
      }
      const double tx = plot.log2_x ? std::log2(x) : x;
      x_lo = std::min(x_lo, tx);
      x_hi = std::max(x_hi, tx);
    }
  }
  if (!(x_lo <= x_hi)) x_lo = x_hi = 0;  // no points at all
  if (x_hi - x_lo < 1e-12) {
    x_lo -= 0.5;
    x_hi += 0.5;
  }
  const double left = 60, right = 170, top = 36, bottom = 48;
  const double pw = plot.width - left - right, ph = plot.height - top - bottom;
  auto px = [&](double x) { return left + ((plot.log2_x ? std::log2(x) : x) - x_lo) / (x_hi - x_lo) * pw; };
  auto py = [&](double y) {
    const double c = std::clamp(y, plot.y_min, plot.y_max);
    return top + (1 - (c - plot.y_min) / (plot.y_max - plot.y_min)) * ph;
  };
  std::string svg =
      absl::StrCat("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"", plot.width, "\" height=\"",
                   plot.height, "\" viewBox=\"0 0 ", plot.width, " ", plot.height, "\" font-family=\"sans-serif\">\n");
  absl::StrAppend(&svg, "<rect x=\"0\" y=\"0\" width=\"", plot.width, "\" height=\"", plot.height,
                  "\" fill=\"white\"/>\n");
  absl::StrAppend(&svg, Text(plot.width / 2.0, 20, plot.title, "middle", 14));
  // Axes, y grid and ticks (5 intervals).
  absl::StrAppend(&svg, "<g stroke=\"#888\" stroke-width=\"1\" fill=\"none\">\n");
  absl::StrAppend(&svg, "<line x1=\"", Num(left), "\" y1=\"", Num(top + ph), "\" x2=\"", Num(left + pw), "\" y2=\"",
                  Num(top + ph), "\"/>\n");
  absl::StrAppend(&svg, "<line x1=\"", Num(left), "\" y1=\"", Num(top), "\" x2=\"", Num(left), "\" y2=\"",
                  Num(top + ph), "\"/>\n");
  absl::StrAppend(&svg, "</g>\n");
  for (int i = 0; i <= 5; ++i) {
    const double v = plot.y_min + (plot.y_max - plot.y_min) * i / 5.0;
    absl::StrAppend(&svg, "<line x1=\"", Num(left), "\" y1=\"", Num(py(v)), "\" x2=\"", Num(left + pw), "\" y2=\"",
                    Num(py(v)), "\" stroke=\"#eee\"/>\n");
    absl::StrAppend(&svg, Text(left - 6, py(v) + 4, absl::StrFormat("%.2g", v), "end", 11));
  }
  // x ticks at the distinct x values of the points (at most 12).
  std::vector<double> xs;
  for (const PlotSeries& s : plot.series) {
    for (const auto& p : s.points) xs.push_back(p.first);
  }
  std::sort(xs.begin(), xs.end());
  xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
  if (xs.size() <= 12) {
    for (double x : xs) {
      const std::string label = plot.log2_x && x < 1 && std::fabs(std::round(1 / x) - 1 / x) < 1e-9
                                    ? absl::StrCat("1/", std::round(1 / x))
                                    : absl::StrFormat("%g", x);
      absl::StrAppend(&svg, Text(px(x), top + ph + 16, label, "middle", 11));
    }
  }
  absl::StrAppend(&svg, Text(left + pw / 2, plot.height - 10, plot.x_label, "middle", 12));
  absl::StrAppend(&svg, Text(16, top + ph / 2, plot.y_label, "middle", 12,
                             absl::StrCat(" transform=\"rotate(-90 16 ", Num(top + ph / 2), ")\"").c_str()));
  // Reference lines.
  for (const auto& [label, y] : plot.hlines) {
    if (!std::isfinite(y)) return absl::InvalidArgumentError(absl::StrCat("plot: line '", label, "' is not finite"));
    absl::StrAppend(&svg, "<line x1=\"", Num(left), "\" y1=\"", Num(py(y)), "\" x2=\"", Num(left + pw), "\" y2=\"",
                    Num(py(y)), "\" stroke=\"#444\" stroke-dasharray=\"2 3\"/>\n");
    absl::StrAppend(&svg, Text(left + pw - 2, py(y) - 3, label, "end", 10));
  }
  // Series and legend.
  for (size_t i = 0; i < plot.series.size(); ++i) {
    const PlotSeries& s = plot.series[i];
    const char* colour = kColours[i % (sizeof(kColours) / sizeof(kColours[0]))];
    std::string pts;
    for (const auto& [x, y] : s.points) absl::StrAppend(&pts, pts.empty() ? "" : " ", Num(px(x)), ",", Num(py(y)));
    absl::StrAppend(&svg, "<polyline fill=\"none\" stroke=\"", colour, "\" stroke-width=\"2\"",
                    s.dashed ? " stroke-dasharray=\"6 4\"" : "", " points=\"", pts, "\"/>\n");
    for (const auto& [x, y] : s.points) {
      absl::StrAppend(&svg, "<circle cx=\"", Num(px(x)), "\" cy=\"", Num(py(y)), "\" r=\"3\" fill=\"", colour,
                      "\"/>\n");
    }
    const double ly = top + 14 + 18 * static_cast<double>(i);
    absl::StrAppend(&svg, "<line x1=\"", Num(left + pw + 12), "\" y1=\"", Num(ly - 4), "\" x2=\"", Num(left + pw + 36),
                    "\" y2=\"", Num(ly - 4), "\" stroke=\"", colour, "\" stroke-width=\"2\"",
                    s.dashed ? " stroke-dasharray=\"6 4\"" : "", "/>\n");
    absl::StrAppend(&svg, Text(left + pw + 40, ly, s.name, "start", 11));
  }
  absl::StrAppend(&svg, "</svg>\n");
  return svg;
}

}  // namespace skillpack
