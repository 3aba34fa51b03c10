#include "pixels.hpp"

#include <algorithm>
#include <cstring>

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define FASTGAN_X86_DISPATCH 1
#endif

#if defined(FASTGAN_X86_DISPATCH)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace fastgan {

namespace {

// The loops below are plain element-wise loops over contiguous memory so that -O3 vectorises them
// with the baseline instruction set (SSE2 on x86-64, NEON on AArch64); the 256-entry lookup table
// they replace is a scalar gather and ran at less than half their speed.

void to_float32_scalar(const std::uint8_t* __restrict src, float* __restrict dst, std::size_t n, float scale,
                       float offset) {
  for (std::size_t k = 0; k < n; ++k) dst[k] = float(src[k]) * scale + offset;
}

#if defined(__SSE2__)
// A float32 batch is four times the bytes it is made from; at the sizes the loader is built for (256
// RGB images of 32-64 px: 3-12 MiB) it is larger than the near caches, so plain stores first read every
// destination line in (read-for-ownership). Streaming stores skip that read. A batch that would fit in
// cache (e.g. 64 KiB of 16-px digits) is written past it too, which costs its consumer a memory read.
// They need destinations aligned to the vector (the batch buffer is 64-byte aligned; a sample starts at
// one only when C*H*W is a multiple of 16, hence the scalar head) and an sfence before the batch is handed
// to another thread (fence_streaming_stores). Every variant computes mul then add, two roundings, as
// NumPy does (-ffp-contract=off keeps the scalar head and tail so too).
void to_float32_sse2(const std::uint8_t* __restrict src, float* __restrict dst, std::size_t n, float scale,
                     float offset) {
  std::size_t k = 0;
  for (; k < n && reinterpret_cast<std::uintptr_t>(dst + k) % 16 != 0; ++k) dst[k] = float(src[k]) * scale + offset;
  const __m128 s = _mm_set1_ps(scale), o = _mm_set1_ps(offset);
  const __m128i zero = _mm_setzero_si128();
  for (; k + 16 <= n; k += 16) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k));
    const __m128i lo = _mm_unpacklo_epi8(bytes, zero), hi = _mm_unpackhi_epi8(bytes, zero);
    const __m128i words[4] = {_mm_unpacklo_epi16(lo, zero), _mm_unpackhi_epi16(lo, zero),
                              _mm_unpacklo_epi16(hi, zero), _mm_unpackhi_epi16(hi, zero)};
    for (int q = 0; q < 4; ++q)
      _mm_stream_ps(dst + k + 4 * q, _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(words[q]), s), o));
  }
  to_float32_scalar(src + k, dst + k, n - k, scale, offset);
}
#endif

#if defined(FASTGAN_X86_DISPATCH)
// AVX2 and AVX-512 forms, compiled for those instruction sets by function attribute and chosen at run
// time (best_isa), so the extension still runs on any x86-64 CPU. Wider vectors halve or quarter the
// instructions per pixel; the mirrored forms reverse a row inside the register (a lane permutation)
// instead of staging it in scratch first. Measured at 64 px, 2 threads: see bench/results/loader-*.md.
__attribute__((target("avx2"))) void to_float32_avx2(const std::uint8_t* __restrict src, float* __restrict dst,
                                                      std::size_t n, float scale, float offset) {
  std::size_t k = 0;
  for (; k < n && reinterpret_cast<std::uintptr_t>(dst + k) % 32 != 0; ++k) dst[k] = float(src[k]) * scale + offset;
  const __m256 s = _mm256_set1_ps(scale), o = _mm256_set1_ps(offset);
  for (; k + 8 <= n; k += 8) {
    const __m256i x = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + k)));
    _mm256_stream_ps(dst + k, _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(x), s), o));
  }
  for (; k < n; ++k) dst[k] = float(src[k]) * scale + offset;
}

