#pragma once

// Aligned text tables for people: left-aligned first column, right-aligned numbers.

#include <string>
#include <vector>

namespace dwdp {

class TextTable {
 public:
  explicit TextTable(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void AddRow(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  // Columns whose index is in `left_aligned` are padded on the right; others on the left.
  std::string Render(const std::vector<size_t>& left_aligned = {0}) const;
  bool empty() const { return rows_.empty(); }

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace dwdp
