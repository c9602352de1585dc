/*
 * eddy's native Avro helpers, for flat records (see shared/eddy/avro/native.py):
 *
 * - Checker: the native half of validation's fast lane (shared/eddy/services/validation/fastlane.py),
 *   and a decoder for the records it vouches for;
 * - Codec: writes a dict as Avro, byte for byte as fastavro does, and reads it back, for records
 *   whose fields are primitives, unions of primitives and maps of those (predictions, labeled examples).
 *
 * A Checker walks the Avro body of each value against a flat field program
 * compiled in Python from the stream's schema and contract, and answers
 * "certainly valid" or "not sure". It never decides that a record is invalid:
 * every "not sure" goes through the Python decoder and check_record, which
 * own the rules and the messages. So this file only has to be right about the
 * records it vouches for, and it errs towards "not sure" (odd encodings,
 * non-finite or very large numbers, Python errors).
 *
 * The checks that need Python's semantics (category membership, regular
 * expressions, str.strip) are done on real Python objects with the same
 * frozensets and compiled patterns the Python checker uses.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

enum { K_NULL, K_BOOLEAN, K_INT, K_LONG, K_FLOAT, K_DOUBLE, K_STRING, K_BYTES, K_ENUM, K_FIXED };
enum { R_OTHER, R_ID, R_TIME, R_FEATURE };

/* Integers beyond 2**53 do not convert to double exactly: range checks on them are left to Python. */
#define EXACT_INT 9007199254740992LL

typedef struct {
    PyObject *name;
    int kind;
    int null_index; /* -1: not a union; else the branch index of null in a [null, T] union */
    int role;
    int numeric;    /* the contract types the feature double or long */
    int required;
    double lo, hi;
    PyObject *allowed; /* frozenset or NULL */
    PyObject *search;  /* a compiled pattern's bound search method, or NULL */
    PyObject *symbols; /* enum symbols (tuple), or NULL */
    Py_ssize_t size;   /* fixed size */
} Op;

typedef struct {
    PyObject_HEAD
    unsigned char header[5];
    Op *ops;
    Py_ssize_t n_ops;
    int has_id, has_time; /* a program without them only decodes */
} Checker;

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} Cursor;

static int read_long(Cursor *c, int64_t *out) {
    uint64_t acc = 0;
    int shift = 0;
    while (c->p < c->end) {
        unsigned char b = *c->p++;
        if (shift == 63 && b > 1) return 0;
        acc |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)((acc >> 1) ^ (~(acc & 1) + 1));
            return 1;
        }
        shift += 7;
        if (shift > 63) return 0;
    }
    return 0;
}

static int read_fixed(Cursor *c, Py_ssize_t n, const unsigned char **start) {
    if (n < 0 || c->end - c->p < n) return 0;
    *start = c->p;
    c->p += n;
    return 1;
}

static double read_le_double(const unsigned char *p) {
    uint64_t bits = 0;
    for (int i = 7; i >= 0; i--) bits = (bits << 8) | p[i];
    double x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

static double read_le_float(const unsigned char *p) {
    uint32_t bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float x;
    memcpy(&x, &bits, sizeof x);
    return (double)x;
}

static int is_ascii(const unsigned char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i] & 0x80) return 0;
    return 1;
}

/* Whether a string has a character that str.strip() keeps (for an ASCII string). */
static int ascii_has_non_space(const unsigned char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char ch = p[i];
        if (!((ch >= 9 && ch <= 13) || (ch >= 28 && ch <= 32))) return 1;
    }
    return 0;
}

static int unicode_has_non_space(PyObject *s) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    for (Py_ssize_t i = 0; i < n; i++)
        if (!Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i))) return 1;
    return 0;
}

