// The Python extension module classic_ops._C. Importing it loads this shared library,
// whose static initializers register the ops; the module itself only reports how the
// library was built. The CMake build leaves this file out and is loaded with
// torch.ops.load_library instead.
#include <Python.h>

// setup.py passes these as bare tokens; variadic, since an arch list holds commas.
#define CLASSIC_OPS_STRINGIFY(...) #__VA_ARGS__
#define CLASSIC_OPS_EXPAND_STRINGIFY(...) CLASSIC_OPS_STRINGIFY(__VA_ARGS__)
#ifndef CLASSIC_OPS_TORCH_VERSION
#define CLASSIC_OPS_TORCH_VERSION unknown
#endif
#ifndef CLASSIC_OPS_CUDA_ARCHS
#define CLASSIC_OPS_CUDA_ARCHS
#endif

PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C",
                                   "classic_ops kernels (the ops live in torch.ops.classic_ops)",
                                   -1, nullptr};
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
