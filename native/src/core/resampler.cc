#include "core/resampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace spoof {
namespace {

constexpr double kStopbandDb = 80.0;        // Kaiser design attenuation (and passband ripple)
constexpr double kPassbandEdge = 0.45;      // x the lower rate
constexpr double kStopbandEdge = 0.50;      // x the lower rate
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

// Fixed-order dot product: lane l accumulates elements i = l (mod 16) in increasing i,
// then the lanes are summed pairwise in a fixed tree. The order depends only on T, never
// on where the input sits in memory, so any chunking gives the same bits.
inline float Dot(const float* __restrict x, const float* __restrict h, int n) {
  float acc[kLanes] = {};
  for (int i = 0; i < n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += x[i + l] * h[i + l];
  }
  for (int w = kLanes / 2; w >= 1; w /= 2) {
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0];
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
  cutoff_ = 0.5 * (kPassbandEdge + kStopbandEdge) * low / in_rate;
  const double transition = (kStopbandEdge - kPassbandEdge) * low / in_rate;  // cycles per input sample
  // Kaiser's formulas: order N = (A - 7.95) / (2.285 * dw), beta = 0.1102 (A - 8.7).
  const double order = (kStopbandDb - 7.95) / (2.285 * 2.0 * kPi * transition);
  half_width_ = 0.5 * order;
  beta_ = 0.1102 * (kStopbandDb - 8.7);
  K_ = static_cast<int>(std::ceil(half_width_));
  T_ = (2 * K_ + kLanes - 1) / kLanes * kLanes;

  if (L_ * T_ <= kMaxTableFloats) {
    table_.resize(static_cast<size_t>(L_ * T_));
    for (int64_t p = 0; p < L_; ++p) ComputePhase(p, table_.data() + p * T_);
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
    const double sinc = (a == 0.0) ? 1.0 : std::sin(kPi * a) / (kPi * a);
    h[static_cast<size_t>(i)] = 2.0 * cutoff_ * sinc * w;
    sum += h[static_cast<size_t>(i)];
  }
  for (int i = 0; i < T_; ++i) taps[i] = static_cast<float>(h[static_cast<size_t>(i)] / sum);
}

const float* Resampler::PhaseTaps(int64_t phase) {
  if (!table_.empty()) return table_.data() + phase * T_;
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

void Resampler::Produce(int64_t until, std::vector<float>* out) {
  const int64_t step_n = M_ / L_, step_p = M_ % L_;
  while (k_ < until) {
    const int64_t idx = n_ - (T_ - K_) + 1 - base_;
    out->push_back(Dot(buf_.data() + idx, PhaseTaps(p_), T_));
    ++k_;
    n_ += step_n;
    p_ += step_p;
    if (p_ >= L_) {
      p_ -= L_;
      ++n_;
    }
  }
  // Drop the history no later output needs.
  const int64_t keep_from = n_ - (T_ - K_) + 1;
  const int64_t drop = std::min<int64_t>(keep_from - base_, static_cast<int64_t>(buf_.size()));
  if (drop > 0) {
    buf_.erase(buf_.begin(), buf_.begin() + drop);
    base_ += drop;
  }
}

void Resampler::Push(const float* x, int64_t n, std::vector<float>* out) {
  if (flushed_) Throw(SPOOF_ERR_STATE, "resampler: push after flush (reset first)");
  if (n <= 0) return;
  if (identity()) {
    out->insert(out->end(), x, x + n);
    n_in_ += n;
    k_ += n;
    return;
  }
  out->reserve(out->size() + static_cast<size_t>(OutputsAfterPush(n)));
  for (int64_t off = 0; off < n; off += kChunk) {
    const int64_t m = std::min(kChunk, n - off);
    buf_.insert(buf_.end(), x + off, x + off + m);
    n_in_ += m;
    Produce(OutputLength(n_in_ - K_, L_, M_), out);
  }
}

void Resampler::Flush(std::vector<float>* out) {
  if (flushed_) return;
  if (!identity()) {
    out->reserve(out->size() + static_cast<size_t>(OutputsOnFlush()));
    buf_.insert(buf_.end(), static_cast<size_t>(K_), 0.0f);
    Produce(OutputLength(n_in_, L_, M_), out);
  }
  flushed_ = true;
}

}  // namespace spoof
