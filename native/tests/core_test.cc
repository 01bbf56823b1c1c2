// Tests of the C++ core (linked statically): resampler lengths, exactness and chunking
// bit-identity for many rate pairs, framer tail rule, decoders. The core (spoof::core) and the
// public wrapper (spoof::, spoof/spoof.hpp) are included in one translation unit here, so a
// second definition of a class in one namespace (a one-definition-rule clash) fails to compile.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/codec.h"
#include "core/error.h"
#include "core/frontend.h"
#include "core/resampler.h"
#include "spoof/spoof.hpp"
#include "test_util.h"

namespace {

constexpr double kPi = 3.14159265358979323846;

std::vector<float> Noise(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 0.25f);
  std::vector<float> x(n);
  for (auto& v : x) v = g(rng);
  return x;
}

std::vector<float> OneShot(int32_t in, int32_t out, const std::vector<float>& x) {
  spoof::core::Resampler r(in, out);
  std::vector<float> y;
  r.Push(x.data(), static_cast<int64_t>(x.size()), &y);
  r.Flush(&y);
  return y;
}

void TestResamplerChunking() {
  const int32_t rates[] = {1000, 12000, 8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 96000};
  std::mt19937 rng(42);
  for (int32_t in : rates) {
    for (int32_t out : {16000, 8000, 44100}) {
      const std::vector<float> full = Noise(static_cast<size_t>(in / 40 + 7), static_cast<uint32_t>(in));
      const int64_t want = spoof::core::Resampler::OutputLength(static_cast<int64_t>(full.size()), out, in);
      EXPECT(static_cast<int64_t>(OneShot(in, out, full).size()) == want);
      for (int trial = 0; trial < 3; ++trial) {
        // 1-sample pushes on a shorter piece (they are slow under qemu)
        const std::vector<float> x(full.begin(), trial == 0 ? full.begin() + std::min<size_t>(full.size(), 700) : full.end());
        const std::vector<float> ref = OneShot(in, out, x);
        spoof::core::Resampler r(in, out);
        std::vector<float> y;
        size_t off = 0;
        const size_t max_chunk = trial == 0 ? 1 : (trial == 1 ? 7 : 3000);
        while (off < x.size()) {
          const size_t n = std::min(x.size() - off, 1 + std::uniform_int_distribution<size_t>(0, max_chunk - 1)(rng));
          const int64_t predicted = r.OutputsAfterPush(static_cast<int64_t>(n));
          const size_t before = y.size();
          r.Push(x.data() + off, static_cast<int64_t>(n), &y);
          EXPECT(static_cast<int64_t>(y.size() - before) == predicted);
          off += n;
        }
        const int64_t predicted = r.OutputsOnFlush();
        const size_t before = y.size();
        r.Flush(&y);
        EXPECT(static_cast<int64_t>(y.size() - before) == predicted);
        EXPECT(y.size() == ref.size() && std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)) == 0);
      }
    }
  }
}

void TestResamplerExactness() {
  const std::vector<float> x = Noise(1001, 5);
  EXPECT(OneShot(16000, 16000, x) == x);  // identity
  const std::vector<float> up = OneShot(8000, 16000, x);
  bool even_exact = up.size() == 2002;
  for (size_t i = 0; i < x.size() && even_exact; ++i) even_exact = up[2 * i] == x[i];
  EXPECT(even_exact);  // half-band phase 0
  // DC gain 1: a constant stays constant away from the edges.
  const std::vector<float> dc(4000, 0.5f);
  for (int32_t in : {8000, 11025, 44100, 48000}) {
    const std::vector<float> y = OneShot(in, 16000, dc);
    const float mid = y[y.size() / 2];
    EXPECT(std::fabs(mid - 0.5f) < 1e-5f);
  }
  // Alignment: a sine resampled equals the sine sampled at k / out_sr (away from the edges).
  for (int32_t in : {8000, 22050, 44100, 48000}) {
    const double f = 1000.0;
    std::vector<float> s(static_cast<size_t>(in));
    for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<float>(0.5 * std::sin(2 * kPi * f * i / in));
    const std::vector<float> y = OneShot(in, 16000, s);
    double err = 0.0;
    for (size_t k = 2000; k + 2000 < y.size(); ++k) {
      err = std::max(err, std::fabs(y[k] - 0.5 * std::sin(2 * kPi * f * k / 16000.0)));
    }
    EXPECT(err < 1e-3);
  }
  // Huge reduced ratio: taps computed on the fly; still chunking-invariant.
  const std::vector<float> z = Noise(1200, 9);
  const std::vector<float> a = OneShot(383999, 16000, z);
  spoof::core::Resampler r(383999, 16000);
  std::vector<float> b;
  for (size_t off = 0; off < z.size(); off += 333) r.Push(z.data() + off, std::min<int64_t>(333, 1200 - off), &b);
  r.Flush(&b);
  EXPECT(a == b && a.size() == 51);
}

void TestRateValidation() {
  for (int32_t bad : {0, -1, 999, 384001, 1000000000}) {
    EXPECT_THROWS(spoof::core::Resampler(bad, 16000), spoof::core::Error, SPOOF_ERR_INVALID_ARGUMENT);
    EXPECT_THROWS(spoof::core::Resampler(16000, bad), spoof::core::Error, SPOOF_ERR_INVALID_ARGUMENT);
  }
}

