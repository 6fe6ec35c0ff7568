// Docker-style text tables for `weft ... ls`: columns as wide as their
// widest cell, three spaces apart, no trailing padding.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace weft::tools {

class Table {
 public:
  explicit Table(std::vector<std::string> headers);

  // Must have as many cells as there are headers (std::invalid_argument).
  // Control characters in cells are printed escaped (\n, \x1b, ...).
  void add_row(std::vector<std::string> cells);
  void print(std::ostream& out) const;

 private:
  std::vector<std::vector<std::string>> rows_;  // rows_[0] holds the headers
};

// Columns are sized in characters, not bytes, so non-ASCII names line up.
std::size_t display_width(std::string_view utf8);

}  // namespace weft::tools
