// Two-thread stress test of the lock-free SPSC paths (run under TSan in CI):
//  1. ring buffer, both policies: every pushed sample is popped once, in order, or counted
//     as dropped (received + dropped == pushed; values match their indices);
//  2. front end: a producer thread pushing bytes while a consumer thread drains windows
//     gets bit-identical windows to a single-threaded run (error policy), or a subset of
//     them, each still bit-identical, under drop_oldest.
#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>
#include <thread>
#include <vector>

#include "spoof/spoof.hpp"
#include "test_util.h"

namespace {

void RingStress(spoof_overflow_policy policy, int64_t capacity, int64_t total) {
  spoof::RingBuffer ring(capacity, policy);
  std::atomic<bool> done{false};
  std::thread producer([&] {
    std::vector<float> chunk;
    int64_t next = 0;
    uint32_t seed = 7;
    while (next < total) {
      seed = seed * 1664525u + 1013904223u;
      const int64_t n = std::min<int64_t>(1 + (seed >> 8) % 97, total - next);
      chunk.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) chunk[static_cast<size_t>(i)] = static_cast<float>(next + i);
      try {
        ring.Push(chunk.data(), n);
        next += n;
        if ((seed & 3) == 0) std::this_thread::yield();  // interleave more with the consumer
      } catch (const spoof::OverflowError&) {
        std::this_thread::yield();  // error policy: wait for the consumer
      }
    }
    done.store(true, std::memory_order_release);
  });
  int64_t received = 0, expected = 0, gaps = 0;
  bool order_ok = true, values_ok = true;
  std::vector<float> out(61);
  for (;;) {
    const bool finished = done.load(std::memory_order_acquire);
    const auto got = ring.Pop(out.data(), static_cast<int64_t>(out.size()));
    if (got.second == 0) {
      if (finished && ring.tail() == ring.head()) break;
      std::this_thread::yield();
      continue;
    }
    if (got.first < expected) order_ok = false;
    if (got.first > expected) gaps += got.first - expected;
    for (int64_t i = 0; i < got.second; ++i) {
      if (out[static_cast<size_t>(i)] != static_cast<float>(got.first + i)) values_ok = false;
    }
    received += got.second;
    expected = got.first + got.second;
  }
  producer.join();
  EXPECT(order_ok);
  EXPECT(values_ok);
  EXPECT(received + ring.dropped() == total);
  EXPECT(gaps == ring.dropped());
  if (policy == SPOOF_OVERFLOW_ERROR) EXPECT(ring.dropped() == 0);
  std::printf("  ring %s cap %lld: received %lld, dropped %lld\n",
              policy == SPOOF_OVERFLOW_ERROR ? "error" : "drop_oldest", static_cast<long long>(capacity),
              static_cast<long long>(received), static_cast<long long>(ring.dropped()));
}

spoof::FrontendOptions Options(spoof_overflow_policy policy) {
  spoof::FrontendOptions o;
  o.input_sample_rate = 8000;
  o.window_samples = 800;
  o.hop_samples = 400;
  o.capacity_samples = 1600;
  o.overflow_policy = policy;
  o.encoding = SPOOF_ENCODING_PCM16;
  return o;
}

std::vector<uint8_t> Bytes(size_t n_samples) {
  std::vector<uint8_t> b(n_samples * 2);
  uint32_t s = 99;
  for (auto& x : b) {
    s = s * 1103515245u + 12345u;
    x = static_cast<uint8_t>(s >> 16);
  }
  return b;
}

std::map<int64_t, std::vector<float>> Reference(const std::vector<uint8_t>& bytes) {
  auto o = Options(SPOOF_OVERFLOW_ERROR);
  o.capacity_samples = 1 << 22;
  spoof::Frontend fe(o);
  fe.Push(bytes.data(), bytes.size());
  fe.Flush();
  std::map<int64_t, std::vector<float>> windows;
  std::vector<float> buf;
  while (auto info = fe.NextWindow(buf)) {
    if (!info->is_final) windows[info->start_index] = buf;
  }
  return windows;
}

void FrontendStress(spoof_overflow_policy policy, int seconds) {
  const std::vector<uint8_t> bytes = Bytes(static_cast<size_t>(8000 * seconds));
  const auto ref = Reference(bytes);
  spoof::Frontend fe(Options(policy));
  std::atomic<bool> done{false};
  std::thread producer([&] {
    size_t off = 0;
    while (off < bytes.size()) {
      const size_t n = std::min<size_t>(321, bytes.size() - off);  // odd: splits samples
      try {
        fe.Push(bytes.data() + off, n);
        off += n;
        if (off % 4 == 0) std::this_thread::yield();
      } catch (const spoof::OverflowError&) {
        std::this_thread::yield();
      }
    }
    for (;;) {
      try {
        fe.Flush();
        break;
      } catch (const spoof::OverflowError&) {
        std::this_thread::yield();
      }
    }
    done.store(true, std::memory_order_release);
  });
  std::vector<float> buf;
  int64_t matched = 0, last_start = -1;
  bool ok = true;
  for (;;) {
    const bool finished = done.load(std::memory_order_acquire);
    auto info = fe.NextWindow(buf);
    if (!info) {
      if (finished) {
        info = fe.NextWindow(buf);  // the flush may have completed after our last look
        if (!info) break;
      } else {
        std::this_thread::yield();
        continue;
      }
    }
    if (info->is_final) continue;
    auto it = ref.find(info->start_index);
    if (it == ref.end() || info->start_index <= last_start ||
        std::memcmp(it->second.data(), buf.data(), buf.size() * sizeof(float)) != 0) {
      ok = false;
    }
    last_start = info->start_index;
    ++matched;
  }
  producer.join();
  EXPECT(ok);
  if (policy == SPOOF_OVERFLOW_ERROR) {
    EXPECT(matched == static_cast<int64_t>(ref.size()));
    EXPECT(fe.Stats().samples_dropped == 0);
  } else {
    EXPECT(matched >= 1);
  }
  std::printf("  frontend %s: %lld of %zu windows, dropped %lld\n",
              policy == SPOOF_OVERFLOW_ERROR ? "error" : "drop_oldest", static_cast<long long>(matched),
              ref.size(), static_cast<long long>(fe.Stats().samples_dropped));
}

}  // namespace

int main(int argc, char** argv) {
  // --quick: smaller volumes for emulated (qemu) runs.
  const int shift = (argc > 1 && std::strcmp(argv[1], "--quick") == 0) ? 3 : 0;
  RingStress(SPOOF_OVERFLOW_ERROR, 256, (1 << 20) >> shift);
  RingStress(SPOOF_OVERFLOW_DROP_OLDEST, 256, (1 << 20) >> shift);
  RingStress(SPOOF_OVERFLOW_DROP_OLDEST, 7, (1 << 18) >> shift);
  FrontendStress(SPOOF_OVERFLOW_ERROR, 20 >> shift);
  FrontendStress(SPOOF_OVERFLOW_DROP_OLDEST, 20 >> shift);
  return TestResult("ring_stress_test");
}
