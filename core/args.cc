#include "core/args.h"

#include "absl/strings/numbers.h"

namespace skillpack {

StatusOr<Args> Args::Parse(int argc, char** argv, int first, const std::set<std::string>& bool_flags) {
  std::vector<std::string> v;
  for (int i = first; i < argc; ++i) v.emplace_back(argv[i]);
  return Parse(v, bool_flags);
}

StatusOr<Args> Args::Parse(const std::vector<std::string>& argv, const std::set<std::string>& bool_flags) {
  Args a;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& s = argv[i];
    if (s.size() < 3 || s.compare(0, 2, "--") != 0) {
      a.positional_.push_back(s);
      continue;
    }
    std::string name = s.substr(2), value;
    size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    } else if (bool_flags.count(name)) {
      value = "true";
    } else {
      if (i + 1 >= argv.size()) return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      value = argv[++i];
    }
    a.flags_.emplace(name, value);
  }
  return a;
}

bool Args::Has(const std::string& name) const {
  used_.insert(name);
  return flags_.count(name) > 0;
}

StatusOr<std::string> Args::String(const std::string& name) const {
  used_.insert(name);
  auto it = flags_.find(name);
  if (it == flags_.end()) return absl::InvalidArgumentError(absl::StrCat("missing required flag --", name));
  return it->second;
}

std::string Args::StringOr(const std::string& name, const std::string& fallback) const {
  used_.insert(name);
  auto it = flags_.find(name);
  return it == flags_.end() ? fallback : it->second;
}

std::vector<std::string> Args::Strings(const std::string& name) const {
  used_.insert(name);
  std::vector<std::string> out;
  auto [lo, hi] = flags_.equal_range(name);
  for (auto it = lo; it != hi; ++it) out.push_back(it->second);
  return out;
}

StatusOr<int64_t> Args::IntOr(const std::string& name, int64_t fallback) const {
  used_.insert(name);
  auto it = flags_.find(name);
  if (it == flags_.end()) return fallback;
  int64_t v;
  if (!absl::SimpleAtoi(it->second, &v)) {
    return absl::InvalidArgumentError(absl::StrCat("flag --", name, " must be an integer, got '", it->second, "'"));
  }
  return v;
}

StatusOr<double> Args::DoubleOr(const std::string& name, double fallback) const {
  used_.insert(name);
  auto it = flags_.find(name);
  if (it == flags_.end()) return fallback;
  double v;
  if (!absl::SimpleAtod(it->second, &v)) {
    return absl::InvalidArgumentError(absl::StrCat("flag --", name, " must be a number, got '", it->second, "'"));
  }
  return v;
}

bool Args::Bool(const std::string& name) const {
  used_.insert(name);
  auto it = flags_.find(name);
  return it != flags_.end() && it->second != "false" && it->second != "0";
}

Status Args::CheckAllUsed() const {
  for (const auto& [name, value] : flags_) {
    if (!used_.count(name)) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
  }
  return absl::OkStatus();
}

}  // namespace skillpack
