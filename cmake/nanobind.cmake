# Finds the Python interpreter and nanobind (a PyPI package, so it is located by asking the
# interpreter). Sets HASTE_NANOBIND_FOUND, the default of HASTE_PYTHON.
set(HASTE_NANOBIND_FOUND OFF)
find_package(Python 3.9 COMPONENTS Interpreter Development.Module)
if(Python_FOUND)
  execute_process(COMMAND ${Python_EXECUTABLE} -m nanobind --cmake_dir
                  OUTPUT_VARIABLE HASTE_NANOBIND_DIR OUTPUT_STRIP_TRAILING_WHITESPACE
                  RESULT_VARIABLE nanobind_status ERROR_QUIET)
  if(nanobind_status EQUAL 0)
    list(APPEND CMAKE_PREFIX_PATH ${HASTE_NANOBIND_DIR})
    set(HASTE_NANOBIND_FOUND ON)
  endif()
endif()
