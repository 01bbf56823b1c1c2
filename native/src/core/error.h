// Internal error type of the native core. The core throws spoof::core::Error; the C layer
// (c_api.cc) catches everything and turns it into a spoof_status + thread-local message.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "spoof/spoof.h"

namespace spoof::core {

class Error : public std::runtime_error {
 public:
  Error(spoof_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  spoof_status status() const noexcept { return status_; }

 private:
  spoof_status status_;
};

// printf-style message builder (messages say what was expected and what was given).
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
inline std::string Format(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return std::string(buf);
}

[[noreturn]] inline void Throw(spoof_status status, const std::string& message) { throw Error(status, message); }

}  // namespace spoof::core
