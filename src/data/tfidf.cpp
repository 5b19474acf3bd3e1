// The tf-idf featurizer: fitting a vocabulary, transforming text, and the vocabulary file.
#include <algorithm>
#include <cmath>
#include <haste/error.hpp>
#include <haste/featurize.hpp>
#include <haste/progress.hpp>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <utility>

#include "data/raw_text.hpp"
#include "data/text_io.hpp"
#include "data/tokenizer.hpp"
#include "model/config_json.hpp"

namespace haste {
namespace {

using Json = nlohmann::json;

constexpr const char* kVocabularyFormat = "haste-featurizer-vocabulary";
constexpr int kVocabularyVersion = 1;

// Lets unordered_map<std::string, ...> be searched with a string_view without a copy.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename Value>
using StringMap = std::unordered_map<std::string, Value, StringHash, std::equal_to<>>;

double smooth_idf(int64_t documents, int64_t df) {
  return std::log((1.0 + static_cast<double>(documents)) / (1.0 + static_cast<double>(df))) + 1.0;
}

// Label ids of one row under the featurizer's label scheme. Returns the row's ids sorted and
// without repeats (a label listed twice is one label); unknown names are counted and dropped.
class LabelMapper {
 public:
  LabelMapper(const std::vector<std::string>& names, const StringMap<int32_t>& ids,
              int64_t num_labels)
      : names_(names), ids_(ids), num_labels_(num_labels) {}

