// Command-line flags for the skillpack binaries: "--name value", "--name=value"
// and boolean "--name"; repeated flags collect; anything unread is reported as
// an unknown flag so a typo is an error, not a silent default.
#ifndef SKILLPACK_CORE_ARGS_H_
#define SKILLPACK_CORE_ARGS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/status.h"

namespace skillpack {

class Args {
 public:
  // Parses argv[first..argc). `bool_flags` take no value.
  static StatusOr<Args> Parse(int argc, char** argv, int first, const std::set<std::string>& bool_flags);
  static StatusOr<Args> Parse(const std::vector<std::string>& argv, const std::set<std::string>& bool_flags);

  const std::vector<std::string>& positional() const { return positional_; }
  bool Has(const std::string& name) const;

  StatusOr<std::string> String(const std::string& name) const;  // required
  std::string StringOr(const std::string& name, const std::string& fallback) const;
  std::vector<std::string> Strings(const std::string& name) const;  // all occurrences
  StatusOr<int64_t> IntOr(const std::string& name, int64_t fallback) const;
  StatusOr<double> DoubleOr(const std::string& name, double fallback) const;
  bool Bool(const std::string& name) const;

  // INVALID_ARGUMENT naming the first flag never read by the accessors above.
  Status CheckAllUsed() const;

 private:
  std::multimap<std::string, std::string> flags_;
  std::vector<std::string> positional_;
  mutable std::set<std::string> used_;
};

}  // namespace skillpack

#endif  // SKILLPACK_CORE_ARGS_H_
