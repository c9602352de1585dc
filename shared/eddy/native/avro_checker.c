/*
 * Checker: the native half of validation's fast lane (shared/eddy/services/validation/fastlane.py),
 * and a decoder for the records it vouches for.
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
#include "avro_native.h"
#include "avro_wire.h"

#include <math.h>

/* Roles, as numbered in shared/eddy/avro/native.py. */
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
        case K_BYTES:
            if (!read_sized(&c, &s, &n)) return 0;
            break;
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

/* Per value: (key, event time) when the record is certainly valid, else NULL. */
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

#define OP_FORMAT "UiiiipddOOOn;an op is (name, kind, null_index, role, numeric, required, lo, hi, allowed, search, symbols, size)"

/* Reads one op of the program; 0 with an exception set when it is malformed. */
static int parse_op(Checker *self, PyObject *spec, Py_ssize_t i) {
    Op *op = &self->ops[i];
    PyObject *name, *allowed, *search, *symbols;
    if (!PyTuple_Check(spec)) {
        PyErr_Format(PyExc_TypeError, "op %zd is not a tuple", i);
        return 0;
    }
    if (!PyArg_ParseTuple(spec, OP_FORMAT, &name, &op->kind, &op->null_index, &op->role, &op->numeric,
                          &op->required, &op->lo, &op->hi, &allowed, &search, &symbols, &op->size))
        return 0;
    /* From here on the op owns references: clear_ops releases them, however far this got. */
    self->n_ops = i + 1;
    op->name = Py_NewRef(name);
    op->allowed = optional(allowed);
    op->search = optional(search);
    op->symbols = optional(symbols);
    if (op->kind < K_NULL || op->kind > K_FIXED || op->null_index < -1 || op->null_index > 1 ||
        op->role < R_OTHER || op->role > R_FEATURE || op->size < 0 || (op->kind == K_ENUM && !PyTuple_Check(symbols)) ||
        (op->allowed && !PyFrozenSet_Check(op->allowed)) || (op->search && !PyCallable_Check(op->search))) {
        PyErr_Format(PyExc_ValueError, "op %zd is malformed", i);
        return 0;
    }
    self->has_id |= op->role == R_ID;
    self->has_time |= op->role == R_TIME;
    return 1;
}

/* Checker(header: bytes, ops: list[tuple]); the op tuples are built by fastlane.py. Initialised once: a program
 * swapped under a check that is running Python code (a pattern's search) would be freed under it. */
static int Checker_init(Checker *self, PyObject *args, PyObject *Py_UNUSED(kwds)) {
    const char *header;
    Py_ssize_t header_len;
    PyObject *ops;
    if (self->ops != NULL) {
        PyErr_SetString(PyExc_TypeError, "a Checker is initialised once");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "y#O!", &header, &header_len, &PyList_Type, &ops)) return -1;
    if (header_len != 5) {
        PyErr_SetString(PyExc_ValueError, "the header is the 5-byte Confluent wire-format prefix");
        return -1;
    }
    /* A tuple of its own: parsing an op may run Python code (__index__, __float__) that changes the list. */
    PyObject *program = PyList_AsTuple(ops);
    if (program == NULL) return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(program);
    self->has_id = self->has_time = 0;
    memcpy(self->header, header, 5);
    self->ops = PyMem_Calloc(n ? n : 1, sizeof(Op));
    int ok = self->ops != NULL;
    if (!ok) PyErr_NoMemory();
    for (Py_ssize_t i = 0; ok && i < n; i++) ok = parse_op(self, PyTuple_GET_ITEM(program, i), i);
    Py_DECREF(program);
    if (!ok) clear_ops(self);
    return ok ? 0 : -1;
}

/* Whether the checker has a program; else TypeError (a Checker made by __new__ alone). */
static int ready(Checker *self) {
    if (self->ops != NULL) return 1;
    PyErr_SetString(PyExc_TypeError, "the Checker was not initialised");
    return 0;
}

static PyObject *Checker_check(Checker *self, PyObject *values) {
    return ready(self) ? each_value(values, check_value, self) : NULL;
}

static PyObject *Checker_decode(Checker *self, PyObject *values) {
    return ready(self) ? each_value(values, decode_checked_value, self) : NULL;
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

PyTypeObject CheckerType = {
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
