#include "data/tokenizer.hpp"

namespace haste {
namespace {

bool is_letter(char c) { return c >= 'a' && c <= 'z'; }
bool continues_token(char c) { return is_letter(c) || (c >= '0' && c <= '9') || c == '+'; }
char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

}  // namespace

const std::vector<std::string_view>& Tokenizer::tokenize(std::string_view text) {
  lowered_.resize(text.size());
  for (size_t i = 0; i < text.size(); ++i) lowered_[i] = ascii_lower(text[i]);

  tokens_.clear();
  const std::string_view lowered = lowered_;
  size_t i = 0;
  while (i < lowered.size()) {
    if (!is_letter(lowered[i])) {
      ++i;
      continue;
    }
    size_t end = i + 1;
    while (end < lowered.size() && continues_token(lowered[end])) ++end;
    tokens_.push_back(lowered.substr(i, end - i));
    i = end;
  }
  return tokens_;
}

}  // namespace haste
