#include "pixels.hpp"

#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace fastgan {

namespace {

// The loops below are plain element-wise loops over contiguous memory so that -O3 vectorises them
// with the baseline instruction set (SSE2 on x86-64, NEON on AArch64); the 256-entry lookup table
// they replace is a scalar gather and ran at less than half their speed.

void to_float32(const std::uint8_t* __restrict src, float* __restrict dst, std::size_t n, float scale,
                float offset) {
  std::size_t k = 0;
#if defined(__SSE2__)
  // A float32 batch is four times the bytes it is made from; at the sizes the loader is built for (256
  // RGB images of 32-64 px: 3-12 MiB) it is larger than the caches, so plain stores first read every
  // destination line in (read-for-ownership). Streaming stores skip that read. A batch that would fit in
  // cache (e.g. 64 KiB of 16-px digits) is written past it too, which costs its consumer a memory read.
  // They need 16-byte aligned destinations (the batch buffer is; a sample starts at one only when C*H*W
  // is a multiple of 4, hence the scalar head) and an sfence before the batch is handed to another
  // thread (fence_streaming_stores).
  for (; k < n && reinterpret_cast<std::uintptr_t>(dst + k) % 16 != 0; ++k)
    dst[k] = float(src[k]) * scale + offset;
  const __m128 s = _mm_set1_ps(scale), o = _mm_set1_ps(offset);
  const __m128i zero = _mm_setzero_si128();
  for (; k + 16 <= n; k += 16) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k));
    const __m128i lo = _mm_unpacklo_epi8(bytes, zero), hi = _mm_unpackhi_epi8(bytes, zero);
    const __m128i words[4] = {_mm_unpacklo_epi16(lo, zero), _mm_unpackhi_epi16(lo, zero),
                              _mm_unpacklo_epi16(hi, zero), _mm_unpackhi_epi16(hi, zero)};
    for (int q = 0; q < 4; ++q)  // mul then add: two roundings, as NumPy does
      _mm_stream_ps(dst + k + 4 * q, _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(words[q]), s), o));
  }
#endif
  for (; k < n; ++k) dst[k] = float(src[k]) * scale + offset;
}

void to_bfloat16(const std::uint8_t* __restrict src, std::uint16_t* __restrict dst, std::size_t n, float scale,
                 float offset) {
  for (std::size_t k = 0; k < n; ++k) {
    const float value = float(src[k]) * scale + offset;
    std::uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    // Round to nearest, ties to even, on the bit pattern; the values are finite.
    dst[k] = std::uint16_t((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
  }
}

void convert(const std::uint8_t* src, std::uint8_t* dst, std::size_t n, const PixelMap& map) {
  switch (map.type) {
    case PixelType::kUint8:
      std::memcpy(dst, src, n);
      return;
    case PixelType::kFloat32:
      to_float32(src, reinterpret_cast<float*>(dst), n, map.scale, map.offset);
      return;
    case PixelType::kBfloat16:
      to_bfloat16(src, reinterpret_cast<std::uint16_t*>(dst), n, map.scale, map.offset);
      return;
  }
}

// Compilers turn this shift pattern into one byte-swap instruction.
std::uint64_t reverse_bytes(std::uint64_t v) {
  v = ((v & 0x00FF00FF00FF00FFull) << 8) | ((v >> 8) & 0x00FF00FF00FF00FFull);
  v = ((v & 0x0000FFFF0000FFFFull) << 16) | ((v >> 16) & 0x0000FFFF0000FFFFull);
  return (v << 32) | (v >> 32);
}

// Eight bytes per step: reversing byte by byte cost three times a plain copy of the row.
void mirror_row(const std::uint8_t* __restrict src, std::uint8_t* __restrict dst, std::size_t width) {
  std::size_t x = 0;
  for (; x + 8 <= width; x += 8) {
    std::uint64_t word;
    std::memcpy(&word, src + width - x - 8, 8);
    word = reverse_bytes(word);
    std::memcpy(dst + x, &word, 8);
  }
  for (; x < width; ++x) dst[x] = src[width - 1 - x];
}

}  // namespace

void fence_streaming_stores() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

std::size_t pixel_size(PixelType type) {
  switch (type) {
    case PixelType::kUint8:
      return 1;
    case PixelType::kFloat32:
      return 4;
    case PixelType::kBfloat16:
      return 2;
  }
  return 0;
}

std::size_t scratch_size(std::size_t width) { return std::max(width, kScratchBytes); }

void write_sample(const std::uint8_t* src, std::uint8_t* dst, std::size_t rows, std::size_t width, bool mirror,
                  const PixelMap& map, std::uint8_t* scratch) {
  if (!mirror) {
    convert(src, dst, rows * width, map);
    return;
  }
  const std::size_t out_row = width * pixel_size(map.type);
  if (map.type == PixelType::kUint8) {
    for (std::size_t r = 0; r < rows; ++r) mirror_row(src + r * width, dst + r * out_row, width);
    return;
  }
  // Mirror a block of rows into the cache-resident scratch, then convert the block in one long forward
  // loop rather than one short loop (with its own prologue and tail) per row.
  const std::size_t block = std::max<std::size_t>(1, kScratchBytes / width);
  for (std::size_t r0 = 0; r0 < rows; r0 += block) {
    const std::size_t r1 = std::min(rows, r0 + block);
    for (std::size_t r = r0; r < r1; ++r) mirror_row(src + r * width, scratch + (r - r0) * width, width);
    convert(scratch, dst + r0 * out_row, (r1 - r0) * width, map);
  }
}

}  // namespace fastgan
