#include <pybind11/pybind11.h>
#include "spoof/spoof.h"
namespace py = pybind11;
PYBIND11_MODULE(_native, m) {
  m.attr("__version__") = spoof_version_string();
  m.def("abi_version", &spoof_abi_version);
}
