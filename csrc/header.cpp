#include "header.hpp"

#include <cstdarg>
#include <cstdio>
#include <stdexcept>

namespace fastgan {

const unsigned char kMagic[8] = {0x89, 'F', 'G', 'D', '\r', '\n', 0x1a, '\n'};

namespace {

std::uint32_t read_u32(const unsigned char* p) {
  return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
         std::uint32_t(p[3]) << 24;
}

std::uint64_t read_u64(const unsigned char* p) {
  return std::uint64_t(read_u32(p)) | std::uint64_t(read_u32(p + 4)) << 32;
}

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

std::string format(const char* fmt, ...) {
  char buf[512];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, args);
  va_end(args);
  return buf;
}

// Must match format.py's human_size digit for digit: both print a correctly rounded double.
std::string human_size(unsigned __int128 n) {
  const double x = double(n);
  if (n < 1000) return format("%llu bytes", static_cast<unsigned long long>(n));
  if (x < 1e6) return format("%.1f kB", x / 1e3);
  if (x < 1e9) return format("%.1f MB", x / 1e6);
  return format("%.1f GB", x / 1e9);
}

[[noreturn]] void fail(const std::string& message) { throw std::invalid_argument(message); }

}  // namespace

Header parse_header(const unsigned char* data, std::size_t len, std::uint64_t file_size) {
  if (file_size == 0) fail("empty file (0 bytes); expected a .fgd dataset written by fastgan.data.prepare");
  if (file_size < kHeaderSize)
    fail(format("truncated header: file has %llu bytes, a .fgd header has 64",
                static_cast<unsigned long long>(file_size)));
  if (len < kHeaderSize)
    fail(format("parse_header needs the first 64 bytes of the file; got %zu", len));
  for (int i = 0; i < 8; ++i)
    if (data[i] != kMagic[i]) fail("not a .fgd file (bad magic bytes); make one with `fastgan prepare`");

  Header h{};
  h.version = read_u32(data + 8);
  if (h.version != kFormatVersion)
    fail(format("unsupported format version %u; this fastgan reads version 1", h.version));
  const std::uint32_t header_size = read_u32(data + 12);
  if (header_size != kHeaderSize)
    fail(format("bad header size %u; version 1 headers are 64 bytes", header_size));
  for (std::size_t i = 48; i < kHeaderSize; ++i)
    if (data[i] != 0) fail("reserved header bytes 48..63 are not zero; the file is corrupt");

  h.count = read_u64(data + 16);
  h.channels = read_u32(data + 24);
  h.height = read_u32(data + 28);
  h.width = read_u32(data + 32);
  h.layout = read_u32(data + 36);
  h.label_type = read_u32(data + 40);
  h.checksum = read_u32(data + 44);

  if (h.layout != kLayoutNCHW)
    fail(format("unsupported layout %u; version 1 stores NCHW (layout 0)", h.layout));
  if (h.channels < 1 || h.channels > kMaxChannels)
    fail(format("bad channel count %u; expected 1 to 4", h.channels));
  if (h.height < 1 || h.height > kMaxSide || h.width < 1 || h.width > kMaxSide)
    fail(format("bad image size %ux%u; expected 1 to 65536 pixels per side", h.height, h.width));
  if (h.count < 1 || h.count > kMaxCount)
    fail(format("bad image count %llu; expected 1 to 2**40", static_cast<unsigned long long>(h.count)));
  if (h.label_type != kLabelsNone && h.label_type != kLabelsInt64)
    fail(format("bad label type %u; expected 0 (none) or 1 (int64)", h.label_type));

  // 128-bit: count * channels * height * width can reach 2**74 before the size check rejects it.
  using u128 = unsigned __int128;
  const u128 image_bytes = u128(h.count) * h.channels * h.height * h.width;
  const u128 label_bytes = h.label_type == kLabelsInt64 ? u128(h.count) * 8 : 0;
  const u128 expected = kHeaderSize + image_bytes + label_bytes;
  if (expected > file_size)
    fail(format("truncated: header says %llu images (%s), file has %s",
                static_cast<unsigned long long>(h.count), human_size(expected).c_str(),
                human_size(file_size).c_str()));
  if (expected < file_size)
    fail(format("header says %llu images (%s), but the file has %llu extra bytes; the file is corrupt",
                static_cast<unsigned long long>(h.count), human_size(expected).c_str(),
                static_cast<unsigned long long>(file_size - std::uint64_t(expected))));

  h.images_offset = kHeaderSize;
  h.labels_offset = kHeaderSize + std::uint64_t(image_bytes);
  h.file_size = file_size;
  return h;
}

}  // namespace fastgan
