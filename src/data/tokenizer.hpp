// Word tokens for the tf-idf featurizer.
//
// A token starts at an ASCII letter and runs over letters, digits and '+', after ASCII
// lowercasing: "GTK+3 for C++11, x86_64" -> gtk+3 for c++11 x86. Everything else separates
// tokens, so package-style names split at '-' and '.' ("lib-foo.bar" -> lib foo bar), and a
// token never starts with a digit ("3D" -> d, "0.5" -> nothing). This reproduces the recipe of
// the bundled debdeps features (the regular expression [a-z][a-z0-9+]* over lowercased text)
// exactly. Bytes outside ASCII (UTF-8 letters) are separators.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace haste {

class Tokenizer {
 public:
  // The tokens of `text`, in order, repeats included. The views point into a buffer of this
  // tokenizer and stay valid until the next call.
  const std::vector<std::string_view>& tokenize(std::string_view text);

  // Names the rule above in saved vocabularies, so a future tokenizer cannot silently be
  // applied to a vocabulary built with this one.
  static constexpr const char* kName = "ascii-lowercase-words-v1";

 private:
  std::string lowered_;
  std::vector<std::string_view> tokens_;
};

}  // namespace haste