// Rows of `width` pixels, width a multiple of 8 and dst 32-byte aligned: out[x] = in[width - 1 - x].
__attribute__((target("avx2"))) void to_float32_mirrored_avx2(const std::uint8_t* __restrict src,
                                                               float* __restrict dst, std::size_t rows,
                                                               std::size_t width, float scale, float offset) {
  const __m256 s = _mm256_set1_ps(scale), o = _mm256_set1_ps(offset);
  const __m256i reverse = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
  for (std::size_t r = 0; r < rows; ++r, src += width, dst += width) {
    for (std::size_t x = 0; x < width; x += 8) {
      const __m256i in = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + width - 8 - x)));
      const __m256 v = _mm256_cvtepi32_ps(_mm256_permutevar8x32_epi32(in, reverse));
      _mm256_stream_ps(dst + x, _mm256_add_ps(_mm256_mul_ps(v, s), o));
    }
  }
}

__attribute__((target("avx512f"))) void to_float32_avx512(const std::uint8_t* __restrict src, float* __restrict dst,
                                                           std::size_t n, float scale, float offset) {
  std::size_t k = 0;
  for (; k < n && reinterpret_cast<std::uintptr_t>(dst + k) % 64 != 0; ++k) dst[k] = float(src[k]) * scale + offset;
  const __m512 s = _mm512_set1_ps(scale), o = _mm512_set1_ps(offset);
  for (; k + 16 <= n; k += 16) {
    const __m512i x = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k)));
    _mm512_stream_ps(dst + k, _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(x), s), o));
  }
  for (; k < n; ++k) dst[k] = float(src[k]) * scale + offset;
}

// As to_float32_mirrored_avx2, for width a multiple of 16 and dst 64-byte aligned.
__attribute__((target("avx512f"))) void to_float32_mirrored_avx512(const std::uint8_t* __restrict src,
                                                                    float* __restrict dst, std::size_t rows,
                                                                    std::size_t width, float scale, float offset) {
  const __m512 s = _mm512_set1_ps(scale), o = _mm512_set1_ps(offset);
  const __m512i reverse = _mm512_setr_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  for (std::size_t r = 0; r < rows; ++r, src += width, dst += width) {
    for (std::size_t x = 0; x < width; x += 16) {
      const __m512i in =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + width - 16 - x)));
      const __m512 v = _mm512_cvtepi32_ps(_mm512_permutexvar_epi32(reverse, in));
      _mm512_stream_ps(dst + x, _mm512_add_ps(_mm512_mul_ps(v, s), o));
    }
  }
}

Isa detect() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2")) return Isa::kAvx2;
  return Isa::kBaseline;
}
#else
Isa detect() { return Isa::kBaseline; }
#endif

void to_float32(const std::uint8_t* src, float* dst, std::size_t n, float scale, float offset, Isa isa) {
  switch (isa) {
#if defined(FASTGAN_X86_DISPATCH)
    case Isa::kAvx512:
      return to_float32_avx512(src, dst, n, scale, offset);
    case Isa::kAvx2:
      return to_float32_avx2(src, dst, n, scale, offset);
#endif
    default:
#if defined(__SSE2__)
      return to_float32_sse2(src, dst, n, scale, offset);
#else
      return to_float32_scalar(src, dst, n, scale, offset);
#endif
  }
}

// Mirrors and converts in one pass where the ISA has a permutation and the rows fill whole aligned
// vectors; returns false (nothing written) otherwise.
bool to_float32_mirrored(const std::uint8_t* src, float* dst, std::size_t rows, std::size_t width, float scale,
                         float offset, Isa isa) {
#if defined(FASTGAN_X86_DISPATCH)
  const auto address = reinterpret_cast<std::uintptr_t>(dst);
  if (isa == Isa::kAvx512 && width % 16 == 0 && address % 64 == 0) {
    to_float32_mirrored_avx512(src, dst, rows, width, scale, offset);
    return true;
  }
  if (isa == Isa::kAvx2 && width % 8 == 0 && address % 32 == 0) {
    to_float32_mirrored_avx2(src, dst, rows, width, scale, offset);
    return true;
  }
#else
  (void)src, (void)dst, (void)rows, (void)width, (void)scale, (void)offset, (void)isa;
#endif
  return false;
}