/* The value as Python would decode it; NULL (error cleared) when it cannot be built. */
static PyObject *as_object(const Op *op, int64_t ival, double dval, const unsigned char *s, Py_ssize_t n) {
    PyObject *obj = NULL;
    switch (op->kind) {
    case K_NULL:
        obj = Py_None;
        Py_INCREF(obj);
        break;
    case K_BOOLEAN: obj = PyBool_FromLong((long)ival); break;
    case K_INT:
    case K_LONG: obj = PyLong_FromLongLong(ival); break;
    case K_FLOAT:
    case K_DOUBLE: obj = PyFloat_FromDouble(dval); break;
    case K_STRING: obj = PyUnicode_DecodeUTF8((const char *)s, n, NULL); break;
    case K_BYTES:
    case K_FIXED: obj = PyBytes_FromStringAndSize((const char *)s, n); break;
    case K_ENUM:
        obj = PyTuple_GET_ITEM(op->symbols, (Py_ssize_t)ival);
        Py_INCREF(obj);
        break;
    }
    if (obj == NULL) PyErr_Clear();
    return obj;
}

/* Category and pattern rules on the Python value: 1 passes, 0 not sure. */
static int python_rules(const Op *op, PyObject *obj) {
    if (op->allowed != NULL) {
        int in = PySet_Contains(op->allowed, obj);
        if (in != 1) {
            PyErr_Clear();
            return 0;
        }
    }
    if (op->search != NULL && PyUnicode_Check(obj)) {
        PyObject *match = PyObject_CallOneArg(op->search, obj);
        if (match == NULL) {
            PyErr_Clear();
            return 0;
        }
        int found = match != Py_None;
        Py_DECREF(match);
        if (!found) return 0;
    }
    return 1;
}

typedef struct {
    const unsigned char *key;
    Py_ssize_t key_len;
    int64_t time;
} Verdict;

/* Store a field of a decoded record; 0 on failure (error cleared). */
static int store(PyObject *record, const Op *op, PyObject *obj) {
    if (obj == NULL) return 0;
    int failed = PyDict_SetItem(record, op->name, obj);
    Py_DECREF(obj);
    if (failed) PyErr_Clear();
    return !failed;
}

/*
 * Walk one value; 1 when it is certainly valid (and *v is filled), 0 when not sure.
 * With a dict in ``record``, every field is also stored in it, as the Python decoder would.
 */
static int check_one(const Checker *self, const unsigned char *data, Py_ssize_t len, Verdict *v, PyObject *record) {
    if (len < 5 || memcmp(data, self->header, 5) != 0) return 0;
    Cursor c = {data + 5, data + len};
    int have_key = 0, have_time = 0;
    for (Py_ssize_t i = 0; i < self->n_ops; i++) {
        const Op *op = &self->ops[i];
        if (op->null_index >= 0) {
            int64_t branch;
            if (!read_long(&c, &branch) || (branch != 0 && branch != 1)) return 0;
            if (branch == op->null_index) {
                if (op->required || op->role == R_ID || op->role == R_TIME) return 0;
                if (record != NULL) {
                    Py_INCREF(Py_None);
                    if (!store(record, op, Py_None)) return 0;
                }
                continue;
            }
        }
        int64_t ival = 0;
        double dval = 0.0;
        const unsigned char *s = NULL;
        Py_ssize_t n = 0;
        switch (op->kind) {
        case K_NULL: break;
        case K_BOOLEAN:
            if (c.p >= c.end || *c.p > 1) return 0;
            ival = *c.p++;
            break;
        case K_INT:
            if (!read_long(&c, &ival) || ival < INT32_MIN || ival > INT32_MAX) return 0;
            break;
        case K_LONG:
            if (!read_long(&c, &ival)) return 0;
            break;
        case K_FLOAT:
            if (!read_fixed(&c, 4, &s)) return 0;
            dval = read_le_float(s);
            break;
        case K_DOUBLE:
            if (!read_fixed(&c, 8, &s)) return 0;
            dval = read_le_double(s);
            break;
        case K_STRING:
        case K_BYTES: {
            int64_t size;
            if (!read_long(&c, &size) || size < 0 || size > (int64_t)(c.end - c.p)) return 0;
            if (!read_fixed(&c, (Py_ssize_t)size, &s)) return 0;
            n = (Py_ssize_t)size;
            break;
        }
        case K_ENUM:
            if (!read_long(&c, &ival) || ival < 0 || ival >= PyTuple_GET_SIZE(op->symbols)) return 0;
            break;
        case K_FIXED:
            if (!read_fixed(&c, op->size, &s)) return 0;
            n = op->size;
            break;
        default: return 0;
        }
        int ascii = op->kind == K_STRING ? is_ascii(s, n) : 1;
        if (op->role == R_ID) {
            if (ascii) {
                if (!ascii_has_non_space(s, n)) return 0;
            } else {
                PyObject *str = as_object(op, 0, 0.0, s, n);
                if (str == NULL) return 0;
                int ok = unicode_has_non_space(str);
                Py_DECREF(str);
                if (!ok) return 0;
            }
            v->key = s;
            v->key_len = n;
            have_key = 1;
        } else if (op->role == R_TIME) {
            if (ival <= 0) return 0;
            v->time = ival;
            have_time = 1;
        }
        if (op->role == R_FEATURE && op->numeric) {
            if (op->kind == K_INT || op->kind == K_LONG) {
                if (ival > EXACT_INT || ival < -EXACT_INT) return 0;
                dval = (double)ival;
            } else if (op->kind != K_FLOAT && op->kind != K_DOUBLE) {
                return 0;
            }
            /* NaN fails both comparisons; infinities are refused as Python refuses them. */
            if (!(dval >= op->lo && dval <= op->hi) || isinf(dval)) return 0;
        }
        if (op->role == R_FEATURE && (op->allowed != NULL || op->search != NULL)) {
            PyObject *obj = as_object(op, ival, dval, s, n);
            if (obj == NULL) return 0;
            int ok = python_rules(op, obj);
            if (!ok) {
                Py_DECREF(obj);
                return 0;
            }
            if (record != NULL) {
                if (!store(record, op, obj)) return 0;
            } else {
                Py_DECREF(obj);
            }
        } else if (record != NULL) {
            /* Also refuses bad UTF-8, as the Python decoder does. */
            if (!store(record, op, as_object(op, ival, dval, s, n))) return 0;
        } else if (!ascii) {
            /* The Python decoder refuses bad UTF-8: so must this. */
            PyObject *str = as_object(op, 0, 0.0, s, n);
            if (str == NULL) return 0;
            Py_DECREF(str);
        }
    }
    return c.p == c.end && have_key == self->has_id && have_time == self->has_time;
}

