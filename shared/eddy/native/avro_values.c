/* The per-value loop over a batch of values, shared by Checker.check/decode and Codec.decode. */
#include "avro_native.h"

PyObject *each_value(PyObject *values, PerValue one, void *self) {
    /* A tuple of its own, not the caller's list: ``one`` may run Python code that empties that list. */
    PyObject *batch = PySequence_Tuple(values);
    if (batch == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "a sequence of bytes values is expected");
        }
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(batch);
    PyObject *out = PyList_New(count);
    for (Py_ssize_t i = 0; out != NULL && i < count; i++) {
        PyObject *result = one(self, PyTuple_GET_ITEM(batch, i));
        if (result == NULL) {
            if (PyErr_Occurred() && PyErr_ExceptionMatches(PyExc_MemoryError)) {
                Py_CLEAR(out);
                break;
            }
            PyErr_Clear();
            result = Py_NewRef(Py_None);
        }
        PyList_SET_ITEM(out, i, result);
    }
    Py_DECREF(batch);
    return out;
}
