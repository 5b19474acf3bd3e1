// The parts of the extension module haste._core, one function per source file.
#pragma once

#include <nanobind/nanobind.h>

namespace haste::python {

void bind_matrices(nanobind::module_& m);      // CsrMatrix, DenseMatrix, Dataset, Rankings
void bind_data(nanobind::module_& m);          // XC file readers and writers
void bind_metrics(nanobind::module_& m);       // propensities, top-k, P@k / nDCG@k / PSP@k
void bind_model(nanobind::module_& m);         // training, prediction, checkpoints
void bind_group_shared(nanobind::module_& m);  // the tail's CPU kernels, loss and DST (haste.torch)
// The tail's CUDA kernels (python/src/cuda/), or HAS_CUDA = False (cuda_none.cpp).
void bind_group_shared_cuda(nanobind::module_& m);

}  // namespace haste::python
