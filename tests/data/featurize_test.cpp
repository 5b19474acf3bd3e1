#include <haste/error.hpp>
#include <haste/featurize.hpp>

#include "data/text_io.hpp"
#include "data/tokenizer.hpp"
#include "test_util/expect_error.hpp"
#include "test_util/run_cli.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace haste {
namespace {

namespace fs = std::filesystem;
using test_util::expect_error;

class FeaturizeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("haste-featurize-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path write(const std::string& name, const std::string& content) {
    fs::path file = dir_ / name;
    AtomicOutput out(file);  // compresses by extension
    out.write(content);
    out.commit();
    return file;
  }

  fs::path dir_;
};

std::vector<std::string> tokens_of(std::string_view text) {
  Tokenizer tokenizer;
  const auto& views = tokenizer.tokenize(text);
  return {views.begin(), views.end()};
}

using Tokens = std::vector<std::string>;

// Options for small test corpora: every token counts, no progress bar.
FeaturizeOptions quiet_options(int64_t min_df = 1) {
  FeaturizeOptions options;
  options.min_df = min_df;
  options.show_progress = false;
  return options;
}

TEST(Tokenizer, LowercasesAndSplitsAtNonWordCharacters) {
  EXPECT_EQ(tokens_of("Hello, World!"), (Tokens{"hello", "world"}));
  EXPECT_EQ(tokens_of("lib-foo.bar_baz/qux"), (Tokens{"lib", "foo", "bar", "baz", "qux"}));
  EXPECT_EQ(tokens_of("  "), Tokens{});
  EXPECT_EQ(tokens_of(""), Tokens{});
}

TEST(Tokenizer, KeepsDigitsAndPlusInsideTokens) {
  EXPECT_EQ(tokens_of("GTK+3 and C++11 on x86_64"), (Tokens{"gtk+3", "and", "c++11", "on", "x86"}));
  EXPECT_EQ(tokens_of("mp3 libstdc++6"), (Tokens{"mp3", "libstdc++6"}));
}

TEST(Tokenizer, TokensStartWithALetter) {
  // Like the regular expression [a-z][a-z0-9+]*: "3D" yields "d", numbers yield nothing.
  EXPECT_EQ(tokens_of("3D 0.5 +x 2048"), (Tokens{"d", "x"}));
  EXPECT_EQ(tokens_of("0ad"), (Tokens{"ad"}));
}

TEST(Tokenizer, NonAsciiBytesSeparate) {
  EXPECT_EQ(tokens_of("caf\xc3\xa9 na\xc3\xafve"), (Tokens{"caf", "na", "ve"}));
}

// Three rows; "apple" in all, "banana" in two, "cherry" in one.
const char* kSmallCorpus = R"({"text": "apple banana apple", "labels": [0, 2]})"
                           "\n"
                           R"({"text": "Apple cherry", "labels": [1]})"
                           "\n"
                           R"({"text": "banana APPLE", "labels": []})"
                           "\n";

