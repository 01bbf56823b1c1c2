// Minimal assertion helpers for the native C++ tests (no external framework needed on
// the cross/sanitizer toolchains).
#pragma once
#include <cstdio>
#include <cstdlib>

inline int& TestFailures() {
  static int failures = 0;
  return failures;
}

#define EXPECT(cond)                                                             \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "%s:%d: EXPECT failed: %s\n", __FILE__, __LINE__, #cond); \
      ++TestFailures();                                                          \
    }                                                                            \
  } while (0)

#define EXPECT_THROWS(stmt, ExcType, want_status)                                \
  do {                                                                           \
    bool caught_ = false;                                                        \
    try {                                                                        \
      stmt;                                                                      \
    } catch (const ExcType& e_) {                                                \
      caught_ = e_.status() == (want_status);                                    \
      if (!caught_) std::fprintf(stderr, "  status %d: %s\n", (int)e_.status(), e_.what()); \
    }                                                                            \
    if (!caught_) {                                                              \
      std::fprintf(stderr, "%s:%d: expected %s(%s) from %s\n", __FILE__, __LINE__, #ExcType, \
                   #want_status, #stmt);                                         \
      ++TestFailures();                                                          \
    }                                                                            \
  } while (0)

inline int TestResult(const char* name) {
  if (TestFailures() != 0) {
    std::fprintf(stderr, "%s: %d failure(s)\n", name, TestFailures());
    return 1;
  }
  std::printf("%s: ok\n", name);
  return 0;
}
