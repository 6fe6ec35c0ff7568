#include "tools/cli_table.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "control/model/names.h"

namespace weft::tools {

namespace {
constexpr std::size_t kColumnGap = 3;
}

std::size_t display_width(std::string_view utf8) {
  // Count every byte except UTF-8 continuation bytes (10xxxxxx).
  return static_cast<std::size_t>(
      std::count_if(utf8.begin(), utf8.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

Table::Table(std::vector<std::string> headers) { rows_.push_back(std::move(headers)); }

void Table::add_row(std::vector<std::string> cells) {
  if (cells.size() != rows_.front().size()) {
    throw std::invalid_argument("table row has " + std::to_string(cells.size()) + " cells, expected " +
                                std::to_string(rows_.front().size()));
  }
  // A name with a newline or an escape sequence would forge rows or drive
  // the terminal; names from other nodes or older agents may have them.
  for (std::string& cell : cells) {
    if (control::names::has_control_character(cell)) cell = control::names::printable(cell);
  }
  rows_.push_back(std::move(cells));
}

void Table::print(std::ostream& out) const {
  const std::size_t columns = rows_.front().size();
  std::vector<std::size_t> widths(columns, 0);
  for (const auto& row : rows_) {
    for (std::size_t i = 0; i < columns; ++i) widths[i] = std::max(widths[i], display_width(row[i]));
  }
  for (const auto& row : rows_) {
    std::string line;
    for (std::size_t i = 0; i < columns; ++i) {
      line += row[i];
      if (i + 1 < columns) line.append(widths[i] - display_width(row[i]) + kColumnGap, ' ');
    }
    // Empty trailing cells would otherwise leave trailing spaces.
    line.erase(line.find_last_not_of(' ') + 1);
    out << line << '\n';
  }
}

}  // namespace weft::tools
