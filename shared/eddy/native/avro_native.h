/*
 * What the files of the _avro_native extension share (one module, several sources; see pyproject.toml):
 *
 *   avro_wire.h     reading and writing Avro's primitive encodings (inline: they are the hot loop);
 *   avro_values.c   the per-value loop over a batch of values, shared by Checker and Codec;
 *   avro_checker.c  Checker: validation's fast lane, and a decoder for the records it vouches for;
 *   avro_codec.c    Codec: encode and decode flat records byte for byte as fastavro does;
 *   avro_columns.c  Codec.columns: many values straight into columns, for bulk reads;
 *   avro_module.c   the module itself (PyInit__avro_native).
 *
 * The numbering of kinds, roles and column kinds is also spelled out in shared/eddy/avro/native.py and
 * shared/eddy/avro/columns.py: change both sides together.
 */
#ifndef EDDY_AVRO_NATIVE_H
#define EDDY_AVRO_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* Symbols shared between the files, but not exported from the extension: only PyInit__avro_native is. */
#if defined(__GNUC__) || defined(__clang__)
#define EDDY_INTERNAL __attribute__((visibility("hidden")))
#else
#define EDDY_INTERNAL
#endif

/* Avro kinds, as numbered in shared/eddy/avro/native.py (KINDS). */
enum { K_NULL, K_BOOLEAN, K_INT, K_LONG, K_FLOAT, K_DOUBLE, K_STRING, K_BYTES, K_ENUM, K_FIXED };

/* ---- the per-value loop (avro_values.c) ---- */

/* Per value of a batch, ``one(self, value)``: a new reference, or NULL for "not this one" (None in the list).
 * Only running out of memory is an error; any other failure of ``one`` just means None. */
typedef PyObject *(*PerValue)(void *self, PyObject *value);

/* [one(self, v) for v in values]; the batch is copied into a tuple first, so that Python code run by ``one``
 * (a contract's regular expression, a category set's __eq__) cannot free the values under the loop. */
EDDY_INTERNAL PyObject *each_value(PyObject *values, PerValue one, void *self);

/* ---- Codec (avro_codec.c), also read by Codec.columns (avro_columns.c) ---- */

#define MAX_BRANCHES 8

typedef struct {
    int n;                   /* 0: not a union; else the number of branches */
    int kinds[MAX_BRANCHES]; /* the kind, or each branch's kind, in schema order */
} ValueType;

typedef struct {
    PyObject *name;
    int is_map;
    ValueType type;   /* of the field, or of the map's values */
    int map_nullable; /* a [null, map] union: index of null, or -1 */
} Field;

typedef struct {
    PyObject_HEAD
    unsigned char header[5];
    Field *fields;
    Py_ssize_t n_fields;
} Codec;

/* The value of a field, as fastavro would return it; NULL (error cleared, but for MemoryError) when the bytes
 * do not fit. */
struct Cursor;
EDDY_INTERNAL PyObject *read_field(struct Cursor *c, const Field *f);

/* Codec.columns(values, plan), defined in avro_columns.c. */
EDDY_INTERNAL PyObject *Codec_columns(Codec *self, PyObject *args);

/* ---- the types (avro_module.c adds them to the module) ---- */

EDDY_INTERNAL extern PyTypeObject CheckerType;
EDDY_INTERNAL extern PyTypeObject CodecType;

#endif
