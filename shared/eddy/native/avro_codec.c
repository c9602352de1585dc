/*
 * Codec: a dict to Avro and back, for flat records whose fields are primitives, unions of primitives, or maps.
 * Anything it does not expect (a missing field, a value of another type, an int beyond 64 bits) makes encode()
 * return None, and the caller falls back to fastavro, which raises the proper error or handles the odd case.
 * Its bulk reader into columns is in avro_columns.c.
 */
#include "avro_native.h"
#include "avro_wire.h"

static int put_string(Buffer *b, PyObject *s) {
    Py_ssize_t n;
    const char *utf8 = PyUnicode_AsUTF8AndSize(s, &n);
    if (utf8 == NULL) {
        PyErr_Clear();
        return 0;
    }
    return put_long(b, n) && put(b, utf8, n);
}

/* Whether ``value`` is written as ``kind``: the branch fastavro picks is the first that accepts it. */
static int accepts(int kind, PyObject *value) {
    switch (kind) {
    case K_NULL: return value == Py_None;
    case K_BOOLEAN: return PyBool_Check(value);
    case K_INT:
    case K_LONG: return PyLong_CheckExact(value);
    case K_FLOAT:
    case K_DOUBLE: return PyFloat_CheckExact(value) || PyLong_CheckExact(value);
    case K_STRING: return PyUnicode_CheckExact(value);
    default: return 0;
    }
}

static int put_primitive(Buffer *b, int kind, PyObject *value) {
    switch (kind) {
    case K_NULL: return 1;
    case K_BOOLEAN: {
        unsigned char byte = value == Py_True;
        return put(b, &byte, 1);
    }
    case K_INT:
    case K_LONG: {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow || (x == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return 0;
        }
        if (kind == K_INT && (x < INT32_MIN || x > INT32_MAX)) return 0;
        return put_long(b, x);
    }
    case K_DOUBLE: {
        double x = PyFloat_CheckExact(value) ? PyFloat_AS_DOUBLE(value) : PyLong_AsDouble(value);
        if (x == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        return put_double(b, x);
    }
    case K_STRING: return put_string(b, value);
    default: return 0;
    }
}

static int put_value(Buffer *b, const ValueType *t, PyObject *value) {
    if (t->n == 0) return accepts(t->kinds[0], value) && put_primitive(b, t->kinds[0], value);
    for (int i = 0; i < t->n; i++) {
        if (accepts(t->kinds[i], value)) return put_long(b, i) && put_primitive(b, t->kinds[i], value);
    }
    return 0;
}

static int put_field(Buffer *b, const Field *f, PyObject *value) {
    if (!f->is_map) return put_value(b, &f->type, value);
    if (f->map_nullable >= 0) {
        if (value == Py_None) return put_long(b, f->map_nullable);
        if (!put_long(b, 1 - f->map_nullable)) return 0;
    }
    if (!PyDict_CheckExact(value)) return 0;
    Py_ssize_t n = PyDict_GET_SIZE(value);
    if (n > 0) {
        if (!put_long(b, n)) return 0;
        Py_ssize_t pos = 0;
        PyObject *key, *item;
        while (PyDict_Next(value, &pos, &key, &item)) {
            if (!PyUnicode_CheckExact(key) || !put_string(b, key) || !put_value(b, &f->type, item)) return 0;
        }
    }
    return put_long(b, 0);
}

/* Whether the codec has a program; else TypeError (a Codec made by __new__ alone). */
static int ready(Codec *self) {
    if (self->fields != NULL) return 1;
    PyErr_SetString(PyExc_TypeError, "the Codec was not initialised");
    return 0;
}

static PyObject *Codec_encode(Codec *self, PyObject *record) {
    if (!ready(self)) return NULL;
    if (!PyDict_Check(record)) Py_RETURN_NONE;
    Buffer b = {NULL, 0, 0};
    int ok = put(&b, self->header, 5);
    for (Py_ssize_t i = 0; ok && i < self->n_fields; i++) {
        PyObject *value = PyDict_GetItemWithError(record, self->fields[i].name);
        ok = value != NULL && put_field(&b, &self->fields[i], value);
    }
    PyErr_Clear();
    PyObject *out = ok ? PyBytes_FromStringAndSize(b.data, b.len) : Py_NewRef(Py_None);
    PyMem_Free(b.data);
    return out;
}

static int known_kind(long kind) { return kind >= K_NULL && kind <= K_FIXED; }

/* A field's type: an int (a primitive kind) or a tuple of ints (a union's branch kinds); 0 when malformed. */
static int parse_value_type(PyObject *spec, ValueType *t) {
    if (PyLong_Check(spec)) {
        long kind = PyLong_AsLong(spec);
        t->n = 0;
        t->kinds[0] = (int)kind;
        return !PyErr_Occurred() && known_kind(kind);
    }
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) < 1 || PyTuple_GET_SIZE(spec) > MAX_BRANCHES) return 0;
    t->n = (int)PyTuple_GET_SIZE(spec);
    for (int i = 0; i < t->n; i++) {
        PyObject *branch = PyTuple_GET_ITEM(spec, i);
        long kind = PyLong_Check(branch) ? PyLong_AsLong(branch) : -1;
        if (PyErr_Occurred() || !known_kind(kind)) return 0;
        t->kinds[i] = (int)kind;
    }
    return 1;
}