TEST_F(FeaturizeTest, VocabularyKeepsTokensInAtLeastMinDfRows) {
  fs::path file = write("small.jsonl", kSmallCorpus);
  FeaturizeOptions options = quiet_options(2);
  Featurizer f = Featurizer::fit(file, options);
  EXPECT_EQ(f.tokens(), (Tokens{"apple", "banana"}));
  EXPECT_EQ(f.document_frequency(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(f.num_documents(), 3);
  EXPECT_EQ(f.num_labels(), 3);  // largest id + 1
  EXPECT_TRUE(f.label_names().empty());

  options.min_df = 1;
  EXPECT_EQ(Featurizer::fit(file, options).tokens(), (Tokens{"apple", "banana", "cherry"}));
}

TEST_F(FeaturizeTest, IdfIsTheSmoothedFormula) {
  fs::path file = write("small.jsonl", kSmallCorpus);
  FeaturizeOptions options = quiet_options();
  Featurizer f = Featurizer::fit(file, options);
  // idf = ln((1 + N) / (1 + df)) + 1, N = 3
  EXPECT_DOUBLE_EQ(f.idf()[0], std::log(4.0 / 4.0) + 1.0);  // apple, df 3
  EXPECT_DOUBLE_EQ(f.idf()[1], std::log(4.0 / 3.0) + 1.0);  // banana, df 2
  EXPECT_DOUBLE_EQ(f.idf()[2], std::log(4.0 / 2.0) + 1.0);  // cherry, df 1
}

TEST_F(FeaturizeTest, RowsAreTfIdfWithUnitNorm) {
  fs::path file = write("small.jsonl", kSmallCorpus);
  FeaturizeOptions options = quiet_options();
  Featurizer f = Featurizer::fit(file, options);
  FeaturizedText result = f.transform(file, 0, false);
  const CsrMatrix& x = result.data.features;
  ASSERT_EQ(x.rows, 3);
  EXPECT_EQ(x.cols, 3);

  // Row 0: apple x2, banana x1.
  double apple = 2 * f.idf()[0], banana = 1 * f.idf()[1];
  double norm = std::sqrt(apple * apple + banana * banana);
  ASSERT_EQ(x.row_indices(0).size(), 2u);
  EXPECT_FLOAT_EQ(x.row_values(0)[0], float(apple / norm));
  EXPECT_FLOAT_EQ(x.row_values(0)[1], float(banana / norm));

  for (int64_t r = 0; r < x.rows; ++r) {
    double squared = 0;
    for (float v : x.row_values(r)) squared += double(v) * v;
    EXPECT_NEAR(squared, 1.0, 1e-6) << "row " << r;
  }
  // Labels: sorted ids, pattern only, L = 3.
  const CsrMatrix& y = result.data.labels;
  EXPECT_EQ(y.cols, 3);
  EXPECT_EQ(y.indices, (std::vector<int32_t>{0, 2, 1}));
  EXPECT_EQ(y.indptr, (std::vector<int64_t>{0, 2, 3, 3}));
  EXPECT_TRUE(y.values.empty());
}

TEST_F(FeaturizeTest, SublinearTfUsesOnePlusLogCount) {
  fs::path file = write("small.jsonl", kSmallCorpus);
  FeaturizeOptions options = quiet_options();
  options.sublinear_tf = true;
  Featurizer f = Featurizer::fit(file, options);
  std::vector<int32_t> indices;
  std::vector<float> values;
  f.transform_text("apple apple apple banana", indices, values);
  double apple = (1 + std::log(3.0)) * f.idf()[0], banana = f.idf()[1];
  double norm = std::sqrt(apple * apple + banana * banana);
  ASSERT_EQ(indices, (std::vector<int32_t>{0, 1}));
  EXPECT_FLOAT_EQ(values[0], float(apple / norm));
}

TEST_F(FeaturizeTest, UnknownTokensAreDroppedAndEmptyRowsCounted) {
  fs::path train = write("small.jsonl", kSmallCorpus);
  fs::path test = write("test.jsonl", R"({"text": "durian apple"})"
                                      "\n"
                                      R"({"text": "durian"})"
                                      "\n");
  FeaturizeOptions options = quiet_options();
  Featurizer f = Featurizer::fit(train, options);
  FeaturizedText result = f.transform(test, 0, false);
  EXPECT_EQ(result.data.features.indices, (std::vector<int32_t>{0}));
  EXPECT_EQ(result.data.features.values, (std::vector<float>{1.0f}));
  EXPECT_EQ(result.rows_without_features, 1);
  EXPECT_EQ(result.data.labels.nnz(), 0);  // no "labels" field: rows without labels
}

TEST_F(FeaturizeTest, MaxFeaturesKeepsTheMostFrequentTokens) {
  fs::path file = write("small.jsonl", kSmallCorpus);
  FeaturizeOptions options = quiet_options();
  options.max_features = 2;
  EXPECT_EQ(Featurizer::fit(file, options).tokens(), (Tokens{"apple", "banana"}));
}

TEST_F(FeaturizeTest, SavedVocabularyReproducesTheFittedMatrixExactly) {
  fs::path train = write("small.jsonl.gz", kSmallCorpus);  // compressed input reads as well
  FeaturizeOptions options = quiet_options();
  options.sublinear_tf = true;
  Featurizer fitted = Featurizer::fit(train, options);
  fitted.save(dir_ / "vocab.json");
  Featurizer loaded = Featurizer::load(dir_ / "vocab.json");

  EXPECT_EQ(loaded.tokens(), fitted.tokens());
  EXPECT_EQ(loaded.idf(), fitted.idf());  // bit-exact through JSON
  EXPECT_EQ(loaded.num_labels(), fitted.num_labels());
  EXPECT_EQ(loaded.options().sublinear_tf, true);

  Dataset a = fitted.transform(train, 0, false).data;
  Dataset b = loaded.transform(train, 0, false).data;
  EXPECT_EQ(a.features.indptr, b.features.indptr);
  EXPECT_EQ(a.features.indices, b.features.indices);
  EXPECT_EQ(a.features.values, b.features.values);
  EXPECT_EQ(a.labels.indices, b.labels.indices);
  EXPECT_EQ(a.labels.cols, b.labels.cols);
}

TEST_F(FeaturizeTest, StringLabelsGetIdsByNameAndUnknownNamesAreDropped) {
  fs::path train = write("train.jsonl", R"({"text": "a b", "labels": ["zlib", "libc"]})"
                                        "\n"
                                        R"({"text": "b c", "labels": ["python", "libc", "libc"]})"
                                        "\n");
  fs::path test = write("test.jsonl", R"({"text": "a", "labels": ["python", "rust"]})"
                                      "\n");
  FeaturizeOptions options = quiet_options();
  Featurizer fitted = Featurizer::fit(train, options);
  EXPECT_EQ(fitted.label_names(), (Tokens{"libc", "python", "zlib"}));
  EXPECT_EQ(fitted.num_labels(), 3);

  FeaturizedText train_data = fitted.transform(train, 0, false);
  EXPECT_EQ(train_data.data.labels.indices, (std::vector<int32_t>{0, 2, 0, 1}));  // repeat merged

  fitted.save(dir_ / "vocab.json");
  FeaturizedText test_data = Featurizer::load(dir_ / "vocab.json").transform(test, 0, false);
  EXPECT_EQ(test_data.data.labels.indices, (std::vector<int32_t>{1}));
  EXPECT_EQ(test_data.unknown_labels_dropped, 1);
  EXPECT_EQ(test_data.data.labels.cols, 3);
}

TEST_F(FeaturizeTest, NumLabelsMakesTrainAndTestAgree) {
  fs::path train = write("train.jsonl", R"({"text": "a", "labels": [4]})"
                                        "\n");
  fs::path test = write("test.jsonl", R"({"text": "a", "labels": [1]})"
                                      "\n"
                                      R"({"text": "a", "labels": [7]})"
                                      "\n");
  FeaturizeOptions options = quiet_options();
  Featurizer fitted = Featurizer::fit(train, options);
  EXPECT_EQ(fitted.num_labels(), 5);
  expect_error([&] { fitted.transform(test, 0, false); }, "test.jsonl:2: label id 7");
  expect_error([&] { fitted.transform(test, 0, false); }, "--num-labels");

  options.num_labels = 10;
  Featurizer wide = Featurizer::fit(train, options);
  EXPECT_EQ(wide.num_labels(), 10);
  EXPECT_EQ(wide.transform(test, 0, false).data.labels.cols, 10);
  EXPECT_EQ(fitted.transform(test, 8, false).data.labels.cols, 8);

  options.num_labels = 3;  // smaller than the largest id + 1
  expect_error([&] { Featurizer::fit(train, options); }, "train.jsonl:1: label id 4");
}

TEST_F(FeaturizeTest, BadLinesAreErrorsNamingFileAndLine) {
  FeaturizeOptions options = quiet_options(3);
  auto expect_fit_error = [&](const std::string& content, const std::string& message) {
    fs::path file = write("bad.jsonl", content);
    expect_error([&] { Featurizer::fit(file, options); }, message);
  };
  const std::string good = R"({"text": "fine", "labels": [1]})"
                           "\n";
  expect_fit_error(good + "{\"text\": \"oops\", \"labels\": [1]\n", "bad.jsonl:2: not valid JSON");
  expect_fit_error(good + good + "{\"labels\": [1]}\n", "bad.jsonl:3: no \"text\" field");
  expect_fit_error("{\"text\": 5}\n", "bad.jsonl:1: \"text\" must be a string");
  expect_fit_error("[1, 2]\n", "bad.jsonl:1: expected a JSON object");
  expect_fit_error("{\"text\": \"x\", \"labels\": 3}\n",
                   "bad.jsonl:1: \"labels\" must be an array");
  expect_fit_error("{\"text\": \"x\", \"labels\": [-1]}\n",
                   "bad.jsonl:1: label id -1 is out of range");
  expect_fit_error("{\"text\": \"x\", \"labels\": [1.5]}\n",
                   "bad.jsonl:1: label 1.5 is not an integer id");
  expect_fit_error("{\"text\": \"x\", \"labels\": [1, \"a\"]}\n", "bad.jsonl:1: \"labels\" mixes");
  expect_fit_error(good + "\n{\"text\": \"x\", \"labels\": [\"a\"]}\n",
                   "bad.jsonl:3: labels are strings here but integer ids on line 1");
  expect_fit_error(good + "{\"text\": \"cut", "bad.jsonl:2: not valid JSON");
  expect_fit_error(good + "{\"text\": \"cut", "(the file ends in the middle of a line)");
  expect_fit_error("", "no rows to fit");
}

TEST_F(FeaturizeTest, BadVocabularyFilesAreErrors) {
  auto expect_load_error = [&](const std::string& content, const std::string& message) {
    fs::path file = write("vocab.json", content);
    expect_error([&] { Featurizer::load(file); }, message);
  };
  expect_load_error("{\"format\": \n", "vocab.json:2: not valid JSON");
  expect_load_error("{}", "not a featurizer vocabulary");

  fs::path train = write("train.jsonl", kSmallCorpus);
  FeaturizeOptions options = quiet_options();
  Featurizer::fit(train, options).save(dir_ / "good.json");
  std::ifstream in(dir_ / "good.json");
  std::string good((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string repeated = good;
  repeated.replace(repeated.find("\"cherry\""), 8, "\"apple\"");
  expect_load_error(repeated, "lists a token twice");
}

std::string first_line(const fs::path& file) {
  LineReader lines(file);
  std::string_view line;
  return lines.next(line) ? std::string(line) : "";
}

TEST_F(FeaturizeTest, CliFitsSavesAndAppliesTheVocabulary) {
  fs::path train = write("train.jsonl.gz", kSmallCorpus);
  fs::path test = write("test.jsonl", R"({"text": "cherry pie", "labels": [4]})"
                                      "\n");
  fs::path vocab = dir_ / "vocab.json", train_out = dir_ / "train.txt.xz",
           test_out = dir_ / "test.txt";
  test_util::CliResult fit = test_util::run_cli(
      {"data", "featurize", "--input", train.string(), "--out", train_out.string(), "--save-vocab",
       vocab.string(), "--min-df", "1", "--num-labels", "5"});
  ASSERT_EQ(fit.exit_code, 0) << fit.error_output;
  EXPECT_EQ(first_line(train_out), "3 3 5");
  EXPECT_EQ(Featurizer::load(vocab).tokens(), (Tokens{"apple", "banana", "cherry"}));

  test_util::CliResult apply =
      test_util::run_cli({"data", "featurize", "--input", test.string(), "--out", test_out.string(),
                          "--vocab", vocab.string()});
  ASSERT_EQ(apply.exit_code, 0) << apply.error_output;
  LineReader lines(test_out);
  std::string_view line;
  ASSERT_TRUE(lines.next(line));
  EXPECT_EQ(line, "1 3 5");
  ASSERT_TRUE(lines.next(line));
  EXPECT_EQ(line, "4 2:1");  // "pie" is not in the vocabulary

  fs::path bad = write("bad.jsonl", "{\"text\": \"a\"}\n{\"labels\": []}\n");
  test_util::CliResult failed = test_util::run_cli(
      {"data", "featurize", "--input", bad.string(), "--out", (dir_ / "bad.txt").string()});
  EXPECT_EQ(failed.exit_code, 1);
  EXPECT_NE(failed.error_output.find("bad.jsonl:2: no \"text\" field"), std::string::npos)
      << failed.error_output;
  EXPECT_FALSE(fs::exists(dir_ / "bad.txt"));
}

// The bundled debdeps features were built with the same recipe: fitting on its raw training
// text must give the same vocabulary and the same number of nonzeros.
TEST_F(FeaturizeTest, ReproducesTheBundledDebdepsVocabulary) {
  fs::path root = HASTE_SOURCE_DIR;
  fs::path raw = root / "data/debdeps/raw/train.jsonl.xz";
  fs::path names = root / "data/debdeps/xc/features.txt.xz";
  if (!fs::exists(raw) || !fs::exists(names)) GTEST_SKIP() << "no bundled debdeps data";
  Featurizer f = Featurizer::fit(raw, quiet_options(3));  // the debdeps recipe's min_df
  std::vector<std::string> expected;
  LineReader lines(names);
  for (std::string_view line; lines.next(line);) expected.emplace_back(line);
  EXPECT_EQ(f.num_features(), 23821);
  EXPECT_EQ(f.tokens(), expected);

  FeaturizedText result = f.transform(raw, 0, false);
  EXPECT_EQ(result.data.num_points(), 44488);
  double nnz_per_row = double(result.data.features.nnz()) / result.data.num_points();
  EXPECT_NEAR(nnz_per_row, 43.7, 0.05);

  // Same rows, labels and feature ids as the bundled file, and values equal to its 4 printed
  // significant digits (within half a unit of the 4th digit).
  ReadOptions read_options;
  read_options.use_cache = false;
  read_options.show_progress = false;
  Dataset bundled = read_xc(root / "data/debdeps/xc/debdeps_train.txt.xz", read_options);
  const Dataset& mine = result.data;
  EXPECT_EQ(mine.labels.indptr, bundled.labels.indptr);
  EXPECT_EQ(mine.labels.indices, bundled.labels.indices);
  EXPECT_EQ(mine.features.indptr, bundled.features.indptr);
  EXPECT_EQ(mine.features.indices, bundled.features.indices);
  ASSERT_EQ(mine.features.values.size(), bundled.features.values.size());
  int64_t off = 0;
  for (size_t i = 0; i < mine.features.values.size(); ++i) {
    // The bundled values were rounded from the exact value, whose magnitude ours gives; the
    // slack covers float rounding on both sides.
    double ours = mine.features.values[i], printed = bundled.features.values[i];
    double half_unit = 0.5 * std::pow(10.0, std::floor(std::log10(ours)) - 3);
    off += std::abs(ours - printed) > half_unit + 3e-7 * printed;
  }
  EXPECT_EQ(off, 0);
}

}  // namespace
}  // namespace haste
