// Per-sample pixel kernels of the batch gatherer: copy or normalise one uint8 sample, optionally mirrored.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastgan {

enum class PixelType { kUint8, kFloat32, kBfloat16 };

// Instruction sets the pixel loops have a form for, narrowest first: baseline is what the compiler
// targets by default (SSE2 on x86-64); AVX2 forms (float32 and bfloat16 conversion, row mirroring) and
// AVX-512F forms (float32 and bfloat16 conversion) run only where the CPU has them. Every form writes the
// same bits.
enum class Isa { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

// The widest form this CPU runs (detected once).
Isa best_isa();
bool isa_supported(Isa isa);

// What one output pixel is: uint8 copies the byte; float32 is float(x) * scale + offset with each
// operation rounded to float32 (no fused multiply-add), so it equals NumPy's float32 arithmetic bit for
// bit; bfloat16 is that float32 rounded to nearest, ties to even, stored as its 16-bit pattern.
struct PixelMap {
  PixelType type = PixelType::kUint8;
  float scale = 1.0f;
  float offset = 0.0f;
  Isa isa = best_isa();
};

std::size_t pixel_size(PixelType type);

// write_sample may use streaming (non-temporal) stores; call this before another thread reads its output.
void fence_streaming_stores();

// Mirrored rows are staged in a per-thread scratch of this many bytes (or one row, if wider): small
// enough to stay in L1 next to the rows being converted.
constexpr std::size_t kScratchBytes = 16 * 1024;
std::size_t scratch_size(std::size_t width);

// Writes the rows * width output pixels of one sample (rows = channels * height) to dst, each row
// mirrored left-right when `mirror`. scratch holds scratch_size(width) bytes and is private to the caller.
void write_sample(const std::uint8_t* src, std::uint8_t* dst, std::size_t rows, std::size_t width, bool mirror,
                  const PixelMap& map, std::uint8_t* scratch);

}  // namespace fastgan
