# Third-party libraries, all from Debian packages (scripts/setup.sh installs them).
# Small C libraries are linked statically and fmt is used header-only, so that a binary built
# here runs on the lent GPU machine, which has the CUDA libraries but no -dev packages.
find_package(fmt REQUIRED)
find_package(CLI11 REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(OpenMP REQUIRED)
find_package(Threads REQUIRED)

# Debian builds some static libraries without -fPIC (libbz2.a, libz.a), so a shared module (the
# Python extension) links the shared versions instead: ${var} picks one per consuming target.
function(haste_find_static_library var static_name shared_name)
  find_library(${var}_STATIC NAMES ${static_name} ${shared_name} REQUIRED)
  find_library(${var}_SHARED NAMES ${shared_name} REQUIRED)
  set(${var} "$<IF:$<STREQUAL:$<TARGET_PROPERTY:TYPE>,MODULE_LIBRARY>,${${var}_SHARED},${${var}_STATIC}>"
      PARENT_SCOPE)
endfunction()
haste_find_static_library(HASTE_LZMA_LIB liblzma.a lzma)
haste_find_static_library(HASTE_BZ2_LIB libbz2.a bz2)
haste_find_static_library(HASTE_Z_LIB libz.a z)
haste_find_static_library(HASTE_XXHASH_LIB libxxhash.a xxhash)
find_path(HASTE_XXHASH_INCLUDE xxhash.h REQUIRED)
# toml++ for config files, used header-only (src/train/config_file.cpp): no run-time library.
find_path(HASTE_TOML_INCLUDE toml++/toml.h REQUIRED)
# OpenBLAS (Debian's pthread build) for the dense layers of the CPU engine (src/model/blas.cpp).
haste_find_static_library(HASTE_OPENBLAS_LIB libopenblas.a openblas)
find_path(HASTE_CBLAS_INCLUDE cblas.h PATH_SUFFIXES openblas-pthread openblas REQUIRED)

if(HASTE_TESTS)
  find_package(GTest REQUIRED)
endif()
