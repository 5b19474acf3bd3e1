// Stands in for python/src/cuda/ when the extension is built without the CUDA backend:
// haste.torch then runs CPU tensors only and says why for CUDA ones.
#include "bindings.hpp"

namespace haste::python {

void bind_group_shared_cuda(nanobind::module_& m) { m.attr("HAS_CUDA") = false; }

}  // namespace haste::python
