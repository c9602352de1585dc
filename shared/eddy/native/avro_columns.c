/*
 * Codec.columns: many values straight into columns, for bulk reads (backtests) that would otherwise build a dict
 * per record only to take a few fields out of it again (shared/eddy/avro/columns.py). Per field the plan says
 * what to keep:
 *   COL_SKIP    read past it;
 *   COL_DOUBLE  a float64 column (booleans, ints and doubles, as float() gives them) and a null flag per row;
 *   COL_INT64   an int64 column (ints) and a null flag per row;
 *   COL_OBJECT  a list of the values, as decode() gives them.
 * A value this code does not read entirely, or whose field does not fit its column, is marked not decoded:
 * the caller decodes it the slow way and fills its row in.
 */
#include "avro_native.h"
#include "avro_wire.h"

#include <math.h>

enum { COL_SKIP, COL_DOUBLE, COL_INT64, COL_OBJECT };

typedef struct {
    int kind;
    PyObject *list;      /* COL_OBJECT */
    char *data, *nulls;  /* COL_DOUBLE, COL_INT64: n * 8 bytes and n flags */
} Column;

/* Reads a field's primitive without building an object; 0 when the bytes do not fit. */
static int read_number(Cursor *c, int kind, int *is_null, double *d, int64_t *i) {
    const unsigned char *s;
    *is_null = 0;
    switch (kind) {
    case K_NULL: *is_null = 1; return 1;
    case K_BOOLEAN:
        if (c->p >= c->end || *c->p > 1) return 0;
        *i = *c->p++;
        *d = (double)*i;
        return 1;
    case K_INT:
    case K_LONG:
        if (!read_long(c, i) || (kind == K_INT && (*i < INT32_MIN || *i > INT32_MAX))) return 0;
        *d = (double)*i;
        return 1;
    case K_DOUBLE:
        if (!read_fixed(c, 8, &s)) return 0;
        *d = read_le_double(s);
        return 2; /* a double: no int64 value */
    default: return 0;
    }
}

static int skip_value(Cursor *c, const ValueType *t) {
    int kind = t->kinds[0];
    if (t->n > 0) {
        int64_t branch;
        if (!read_long(c, &branch) || branch < 0 || branch >= t->n) return 0;
        kind = t->kinds[branch];
    }
    if (kind == K_STRING) {
        const unsigned char *s;
        Py_ssize_t n;
        return read_sized(c, &s, &n);
    }
    int is_null;
    double d;
    int64_t i;
    return read_number(c, kind, &is_null, &d, &i) != 0;
}

static int column_field(Cursor *c, const Field *f, Column *col, Py_ssize_t row) {
    if (col->kind == COL_OBJECT || (f->is_map && col->kind == COL_SKIP)) {
        PyObject *value = read_field(c, f);
        if (value == NULL) return 0;
        if (col->kind != COL_OBJECT) {
            Py_DECREF(value);
            return 1;
        }
        PyObject *old = PyList_GET_ITEM(col->list, row);
        PyList_SET_ITEM(col->list, row, value);
        Py_XDECREF(old);
        return 1;
    }
    if (col->kind == COL_SKIP) return skip_value(c, &f->type);
    if (f->is_map) return 0;
    int kind = f->type.kinds[0];
    if (f->type.n > 0) {
        int64_t branch;
        if (!read_long(c, &branch) || branch < 0 || branch >= f->type.n) return 0;
        kind = f->type.kinds[branch];
    }
    int is_null;
    double d = 0.0;
    int64_t i = 0;
    int got = read_number(c, kind, &is_null, &d, &i);
    if (!got || (col->kind == COL_INT64 && got == 2)) return 0;
    col->nulls[row] = (char)is_null;
    if (col->kind == COL_DOUBLE) {
        if (is_null) d = NAN;
        memcpy(col->data + 8 * row, &d, 8);
    } else {
        if (is_null) i = 0;
        memcpy(col->data + 8 * row, &i, 8);
    }
    return 1;
}

