// Line-oriented text input and output that see through compression.
//
// Inputs are recognised by their magic bytes, not their names (a .txt that is really xz, or an
// .xz that is plain text, both read), because downloaded datasets are often renamed. Outputs
// are compressed by the name's extension. Outputs go to a temporary file renamed into place on
// commit(), so an error or a kill midway never leaves a half-written file under the final name.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace haste {

enum class Compression { none, xz, gzip, bzip2 };

// Decompressing byte source.
class CompressedInput {
 public:
  explicit CompressedInput(const std::filesystem::path& file);
  ~CompressedInput();
  CompressedInput(const CompressedInput&) = delete;
  CompressedInput& operator=(const CompressedInput&) = delete;

  // Fills up to `capacity` bytes; returns 0 only at the end of the data.
  size_t read(char* buffer, size_t capacity);

  Compression compression() const;
  int64_t file_size() const;
  int64_t file_bytes_consumed() const;  // of the (compressed) file, for progress bars

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The whole (decompressed) content of a small file, e.g. a config or vocabulary file; errors
// name the file (missing, a directory, unreadable, corrupt compression).
std::string read_whole_file(const std::filesystem::path& file);

// Reads lines one at a time without copying; a returned view is valid until the next call.
class LineReader {
 public:
  explicit LineReader(const std::filesystem::path& file);

  // Next line without its "\n" or "\r\n"; false at the end of the file.
  bool next(std::string_view& line);

  // 1-based number of the line last returned by next().
  int64_t line_number() const { return line_number_; }
  // False when the line last returned ended at the end of the file without a newline.
  bool line_was_terminated() const { return terminated_; }
  const std::filesystem::path& path() const { return path_; }
  double fraction_read() const;
  const CompressedInput& input() const { return input_; }

 private:
  bool fill();

  std::filesystem::path path_;
  CompressedInput input_;
  std::vector<char> buffer_;
  size_t begin_ = 0;  // start of unread data in buffer_
  size_t end_ = 0;    // end of valid data in buffer_
  bool eof_ = false;
  bool terminated_ = true;
  int64_t line_number_ = 0;
};

// Compressing byte sink, written to "<file>.tmp.<pid>" and renamed to `file` by commit().
class AtomicOutput {
 public:
  explicit AtomicOutput(const std::filesystem::path& file);
  ~AtomicOutput();  // removes the temporary file unless committed
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;

  void write(std::string_view bytes);
  // Flushes, fsyncs, renames into place and fsyncs the directory, so the new file survives a
  // power loss. Throws (and removes the temporary) on failure.
  void commit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Compression implied by a file name's extension (.xz, .gz, .bz2), for outputs.
Compression compression_for_name(const std::filesystem::path& file);

}  // namespace haste
