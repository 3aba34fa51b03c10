// The .fgd header: layout constants and the one validator that every reader goes through.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace fastgan {

constexpr std::size_t kHeaderSize = 64;
constexpr std::uint32_t kFormatVersion = 1;
constexpr std::uint64_t kMaxCount = std::uint64_t(1) << 40;
constexpr std::uint32_t kMaxSide = 65536;
constexpr std::uint32_t kMaxChannels = 4;
constexpr std::uint32_t kLayoutNCHW = 0;
constexpr std::uint32_t kLabelsNone = 0;
constexpr std::uint32_t kLabelsInt64 = 1;

// PNG-style magic: the high byte and the CR LF / LF pair catch 7-bit and newline-translating copies.
extern const unsigned char kMagic[8];

struct Header {
  std::uint32_t version;
  std::uint64_t count;
  std::uint32_t channels;
  std::uint32_t height;
  std::uint32_t width;
  std::uint32_t layout;
  std::uint32_t label_type;
  std::uint32_t checksum;
  std::uint64_t images_offset;
  std::uint64_t labels_offset;
  std::uint64_t file_size;
};

// Validates the first `len` bytes of a file of `file_size` bytes. Throws std::invalid_argument
// whose message names the problem; fastgan/data/format.py produces the same messages.
Header parse_header(const unsigned char* data, std::size_t len, std::uint64_t file_size);

}  // namespace fastgan
