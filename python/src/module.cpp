// haste._core: the C++ library seen from Python. The public Python API lives in python/haste/;
// this module only converts arrays and calls the library, releasing the GIL for long work.
#include <haste/error.hpp>

#include "bindings.hpp"

NB_MODULE(_core, m) {
  m.doc() = "HASTE's C++ core (use the `haste` package, not this module)";
  // Library errors carry complete messages (file, line, fix): they surface as ValueError.
  nanobind::exception<haste::Error>(m, "HasteError", PyExc_ValueError);
  haste::python::bind_matrices(m);
  haste::python::bind_data(m);
  haste::python::bind_metrics(m);
  haste::python::bind_model(m);
  haste::python::bind_group_shared(m);
  haste::python::bind_group_shared_cuda(m);
}
