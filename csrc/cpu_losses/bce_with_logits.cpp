// fastgan.fused._cpu_losses: binary cross-entropy on float32 logits for the CPU eager path, the loss and d loss / d x
// in one pass over memory (torch's eager formula makes five passes forward and three backward).
//
// Per element, with a = |x| and e = exp(-a) (never above 1, so nothing overflows at any |x|):
//   loss = (x > 0 ? x (1 - t) : -x t) + log1p(e)      the exact split of (1 - t) softplus(x) + t softplus(-x):
//                                                       for t = 0 or 1 the linear term is 0 or |x|, so the two
//                                                       terms never cancel (torch's (1 - t) x - logsigmoid(x)
//                                                       does for x << 0)
//   grad = (sigmoid(x) - t) * scale,  sigmoid(x) = x > 0 ? 1 / (1 + e) : e / (1 + e)
// Infinite logits give +inf where the target disagrees and NaN (0 * inf) where it agrees exactly, NaN logits
// NaN, as fastgan's reference. Sums accumulate in double, so the reduced loss is the float64 sum of the
// float32 terms rounded once.
//
// Computed eight lanes at a time with AVX2 and glibc's vector expf / log1pf (libmvec, within 4 ulp) where the
// CPU has AVX2 and FMA (checked once, at run time: the module runs on any x86-64), one lane at a time otherwise
// and for the tail. No PyTorch headers: the Python side passes the addresses of contiguous float32 tensors.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && defined(FASTGAN_LIBMVEC)
#include <immintrin.h>
#define FASTGAN_AVX2 1
extern "C" {
// libmvec's AVX2 variants of expf and log1pf (the x86-64 vector ABI's names).
__attribute__((target("avx2,fma"))) __m256 _ZGVdN8v_expf(__m256);
__attribute__((target("avx2,fma"))) __m256 _ZGVdN8v_log1pf(__m256);
}
#endif

namespace py = pybind11;

namespace {

// One element: writes the gradient and the loss where their pointers are set, and returns the loss.
inline float bce_one(float x, float t, float scale, float* grad_out, float* loss_out) {
  const float e = std::exp(-std::fabs(x));
  const float linear = x > 0.0f ? x * (1.0f - t) : -x * t;
  const float loss = linear + std::log1p(e);
  const float r = 1.0f / (1.0f + e);
  const float sigmoid = x > 0.0f ? r : e * r;
  if (grad_out != nullptr) *grad_out = (sigmoid - t) * scale;
  if (loss_out != nullptr) *loss_out = loss;
  return loss;
}

// t == nullptr: every target is target_value.
double bce_scalar(const float* x, const float* t, float target_value, float* grad, float* loss, std::size_t begin,
                  std::size_t end, float scale) {
  double sum = 0.0;
  for (std::size_t i = begin; i < end; ++i)
    sum += bce_one(x[i], t == nullptr ? target_value : t[i], scale, grad == nullptr ? nullptr : grad + i,
                   loss == nullptr ? nullptr : loss + i);
  return sum;
}

#ifdef FASTGAN_AVX2
// Returns the double sum of the first n - n % 8 elements' losses.
__attribute__((target("avx2,fma"))) double bce_avx2(const float* x, const float* t, float target_value,
                                                     float* grad, float* loss, std::size_t n, float scale) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps(), vscale = _mm256_set1_ps(scale);
  const __m256 sign = _mm256_set1_ps(-0.0f), constant_target = _mm256_set1_ps(target_value);
  __m256d sum_lo = _mm256_setzero_pd(), sum_hi = _mm256_setzero_pd();
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    const __m256 vx = _mm256_loadu_ps(x + i), vt = t == nullptr ? constant_target : _mm256_loadu_ps(t + i);
    const __m256 minus_a = _mm256_or_ps(vx, sign);  // -|x|
    const __m256 e = _ZGVdN8v_expf(minus_a);
    const __m256 positive = _mm256_cmp_ps(vx, zero, _CMP_GT_OQ);  // false for NaN, as x > 0 in bce_one
    // x (1 - t) where x > 0, else -x t = (-x) t: written as bce_one computes it, so both paths round alike.
    const __m256 linear = _mm256_blendv_ps(_mm256_mul_ps(_mm256_xor_ps(vx, sign), vt),
                                           _mm256_mul_ps(vx, _mm256_sub_ps(one, vt)), positive);
    const __m256 l = _mm256_add_ps(linear, _ZGVdN8v_log1pf(e));
    const __m256 r = _mm256_div_ps(one, _mm256_add_ps(one, e));
    const __m256 sigmoid = _mm256_blendv_ps(_mm256_mul_ps(e, r), r, positive);
    if (grad != nullptr) _mm256_storeu_ps(grad + i, _mm256_mul_ps(_mm256_sub_ps(sigmoid, vt), vscale));
    if (loss != nullptr) _mm256_storeu_ps(loss + i, l);
    sum_lo = _mm256_add_pd(sum_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(l)));
    sum_hi = _mm256_add_pd(sum_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(l, 1)));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(sum_lo, sum_hi));
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#endif