/* Per value of a sequence, ``one(self, value)``: a new reference, or NULL for "not this one" (None in the list).
 * Only running out of memory is an error; any other failure of ``one`` just means None. */
typedef PyObject *(*PerValue)(void *self, PyObject *value);

static PyObject *each_value(PyObject *values, PerValue one, void *self) {
    PyObject *seq = PySequence_Fast(values, "a sequence of bytes values is expected");
    if (seq == NULL) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *out = PyList_New(count);
    for (Py_ssize_t i = 0; out != NULL && i < count; i++) {
        PyObject *result = one(self, items[i]);
        if (result == NULL) {
            if (PyErr_ExceptionMatches(PyExc_MemoryError)) {
                Py_CLEAR(out);
                break;
            }
            PyErr_Clear();
            result = Py_NewRef(Py_None);
        }
        PyList_SET_ITEM(out, i, result);
    }
    Py_DECREF(seq);
    return out;
}

static PyObject *check_value(void *self, PyObject *item) {
    Verdict v = {NULL, 0, 0};
    if (!PyBytes_Check(item) ||
        !check_one(self, (const unsigned char *)PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item), &v, NULL))
        return NULL;
    PyObject *key = PyBytes_FromStringAndSize((const char *)v.key, v.key_len);
    PyObject *time = key ? PyLong_FromLongLong(v.time) : NULL;
    PyObject *result = time ? PyTuple_Pack(2, key, time) : NULL;
    Py_XDECREF(key);
    Py_XDECREF(time);
    return result;
}

static PyObject *decode_checked_value(void *self, PyObject *item) {
    Verdict v = {NULL, 0, 0};
    PyObject *record = PyBytes_Check(item) ? PyDict_New() : NULL;
    if (record != NULL &&
        !check_one(self, (const unsigned char *)PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item), &v, record))
        Py_CLEAR(record);
    return record;
}

static PyObject *Checker_check(Checker *self, PyObject *values) { return each_value(values, check_value, self); }