/* Reading: the value of a field, as fastavro would return it; NULL (error cleared) when the bytes do not fit. */
static PyObject *read_primitive(Cursor *c, int kind) {
    const unsigned char *s;
    int64_t x;
    switch (kind) {
    case K_NULL: Py_RETURN_NONE;
    case K_BOOLEAN:
        if (c->p >= c->end || *c->p > 1) return NULL;
        return PyBool_FromLong(*c->p++);
    case K_INT:
    case K_LONG:
        if (!read_long(c, &x) || (kind == K_INT && (x < INT32_MIN || x > INT32_MAX))) return NULL;
        return PyLong_FromLongLong(x);
    case K_DOUBLE:
        if (!read_fixed(c, 8, &s)) return NULL;
        return PyFloat_FromDouble(read_le_double(s));
    case K_STRING: {
        Py_ssize_t n;
        if (!read_sized(c, &s, &n)) return NULL;
        PyObject *str = PyUnicode_DecodeUTF8((const char *)s, n, NULL);
        if (str == NULL) PyErr_Clear();
        return str;
    }
    default: return NULL;
    }
}

static PyObject *read_value(Cursor *c, const ValueType *t) {
    if (t->n == 0) return read_primitive(c, t->kinds[0]);
    int64_t branch;
    if (!read_long(c, &branch) || branch < 0 || branch >= t->n) return NULL;
    return read_primitive(c, t->kinds[branch]);
}

static PyObject *read_map(Cursor *c, const ValueType *t) {
    PyObject *map = PyDict_New();
    if (map == NULL) return NULL;
    for (;;) {
        int64_t count, size;
        if (!read_long(c, &count)) goto fail;
        if (count == 0) return map;
        if (count < 0) { /* a block with its size in bytes, which is not needed here */
            if (count == INT64_MIN) goto fail; /* -count would overflow */
            count = -count;
            if (!read_long(c, &size)) goto fail;
        }
        for (int64_t i = 0; i < count; i++) {
            PyObject *key = read_primitive(c, K_STRING);
            PyObject *value = key ? read_value(c, t) : NULL;
            int failed = value == NULL || PyDict_SetItem(map, key, value) < 0;
            Py_XDECREF(key);
            Py_XDECREF(value);
            if (failed) goto fail;
        }
    }
fail:
    PyErr_Clear();
    Py_DECREF(map);
    return NULL;
}

PyObject *read_field(Cursor *c, const Field *f) {
    if (!f->is_map) return read_value(c, &f->type);
    if (f->map_nullable >= 0) {
        int64_t branch;
        if (!read_long(c, &branch) || (branch != 0 && branch != 1)) return NULL;
        if (branch == f->map_nullable) Py_RETURN_NONE;
    }
    return read_map(c, &f->type);
}

