#include "data/text_io.hpp"

#include <bzlib.h>
#include <fcntl.h>
#include <lzma.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <haste/error.hpp>
#include <thread>

namespace haste {
namespace fs = std::filesystem;

namespace {

constexpr size_t kChunk = 1 << 20;

std::string system_error_text() { return std::strerror(errno); }

// One codec behind a common shape: feed compressed bytes, drain plain bytes.
// `finished()` is true once the codec has seen the end of its (last) stream.
class Decoder {
 public:
  virtual ~Decoder() = default;
  // Decompresses from [in, in + in_size) into [out, out + out_capacity); returns the number of
  // bytes consumed and produced.
  virtual void run(const char* in, size_t in_size, char* out, size_t out_capacity, size_t& consumed,
                   size_t& produced) = 0;
  virtual bool finished() const = 0;
  virtual void restart() = 0;  // a new concatenated stream follows
};

class XzDecoder : public Decoder {
 public:
  explicit XzDecoder(const fs::path& file) : file_(file) { restart(); }
  ~XzDecoder() override { lzma_end(&stream_); }
  void restart() override {
    lzma_end(&stream_);
    stream_ = LZMA_STREAM_INIT;
    // LZMA_CONCATENATED reads multi-stream files (pxz / xz -T output) in one pass.
    check(lzma_stream_decoder(&stream_, UINT64_MAX, LZMA_CONCATENATED) == LZMA_OK,
          "{}: cannot start the xz decoder", file_.string());
    finished_ = false;
  }
  void run(const char* in, size_t in_size, char* out, size_t out_capacity, size_t& consumed,
           size_t& produced) override {
    stream_.next_in = reinterpret_cast<const uint8_t*>(in);
    stream_.avail_in = in_size;
    stream_.next_out = reinterpret_cast<uint8_t*>(out);
    stream_.avail_out = out_capacity;
    lzma_ret ret = lzma_code(&stream_, in_size == 0 ? LZMA_FINISH : LZMA_RUN);
    consumed = in_size - stream_.avail_in;
    produced = out_capacity - stream_.avail_out;
    if (ret == LZMA_STREAM_END) {
      finished_ = true;
    } else if (ret != LZMA_OK && !(ret == LZMA_BUF_ERROR && in_size == 0 && produced > 0)) {
      fail("{}: corrupt or truncated xz data (liblzma error {})", file_.string(),
           static_cast<int>(ret));
    }
  }
  bool finished() const override { return finished_; }

 private:
  fs::path file_;
  lzma_stream stream_ = LZMA_STREAM_INIT;
  bool finished_ = false;
};

class GzipDecoder : public Decoder {
 public:
  explicit GzipDecoder(const fs::path& file) : file_(file) {
    check(inflateInit2(&stream_, 15 + 32) == Z_OK, "{}: cannot start the gzip decoder",
          file_.string());
  }
  ~GzipDecoder() override { inflateEnd(&stream_); }
  void restart() override {
    inflateReset(&stream_);
    finished_ = false;
  }
  void run(const char* in, size_t in_size, char* out, size_t out_capacity, size_t& consumed,
           size_t& produced) override {
    stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in));
    stream_.avail_in = static_cast<uInt>(in_size);
    stream_.next_out = reinterpret_cast<Bytef*>(out);
    stream_.avail_out = static_cast<uInt>(out_capacity);
    int ret = inflate(&stream_, Z_NO_FLUSH);
    consumed = in_size - stream_.avail_in;
    produced = out_capacity - stream_.avail_out;
    if (ret == Z_STREAM_END) {
      finished_ = true;
    } else if (ret != Z_OK && !(ret == Z_BUF_ERROR && (in_size == 0 || produced > 0))) {
      fail("{}: corrupt gzip data ({})", file_.string(), stream_.msg ? stream_.msg : "zlib error");
    }
  }
  bool finished() const override { return finished_; }

 private:
  fs::path file_;
  z_stream stream_{};
  bool finished_ = false;
};

