// A small SVG line-chart writer for evaluation reports (no plotting
// dependency): axes with ticks, one polyline plus point markers per series,
// optional horizontal reference lines, and a legend. Output is a complete,
// well-formed SVG 1.1 document; text is XML-escaped.
#ifndef SKILLPACK_TRAINER_SVG_PLOT_H_
#define SKILLPACK_TRAINER_SVG_PLOT_H_

#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace skillpack {

struct PlotSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y), finite; drawn in order
  bool dashed = false;
};

struct LinePlot {
  std::string title, x_label, y_label;
  bool log2_x = false;  // x on a log2 axis (x > 0 then)
  double y_min = 0, y_max = 1;
  std::vector<PlotSeries> series;
  std::vector<std::pair<std::string, double>> hlines;  // labelled y values
  int width = 640, height = 400;
};

// The chart as an SVG document. INVALID_ARGUMENT for no series, a non-finite
// coordinate, x <= 0 on a log2 axis, y_max <= y_min or a size under 200x150.
StatusOr<std::string> RenderLinePlot(const LinePlot& plot);

// `s` with &, <, >, " and ' escaped for XML text and attributes.
std::string XmlEscape(const std::string& s);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_SVG_PLOT_H_
