# cxr_sr_find_torch(): find_package(Torch) for the libtorch inside the pip torch wheel.
#
# Sets TORCH_LIBRARIES (from TorchConfig), CXR_SR_TORCH_LIB_DIR and CXR_SR_TORCH_INCLUDE_DIR.
# See ../CMakeLists.txt for why each step exists.

function(_cxr_sr_python_torch out_var expression)
  execute_process(
    COMMAND "${Python3_EXECUTABLE}" -c "import torch, sys; sys.stdout.write(str(${expression}))"
    OUTPUT_VARIABLE value RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "cxr-sr: '${Python3_EXECUTABLE}' cannot import torch: ${err}\n"
                        "Activate the project's virtualenv or pass -DPython3_EXECUTABLE=...")
  endif()
  set(${out_var} "${value}" PARENT_SCOPE)
endfunction()

function(_cxr_sr_find_cuda_toolkit_root out_var)
  foreach(candidate "${CUDAToolkit_ROOT}" "$ENV{CUDAToolkit_ROOT}" "$ENV{CUDA_HOME}"
                    "$ENV{CUDA_PATH}")
    if(candidate AND EXISTS "${candidate}/bin/nvcc")
      set(${out_var} "${candidate}" PARENT_SCOPE)
      return()
    endif()
  endforeach()
  find_program(_cxr_sr_nvcc nvcc PATHS /usr/local/cuda/bin)
  if(_cxr_sr_nvcc)
    # nvcc may be a wrapper script or a symlink (e.g. /usr/local/bin/nvcc): ask it where its
    # toolkit lives rather than trusting the directory it was found in.
    get_filename_component(real_nvcc "${_cxr_sr_nvcc}" REALPATH)
    get_filename_component(bin_dir "${real_nvcc}" DIRECTORY)
    if(NOT EXISTS "${bin_dir}/../include/cuda.h" AND EXISTS "/usr/local/cuda/bin/nvcc")
      set(bin_dir "/usr/local/cuda/bin")
    endif()
    get_filename_component(root "${bin_dir}/.." ABSOLUTE)
    set(${out_var} "${root}" PARENT_SCOPE)
    return()
  endif()
  set(${out_var} "" PARENT_SCOPE)
endfunction()

# Without a CUDA toolkit, TorchConfig.cmake cannot be used with a CUDA wheel; its targets are
# plain shared libraries, so an interface target over them is enough to build and run.
macro(_cxr_sr_torch_without_config)
  _cxr_sr_python_torch(_cxr_sr_abi "int(torch._C._GLIBCXX_USE_CXX11_ABI)")
  add_library(cxr_sr_torch INTERFACE)
  target_include_directories(cxr_sr_torch INTERFACE "${CXR_SR_TORCH_INCLUDE_DIR}"
                             "${CXR_SR_TORCH_INCLUDE_DIR}/torch/csrc/api/include")
  target_compile_definitions(cxr_sr_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=${_cxr_sr_abi})
  set(_cxr_sr_libs "")
  foreach(name torch torch_cpu c10)
    list(APPEND _cxr_sr_libs "${CXR_SR_TORCH_LIB_DIR}/lib${name}.so")
  endforeach()
  # --no-as-needed: nothing references libtorch_cuda directly, but loading it registers the CUDA
  # backend, without which --device cuda would fail
  target_link_libraries(cxr_sr_torch INTERFACE ${_cxr_sr_libs} "-Wl,--no-as-needed"
                        "${CXR_SR_TORCH_LIB_DIR}/libtorch_cuda.so" "${CXR_SR_TORCH_LIB_DIR}/libc10_cuda.so"
                        "-Wl,--as-needed")
  find_package(Threads REQUIRED)
  target_link_libraries(cxr_sr_torch INTERFACE Threads::Threads)
  set(TORCH_LIBRARIES cxr_sr_torch)
endmacro()