class Bzip2Decoder : public Decoder {
 public:
  explicit Bzip2Decoder(const fs::path& file) : file_(file) { restart(); }
  ~Bzip2Decoder() override { end(); }
  void restart() override {
    end();
    stream_ = bz_stream{};
    check(BZ2_bzDecompressInit(&stream_, 0, 0) == BZ_OK, "{}: cannot start the bzip2 decoder",
          file_.string());
    started_ = true;
    finished_ = false;
  }
  void run(const char* in, size_t in_size, char* out, size_t out_capacity, size_t& consumed,
           size_t& produced) override {
    stream_.next_in = const_cast<char*>(in);
    stream_.avail_in = static_cast<unsigned>(in_size);
    stream_.next_out = out;
    stream_.avail_out = static_cast<unsigned>(out_capacity);
    int ret = BZ2_bzDecompress(&stream_);
    consumed = in_size - stream_.avail_in;
    produced = out_capacity - stream_.avail_out;
    if (ret == BZ_STREAM_END) {
      finished_ = true;
    } else if (ret != BZ_OK) {
      fail("{}: corrupt bzip2 data (libbz2 error {})", file_.string(), ret);
    }
  }
  bool finished() const override { return finished_; }

 private:
  void end() {
    if (started_) BZ2_bzDecompressEnd(&stream_);
    started_ = false;
  }
  fs::path file_;
  bz_stream stream_{};
  bool started_ = false;
  bool finished_ = false;
};

Compression sniff_compression(const unsigned char* head, size_t size) {
  if (size >= 6 && std::memcmp(head,
                               "\xFD"
                               "7zXZ\x00",
                               6) == 0)
    return Compression::xz;
  if (size >= 2 && head[0] == 0x1F && head[1] == 0x8B) return Compression::gzip;
  if (size >= 3 && std::memcmp(head, "BZh", 3) == 0) return Compression::bzip2;
  return Compression::none;
}

}  // namespace

struct CompressedInput::Impl {
  fs::path file;
  FILE* handle = nullptr;
  Compression compression = Compression::none;
  std::unique_ptr<Decoder> decoder;
  std::vector<char> in;
  size_t in_begin = 0;
  size_t in_end = 0;
  bool file_eof = false;
  int64_t size = 0;
  int64_t consumed = 0;

  ~Impl() {
    if (handle) std::fclose(handle);
  }

  // Refills the compressed buffer when it is empty; false once the file is exhausted.
  bool refill() {
    if (in_begin < in_end) return true;
    if (file_eof) return false;
    in_begin = 0;
    in_end = std::fread(in.data(), 1, in.size(), handle);
    if (in_end < in.size()) {
      check(!std::ferror(handle), "{}: read error: {}", file.string(), system_error_text());
      file_eof = true;
    }
    return in_end > 0;
  }
};

CompressedInput::CompressedInput(const fs::path& file) : impl_(std::make_unique<Impl>()) {
  impl_->file = file;
  std::error_code ec;
  check(fs::exists(file, ec), "{}: no such file", file.string());
  check(!fs::is_directory(file, ec), "{}: is a directory, expected a file", file.string());
  impl_->handle = std::fopen(file.c_str(), "rb");
  check(impl_->handle != nullptr, "{}: cannot open: {}", file.string(), system_error_text());
  impl_->size = static_cast<int64_t>(fs::file_size(file, ec));
  impl_->in.resize(kChunk);
  impl_->refill();
  impl_->compression =
      sniff_compression(reinterpret_cast<unsigned char*>(impl_->in.data()), impl_->in_end);
  switch (impl_->compression) {
    case Compression::xz:
      impl_->decoder = std::make_unique<XzDecoder>(file);
      break;
    case Compression::gzip:
      impl_->decoder = std::make_unique<GzipDecoder>(file);
      break;
    case Compression::bzip2:
      impl_->decoder = std::make_unique<Bzip2Decoder>(file);
      break;
    case Compression::none:
      break;
  }
}

CompressedInput::~CompressedInput() = default;

size_t CompressedInput::read(char* buffer, size_t capacity) {
  Impl& s = *impl_;
  if (!s.decoder) {
    if (!s.refill()) return 0;
    size_t n = std::min(capacity, s.in_end - s.in_begin);
    std::memcpy(buffer, s.in.data() + s.in_begin, n);
    s.in_begin += n;
    s.consumed += static_cast<int64_t>(n);
    return n;
  }
  size_t total = 0;
  while (total < capacity) {
    bool have_input = s.refill();
    if (s.decoder->finished()) {
      // gzip and bzip2 files may hold several concatenated streams (pigz, pbzip2); anything
      // after the end of a stream starts the next one.
      if (!have_input) break;
      s.decoder->restart();
    }
    size_t consumed = 0, produced = 0;
    s.decoder->run(s.in.data() + s.in_begin, s.in_end - s.in_begin, buffer + total,
                   capacity - total, consumed, produced);
    s.in_begin += consumed;
    s.consumed += static_cast<int64_t>(consumed);
    total += produced;
    if (!have_input && produced == 0 && !s.decoder->finished()) {
      fail("{}: compressed data ends early (truncated {} file?)", s.file.string(),
           s.compression == Compression::xz     ? "xz"
           : s.compression == Compression::gzip ? "gzip"
                                                : "bzip2");
    }
    if (produced == 0 && consumed == 0 && have_input && !s.decoder->finished()) break;
  }
  return total;
}