void TestDecoders() {
  std::vector<uint8_t> all(65536 * 2);
  for (int v = 0; v < 65536; ++v) {
    all[2 * v] = static_cast<uint8_t>(v & 0xFF);
    all[2 * v + 1] = static_cast<uint8_t>(v >> 8);
  }
  std::vector<float> out(65536);
  spoof::core::DecodeSamples(all.data(), 65536, SPOOF_ENCODING_PCM16, out.data());
  bool ok = true;
  for (int v = 0; v < 65536; ++v) ok &= out[v] == static_cast<float>(static_cast<int16_t>(v)) / 32768.0f;
  EXPECT(ok);
  EXPECT(spoof::core::MulawToLinear(0x00) == -32124 && spoof::core::MulawToLinear(0x80) == 32124);
  EXPECT(spoof::core::MulawToLinear(0x7F) == 0 && spoof::core::MulawToLinear(0xFF) == 0);
  EXPECT(spoof::core::AlawToLinear(0x55) == -8 && spoof::core::AlawToLinear(0xD5) == 8);
  EXPECT(spoof::core::AlawToLinear(0x2A) == -32256 && spoof::core::AlawToLinear(0xAA) == 32256);
  EXPECT_THROWS(spoof::core::BytesPerSample(9), spoof::core::Error, SPOOF_ERR_INVALID_ARGUMENT);
}

spoof_frontend_options Opts(int64_t w, int64_t h) {
  spoof_frontend_options o{};
  o.struct_size = sizeof(o);
  o.input_sample_rate = 16000;
  o.model_sample_rate = 16000;
  o.window_samples = w;
  o.hop_samples = h;
  o.capacity_samples = 0;
  o.overflow_policy = SPOOF_OVERFLOW_ERROR;
  o.encoding = SPOOF_ENCODING_FLOAT32;
  return spoof::core::ValidateOptions(o);
}

// Returns (start, n, is_final) of every window after pushing n samples and flushing.
std::vector<spoof_window_info> Frames(int64_t n, int64_t w, int64_t h) {
  spoof::core::Frontend fe(Opts(w, h));
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = static_cast<float>(i % 1000) / 1000.0f;
  std::vector<spoof_window_info> out;
  std::vector<float> buf(static_cast<size_t>(w));
  spoof_window_info info{};
  for (int64_t off = 0; off < n; off += 100) {
    fe.PushFloat(x.data() + off, std::min<int64_t>(100, n - off));
    while (fe.NextWindow(buf.data(), w, &info)) out.push_back(info);
  }
  fe.Flush();
  while (fe.NextWindow(buf.data(), w, &info)) {
    out.push_back(info);
    // window content matches the absolute indices
    EXPECT(buf[0] == x[static_cast<size_t>(info.start_index)]);
  }
  return out;
}

void TestTailRule() {
  // shorter than a window: one final window with everything
  auto f = Frames(500, 1000, 400);
  EXPECT(f.size() == 1 && f[0].start_index == 0 && f[0].n_samples == 500 && f[0].is_final == 1);
  // nothing pushed: nothing
  EXPECT(Frames(0, 1000, 400).empty());
  // exact fit: 1000 + 2 * 400 = 1800 -> windows at 0, 400, 800, no final
  f = Frames(1800, 1000, 400);
  EXPECT(f.size() == 3 && f[2].start_index == 800 && f[2].is_final == 0);
  // 1900: the last regular window ends at 1800 -> final right-aligned at 900
  f = Frames(1900, 1000, 400);
  EXPECT(f.size() == 4 && f[3].start_index == 900 && f[3].n_samples == 1000 && f[3].is_final == 1);
  // exactly one window long: one regular window, no final
  f = Frames(1000, 1000, 1000);
  EXPECT(f.size() == 1 && f[0].is_final == 0);
}

// The core's front end and the wrapper's (over the C ABI, over the same core) give the same windows.
void TestCoreAndWrapperCoexist() {
  spoof::FrontendOptions o;
  o.window_samples = 1000;
  o.hop_samples = 400;
  o.encoding = SPOOF_ENCODING_FLOAT32;
  spoof::core::Frontend core(spoof::core::ValidateOptions(o));
  spoof::Frontend wrapper(o);
  std::vector<float> x(2500);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 777) / 777.0f;
  core.PushFloat(x.data(), static_cast<int64_t>(x.size()));
  wrapper.PushFloat(x.data(), x.size());
  core.Flush();
  wrapper.Flush();
  std::vector<float> a(1000), b;
  spoof_window_info ia{};
  int n = 0;
  while (core.NextWindow(a.data(), 1000, &ia)) {
    const auto ib = wrapper.NextWindow(b);
    EXPECT(ib.has_value() && ib->start_index == ia.start_index && ib->is_final == ia.is_final);
    EXPECT(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    ++n;
  }
  EXPECT(n == 5 && !wrapper.NextWindow(b).has_value());
  EXPECT_THROWS(spoof::core::ValidateSampleRate(7, "rate"), spoof::core::Error, SPOOF_ERR_INVALID_ARGUMENT);
  EXPECT_THROWS(spoof::Frontend{spoof::FrontendOptions{}}.Push("x", 1, 99), spoof::Error,
                SPOOF_ERR_INVALID_ARGUMENT);
}

}  // namespace

int main() {
  TestResamplerChunking();
  TestResamplerExactness();
  TestRateValidation();
  TestDecoders();
  TestTailRule();
  TestCoreAndWrapperCoexist();
  return TestResult("core_test");
}