static PyObject *Checker_decode(Checker *self, PyObject *values) {
    return each_value(values, decode_checked_value, self);
}

static void clear_ops(Checker *self) {
    for (Py_ssize_t i = 0; i < self->n_ops; i++) {
        Py_CLEAR(self->ops[i].name);
        Py_CLEAR(self->ops[i].allowed);
        Py_CLEAR(self->ops[i].search);
        Py_CLEAR(self->ops[i].symbols);
    }
    PyMem_Free(self->ops);
    self->ops = NULL;
    self->n_ops = 0;
}

static PyObject *optional(PyObject *obj) {
    if (obj == Py_None) return NULL;
    Py_INCREF(obj);
    return obj;
}

/* Checker(header: bytes, ops: list[tuple]); the op tuples are built by fastlane.py. */
static int Checker_init(Checker *self, PyObject *args, PyObject *Py_UNUSED(kwds)) {
    const char *header;
    Py_ssize_t header_len;
    PyObject *ops;
    if (!PyArg_ParseTuple(args, "y#O!", &header, &header_len, &PyList_Type, &ops)) return -1;
    if (header_len != 5) {
        PyErr_SetString(PyExc_ValueError, "the header is the 5-byte Confluent wire-format prefix");
        return -1;
    }
    clear_ops(self);
    self->has_id = self->has_time = 0;
    memcpy(self->header, header, 5);
    Py_ssize_t n = PyList_GET_SIZE(ops);
    self->ops = PyMem_Calloc(n ? n : 1, sizeof(Op));
    if (self->ops == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Op *op = &self->ops[i];
        PyObject *name, *allowed, *search, *symbols;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(ops, i), "UiiiipddOOOn;an op is (name, kind, null_index, role, numeric, "
                              "required, lo, hi, allowed, search, symbols, size)",
                              &name, &op->kind, &op->null_index, &op->role, &op->numeric, &op->required, &op->lo, &op->hi,
                              &allowed, &search, &symbols, &op->size)) {
            self->n_ops = i;
            return -1;
        }
        self->n_ops = i + 1;
        self->has_id |= op->role == R_ID;
        self->has_time |= op->role == R_TIME;
        Py_INCREF(name);
        op->name = name;
        op->allowed = optional(allowed);
        op->search = optional(search);
        op->symbols = optional(symbols);
        if (op->kind < K_NULL || op->kind > K_FIXED || (op->kind == K_ENUM && !PyTuple_Check(symbols)) ||
            (op->allowed && !PyFrozenSet_Check(op->allowed))) {
            PyErr_Format(PyExc_ValueError, "op %zd is malformed", i);
            return -1;
        }
    }
    return 0;
}