double bce_range(const float* x, const float* t, float target_value, float* grad, float* loss, std::size_t n,
                 float scale, bool vectorised) {
  std::size_t done = 0;
  double sum = 0.0;
#ifdef FASTGAN_AVX2
  if (vectorised && has_avx2()) {
    sum = bce_avx2(x, t, target_value, grad, loss, n, scale);
    done = n - n % 8;
  }
#endif
  return sum + bce_scalar(x, t, target_value, grad, loss, done, n, scale);
}

// Below this many elements per thread, starting a thread costs more than it saves.
constexpr std::size_t kMinPerThread = std::size_t{1} << 15;

// Computes over n elements at the given addresses; a target address of 0 makes every target target_value, a
// grad or loss address of 0 skips that output. Returns the
// sum of the losses: each of up to `threads` threads sums a contiguous chunk (a multiple of 8 elements), and
// the chunks' sums are added in order, so a result depends on the thread count only in double's last bits.
double bce_with_logits(std::uintptr_t x_address, std::uintptr_t t_address, std::uintptr_t grad_address,
                       std::uintptr_t loss_address, std::size_t n, float scale, bool vectorised, int threads,
                       float target_value) {
  const auto* x = reinterpret_cast<const float*>(x_address);
  const auto* t = reinterpret_cast<const float*>(t_address);
  auto* grad = reinterpret_cast<float*>(grad_address);
  auto* loss = reinterpret_cast<float*>(loss_address);
  py::gil_scoped_release release;
  const std::size_t chunks = std::max<std::size_t>(1, std::min<std::size_t>(threads, n / kMinPerThread));
  if (chunks == 1) return bce_range(x, t, target_value, grad, loss, n, scale, vectorised);
  const std::size_t chunk = (n / chunks + 7) / 8 * 8;
  std::vector<double> sums(chunks, 0.0);
  std::vector<std::thread> workers;
  workers.reserve(chunks - 1);
  for (std::size_t c = 1; c < chunks; ++c) {
    const std::size_t begin = std::min(n, c * chunk), end = c + 1 == chunks ? n : std::min(n, (c + 1) * chunk);
    workers.emplace_back([=, &sums] {
      sums[c] = bce_range(x + begin, t == nullptr ? nullptr : t + begin, target_value,
                          grad == nullptr ? nullptr : grad + begin,
                          loss == nullptr ? nullptr : loss + begin, end - begin, scale, vectorised);
    });
  }
  sums[0] = bce_range(x, t, target_value, grad, loss, std::min(n, chunk), scale, vectorised);
  for (auto& w : workers) w.join();
  double sum = 0.0;
  for (double s : sums) sum += s;
  return sum;
}

bool vectorised_available() {
#ifdef FASTGAN_AVX2
  return has_avx2();
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(_cpu_losses, m) {
  m.doc() = "Binary cross-entropy on float32 logits for fastgan's CPU eager path (loss and gradient in one pass)";
  m.def("bce_with_logits", &bce_with_logits, py::arg("x"), py::arg("target"), py::arg("grad"), py::arg("loss"),
        py::arg("n"), py::arg("scale"), py::arg("vectorised") = true, py::arg("threads") = 1,
        py::arg("target_value") = 0.0f,
        "Writes (sigmoid(x) - t) * scale to grad and each loss to loss (either skipped where its address is 0) "
        "for n float32 elements at the given addresses (target address 0: every t is target_value), on up to "
        "`threads` threads; returns the sum of the losses, accumulated in double.");
  m.def("vectorised_available", &vectorised_available, "Whether this CPU takes the AVX2 path");
}