Compression CompressedInput::compression() const { return impl_->compression; }
int64_t CompressedInput::file_size() const { return impl_->size; }
int64_t CompressedInput::file_bytes_consumed() const { return impl_->consumed; }

std::string read_whole_file(const fs::path& file) {
  CompressedInput input(file);
  std::string bytes;
  std::vector<char> buffer(1 << 20);
  while (size_t n = input.read(buffer.data(), buffer.size())) bytes.append(buffer.data(), n);
  return bytes;
}

LineReader::LineReader(const fs::path& file) : path_(file), input_(file) { buffer_.resize(kChunk); }

bool LineReader::fill() {
  // Move the partial line to the front and grow the buffer if a single line fills it.
  if (begin_ > 0) {
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (end_ == buffer_.size()) buffer_.resize(buffer_.size() * 2);
  size_t n = input_.read(buffer_.data() + end_, buffer_.size() - end_);
  end_ += n;
  return n > 0;
}

bool LineReader::next(std::string_view& line) {
  size_t scan_from = begin_;
  while (true) {
    const char* start = buffer_.data() + scan_from;
    const void* newline = std::memchr(start, '\n', end_ - scan_from);
    if (newline) {
      size_t stop = static_cast<size_t>(static_cast<const char*>(newline) - buffer_.data());
      size_t length = stop - begin_;
      if (length > 0 && buffer_[stop - 1] == '\r') --length;
      line = std::string_view(buffer_.data() + begin_, length);
      begin_ = stop + 1;
      terminated_ = true;
      ++line_number_;
      return true;
    }
    size_t scanned = end_ - begin_;
    if (eof_ || !fill()) {
      eof_ = true;
      if (begin_ == end_) return false;
      line = std::string_view(buffer_.data() + begin_, end_ - begin_);
      begin_ = end_;
      terminated_ = false;
      ++line_number_;
      return true;
    }
    scan_from = begin_ + scanned;
  }
}

double LineReader::fraction_read() const {
  int64_t size = input_.file_size();
  return size > 0 ? static_cast<double>(input_.file_bytes_consumed()) / size : 1.0;
}

Compression compression_for_name(const fs::path& file) {
  std::string ext = file.extension().string();
  if (ext == ".xz") return Compression::xz;
  if (ext == ".gz") return Compression::gzip;
  if (ext == ".bz2") return Compression::bzip2;
  return Compression::none;
}

struct AtomicOutput::Impl {
  fs::path final_path;
  fs::path temp_path;
  int fd = -1;
  Compression compression = Compression::none;
  lzma_stream xz = LZMA_STREAM_INIT;
  z_stream gz{};
  bz_stream bz{};
  std::vector<char> out = std::vector<char>(kChunk);
  std::string pending;  // plain bytes not yet handed to the encoder
  bool committed = false;

  void write_fd(const char* data, size_t size) {
    while (size > 0) {
      ssize_t n = ::write(fd, data, size);
      if (n < 0 && errno == EINTR) continue;
      check(n > 0, "{}: write failed: {}", final_path.string(), system_error_text());
      data += n;
      size -= static_cast<size_t>(n);
    }
  }

  // Runs the encoder over `plain`; `finish` flushes the stream's end.
  void encode(std::string_view plain, bool finish) {
    if (compression == Compression::none) {
      write_fd(plain.data(), plain.size());
      return;
    }
    if (compression == Compression::xz) {
      xz.next_in = reinterpret_cast<const uint8_t*>(plain.data());
      xz.avail_in = plain.size();
      while (true) {
        xz.next_out = reinterpret_cast<uint8_t*>(out.data());
        xz.avail_out = out.size();
        lzma_ret ret = lzma_code(&xz, finish ? LZMA_FINISH : LZMA_RUN);
        check(ret == LZMA_OK || ret == LZMA_STREAM_END, "{}: xz compression failed ({})",
              final_path.string(), static_cast<int>(ret));
        write_fd(out.data(), out.size() - xz.avail_out);
        if (finish ? ret == LZMA_STREAM_END : xz.avail_in == 0) return;
      }
    }
    if (compression == Compression::gzip) {
      gz.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(plain.data()));
      gz.avail_in = static_cast<uInt>(plain.size());
      while (true) {
        gz.next_out = reinterpret_cast<Bytef*>(out.data());
        gz.avail_out = static_cast<uInt>(out.size());
        int ret = deflate(&gz, finish ? Z_FINISH : Z_NO_FLUSH);
        check(ret != Z_STREAM_ERROR, "{}: gzip compression failed", final_path.string());
        write_fd(out.data(), out.size() - gz.avail_out);
        if (finish ? ret == Z_STREAM_END : gz.avail_in == 0) return;
      }
    }
    bz.next_in = const_cast<char*>(plain.data());
    bz.avail_in = static_cast<unsigned>(plain.size());
    while (true) {
      bz.next_out = out.data();
      bz.avail_out = static_cast<unsigned>(out.size());
      int ret = BZ2_bzCompress(&bz, finish ? BZ_FINISH : BZ_RUN);
      check(ret >= 0, "{}: bzip2 compression failed ({})", final_path.string(), ret);
      write_fd(out.data(), out.size() - bz.avail_out);
      if (finish ? ret == BZ_STREAM_END : bz.avail_in == 0) return;
    }
  }

  void close_encoder() {
    if (compression == Compression::xz) lzma_end(&xz);
    if (compression == Compression::gzip) deflateEnd(&gz);
    if (compression == Compression::bzip2) BZ2_bzCompressEnd(&bz);
    compression = Compression::none;
  }
};