// Round to nearest, ties to even, on the bit pattern; the values are finite.
std::uint16_t bfloat16_bits(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return std::uint16_t((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

void to_bfloat16_scalar(const std::uint8_t* __restrict src, std::uint16_t* __restrict dst, std::size_t n,
                        float scale, float offset) {
  for (std::size_t k = 0; k < n; ++k) dst[k] = bfloat16_bits(float(src[k]) * scale + offset);
}

#if defined(FASTGAN_X86_DISPATCH)
// The float32 forms' values, rounded to bfloat16 on their bit patterns as bfloat16_bits does: eight
// pixels, left in the low halves of the 32-bit lanes.
__attribute__((target("avx2"))) __m256i bfloat16_lanes_avx2(const std::uint8_t* src, __m256 scale, __m256 offset) {
  const __m256i x = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src)));
  const __m256i bits = _mm256_castps_si256(_mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(x), scale), offset));
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  return _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7FFF)), odd), 16);
}

__attribute__((target("avx2"))) void to_bfloat16_avx2(const std::uint8_t* __restrict src,
                                                       std::uint16_t* __restrict dst, std::size_t n, float scale,
                                                       float offset) {
  std::size_t k = 0;
  for (; k < n && reinterpret_cast<std::uintptr_t>(dst + k) % 32 != 0; ++k)
    dst[k] = bfloat16_bits(float(src[k]) * scale + offset);
  const __m256 s = _mm256_set1_ps(scale), o = _mm256_set1_ps(offset);
  for (; k + 16 <= n; k += 16) {
    // packus interleaves the two halves by 128-bit lane; the qword permutation puts them back in order.
    const __m256i packed = _mm256_packus_epi32(bfloat16_lanes_avx2(src + k, s, o),
                                               bfloat16_lanes_avx2(src + k + 8, s, o));
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + k), _mm256_permute4x64_epi64(packed, 0xD8));
  }
  for (; k < n; ++k) dst[k] = bfloat16_bits(float(src[k]) * scale + offset);
}

__attribute__((target("avx512f"))) void to_bfloat16_avx512(const std::uint8_t* __restrict src,
                                                           std::uint16_t* __restrict dst, std::size_t n, float scale,
                                                           float offset) {
  std::size_t k = 0;
  for (; k < n && reinterpret_cast<std::uintptr_t>(dst + k) % 32 != 0; ++k)
    dst[k] = bfloat16_bits(float(src[k]) * scale + offset);
  const __m512 s = _mm512_set1_ps(scale), o = _mm512_set1_ps(offset);
  const __m512i half = _mm512_set1_epi32(0x7FFF), one = _mm512_set1_epi32(1);
  for (; k + 16 <= n; k += 16) {
    const __m512i x = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k)));
    const __m512i bits = _mm512_castps_si512(_mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(x), s), o));
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), one);
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(bits, half), odd), 16);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + k), _mm512_cvtepi32_epi16(rounded));
  }
  for (; k < n; ++k) dst[k] = bfloat16_bits(float(src[k]) * scale + offset);
}
#endif

void to_bfloat16(const std::uint8_t* src, std::uint16_t* dst, std::size_t n, float scale, float offset, Isa isa) {
  switch (isa) {
#if defined(FASTGAN_X86_DISPATCH)
    case Isa::kAvx512:
      return to_bfloat16_avx512(src, dst, n, scale, offset);
    case Isa::kAvx2:
      return to_bfloat16_avx2(src, dst, n, scale, offset);
#endif
    default:
      return to_bfloat16_scalar(src, dst, n, scale, offset);
  }
}

