# Third-party libraries, all from Debian packages (scripts/setup.sh installs them).
# Small C libraries are linked statically and fmt is used header-only, so that a binary built
# here runs on the lent GPU machine, which has the CUDA libraries but no -dev packages.
find_package(fmt REQUIRED)
find_package(CLI11 REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(OpenMP REQUIRED)
find_package(Threads REQUIRED)

function(haste_find_static_library var)
  find_library(${var} NAMES ${ARGN} REQUIRED)
endfunction()
haste_find_static_library(HASTE_LZMA_LIB liblzma.a lzma)
haste_find_static_library(HASTE_BZ2_LIB libbz2.a bz2)
haste_find_static_library(HASTE_Z_LIB libz.a z)
haste_find_static_library(HASTE_XXHASH_LIB libxxhash.a xxhash)
find_path(HASTE_XXHASH_INCLUDE xxhash.h REQUIRED)

if(HASTE_TESTS)
  find_package(GTest REQUIRED)
endif()