AtomicOutput::AtomicOutput(const fs::path& file) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.final_path = file;
  s.temp_path = file;
  s.temp_path += ".tmp." + std::to_string(::getpid());
  if (file.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(file.parent_path(), ec);
  }
  s.fd = ::open(s.temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  check(s.fd >= 0, "{}: cannot create: {}", s.temp_path.string(), system_error_text());
  s.compression = compression_for_name(file);
  bool ok = true;
  switch (s.compression) {
    case Compression::xz: {
      // Multithreaded, preset 3: xz's default (preset 6, one thread) writes only ~1 MB/s, which
      // made `data synth` at 10M labels take hours; this is several times faster for files
      // that are a few percent larger, and every xz reader takes the blocked stream.
      lzma_mt options{};
      options.threads = std::max(1u, std::thread::hardware_concurrency());
      options.preset = 3;
      options.check = LZMA_CHECK_CRC64;
      ok = lzma_stream_encoder_mt(&s.xz, &options) == LZMA_OK;
      break;
    }
    case Compression::gzip:
      ok = deflateInit2(&s.gz, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK;
      break;
    case Compression::bzip2:
      ok = BZ2_bzCompressInit(&s.bz, 9, 0, 0) == BZ_OK;
      break;
    case Compression::none:
      break;
  }
  check(ok, "{}: cannot start the compressor", file.string());
}

AtomicOutput::~AtomicOutput() {
  Impl& s = *impl_;
  s.close_encoder();
  if (s.fd >= 0) ::close(s.fd);
  if (!s.committed) {
    std::error_code ec;
    fs::remove(s.temp_path, ec);
  }
}

void AtomicOutput::write(std::string_view bytes) {
  Impl& s = *impl_;
  if (s.compression == Compression::none && bytes.size() >= kChunk) {
    // Large uncompressed blocks (tensors of a checkpoint) go straight to the file: buffering
    // them would double the memory a big model needs while it is saved.
    s.write_fd(s.pending.data(), s.pending.size());
    s.pending.clear();
    s.write_fd(bytes.data(), bytes.size());
    return;
  }
  s.pending.append(bytes);
  if (s.pending.size() >= kChunk) {
    s.encode(s.pending, false);
    s.pending.clear();
  }
}

void AtomicOutput::commit() {
  Impl& s = *impl_;
  s.encode(s.pending, true);
  s.pending.clear();
  s.close_encoder();
  check(::fsync(s.fd) == 0, "{}: fsync failed: {}", s.final_path.string(), system_error_text());
  check(::close(s.fd) == 0, "{}: close failed: {}", s.final_path.string(), system_error_text());
  s.fd = -1;
  std::error_code ec;
  fs::rename(s.temp_path, s.final_path, ec);
  check(!ec, "{}: cannot move the finished file into place: {}", s.final_path.string(),
        ec.message());
  s.committed = true;
  // The rename is durable only once the directory entry is on disk too.
  fs::path directory = s.final_path.has_parent_path() ? s.final_path.parent_path() : ".";
  int dir_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

}  // namespace haste
