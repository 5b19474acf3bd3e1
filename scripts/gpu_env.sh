# Sourced by the scripts that run on a GPU machine: where libnccl.so.2 is (the CUDA toolkit's,
# or PyTorch's nvidia-nccl wheel's where the image has only that one) and NCCL's NVLink multicast
# kept off (it can put a shared host's GPUs out of service; device README).
nccl_wheel=$(python3 -c "import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__) + '/lib')" \
  2> /dev/null || true)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${nccl_wheel:+:$nccl_wheel}:${LD_LIBRARY_PATH:-}
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
