/*
 * eddy.native._avro_native: native Avro for flat records (see shared/eddy/avro/native.py), a Checker
 * (avro_checker.c) and a Codec (avro_codec.c, avro_columns.c). Its typed surface is _avro_native.pyi.
 */
#include "avro_native.h"

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_avro_native", "Native Avro checks, decoding and encoding of flat records.", -1, NULL,
    NULL, NULL, NULL, NULL,
};

static int add_type(PyObject *m, const char *name, PyTypeObject *type) {
    Py_INCREF(type);
    if (PyModule_AddObject(m, name, (PyObject *)type) < 0) {
        Py_DECREF(type);
        return 0;
    }
    return 1;
}

PyMODINIT_FUNC PyInit__avro_native(void) {
    if (PyType_Ready(&CheckerType) < 0 || PyType_Ready(&CodecType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (!add_type(m, "Checker", &CheckerType) || !add_type(m, "Codec", &CodecType)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
