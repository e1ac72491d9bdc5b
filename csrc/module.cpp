// Python entry point of fastleak._C. Importing it loads this shared object, whose
// static initialisers register the fastleak::* operators with the dispatcher.
// The operators themselves live in csrc/ops/<op>.cpp (schemas) and the backend files.
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