void convert(const std::uint8_t* src, std::uint8_t* dst, std::size_t n, const PixelMap& map) {
  switch (map.type) {
    case PixelType::kUint8:
      std::memcpy(dst, src, n);
      return;
    case PixelType::kFloat32:
      to_float32(src, reinterpret_cast<float*>(dst), n, map.scale, map.offset, map.isa);
      return;
    case PixelType::kBfloat16:
      to_bfloat16(src, reinterpret_cast<std::uint16_t*>(dst), n, map.scale, map.offset, map.isa);
      return;
  }
}

// Compilers turn this shift pattern into one byte-swap instruction.
std::uint64_t reverse_bytes(std::uint64_t v) {
  v = ((v & 0x00FF00FF00FF00FFull) << 8) | ((v >> 8) & 0x00FF00FF00FF00FFull);
  v = ((v & 0x0000FFFF0000FFFFull) << 16) | ((v >> 16) & 0x0000FFFF0000FFFFull);
  return (v << 32) | (v >> 32);
}

// Eight bytes per step: reversing byte by byte cost three times a plain copy of the row. Starts at output
// column x (the AVX2 form below does the whole 32-byte steps first).
void mirror_row_from(const std::uint8_t* __restrict src, std::uint8_t* __restrict dst, std::size_t width,
                     std::size_t x) {
  for (; x + 8 <= width; x += 8) {
    std::uint64_t word;
    std::memcpy(&word, src + width - x - 8, 8);
    word = reverse_bytes(word);
    std::memcpy(dst + x, &word, 8);
  }
  for (; x < width; ++x) dst[x] = src[width - 1 - x];
}

#if defined(FASTGAN_X86_DISPATCH)
// 32 bytes per step: a byte shuffle reverses each 16-byte lane, a lane swap finishes the reversal.
__attribute__((target("avx2"))) void mirror_row_avx2(const std::uint8_t* __restrict src, std::uint8_t* __restrict dst,
                                                      std::size_t width) {
  const __m256i reverse = _mm256_setr_epi8(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
                                           15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  std::size_t x = 0;
  for (; x + 32 <= width; x += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + width - 32 - x));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + x),
                        _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, reverse), 0x4E));
  }
  mirror_row_from(src, dst, width, x);
}
#endif

void mirror_row(const std::uint8_t* __restrict src, std::uint8_t* __restrict dst, std::size_t width, Isa isa) {
#if defined(FASTGAN_X86_DISPATCH)
  if (isa != Isa::kBaseline) return mirror_row_avx2(src, dst, width);
#else
  (void)isa;
#endif
  mirror_row_from(src, dst, width, 0);
}

}  // namespace

Isa best_isa() {
  static const Isa isa = detect();
  return isa;
}

bool isa_supported(Isa isa) { return int(isa) <= int(best_isa()); }

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
  if (map.type == PixelType::kFloat32 &&
      to_float32_mirrored(src, reinterpret_cast<float*>(dst), rows, width, map.scale, map.offset, map.isa))
    return;
  if (map.type == PixelType::kUint8) {
    for (std::size_t r = 0; r < rows; ++r) mirror_row(src + r * width, dst + r * out_row, width, map.isa);
    return;
  }
  // Mirror a block of rows into the cache-resident scratch, then convert the block in one long forward
  // loop rather than one short loop (with its own prologue and tail) per row.
  const std::size_t block = std::max<std::size_t>(1, kScratchBytes / width);
  for (std::size_t r0 = 0; r0 < rows; r0 += block) {
    const std::size_t r1 = std::min(rows, r0 + block);
    for (std::size_t r = r0; r < r1; ++r) mirror_row(src + r * width, scratch + (r - r0) * width, width, map.isa);
    convert(scratch, dst + r0 * out_row, (r1 - r0) * width, map);
  }
}

}  // namespace fastgan