static PyObject *decode_value(void *codec, PyObject *item) {
    Codec *self = codec;
    if (!PyBytes_Check(item)) return NULL;
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(item);
    Py_ssize_t len = PyBytes_GET_SIZE(item);
    if (len < 5 || memcmp(data, self->header, 5) != 0) return NULL;
    Cursor c = {data + 5, data + len};
    PyObject *record = PyDict_New();
    if (record == NULL) return NULL;
    for (Py_ssize_t i = 0; i < self->n_fields; i++) {
        PyObject *value = read_field(&c, &self->fields[i]);
        int failed = value == NULL || PyDict_SetItem(record, self->fields[i].name, value) < 0;
        Py_XDECREF(value);
        if (failed) {
            PyErr_Clear();
            Py_DECREF(record);
            return NULL;
        }
    }
    if (c.p != c.end) {
        Py_DECREF(record);
        return NULL;
    }
    return record;
}

static PyObject *Codec_decode(Codec *self, PyObject *values) {
    return ready(self) ? each_value(values, decode_value, self) : NULL;
}

static void Codec_clear(Codec *self) {
    for (Py_ssize_t i = 0; i < self->n_fields; i++) Py_CLEAR(self->fields[i].name);
    PyMem_Free(self->fields);
    self->fields = NULL;
    self->n_fields = 0;
}

/* Reads one field of the program; 0 with an exception set when it is malformed. */
static int parse_field(Codec *self, PyObject *spec, Py_ssize_t i) {
    Field *f = &self->fields[i];
    PyObject *name, *type;
    if (!PyTuple_Check(spec)) {
        PyErr_Format(PyExc_TypeError, "field %zd is not a tuple", i);
        return 0;
    }
    if (!PyArg_ParseTuple(spec, "UpiO;a field is (name, is_map, map_null_index, type)", &name, &f->is_map,
                          &f->map_nullable, &type))
        return 0;
    f->name = Py_NewRef(name);
    self->n_fields = i + 1;
    if (!parse_value_type(type, &f->type) || f->map_nullable < -1 || f->map_nullable > 1 ||
        (!f->is_map && f->map_nullable != -1)) {
        if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "field %zd is malformed", i);
        return 0;
    }
    return 1;
}

/* Codec(header: bytes, fields: list[(name, is_map, map_null_index, type)]); built by shared/eddy/avro/native.py.
 * Initialised once, like Checker. */
static int Codec_init(Codec *self, PyObject *args, PyObject *Py_UNUSED(kwds)) {
    const char *header;
    Py_ssize_t header_len;
    PyObject *fields;
    if (self->fields != NULL) {
        PyErr_SetString(PyExc_TypeError, "a Codec is initialised once");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "y#O!", &header, &header_len, &PyList_Type, &fields)) return -1;
    if (header_len != 5) {
        PyErr_SetString(PyExc_ValueError, "the header is the 5-byte Confluent wire-format prefix");
        return -1;
    }
    /* A tuple of its own: parsing a field may run Python code (__index__, __bool__) that changes the list. */
    PyObject *program = PyList_AsTuple(fields);
    if (program == NULL) return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(program);
    memcpy(self->header, header, 5);
    self->fields = PyMem_Calloc(n ? n : 1, sizeof(Field));
    int ok = self->fields != NULL;
    if (!ok) PyErr_NoMemory();
    for (Py_ssize_t i = 0; ok && i < n; i++) ok = parse_field(self, PyTuple_GET_ITEM(program, i), i);
    Py_DECREF(program);
    if (!ok) Codec_clear(self);
    return ok ? 0 : -1;
}

static void Codec_dealloc(Codec *self) {
    Codec_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Codec_methods[] = {
    {"encode", (PyCFunction)Codec_encode, METH_O,
     "encode(record) -> bytes in the wire format, or None when fastavro should handle the record."},
    {"decode", (PyCFunction)Codec_decode, METH_O,
     "decode(values) -> list: per value, the record (a dict), or None when fastavro should handle it."},
    {"columns", (PyCFunction)Codec_columns, METH_VARARGS,
     "columns(values, plan) -> (decoded, columns): the fields the plan keeps, as columns (see shared/eddy/avro/native.py)."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject CodecType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "eddy.native._avro_native.Codec",
    .tp_basicsize = sizeof(Codec),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Writes flat records as Avro, byte for byte as fastavro does, and reads them back.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Codec_init,
    .tp_dealloc = (destructor)Codec_dealloc,
    .tp_methods = Codec_methods,
};
