/*
 * Avro's primitive encodings: reading them from a cursor over a value's bytes, writing them to a growing buffer.
 * Static inline, because they are the inner loop of every file that includes them.
 */
#ifndef EDDY_AVRO_WIRE_H
#define EDDY_AVRO_WIRE_H

#include "avro_native.h"

#include <string.h>

typedef struct Cursor {
    const unsigned char *p;
    const unsigned char *end;
} Cursor;

/* A zigzag varint of at most 64 bits; 0 when the bytes run out or the number is longer. */
static inline int read_long(Cursor *c, int64_t *out) {
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

static inline int read_fixed(Cursor *c, Py_ssize_t n, const unsigned char **start) {
    if (n < 0 || c->end - c->p < n) return 0;
    *start = c->p;
    c->p += n;
    return 1;
}

/* A length-prefixed string or bytes: its start and length; 0 when the length is negative or past the end. */
static inline int read_sized(Cursor *c, const unsigned char **start, Py_ssize_t *n) {
    int64_t size;
    if (!read_long(c, &size) || size < 0 || size > (int64_t)(c->end - c->p)) return 0;
    *n = (Py_ssize_t)size;
    return read_fixed(c, *n, start);
}

static inline double read_le_double(const unsigned char *p) {
    uint64_t bits = 0;
    for (int i = 7; i >= 0; i--) bits = (bits << 8) | p[i];
    double x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

static inline double read_le_float(const unsigned char *p) {
    uint32_t bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float x;
    memcpy(&x, &bits, sizeof x);
    return (double)x;
}

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buffer;

static inline int grow(Buffer *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 1;
    Py_ssize_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    char *data = PyMem_Realloc(b->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    b->data = data;
    b->cap = cap;
    return 1;
}

static inline int put(Buffer *b, const void *src, Py_ssize_t n) {
    if (!grow(b, n)) return 0;
    if (n > 0) memcpy(b->data + b->len, src, n);
    b->len += n;
    return 1;
}

static inline int put_long(Buffer *b, int64_t value) {
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

static inline int put_double(Buffer *b, double x) {
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    unsigned char out[8];
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(bits >> (8 * i));
    return put(b, out, 8);
}

#endif
