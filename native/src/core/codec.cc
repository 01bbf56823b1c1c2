#include "core/codec.h"

#include <cstring>

#include "core/error.h"

namespace spoof::core {
namespace {

// G.711 expansion (ITU-T G.711; the classic Sun reference implementation that
// libsndfile's ulaw_decode / alaw_decode tables were generated from).
constexpr int16_t MulawExpand(uint8_t code) {
  const int u = static_cast<uint8_t>(~code);
  int t = ((u & 0x0F) << 3) + 0x84;
  t <<= (u & 0x70) >> 4;
  return static_cast<int16_t>((u & 0x80) ? (0x84 - t) : (t - 0x84));
}

constexpr int16_t AlawExpand(uint8_t code) {
  const int a = code ^ 0x55;
  int t = (a & 0x0F) << 4;
  const int seg = (a & 0x70) >> 4;
  if (seg == 0) {
    t += 8;
  } else {
    t += 0x108;
    t <<= seg - 1;
  }
  return static_cast<int16_t>((a & 0x80) ? t : -t);
}

struct Tables {
  float mulaw[256];
  float alaw[256];
  Tables() {
    for (int i = 0; i < 256; ++i) {
      // libsndfile normalises by 1 / 0x8000 (exact: a power of two).
      mulaw[i] = static_cast<float>(MulawExpand(static_cast<uint8_t>(i))) * (1.0f / 32768.0f);
      alaw[i] = static_cast<float>(AlawExpand(static_cast<uint8_t>(i))) * (1.0f / 32768.0f);
    }
  }
};

const Tables& G711() {
  static const Tables tables;
  return tables;
}

inline uint32_t LoadLE32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

}  // namespace

int16_t MulawToLinear(uint8_t code) { return MulawExpand(code); }
int16_t AlawToLinear(uint8_t code) { return AlawExpand(code); }

bool AllFinite(const float* x, int64_t n, int64_t* bad_index) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, x + i, 4);
    if ((bits & 0x7F800000u) == 0x7F800000u) {
      *bad_index = i;
      return false;
    }
  }
  return true;
}

int BytesPerSample(int32_t encoding) {
  switch (encoding) {
    case SPOOF_ENCODING_PCM16:
      return 2;
    case SPOOF_ENCODING_FLOAT32:
      return 4;
    case SPOOF_ENCODING_MULAW:
    case SPOOF_ENCODING_ALAW:
      return 1;
    default:
      Throw(SPOOF_ERR_INVALID_ARGUMENT,
            Format("encoding must be one of SPOOF_ENCODING_PCM16 (1), SPOOF_ENCODING_FLOAT32 (2), "
                   "SPOOF_ENCODING_MULAW (3), SPOOF_ENCODING_ALAW (4); got %d",
                   static_cast<int>(encoding)));
  }
}

const char* EncodingName(int32_t encoding) {
  switch (encoding) {
    case SPOOF_ENCODING_PCM16:
      return "pcm16";
    case SPOOF_ENCODING_FLOAT32:
      return "float32";
    case SPOOF_ENCODING_MULAW:
      return "mulaw";
    case SPOOF_ENCODING_ALAW:
      return "alaw";
    default:
      return "unknown";
  }
}

void DecodeSamples(const uint8_t* data, size_t n_samples, int32_t encoding, float* out, int64_t index_offset) {
  switch (encoding) {
    case SPOOF_ENCODING_PCM16:
      for (size_t i = 0; i < n_samples; ++i) {
        const auto v = static_cast<int16_t>(static_cast<uint16_t>(data[2 * i]) |
                                            static_cast<uint16_t>(static_cast<uint16_t>(data[2 * i + 1]) << 8));
        out[i] = static_cast<float>(v) * (1.0f / 32768.0f);
      }
      return;
    case SPOOF_ENCODING_FLOAT32: {
      bool bad = false;
      for (size_t i = 0; i < n_samples; ++i) {
        const uint32_t bits = LoadLE32(data + 4 * i);
        bad |= (bits & 0x7F800000u) == 0x7F800000u;
        std::memcpy(out + i, &bits, 4);
      }
      if (bad) {
        for (size_t i = 0; i < n_samples; ++i) {
          const uint32_t bits = LoadLE32(data + 4 * i);
          if ((bits & 0x7F800000u) == 0x7F800000u) {
            Throw(SPOOF_ERR_INVALID_AUDIO,
                  Format("float32 audio must be finite; sample %lld is %s", static_cast<long long>(index_offset) +
                                                                             static_cast<long long>(i),
                         (bits & 0x007FFFFFu) ? "NaN" : ((bits >> 31) ? "-Inf" : "+Inf")));
          }
        }
      }
      return;
    }
    case SPOOF_ENCODING_MULAW: {
      const float* table = G711().mulaw;
      for (size_t i = 0; i < n_samples; ++i) out[i] = table[data[i]];
      return;
    }
    case SPOOF_ENCODING_ALAW: {
      const float* table = G711().alaw;
      for (size_t i = 0; i < n_samples; ++i) out[i] = table[data[i]];
      return;
    }
    default:
      (void)BytesPerSample(encoding);  // throws the message
  }
}

}  // namespace spoof::core