/* The plan: one column kind per field, read before any value is looked at (reading it may run Python code). */
static Column *read_plan(Codec *self, PyObject *plan) {
    PyObject *kinds = PySequence_Tuple(plan);
    if (kinds == NULL) return NULL;
    Py_ssize_t n_fields = self->n_fields;
    Column *cols = NULL;
    if (PyTuple_GET_SIZE(kinds) != n_fields) {
        PyErr_Format(PyExc_ValueError, "the plan has %zd kinds for %zd fields", PyTuple_GET_SIZE(kinds), n_fields);
        goto done;
    }
    cols = PyMem_Calloc(n_fields ? n_fields : 1, sizeof(Column));
    if (cols == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < n_fields; k++) {
        int overflow;
        long kind = PyLong_AsLongAndOverflow(PyTuple_GET_ITEM(kinds, k), &overflow);
        if (kind == -1 && PyErr_Occurred()) goto fail;
        if (overflow || kind < COL_SKIP || kind > COL_OBJECT) {
            PyErr_Format(PyExc_ValueError, "unknown column kind %R", PyTuple_GET_ITEM(kinds, k));
            goto fail;
        }
        cols[k].kind = (int)kind;
    }
    goto done;
fail:
    PyMem_Free(cols);
    cols = NULL;
done:
    Py_DECREF(kinds);
    return cols;
}

/* The empty column of ``col``'s kind for ``n`` rows: None, a list of None, or (data, nulls) bytearrays. */
static PyObject *new_column(Column *col, Py_ssize_t n) {
    if (col->kind == COL_SKIP) return Py_NewRef(Py_None);
    if (col->kind == COL_OBJECT) {
        PyObject *list = col->list = PyList_New(n);
        for (Py_ssize_t row = 0; list != NULL && row < n; row++) PyList_SET_ITEM(list, row, Py_NewRef(Py_None));
        return list;
    }
    if (n > PY_SSIZE_T_MAX / 8) return PyErr_NoMemory();
    PyObject *data = PyByteArray_FromStringAndSize(NULL, 8 * n);
    PyObject *nulls = PyByteArray_FromStringAndSize(NULL, n);
    PyObject *column = data && nulls ? PyTuple_Pack(2, data, nulls) : NULL;
    if (column != NULL) {
        /* The tuple keeps both alive as long as the result: the pointers stay good while this fills them. */
        col->data = PyByteArray_AS_STRING(data);
        col->nulls = PyByteArray_AS_STRING(nulls);
        if (n > 0) {
            memset(col->data, 0, 8 * n);
            memset(col->nulls, 1, n);
        }
    }
    Py_XDECREF(data);
    Py_XDECREF(nulls);
    return column;
}

/* columns(values, plan) -> (decoded: bytearray, [per field: None | list | (bytearray data, bytearray nulls)]) */
PyObject *Codec_columns(Codec *self, PyObject *args) {
    PyObject *values, *plan;
    if (self->fields == NULL) {
        PyErr_SetString(PyExc_TypeError, "the Codec was not initialised");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OO", &values, &plan)) return NULL;
    Column *cols = read_plan(self, plan);
    if (cols == NULL) return NULL;
    /* A tuple of its own, taken after the plan: nothing below runs Python code that could change it. */
    PyObject *batch = PySequence_Tuple(values);
    if (batch == NULL) {
        PyMem_Free(cols);
        return NULL;
    }
    PyObject *result = NULL, *out = NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(batch), n_fields = self->n_fields;
    PyObject *decoded = PyByteArray_FromStringAndSize(NULL, n);
    out = PyList_New(n_fields);
    if (decoded == NULL || out == NULL) goto done;
    for (Py_ssize_t k = 0; k < n_fields; k++) {
        PyObject *column = new_column(&cols[k], n);
        if (column == NULL) goto done;
        PyList_SET_ITEM(out, k, column);
    }
    char *ok = PyByteArray_AS_STRING(decoded);
    for (Py_ssize_t row = 0; row < n; row++) {
        PyObject *item = PyTuple_GET_ITEM(batch, row);
        int good = PyBytes_Check(item) && PyBytes_GET_SIZE(item) >= 5 &&
                   memcmp(PyBytes_AS_STRING(item), self->header, 5) == 0;
        if (good) {
            Cursor c = {(const unsigned char *)PyBytes_AS_STRING(item) + 5,
                        (const unsigned char *)PyBytes_AS_STRING(item) + PyBytes_GET_SIZE(item)};
            for (Py_ssize_t k = 0; good && k < n_fields; k++) good = column_field(&c, &self->fields[k], &cols[k], row);
            good = good && c.p == c.end;
            if (!good && PyErr_Occurred()) {
                if (PyErr_ExceptionMatches(PyExc_MemoryError)) goto done;
                PyErr_Clear();
            }
        }
        ok[row] = (char)good;
    }
    result = PyTuple_Pack(2, decoded, out);
done:
    PyMem_Free(cols);
    Py_XDECREF(decoded);
    Py_XDECREF(out);
    Py_DECREF(batch);
    return result;
}
