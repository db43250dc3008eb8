// The Python extension module classic_ops._C. Importing it loads this shared library,
// whose static initializers register the ops; the module itself reports how the library
// was built, holds the benchmark's calibration kernel, the functional API's direct op
// call and the controls of the CPU blocks kept for reuse. The CMake build leaves this file
// and python_calls.cpp out and is loaded with torch.ops.load_library instead.
#include <Python.h>
#include <torch/csrc/autograd/python_variable.h>

#include "cpu/calibration.h"
#include "cpu/huge_pages.h"
#include "cpu/isa.h"
#include "python_calls.h"

// setup.py passes these as bare tokens; variadic, since an arch list holds commas.
#define CLASSIC_OPS_STRINGIFY(...) #__VA_ARGS__
#define CLASSIC_OPS_EXPAND_STRINGIFY(...) CLASSIC_OPS_STRINGIFY(__VA_ARGS__)
#ifndef CLASSIC_OPS_TORCH_VERSION
#define CLASSIC_OPS_TORCH_VERSION unknown
#endif
#ifndef CLASSIC_OPS_CUDA_ARCHS
#define CLASSIC_OPS_CUDA_ARCHS
#endif

static PyObject* measure_fma_peak_gflops(PyObject*, PyObject* args) {
  double seconds = 0.5;
  if (!PyArg_ParseTuple(args, "|d", &seconds)) return nullptr;
  double gflops = 0.0;
  Py_BEGIN_ALLOW_THREADS
  gflops = classic_ops::cpu::measure_fma_peak_gflops(seconds);
  Py_END_ALLOW_THREADS
  return PyFloat_FromDouble(gflops);
}

static PyObject* set_avx2_enabled(PyObject*, PyObject* args) {
  int enabled = 1;
  if (!PyArg_ParseTuple(args, "p", &enabled)) return nullptr;
  classic_ops::cpu::set_avx2_enabled(enabled != 0);
  return PyBool_FromLong(classic_ops::cpu::use_avx2());
}

static PyObject* set_avx512_enabled(PyObject*, PyObject* args) {
  int enabled = 1;
  if (!PyArg_ParseTuple(args, "p", &enabled)) return nullptr;
  classic_ops::cpu::set_avx512_enabled(enabled != 0);
  return PyBool_FromLong(classic_ops::cpu::use_avx512());
}

static PyObject* cpu_has_avx2_fma(PyObject*, PyObject*) {
  return PyBool_FromLong(classic_ops::cpu::cpu_has_avx2_fma());
}

static PyObject* cpu_has_avx512(PyObject*, PyObject*) {
  return PyBool_FromLong(classic_ops::cpu::cpu_has_avx512());
}

static PyObject* empty_cpu_cache(PyObject*, PyObject*) {
  return PyLong_FromSize_t(classic_ops::cpu::release_kept_blocks());
}

static PyObject* on_huge_pages(PyObject*, PyObject* arg) {
  if (!THPVariable_Check(arg)) {
    return PyErr_Format(PyExc_TypeError, "on_huge_pages: tensor must be a Tensor, got %s",
                        Py_TYPE(arg)->tp_name);
  }
  return PyBool_FromLong(classic_ops::cpu::on_huge_pages(THPVariable_Unpack(arg)));
}

static PyObject* cpu_cache_bytes(PyObject*, PyObject*) {
  return PyLong_FromSize_t(classic_ops::cpu::kept_block_bytes());
}

static PyObject* set_cpu_cache_limit(PyObject*, PyObject* arg) {
  if (!PyLong_Check(arg)) {
    return PyErr_Format(PyExc_TypeError, "set_cpu_cache_limit: max_bytes must be an int, got %s",
                        Py_TYPE(arg)->tp_name);
  }
  const unsigned long long bytes = PyLong_AsUnsignedLongLong(arg);
  if (PyErr_Occurred()) {
    PyErr_Clear();
    return PyErr_Format(PyExc_ValueError, "set_cpu_cache_limit: max_bytes must be >= 0 and fit in 64 bits");
  }
  return PyLong_FromSize_t(classic_ops::cpu::set_kept_block_limit(static_cast<size_t>(bytes)));
}

static PyMethodDef methods[] = {
    {"set_avx2_enabled", set_avx2_enabled, METH_VARARGS,
     "set_avx2_enabled(flag): allow (True) or forbid (False) the AVX2/FMA CPU kernels; "
     "returns whether they will run"},
    {"set_avx512_enabled", set_avx512_enabled, METH_VARARGS,
     "set_avx512_enabled(flag): allow (True) or forbid (False) the dense convolution's AVX-512 "
     "microkernels; returns whether they will run"},
    {"cpu_has_avx2_fma", cpu_has_avx2_fma, METH_NOARGS, "whether this CPU has AVX2 and FMA"},
    {"cpu_has_avx512", cpu_has_avx512, METH_NOARGS, "whether this CPU has AVX2, FMA and AVX-512F"},
    {"empty_cpu_cache", empty_cpu_cache, METH_NOARGS,
     "empty_cpu_cache(): releases to the system the freed CPU blocks of 32 MB or more that "
     "classic_ops keeps for reuse (see set_cpu_cache_limit); returns their bytes"},
    {"on_huge_pages", on_huge_pages, METH_O,
     "whether a CPU tensor's memory came from the allocator of large results (2 MB pages)"},
    {"cpu_cache_bytes", cpu_cache_bytes, METH_NOARGS,
     "cpu_cache_bytes(): the bytes of the freed CPU blocks kept for reuse"},
    {"set_cpu_cache_limit", set_cpu_cache_limit, METH_O,
     "set_cpu_cache_limit(max_bytes): how many bytes of freed CPU blocks may be kept for reuse "
     "(0: none; 1 GB to start with), releasing the excess; returns the limit before"},
    {"measure_fma_peak_gflops", measure_fma_peak_gflops, METH_VARARGS,
     "measure_fma_peak_gflops(seconds=0.5): float32 FMA GFLOP/s over torch's CPU threads"},
    {"call_below_autograd", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(classic_ops::call_below_autograd)),
     METH_FASTCALL,
     "call_below_autograd(op, *args): op(*args) below autograd, or NotImplemented for arguments "
     "it does not convert"},
    {nullptr, nullptr, 0, nullptr}};

PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C",
                                   "classic_ops kernels (the ops live in torch.ops.classic_ops)",
                                   -1, methods};
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
#ifdef CLASSIC_OPS_WITH_CUDA
  const int with_cuda = 1;
#else
  const int with_cuda = 0;
#endif
  const char* torch_version = CLASSIC_OPS_EXPAND_STRINGIFY(CLASSIC_OPS_TORCH_VERSION);
  const char* cuda_archs = CLASSIC_OPS_EXPAND_STRINGIFY(CLASSIC_OPS_CUDA_ARCHS);
  if (PyModule_AddIntConstant(module, "with_cuda", with_cuda) < 0 ||
      PyModule_AddStringConstant(module, "torch_version", torch_version) < 0 ||
      PyModule_AddStringConstant(module, "cuda_archs", cuda_archs) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