  void map(const RawTextRow& row, const std::filesystem::path& file, std::vector<int32_t>& out) {
    out.clear();
    const bool string_labels = !names_.empty();
    if (row.label_kind == LabelKind::names && !string_labels) {
      fail_at(file, row.line,
              "labels are strings but the vocabulary was fitted on integer label ids");
    }
    if (row.label_kind == LabelKind::ids && string_labels) {
      fail_at(file, row.line,
              "labels are integer ids but the vocabulary was fitted on string labels");
    }
    for (const std::string& name : row.label_names) {
      auto found = ids_.find(name);
      if (found == ids_.end()) {
        ++unknown_;
      } else {
        out.push_back(found->second);
      }
    }
    for (int64_t id : row.label_ids) {
      if (id >= num_labels_) {
        fail_at(file, row.line,
                "label id {} is not below the number of labels L = {}; pass a larger "
                "--num-labels (the same for train and test)",
                id, num_labels_);
      }
      out.push_back(static_cast<int32_t>(id));
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
  }

  int64_t unknown() const { return unknown_; }

 private:
  const std::vector<std::string>& names_;
  const StringMap<int32_t>& ids_;
  int64_t num_labels_;
  int64_t unknown_ = 0;
};

}  // namespace

struct Featurizer::Index {
  StringMap<int32_t> token_ids;
  StringMap<int32_t> label_ids;
};

Featurizer::Featurizer() : index_(std::make_unique<Index>()) {}
Featurizer::Featurizer(Featurizer&&) noexcept = default;
Featurizer& Featurizer::operator=(Featurizer&&) noexcept = default;
Featurizer::~Featurizer() = default;

void Featurizer::build_indexes() {
  index_->token_ids.clear();
  index_->token_ids.reserve(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i) {
    index_->token_ids.emplace(tokens_[i], static_cast<int32_t>(i));
  }
  index_->label_ids.clear();
  index_->label_ids.reserve(label_names_.size());
  for (size_t i = 0; i < label_names_.size(); ++i) {
    index_->label_ids.emplace(label_names_[i], static_cast<int32_t>(i));
  }
}

std::optional<int32_t> Featurizer::feature_id(std::string_view token) const {
  auto found = index_->token_ids.find(token);
  if (found == index_->token_ids.end()) return std::nullopt;
  return found->second;
}

Featurizer Featurizer::fit(const std::filesystem::path& jsonl, const FeaturizeOptions& options) {
  check(options.min_df >= 1, "featurize: --min-df must be >= 1 (got {})", options.min_df);
  check(options.max_features >= 0, "featurize: --max-features must be >= 0 (got {})",
        options.max_features);
  check(options.num_labels >= 0, "featurize: --num-labels must be >= 0 (got {})",
        options.num_labels);

  // One pass: document frequency of every token, and the label space.
  struct TokenCount {
    int64_t df = 0;
    int64_t last_row = -1;  // counts a token once per row without a per-row set
  };
  StringMap<TokenCount> counts;
  StringMap<int64_t> label_lines;  // string label -> first line it appears on
  LabelKind label_kind = LabelKind::none;
  int64_t first_label_line = 0, max_label_id = -1, max_label_line = 0;

  RawTextReader reader(jsonl);
  Tokenizer tokenizer;
  RawTextRow row;
  Progress progress("featurize: fitting " + jsonl.filename().string(), options.show_progress);
  int64_t rows = 0;
  for (; reader.next(row); ++rows) {
    for (std::string_view token : tokenizer.tokenize(row.text)) {
      auto found = counts.find(token);
      if (found == counts.end()) found = counts.emplace(std::string(token), TokenCount{}).first;
      if (found->second.last_row != rows) {
        found->second.last_row = rows;
        ++found->second.df;
      }
    }
    if (row.label_kind != LabelKind::none) {
      if (label_kind == LabelKind::none) {
        label_kind = row.label_kind;
        first_label_line = row.line;
      } else if (label_kind != row.label_kind) {
        fail_at(jsonl, row.line, "labels are {} here but {} on line {}; use one kind throughout",
                label_kind_name(row.label_kind), label_kind_name(label_kind), first_label_line);
      }
    }
    for (const std::string& name : row.label_names) label_lines.try_emplace(name, row.line);
    for (int64_t id : row.label_ids) {
      if (id > max_label_id) max_label_id = id, max_label_line = row.line;
    }
    if ((rows & 1023) == 0) progress.update(reader.fraction_read(), rows, "rows");
  }
  progress.finish();
  check(rows > 0, "{}: no rows to fit a vocabulary on", jsonl.string());

  Featurizer featurizer;
  featurizer.options_ = options;
  featurizer.num_documents_ = rows;

  // Vocabulary: tokens in >= min_df rows; with max_features, the most frequent of those (ties
  // by token, so the choice never depends on hash order); then numbered in byte order.
  std::vector<std::pair<std::string, int64_t>> kept;
  for (auto& [token, count] : counts) {
    if (count.df >= options.min_df) kept.emplace_back(token, count.df);
  }
  counts = {};
  if (options.max_features > 0 && static_cast<int64_t>(kept.size()) > options.max_features) {
    auto more_frequent = [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    };
    std::nth_element(kept.begin(), kept.begin() + options.max_features, kept.end(), more_frequent);
    kept.resize(static_cast<size_t>(options.max_features));
  }
  check(static_cast<int64_t>(kept.size()) <= std::numeric_limits<int32_t>::max(),
        "{}: the vocabulary has {} tokens, more than feature ids can hold; use --max-features",
        jsonl.string(), kept.size());
  std::sort(kept.begin(), kept.end());
  for (auto& [token, df] : kept) {
    featurizer.tokens_.push_back(std::move(token));
    featurizer.df_.push_back(df);
    featurizer.idf_.push_back(smooth_idf(rows, df));
  }

  // Labels: string names numbered in byte order; integer ids kept.
  int64_t labels_seen = 0;
  if (label_kind == LabelKind::names) {
    for (auto& [name, line] : label_lines) featurizer.label_names_.push_back(name);
    std::sort(featurizer.label_names_.begin(), featurizer.label_names_.end());
    labels_seen = static_cast<int64_t>(featurizer.label_names_.size());
    if (options.num_labels > 0 && labels_seen > options.num_labels) {
      fail("{}: the file has {} distinct labels, more than --num-labels {}", jsonl.string(),
           labels_seen, options.num_labels);
    }
  } else {
    labels_seen = max_label_id + 1;
    if (options.num_labels > 0 && labels_seen > options.num_labels) {
      fail_at(jsonl, max_label_line, "label id {} is not below --num-labels {}", max_label_id,
              options.num_labels);
    }
  }
  featurizer.num_labels_ = std::max(labels_seen, options.num_labels);
  featurizer.build_indexes();
  return featurizer;
}

void Featurizer::transform_text(std::string_view text, std::vector<int32_t>& indices,
                                std::vector<float>& values) const {
  thread_local Tokenizer tokenizer;
  indices.clear();
  values.clear();
  for (std::string_view token : tokenizer.tokenize(text)) {
    if (auto id = feature_id(token)) indices.push_back(*id);
  }
  std::sort(indices.begin(), indices.end());

  // Run-length count the sorted ids into (id, tf * idf), then L2-normalise in double.
  thread_local std::vector<double> weights;
  weights.clear();
  size_t unique = 0;
  for (size_t i = 0; i < indices.size();) {
    size_t end = i;
    while (end < indices.size() && indices[end] == indices[i]) ++end;
    double count = static_cast<double>(end - i);
    double tf = options_.sublinear_tf ? 1.0 + std::log(count) : count;
    weights.push_back(tf * idf_[indices[i]]);
    indices[unique++] = indices[i];
    i = end;
  }
  indices.resize(unique);
  double norm_squared = 0;
  for (double w : weights) norm_squared += w * w;
  const double inverse_norm = norm_squared > 0 ? 1.0 / std::sqrt(norm_squared) : 0.0;
  for (double w : weights) values.push_back(static_cast<float>(w * inverse_norm));
}

FeaturizedText Featurizer::transform(const std::filesystem::path& jsonl, int64_t num_labels,
                                     bool show_progress) const {
  check(num_labels >= 0, "featurize: --num-labels must be >= 0 (got {})", num_labels);
  if (num_labels > 0 && !label_names_.empty()) {
    check(num_labels >= static_cast<int64_t>(label_names_.size()),
          "featurize: --num-labels {} is less than the {} labels of the vocabulary", num_labels,
          label_names_.size());
  }
  FeaturizedText result;
  Dataset& data = result.data;
  data.features.cols = num_features();
  data.labels.cols = num_labels > 0 ? num_labels : num_labels_;

  LabelMapper labels(label_names_, index_->label_ids, data.labels.cols);
  RawTextReader reader(jsonl);
  RawTextRow row;
  std::vector<int32_t> indices, label_ids;
  std::vector<float> values;
  Progress progress("featurize: " + jsonl.filename().string(), show_progress);
  while (reader.next(row)) {
    transform_text(row.text, indices, values);
    labels.map(row, jsonl, label_ids);
    data.features.append_row(indices, values);
    data.labels.append_row(label_ids, {});
    result.rows_without_features += indices.empty();
    if ((data.labels.rows & 1023) == 0) {
      progress.update(reader.fraction_read(), data.labels.rows, "rows");
    }
  }
  progress.finish();
  result.unknown_labels_dropped = labels.unknown();
  return result;
}

// ---- vocabulary file -------------------------------------------------------------------------

void Featurizer::save(const std::filesystem::path& vocabulary) const {
  AtomicOutput output(vocabulary);
  output.write(to_vocabulary_json());
  output.write("\n");
  output.commit();
}

std::string Featurizer::to_vocabulary_json() const {
  // Ordered, so the settings come first and the long arrays last for a reader of the file.
  nlohmann::ordered_json json = {
      {"format", kVocabularyFormat},
      {"version", kVocabularyVersion},
      {"tokenizer", Tokenizer::kName},
      {"min_df", options_.min_df},
      {"max_features", options_.max_features},
      {"sublinear_tf", options_.sublinear_tf},
      {"idf_formula", "ln((1 + num_documents) / (1 + df)) + 1"},
      {"num_documents", num_documents_},
      {"num_features", num_features()},
      {"num_labels", num_labels_},
      {"label_names", label_names_},
      {"tokens", tokens_},
      {"df", df_},
      {"idf", idf_},
  };
  return json.dump(1);
}

namespace {

// A required field of the vocabulary object, with a message that names the file and the field.
const Json& field(const Json& json, const char* name, const std::filesystem::path& file) {
  auto found = json.find(name);
  if (found == json.end())
    fail("{}: not a featurizer vocabulary: no \"{}\" field", file.string(), name);
  return *found;
}

template <typename T>
T field_as(const Json& json, const char* name, const std::filesystem::path& file) {
  const Json& value = field(json, name, file);
  if (config_json::json_holds<T>(value)) {
    try {
      return value.get<T>();
    } catch (const Json::exception&) {
    }
  }
  fail("{}: featurizer vocabulary field \"{}\" has the wrong type", file.string(), name);
}

}  // namespace

Featurizer Featurizer::load(const std::filesystem::path& vocabulary) {
  return from_vocabulary_json(read_whole_file(vocabulary), vocabulary);
}

Featurizer Featurizer::from_vocabulary_json(std::string_view bytes,
                                            const std::filesystem::path& vocabulary) {
  Json json;
  try {
    json = Json::parse(bytes);
  } catch (const Json::parse_error& e) {
    int64_t line =
        1 + std::count(bytes.begin(), bytes.begin() + std::min(e.byte, bytes.size()), '\n');
    fail_at(vocabulary, line, "not valid JSON: {}", e.what());
  } catch (const Json::out_of_range& e) {  // a number beyond double's range: 1e999
    fail("{}: not valid JSON: {}", vocabulary.string(), e.what());
  }
  const auto& file = vocabulary;
  // Compared as JSON: json.value("format", "") throws nlohmann's type_error on a non-string.
  check(json.is_object() && json.contains("format") && json["format"] == kVocabularyFormat,
        "{}: not a featurizer vocabulary (no \"format\": \"{}\")", file.string(),
        kVocabularyFormat);
  int version = field_as<int>(json, "version", file);
  check(version == kVocabularyVersion,
        "{}: vocabulary version {} is not supported (this haste "
        "reads version {})",
        file.string(), version, kVocabularyVersion);
  std::string tokenizer = field_as<std::string>(json, "tokenizer", file);
  check(tokenizer == Tokenizer::kName,
        "{}: vocabulary uses tokenizer \"{}\"; this haste has \"{}\"", file.string(), tokenizer,
        Tokenizer::kName);

  Featurizer f;
  f.options_.min_df = field_as<int64_t>(json, "min_df", file);
  f.options_.max_features = field_as<int64_t>(json, "max_features", file);
  f.options_.sublinear_tf = field_as<bool>(json, "sublinear_tf", file);
  f.num_documents_ = field_as<int64_t>(json, "num_documents", file);
  f.num_labels_ = field_as<int64_t>(json, "num_labels", file);
  f.options_.num_labels = f.num_labels_;
  f.label_names_ = field_as<std::vector<std::string>>(json, "label_names", file);
  f.tokens_ = field_as<std::vector<std::string>>(json, "tokens", file);
  f.df_ = field_as<std::vector<int64_t>>(json, "df", file);
  f.idf_ = field_as<std::vector<double>>(json, "idf", file);

  check(f.df_.size() == f.tokens_.size() && f.idf_.size() == f.tokens_.size(),
        "{}: vocabulary has {} tokens but {} df and {} idf values", file.string(), f.tokens_.size(),
        f.df_.size(), f.idf_.size());
  check(f.num_labels_ >= static_cast<int64_t>(f.label_names_.size()),
        "{}: num_labels {} is less than the {} label names", file.string(), f.num_labels_,
        f.label_names_.size());
  for (double idf : f.idf_) {
    check(std::isfinite(idf) && idf > 0, "{}: idf value {} is not a positive number", file.string(),
          idf);
  }
  f.build_indexes();
  check(f.index_->token_ids.size() == f.tokens_.size(), "{}: vocabulary lists a token twice",
        file.string());
  check(f.index_->label_ids.size() == f.label_names_.size(),
        "{}: vocabulary lists a label name twice", file.string());
  return f;
}

}  // namespace haste
