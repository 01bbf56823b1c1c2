#include "core/resampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <numeric>

#include "core/error.h"

namespace spoof::core {
namespace {

constexpr double kStopbandDb = 80.0;        // Kaiser design attenuation, downsampling (aliases)
constexpr double kImageRejectionDb = 75.0;  // upsampling (images): 48 instead of 64 taps for 8 -> 16 kHz
constexpr double kPassbandEdge = 0.45;      // x the lower rate
constexpr double kStopbandEdge = 0.50;      // x the lower rate (downsampling)
constexpr double kImageEdge = 0.55;         // x the input rate (upsampling: images start here)
constexpr int kLanes = 16;                  // independent accumulators of the dot product
constexpr int64_t kMaxTableFloats = 1 << 22;  // 16 MiB of taps; beyond, taps are computed per output
constexpr int64_t kChunk = 16384;           // inputs appended per inner step (bounds memory)
constexpr double kPi = 3.14159265358979323846;

double BesselI0(double x) {
  const double q = x * x / 4.0;
  double term = 1.0, sum = 1.0;
  for (int k = 1; k < 500; ++k) {
    term *= q / (static_cast<double>(k) * static_cast<double>(k));
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

// Fixed-order dot product over n (a multiple of 16) taps: lane l (0..15) accumulates the
// products i = l (mod 16) in increasing i, then the lanes are summed in a fixed tree:
// s[l] = acc[l] + acc[l + 8], then s[l] + s[l + 4], then + s[l + 2], then + s[l + 1].
// The order depends only on n, never on where the input sits in memory, so any chunking
// (and the SIMD and scalar versions) give the same bits; -ffp-contract=off keeps it so.
#if defined(__GNUC__) || defined(__clang__)
#define SPOOF_INLINE inline __attribute__((always_inline))  // inlined into each target clone
typedef float V8 __attribute__((vector_size(32)));
typedef float V4 __attribute__((vector_size(16)));
SPOOF_INLINE V8 Load8(const float* p) {
  V8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
SPOOF_INLINE float Reduce(V8 a0, V8 a1) {
  const V8 t = a0 + a1;                                                    // s[l] = acc[l] + acc[l + 8]
  const V4 u = V4{t[0], t[1], t[2], t[3]} + V4{t[4], t[5], t[6], t[7]};  // s[l] + s[l + 4]
  return (u[0] + u[2]) + (u[1] + u[3]);
}
SPOOF_INLINE float Dot(const float* __restrict x, const float* __restrict h, int n) {
  V8 a0 = {0, 0, 0, 0, 0, 0, 0, 0}, a1 = a0;  // lanes 0..7 and 8..15
  for (int i = 0; i < n; i += kLanes) {
    a0 += Load8(x + i) * Load8(h + i);
    a1 += Load8(x + i + 8) * Load8(h + i + 8);
  }
  return Reduce(a0, a1);
}
// Four dot products with the same taps (loaded once); each result has exactly Dot()'s bits.
SPOOF_INLINE void Dot4(const float* __restrict x0, const float* __restrict x1, const float* __restrict x2,
                 const float* __restrict x3, const float* __restrict h, int n, float* out, int64_t stride) {
  const V8 z = {0, 0, 0, 0, 0, 0, 0, 0};
  V8 a0 = z, a1 = z, b0 = z, b1 = z, c0 = z, c1 = z, d0 = z, d1 = z;
  for (int i = 0; i < n; i += kLanes) {
    const V8 h0 = Load8(h + i), h1 = Load8(h + i + 8);
    a0 += Load8(x0 + i) * h0;
    a1 += Load8(x0 + i + 8) * h1;
    b0 += Load8(x1 + i) * h0;
    b1 += Load8(x1 + i + 8) * h1;
    c0 += Load8(x2 + i) * h0;
    c1 += Load8(x2 + i + 8) * h1;
    d0 += Load8(x3 + i) * h0;
    d1 += Load8(x3 + i + 8) * h1;
  }
  out[0] = Reduce(a0, a1);
  out[stride] = Reduce(b0, b1);
  out[2 * stride] = Reduce(c0, c1);
  out[3 * stride] = Reduce(d0, d1);
}
#else
inline float Dot(const float* x, const float* h, int n) {
  float acc[kLanes] = {};
  for (int i = 0; i < n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += x[i + l] * h[i + l];
  }
  for (int w = kLanes / 2; w >= 1; w /= 2) {
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0];
}
inline void Dot4(const float* x0, const float* x1, const float* x2, const float* x3, const float* h, int n,
                 float* out, int64_t stride) {
  out[0] = Dot(x0, h, n);
  out[stride] = Dot(x1, h, n);
  out[2 * stride] = Dot(x2, h, n);
  out[3 * stride] = Dot(x3, h, n);
}
#endif

// Tap tables are immutable and depend only on the rate pair: share them across resamplers
// (one per call in a call centre) instead of recomputing them (up to ~10 ms for odd ratios).
// The cache is bounded: past kMaxCachedFloats it is cleared (tables in use stay alive).
constexpr size_t kMaxCachedFloats = size_t{1} << 24;  // 64 MiB

template <class Make>
std::shared_ptr<const std::vector<float>> CachedTable(int32_t in, int32_t out, Make make) {
  static std::mutex mu;
  static std::map<std::pair<int32_t, int32_t>, std::shared_ptr<const std::vector<float>>> cache;
  static size_t cached_floats = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find({in, out});
    if (it != cache.end()) return it->second;
  }
  std::shared_ptr<const std::vector<float>> table = make();  // outside the lock
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find({in, out});
  if (it != cache.end()) return it->second;  // another thread made it meanwhile: same values
  if (cached_floats + table->size() > kMaxCachedFloats) {
    cache.clear();
    cached_floats = 0;
  }
  cache.emplace(std::make_pair(in, out), table);
  cached_floats += table->size();
  return table;
}

}  // namespace

void ValidateSampleRate(int64_t rate, const char* what) {
  if (rate < kMinSampleRate || rate > kMaxSampleRate) {
    Throw(SPOOF_ERR_INVALID_ARGUMENT, Format("%s must be in [%d, %d] Hz; got %lld", what, kMinSampleRate,
                                             kMaxSampleRate, static_cast<long long>(rate)));
  }
}

int64_t Resampler::OutputLength(int64_t n_in, int64_t up, int64_t down) {
  if (n_in <= 0) return 0;
  const int64_t q = n_in / down, r = n_in % down;
  return q * up + (r * up + down - 1) / down;
}

Resampler::Resampler(int32_t in_rate, int32_t out_rate) : in_rate_(in_rate), out_rate_(out_rate) {
  ValidateSampleRate(in_rate, "input sample rate");
  ValidateSampleRate(out_rate, "output sample rate");
  const int64_t g = std::gcd(static_cast<int64_t>(in_rate), static_cast<int64_t>(out_rate));
  L_ = out_rate / g;
  M_ = in_rate / g;
  if (identity()) return;

  const double low = static_cast<double>(std::min(in_rate, out_rate));
  // Downsampling: the stopband starts at the output Nyquist (nothing aliases back at
  // more than -80 dB). Upsampling: no aliasing is possible, only images of the input
  // spectrum mirrored about the input Nyquist; a transition band centred on it
  // ([0.45, 0.55] x input rate, a half-band filter) rejects the images of everything below
  // 0.45 x input rate by 75 dB with half the taps, and makes phase 0 an exact copy.
  const bool up = out_rate > in_rate;
  const double stop = up ? kImageEdge : kStopbandEdge;
  cutoff_ = up ? 0.5 : 0.5 * (kPassbandEdge + stop) * low / in_rate;
  const double transition = (stop - kPassbandEdge) * low / in_rate;  // cycles per input sample
  phase0_is_delta_ = up;
  // Kaiser's formulas: order N = (A - 7.95) / (2.285 * dw), beta = 0.1102 (A - 8.7).
  const double atten = up ? kImageRejectionDb : kStopbandDb;
  const double order = (atten - 7.95) / (2.285 * 2.0 * kPi * transition);
  half_width_ = 0.5 * order;
  beta_ = 0.1102 * (atten - 8.7);
  K_ = static_cast<int>(std::ceil(half_width_));
  T_ = (2 * K_ + kLanes - 1) / kLanes * kLanes;

  if (L_ * T_ <= kMaxTableFloats) {
    table_ = CachedTable(in_rate, out_rate, [this] {
      auto t = std::make_shared<std::vector<float>>(static_cast<size_t>(L_ * T_));
      for (int64_t p = 0; p < L_; ++p) ComputePhase(p, t->data() + p * T_);
      return t;
    });
  } else {
    scratch_taps_.resize(static_cast<size_t>(T_));
  }
  Reset();
}

void Resampler::ComputePhase(int64_t phase, float* taps) const {
  // Tap i multiplies input j = n - (T - K) + 1 + i; its distance from t_k = n + phase / L
  // is d = phase / L + (T - K - 1) - i.
  const double frac = static_cast<double>(phase) / static_cast<double>(L_);
  const double i0_beta = BesselI0(beta_);
  std::vector<double> h(static_cast<size_t>(T_), 0.0);
  double sum = 0.0;
  for (int i = 0; i < T_; ++i) {
    const double d = frac + static_cast<double>(T_ - K_ - 1 - i);
    if (std::fabs(d) >= half_width_) continue;
    const double r = d / half_width_;
    const double w = BesselI0(beta_ * std::sqrt(1.0 - r * r)) / i0_beta;
    const double a = 2.0 * cutoff_ * d;
    // Exact zeros at the nonzero integers (so a half-band phase 0 is an exact delta).
    const double sinc = (a == 0.0) ? 1.0 : (a == std::floor(a) ? 0.0 : std::sin(kPi * a) / (kPi * a));
    h[static_cast<size_t>(i)] = 2.0 * cutoff_ * sinc * w;
    sum += h[static_cast<size_t>(i)];
  }
  for (int i = 0; i < T_; ++i) taps[i] = static_cast<float>(h[static_cast<size_t>(i)] / sum);
}

const float* Resampler::PhaseTaps(int64_t phase) {
  if (table_) return table_->data() + phase * T_;
  if (phase != scratch_phase_) {
    ComputePhase(phase, scratch_taps_.data());
    scratch_phase_ = phase;
  }
  return scratch_taps_.data();
}

void Resampler::Reset() {
  n_in_ = 0;
  k_ = n_ = p_ = 0;
  flushed_ = false;
  buf_.clear();
  if (identity()) return;
  const int64_t z = T_ - K_ - 1;  // zeros standing for input indices -z .. -1
  buf_.assign(static_cast<size_t>(z), 0.0f);
  base_ = -z;
}

int64_t Resampler::OutputsAfterPush(int64_t n) const {
  if (identity()) return n;
  // Output k is computable once input floor(k M / L) + K exists.
  return std::max<int64_t>(0, OutputLength(n_in_ + n - K_, L_, M_) - k_);
}

int64_t Resampler::OutputsOnFlush() const {
  if (flushed_) return 0;
  return OutputLength(n_in_, L_, M_) - k_;
}

// x86-64: an AVX2 clone of the hot loop is picked at load time (ifunc); the lane order of
// Dot() is the same in both clones, so they give identical bits. Other targets (aarch64
// NEON) use the one portable version.
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(SPOOF_NO_TARGET_CLONES)
__attribute__((target_clones("avx2", "default")))
#endif
int64_t Resampler::Produce(int64_t until, float* dst) {
  if (until <= k_) return 0;
  const int64_t count = until - k_;
  const int64_t offset = -(T_ - K_) + 1 - base_;  // buf_[n + offset] = first input of output k
  const float* buf = buf_.data();
  const int64_t step_n = M_ / L_, step_p = M_ % L_;
  // Phase-major order: outputs k and k + L share a phase (their inputs are M apart), so
  // each phase's taps are loaded once and applied to up to four outputs at a time. The
  // order in which outputs are computed does not change any output's bits.
  int64_t n0 = n_, p0 = p_;
  for (int64_t j0 = 0; j0 < std::min(count, L_); ++j0) {
    const int64_t cnt = (count - j0 + L_ - 1) / L_;  // outputs j0, j0 + L, ... below count
    if (p0 == 0 && phase0_is_delta_) {
      const float* src = buf + n0 + offset + (T_ - K_ - 1);
      for (int64_t c = 0; c < cnt; ++c) dst[j0 + c * L_] = src[c * M_];
    } else {
      const float* taps = PhaseTaps(p0);
      const float* src = buf + n0 + offset;
      int64_t c = 0;
      for (; c + 4 <= cnt; c += 4) {
        Dot4(src + c * M_, src + (c + 1) * M_, src + (c + 2) * M_, src + (c + 3) * M_, taps, T_,
             dst + j0 + c * L_, L_);
      }
      for (; c < cnt; ++c) dst[j0 + c * L_] = Dot(src + c * M_, taps, T_);
    }
    n0 += step_n;
    p0 += step_p;
    if (p0 >= L_) {
      p0 -= L_;
      ++n0;
    }
  }
  // Advance the state by count outputs: k * M = n * L + p.
  const int64_t q = count / L_, r = count % L_;
  const int64_t pr = p_ + r * M_;
  n_ += q * M_ + pr / L_;
  p_ = pr % L_;
  k_ = until;
  // Drop the history no later output needs.
  const int64_t keep_from = n_ - (T_ - K_) + 1;
  const int64_t drop = std::min<int64_t>(keep_from - base_, static_cast<int64_t>(buf_.size()));
  if (drop > 0) {
    buf_.erase(buf_.begin(), buf_.begin() + drop);
    base_ += drop;
  }
  return count;
}

int64_t Resampler::Push(const float* x, int64_t n, float* out) {
  if (flushed_) Throw(SPOOF_ERR_STATE, "resampler: push after flush (reset first)");
  if (n <= 0) return 0;
  if (identity()) {
    std::memcpy(out, x, static_cast<size_t>(n) * sizeof(float));
    n_in_ += n;
    k_ += n;
    return n;
  }
  int64_t written = 0;
  for (int64_t off = 0; off < n; off += kChunk) {
    const int64_t m = std::min(kChunk, n - off);
    buf_.insert(buf_.end(), x + off, x + off + m);
    n_in_ += m;
    written += Produce(OutputLength(n_in_ - K_, L_, M_), out + written);
  }
  return written;
}

int64_t Resampler::Flush(float* out) {
  if (flushed_) return 0;
  int64_t written = 0;
  if (!identity()) {
    buf_.insert(buf_.end(), static_cast<size_t>(K_), 0.0f);
    written = Produce(OutputLength(n_in_, L_, M_), out);
  }
  flushed_ = true;
  return written;
}

void Resampler::Push(const float* x, int64_t n, std::vector<float>* out) {
  const size_t first = out->size();
  out->resize(first + static_cast<size_t>(OutputsAfterPush(std::max<int64_t>(n, 0))));
  out->resize(first + static_cast<size_t>(Push(x, n, out->data() + first)));
}

void Resampler::Flush(std::vector<float>* out) {
  const size_t first = out->size();
  out->resize(first + static_cast<size_t>(OutputsOnFlush()));
  out->resize(first + static_cast<size_t>(Flush(out->data() + first)));
}

}  // namespace spoof::core
