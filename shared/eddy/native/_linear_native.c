/*
 * StandardScaler | LogisticRegression (or LinearRegression) with plain SGD, one example at a time,
 * exactly as river computes it: the same operations in the same order on the same doubles, so the
 * model it leaves behind is river's model. See shared/eddy/ml/linear_kernel.py for when it applies.
 *
 * run(kinds, index, X, y, state, out, d, loss, lr, intercept_lr, l2, clip)
 *   kinds  bytes, one per operation: 0 predict, 1 learn
 *   index  int64 row of X (and y, out) each operation is about
 *   X      float64 rows of d features, row-major
 *   y      float64 target per row (0/1 for the logistic loss)
 *   state  float64, written in place: counts[d] means[d] vars[d] weights[d] intercept n_iterations
 *   out    float64 per row, written by predictions: P(true) for the logistic loss, else the value
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define LOSS_LOG 0
#define LOSS_SQUARED 1

static double sigmoid(double x) {
    /* river.utils.math.sigmoid */
    if (x < -30) return 0.0;
    if (x > 30) return 1.0;
    return 1.0 / (1.0 + exp(-x));
}

static void scale(const double *x, const double *means, const double *vars, double *xs, Py_ssize_t d) {
    /* StandardScaler.transform_one: (x - mean) / var ** 0.5, or 0.0 while the variance is 0 */
    for (Py_ssize_t j = 0; j < d; j++) {
        double v = vars[j];
        xs[j] = v != 0.0 ? (x[j] - means[j]) / pow(v, 0.5) : 0.0;
    }
}

static double raw_dot(const double *w, const double *xs, double intercept, Py_ssize_t d) {
    double dot = 0.0;
    for (Py_ssize_t j = 0; j < d; j++) dot += w[j] * xs[j];
    return dot + intercept;
}

static int aligned(const Py_buffer *b) { return ((uintptr_t)b->buf % sizeof(double)) == 0; }

static PyObject *run(PyObject *self, PyObject *args) {
    Py_buffer kinds, index, X, y, state, out;
    Py_ssize_t d;
    int loss;
    double lr, intercept_lr, l2, clip;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*w*nidddd", &kinds, &index, &X, &y, &state, &out, &d, &loss, &lr,
                          &intercept_lr, &l2, &clip))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n_ops = kinds.len;
    Py_ssize_t rows = d > 0 ? X.len / (Py_ssize_t)sizeof(double) / d : 0;
    if (d <= 0 || index.len != n_ops * (Py_ssize_t)sizeof(int64_t) || state.len != (4 * d + 2) * (Py_ssize_t)sizeof(double) ||
        y.len < rows * (Py_ssize_t)sizeof(double) || out.len < rows * (Py_ssize_t)sizeof(double)) {
        PyErr_SetString(PyExc_ValueError, "linear kernel: buffer sizes do not agree");
        goto done;
    }
    if (loss != LOSS_LOG && loss != LOSS_SQUARED) {
        PyErr_Format(PyExc_ValueError, "linear kernel: unknown loss %d", loss);
        goto done;
    }
    /* The buffers are read as int64 and double arrays: a slice at an odd offset would be misaligned loads. */
    if (!aligned(&index) || !aligned(&X) || !aligned(&y) || !aligned(&state) || !aligned(&out)) {
        PyErr_SetString(PyExc_ValueError, "linear kernel: buffers must be 8-byte aligned");
        goto done;
    }
    const uint8_t *op = (const uint8_t *)kinds.buf;
    const int64_t *at = (const int64_t *)index.buf;
    const double *xv = (const double *)X.buf, *yv = (const double *)y.buf;
    double *st = (double *)state.buf, *ov = (double *)out.buf;
    double *counts = st, *means = st + d, *vars = st + 2 * d, *w = st + 3 * d, *intercept = st + 4 * d,
           *n_iterations = st + 4 * d + 1;
    double *xs = (double *)malloc((size_t)d * sizeof(double));
    if (xs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < n_ops; k++) {
        int64_t i = at[k];
        if (i < 0 || i >= rows) continue;
        const double *x = xv + i * d;
        if (op[k] == 0) {
            scale(x, means, vars, xs, d);
            double raw = raw_dot(w, xs, *intercept, d);
            ov[i] = loss == LOSS_LOG ? sigmoid(raw) : raw;
            continue;
        }
        /* Pipeline.learn_one: the scaler learns x first, then the model learns the x it scales to */
        for (Py_ssize_t j = 0; j < d; j++) {
            counts[j] += 1.0;
            double old_mean = means[j];
            means[j] += (x[j] - old_mean) / counts[j];
            vars[j] += ((x[j] - old_mean) * (x[j] - means[j]) - vars[j]) / counts[j];
        }
        scale(x, means, vars, xs, d);
        double raw = raw_dot(w, xs, *intercept, d), g;
        if (loss == LOSS_LOG) {
            /* optim.losses.Log.gradient */
            double yt = yv[i] == 0.0 ? -1.0 : 1.0, z = raw * yt;
            if (z > 18.0)
                g = exp(-z) * -yt;
            else if (z < -18.0)
                g = -yt;
            else
                g = -yt / (exp(z) + 1.0);
        } else {
            g = 2.0 * (raw - yv[i]);
        }
        g = fmax(fmin(g, clip), -clip);
        *intercept -= intercept_lr * g;
        for (Py_ssize_t j = 0; j < d; j++) {
            double gj = xs[j] * g;
            if (l2 != 0.0) gj += w[j] * l2;
            w[j] -= lr * gj;
        }
        *n_iterations += 1.0;
    }
    Py_END_ALLOW_THREADS
    free(xs);
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&kinds);
    PyBuffer_Release(&index);
    PyBuffer_Release(&X);
    PyBuffer_Release(&y);
    PyBuffer_Release(&state);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"run", run, METH_VARARGS, "Predict and learn a sequence of examples (see the module comment)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_linear_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__linear_native(void) { return PyModule_Create(&module); }