static void Checker_dealloc(Checker *self) {
    clear_ops(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Checker_methods[] = {
    {"check", (PyCFunction)Checker_check, METH_O,
     "check(values) -> list: per value, (key, event_time_ms) if certainly valid, else None."},
    {"decode", (PyCFunction)Checker_decode, METH_O,
     "decode(values) -> list: per value, the decoded record (a dict) if certainly valid, else None."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CheckerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "eddy.native._avro_native.Checker",
    .tp_basicsize = sizeof(Checker),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A compiled field program that vouches for valid Avro records without decoding them.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Checker_init,
    .tp_dealloc = (destructor)Checker_dealloc,
    .tp_methods = Checker_methods,
};

/* ---------------------------------------------------------------------------------------------------------------
 * Codec: a dict to Avro and back, for flat records whose fields are primitives, unions of primitives, or maps.
 * Anything it does not expect (a missing field, a value of another type, an int beyond 64 bits) makes encode()
 * return None, and the caller falls back to fastavro, which raises the proper error or handles the odd case.
 * ------------------------------------------------------------------------------------------------------------- */

#define MAX_BRANCHES 8

typedef struct {
    int n;                     /* 0: not a union; else the number of branches */
    int kinds[MAX_BRANCHES];   /* the kind, or each branch's kind, in schema order */
} ValueType;

typedef struct {
    PyObject *name;
    int is_map;
    ValueType type; /* of the field, or of the map's values */
    int map_nullable; /* a [null, map] union: index of null, or -1 */
} Field;

typedef struct {
    PyObject_HEAD
    unsigned char header[5];
    Field *fields;
    Py_ssize_t n_fields;
} Codec;

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buffer;

static int grow(Buffer *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 1;
    Py_ssize_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    char *data = PyMem_Realloc(b->data, cap);
    if (data == NULL) return 0;
    b->data = data;
    b->cap = cap;
    return 1;
}

static int put(Buffer *b, const void *src, Py_ssize_t n) {
    if (!grow(b, n)) return 0;
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return 1;
}

static int put_long(Buffer *b, int64_t value) {
    uint64_t z = ((uint64_t)value << 1) ^ (uint64_t)(value >> 63);
    unsigned char out[10];
    int n = 0;
    while (z >= 0x80) {
        out[n++] = (unsigned char)(z | 0x80);
        z >>= 7;
    }
    out[n++] = (unsigned char)z;
    return put(b, out, n);
}

static int put_double(Buffer *b, double x) {
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    unsigned char out[8];
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(bits >> (8 * i));
    return put(b, out, 8);
}

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

static PyObject *Codec_encode(Codec *self, PyObject *record) {
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

static int parse_value_type(PyObject *spec, ValueType *t) {
    /* An int (a primitive kind) or a tuple of ints (a union's branch kinds). */
    if (PyLong_Check(spec)) {
        t->n = 0;
        t->kinds[0] = (int)PyLong_AsLong(spec);
        return !PyErr_Occurred();
    }
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) < 1 || PyTuple_GET_SIZE(spec) > MAX_BRANCHES) return 0;
    t->n = (int)PyTuple_GET_SIZE(spec);
    for (int i = 0; i < t->n; i++) {
        t->kinds[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, i));
        if (PyErr_Occurred()) return 0;
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
        if (!read_long(c, &x) || x < 0 || x > (int64_t)(c->end - c->p)) return NULL;
        if (!read_fixed(c, (Py_ssize_t)x, &s)) return NULL;
        PyObject *str = PyUnicode_DecodeUTF8((const char *)s, (Py_ssize_t)x, NULL);
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

static PyObject *read_field(Cursor *c, const Field *f) {
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

static PyObject *Codec_decode(Codec *self, PyObject *values) { return each_value(values, decode_value, self); }

/* ---------------------------------------------------------------------------------------------------------------
 * Codec.columns: many values straight into columns, for bulk reads (backtests) that would otherwise build a dict
 * per record only to take a few fields out of it again. Per field the plan says what to keep:
 *   COL_SKIP    read past it;
 *   COL_DOUBLE  a float64 column (booleans, ints and doubles, as float() gives them) and a null flag per row;
 *   COL_INT64   an int64 column (ints) and a null flag per row;
 *   COL_OBJECT  a list of the values, as decode() gives them.
 * A value this code does not read entirely, or whose field does not fit its column, is marked not decoded:
 * the caller decodes it the slow way and fills its row in.
 * ------------------------------------------------------------------------------------------------------------- */

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
        int64_t n;
        const unsigned char *s;
        return read_long(c, &n) && n >= 0 && n <= (int64_t)(c->end - c->p) && read_fixed(c, (Py_ssize_t)n, &s);
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

/* columns(values, plan) -> (decoded: bytearray, [per field: None | list | (bytearray data, bytearray nulls)]) */
static PyObject *Codec_columns(Codec *self, PyObject *args) {
    PyObject *values, *plan;
    if (!PyArg_ParseTuple(args, "OO", &values, &plan)) return NULL;
    PyObject *seq = PySequence_Fast(values, "a sequence of bytes values is expected");
    if (seq == NULL) return NULL;
    PyObject *kinds = PySequence_Fast(plan, "the plan is a sequence of column kinds, one per field");
    if (kinds == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    PyObject *result = NULL, *decoded = NULL, *out = NULL;
    Column *cols = NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), n_fields = self->n_fields;
    if (PySequence_Fast_GET_SIZE(kinds) != n_fields) {
        PyErr_Format(PyExc_ValueError, "the plan has %zd kinds for %zd fields", PySequence_Fast_GET_SIZE(kinds), n_fields);
        goto done;
    }
    cols = PyMem_Calloc(n_fields ? n_fields : 1, sizeof(Column));
    decoded = PyByteArray_FromStringAndSize(NULL, n);
    out = PyList_New(n_fields);
    if (cols == NULL || decoded == NULL || out == NULL) {
        if (cols == NULL) PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < n_fields; k++) {
        long kind = PyLong_AsLong(PySequence_Fast_GET_ITEM(kinds, k));
        if (kind == -1 && PyErr_Occurred()) goto done;
        if (kind < COL_SKIP || kind > COL_OBJECT) {
            PyErr_Format(PyExc_ValueError, "unknown column kind %ld", kind);
            goto done;
        }
        cols[k].kind = (int)kind;
        PyObject *column;
        if (kind == COL_SKIP) {
            column = Py_NewRef(Py_None);
        } else if (kind == COL_OBJECT) {
            column = cols[k].list = PyList_New(n);
            for (Py_ssize_t row = 0; column != NULL && row < n; row++) PyList_SET_ITEM(column, row, Py_NewRef(Py_None));
        } else {
            PyObject *data = PyByteArray_FromStringAndSize(NULL, 8 * n);
            PyObject *nulls = PyByteArray_FromStringAndSize(NULL, n);
            column = data && nulls ? PyTuple_Pack(2, data, nulls) : NULL;
            if (column != NULL) {
                cols[k].data = PyByteArray_AS_STRING(data);
                cols[k].nulls = PyByteArray_AS_STRING(nulls);
                memset(cols[k].data, 0, 8 * n);
                memset(cols[k].nulls, 1, n);
            }
            Py_XDECREF(data);
            Py_XDECREF(nulls);
        }
        if (column == NULL) goto done;
        PyList_SET_ITEM(out, k, column);
    }
    char *ok = PyByteArray_AS_STRING(decoded);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t row = 0; row < n; row++) {
        PyObject *item = items[row];
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
    Py_DECREF(kinds);
    Py_DECREF(seq);
    return result;
}

static void Codec_clear(Codec *self) {
    for (Py_ssize_t i = 0; i < self->n_fields; i++) Py_CLEAR(self->fields[i].name);
    PyMem_Free(self->fields);
    self->fields = NULL;
    self->n_fields = 0;
}

/* Codec(header: bytes, fields: list[(name, is_map, map_null_index, type)]); built by shared/eddy/avro/native.py. */
static int Codec_init(Codec *self, PyObject *args, PyObject *Py_UNUSED(kwds)) {
    const char *header;
    Py_ssize_t header_len;
    PyObject *fields;
    if (!PyArg_ParseTuple(args, "y#O!", &header, &header_len, &PyList_Type, &fields)) return -1;
    if (header_len != 5) {
        PyErr_SetString(PyExc_ValueError, "the header is the 5-byte Confluent wire-format prefix");
        return -1;
    }
    Codec_clear(self);
    memcpy(self->header, header, 5);
    Py_ssize_t n = PyList_GET_SIZE(fields);
    self->fields = PyMem_Calloc(n ? n : 1, sizeof(Field));
    if (self->fields == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Field *f = &self->fields[i];
        PyObject *name, *type;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(fields, i), "UpiO;a field is (name, is_map, map_null_index, type)",
                              &name, &f->is_map, &f->map_nullable, &type))
            return -1;
        Py_INCREF(name);
        f->name = name;
        self->n_fields = i + 1;
        if (!parse_value_type(type, &f->type)) {
            if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "field %zd has a malformed type", i);
            return -1;
        }
    }
    return 0;
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

static PyTypeObject CodecType = {
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

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_avro_native", "Native Avro checks, decoding and encoding of flat records.", -1, NULL, NULL, NULL, NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__avro_native(void) {
    if (PyType_Ready(&CheckerType) < 0 || PyType_Ready(&CodecType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&CheckerType);
    if (PyModule_AddObject(m, "Checker", (PyObject *)&CheckerType) < 0) {
        Py_DECREF(&CheckerType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&CodecType);
    if (PyModule_AddObject(m, "Codec", (PyObject *)&CodecType) < 0) {
        Py_DECREF(&CodecType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
