// Sample decoders: PCM16 LE, float32 LE, G.711 mu-law and A-law -> float32 in [-1, 1].
#pragma once

#include <cstddef>
#include <cstdint>

namespace spoof::core {

// Bytes per sample of a spoof_encoding; throws Error(INVALID_ARGUMENT) for an unknown value.
int BytesPerSample(int32_t encoding);
// "pcm16", "float32", "mulaw", "alaw", or "unknown".
const char* EncodingName(int32_t encoding);

// Decode n_samples whole samples. float32 input must be finite: the first non-finite
// sample throws Error(INVALID_AUDIO) naming its index (index_offset is added to it in
// the message) and nothing is guaranteed about `out`.
void DecodeSamples(const uint8_t* data, size_t n_samples, int32_t encoding, float* out,
                   int64_t index_offset = 0);

// The 16-bit linear value of a G.711 code (ITU-T G.711, as in libsndfile's tables).
int16_t MulawToLinear(uint8_t code);
int16_t AlawToLinear(uint8_t code);

// True if all n floats are finite; otherwise false with *bad_index set to the first NaN/Inf.
bool AllFinite(const float* x, int64_t n, int64_t* bad_index);

}  // namespace spoof::core
