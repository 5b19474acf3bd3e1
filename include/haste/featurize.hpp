// Raw text to tf-idf features: how users get their own data into the XC format, and how new
// text is featurized the same way at test and predict time.
//
//   Featurizer f = Featurizer::fit("train.jsonl.xz");   // vocabulary, idf, label names
//   f.save("vocab.json");                                 // everything transform needs
//   Dataset train = f.transform("train.jsonl.xz").data;
//   Dataset test = Featurizer::load("vocab.json").transform("test.jsonl.xz").data;
//
// Input: JSON lines, one object per row: {"text": "...", "labels": [3, 17]} or
// {"text": "...", "labels": ["python3", "libc6"]}; see docs/formats.md. Tokens: lowercase ASCII
// words (src/data/tokenizer.hpp). Features: the tokens found in at least min_df training rows,
// numbered in byte order; value = tf * idf with idf = ln((1 + N) / (1 + df)) + 1 (N training
// rows, df rows containing the token) and tf the count in the row (or 1 + ln(count) with
// sublinear_tf); each row is L2-normalised. Tokens outside the vocabulary are dropped.
//
// Labels: integer ids are kept as they are (L = largest id + 1 unless num_labels says more).
// String labels are numbered in byte order of their names at fit time; at transform time a name
// the vocabulary does not know is dropped and counted (a model could never predict it), and the
// caller reports the count.
#pragma once

#include <haste/dataset.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace haste {

struct FeaturizeOptions {
  int64_t min_df = 3;         // keep tokens found in at least this many training rows
  int64_t max_features = 0;   // > 0: keep only this many tokens, those of highest df
  bool sublinear_tf = false;  // tf = 1 + ln(count) instead of count
  int64_t num_labels = 0;     // > 0: L, at least the largest id + 1 (so train and test agree)
  bool show_progress = true;
};

struct FeaturizedText {
  Dataset data;
  int64_t unknown_labels_dropped = 0;  // string labels not in the vocabulary (transform only)
  int64_t rows_without_features = 0;   // rows none of whose tokens is in the vocabulary
};

class Featurizer {
 public:
  // Learns the vocabulary, idf and label names from a JSON-lines file.
  static Featurizer fit(const std::filesystem::path& jsonl, const FeaturizeOptions& options = {});

  // Vocabulary files (JSON, see docs/formats.md), written atomically.
  static Featurizer load(const std::filesystem::path& vocabulary);
  void save(const std::filesystem::path& vocabulary) const;
  // The vocabulary file's text, and back (`source` names it in errors): for keeping a
  // featurizer inside another file, e.g. a checkpoint, so `haste predict --raw` needs no other.
  std::string to_vocabulary_json() const;
  static Featurizer from_vocabulary_json(std::string_view text,
                                         const std::filesystem::path& source);

  // Featurizes a JSON-lines file, rows in file order. `num_labels` > 0 overrides L (it must
  // cover every id); otherwise L is the fitted one. An integer id >= L is an error naming its line.
  FeaturizedText transform(const std::filesystem::path& jsonl, int64_t num_labels = 0,
                           bool show_progress = true) const;

  // One text's sorted feature ids and values (unit L2 norm, empty when no token is known).
  void transform_text(std::string_view text, std::vector<int32_t>& indices,
                      std::vector<float>& values) const;

  int64_t num_features() const { return static_cast<int64_t>(tokens_.size()); }
  int64_t num_labels() const { return num_labels_; }
  int64_t num_documents() const { return num_documents_; }  // N of the fit
  const FeaturizeOptions& options() const { return options_; }
  const std::vector<std::string>& tokens() const { return tokens_; }  // feature id -> token
  const std::vector<int64_t>& document_frequency() const { return df_; }
  const std::vector<double>& idf() const { return idf_; }
  // Label id -> name; empty when the labels are integer ids.
  const std::vector<std::string>& label_names() const { return label_names_; }
  std::optional<int32_t> feature_id(std::string_view token) const;

  Featurizer(Featurizer&&) noexcept;
  Featurizer& operator=(Featurizer&&) noexcept;
  ~Featurizer();

 private:
  Featurizer();
  void build_indexes();  // token and label-name lookup tables from tokens_ and label_names_

  FeaturizeOptions options_;
  int64_t num_documents_ = 0;
  int64_t num_labels_ = 0;
  std::vector<std::string> tokens_;
  std::vector<int64_t> df_;
  std::vector<double> idf_;
  std::vector<std::string> label_names_;

  struct Index;  // hash maps, kept out of the header
  std::unique_ptr<Index> index_;
};

}  // namespace haste
