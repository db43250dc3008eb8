// The Python extension module classic_ops._C. Importing it loads this shared library,
// whose static initializers register the ops; the module itself only reports how the
// library was built. The CMake build leaves this file out and is loaded with
// torch.ops.load_library instead.
#include <Python.h>

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
  if (PyModule_AddIntConstant(module, "with_cuda", with_cuda) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