macro(cxr_sr_find_torch)
  if(NOT Torch_DIR)
    # the active virtualenv first (FindPython's default), else the project's own .venv, else PATH
    set(_cxr_sr_project_venv "${CMAKE_CURRENT_SOURCE_DIR}/../../.venv/bin/python")
    if(NOT Python3_EXECUTABLE AND NOT DEFINED ENV{VIRTUAL_ENV} AND EXISTS "${_cxr_sr_project_venv}")
      get_filename_component(_cxr_sr_project_venv "${_cxr_sr_project_venv}" ABSOLUTE)
      set(Python3_EXECUTABLE "${_cxr_sr_project_venv}")
    endif()
    find_package(Python3 REQUIRED COMPONENTS Interpreter)
    _cxr_sr_python_torch(_cxr_sr_prefix "torch.utils.cmake_prefix_path")
    set(Torch_DIR "${_cxr_sr_prefix}/Torch" CACHE PATH "TorchConfig.cmake of the pip wheel")
  endif()
  get_filename_component(CXR_SR_TORCH_ROOT "${Torch_DIR}/../../.." ABSOLUTE)
  set(CXR_SR_TORCH_LIB_DIR "${CXR_SR_TORCH_ROOT}/lib")
  set(CXR_SR_TORCH_INCLUDE_DIR "${CXR_SR_TORCH_ROOT}/include")

  # A CUDA build of the wheel ships libtorch_cuda; a CPU build does not and needs none of this.
  set(_cxr_sr_without_config FALSE)
  if(EXISTS "${CXR_SR_TORCH_LIB_DIR}/libtorch_cuda.so")
    if(NOT CXR_SR_NO_CUDA_TOOLKIT)
      _cxr_sr_find_cuda_toolkit_root(_cxr_sr_cuda_root)
    endif()
    if(NOT _cxr_sr_cuda_root)
      message(WARNING "cxr-sr: this torch wheel is a CUDA build, whose TorchConfig.cmake needs a "
              "CUDA toolkit (nvcc), and none was found (pass -DCUDAToolkit_ROOT=... if there is one). "
              "Linking the wheel's libraries directly instead; CUDA still works at run time.")
      set(_cxr_sr_without_config TRUE)
    endif()
  endif()
  if(_cxr_sr_without_config)
    _cxr_sr_torch_without_config()
  elseif(EXISTS "${CXR_SR_TORCH_LIB_DIR}/libtorch_cuda.so")
    set(CUDAToolkit_ROOT "${_cxr_sr_cuda_root}")
    set(CUDA_TOOLKIT_ROOT_DIR "${_cxr_sr_cuda_root}" CACHE PATH "CUDA toolkit (for Caffe2)")
    if(NOT CMAKE_CUDA_COMPILER)
      set(CMAKE_CUDA_COMPILER "${_cxr_sr_cuda_root}/bin/nvcc")
    endif()
    message(STATUS "cxr-sr: CUDA toolkit root ${_cxr_sr_cuda_root}")

    # nvrtc: the toolkit's own when it has one, else the wheel's site-packages/nvidia/*/lib.
    get_filename_component(_cxr_sr_site "${CXR_SR_TORCH_ROOT}/.." ABSOLUTE)
    if(NOT CUDA_nvrtc_LIBRARY)
      file(GLOB _cxr_sr_nvrtc
           "${_cxr_sr_cuda_root}/lib64/libnvrtc.so" "${_cxr_sr_cuda_root}/lib/libnvrtc.so"
           "${_cxr_sr_site}/nvidia/*/lib/libnvrtc.so.[0-9]*"
           "${_cxr_sr_site}/nvidia/*/lib/libnvrtc.so")
      list(FILTER _cxr_sr_nvrtc EXCLUDE REGEX "builtins|alt")
      if(NOT _cxr_sr_nvrtc)
        message(FATAL_ERROR "cxr-sr: no libnvrtc in the CUDA toolkit nor in ${_cxr_sr_site}/nvidia;"
                " pass -DCUDA_nvrtc_LIBRARY=/path/to/libnvrtc.so")
      endif()
      list(GET _cxr_sr_nvrtc 0 _cxr_sr_nvrtc)
      set(CUDA_nvrtc_LIBRARY "${_cxr_sr_nvrtc}" CACHE FILEPATH "libnvrtc (wheel's nvidia folder)")
    endif()
    message(STATUS "cxr-sr: nvrtc ${CUDA_nvrtc_LIBRARY}")
    # the other CUDA libraries (cublas, cufft, ...) are found the same way when the toolkit lacks
    # them: FindCUDAToolkit searches these directories too.
    file(GLOB _cxr_sr_nvidia_lib_dirs LIST_DIRECTORIES true "${_cxr_sr_site}/nvidia/*/lib")
    list(APPEND CMAKE_LIBRARY_PATH ${_cxr_sr_nvidia_lib_dirs})
    file(GLOB _cxr_sr_nvidia_include_dirs LIST_DIRECTORIES true "${_cxr_sr_site}/nvidia/*/include")
    list(APPEND CMAKE_INCLUDE_PATH ${_cxr_sr_nvidia_include_dirs})
    find_package(Torch REQUIRED)
  else()
    find_package(Torch REQUIRED)
  endif()
endmacro()
