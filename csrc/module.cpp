// Python entry point of fastleak._C. Importing it loads this shared object, whose
// static initialisers register the fastleak::* operators with the dispatcher.
// Each operator has its schema and C++ API in csrc/ops/<op>.cpp, its kernels in csrc/ops/cpu/ and
// csrc/ops/cuda/, and its autograd in csrc/ops/autograd/.
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",
      "fastleak compiled operators (registered under torch.ops.fastleak)",
      -1,
      nullptr,
  };
  return PyModule_Create(&module_def);
}
}
