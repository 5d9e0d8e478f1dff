/* slurmctl.partition._scan: the partitioner's hot loop over JSON Lines, in C.
 *
 * scan_jsonl(buf, start, end, max_record) -> (bad, lines)
 *     Checks that every line of buf[start:end] (complete lines, each ending in "\n") is a valid record
 *     as partition/validity.py defines it (record_problem), and is at most max_record bytes long: one
 *     JSON value (RFC 8259) in valid UTF-8 with only spaces and tabs around it, nested at most
 *     MAX_DEPTH levels (an empty [] or {} is a level), whose \u escapes are characters (a UTF-16
 *     surrogate only as a high-low pair) and whose numbers the worker's decoder reads (an integer of
 *     at most MAX_INT_DIGITS characters; a float that does not round to infinity). Returns bad = -1
 *     and the number of lines when they all do, else bad = the offset of the first line that does not
 *     and the number of lines before it.
 *     The check is conservative: it never accepts a line record_problem refuses, but it refuses a few
 *     lines it accepts (a carriage return anywhere; a float written 0.000ddd with an exponent of 309
 *     or more that is still finite). The caller examines a refused line with the Python rules
 *     (partition/jsonl.py), so a refusal here only costs time, never a wrong verdict.
 *     Runs without the GIL: blocks can be scanned by several threads at once.
 *
 * nth_newline(buf, start, end, n) -> int
 *     Returns the offset just after the n-th "\n" at or after start (n >= 1), or -1 when
 *     buf[start:end] holds fewer than n.
 *
 * Both are pure functions of their arguments. Python 3.11+ stable C API subset; no dependencies.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <string.h>

/* The rules' version and limits, exported: partition/jsonl.py uses only a build of these rules (a
 * stale build, not rebuilt after this file changed, is ignored rather than trusted). */
#define RULES 2
#define MAX_DEPTH 512        /* validity.MAX_NESTING */
#define MAX_INT_DIGITS 4300  /* validity.MAX_INT_DIGITS */
#define MAX_EXP10 308        /* a float whose leading digit is at 10^308 may overflow, above it does */

/* The digits of 2^1024 - 2^970 (309 of them, the first at 10^308): the least decimal value that rounds
 * to infinity as a double (halfway between DBL_MAX and 2^1024, and ties go to the even 2^1024). */
static const char OVERFLOW_DIGITS[] =
    "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587"
    "207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711"
    "531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093"
    "042880177904174497792";

/* 1 for bytes that may follow one another inside a string with no further check:
 * printable ASCII except '"' and '\\'. */
static unsigned char plain[256];

static void init_tables(void) {
    for (int c = 0x20; c < 0x80; c++) plain[c] = 1;
    plain['"'] = 0;
    plain['\\'] = 0;
}

static inline int is_hex(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static inline unsigned hex_value(unsigned char c) {
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
}

/* The code unit of a \uXXXX escape at p (p[0] == '\\'), or -1 if [p, e) does not start with one. */
static inline long u_escape(const unsigned char *p, const unsigned char *e) {
    if (e - p < 6 || p[0] != '\\' || p[1] != 'u' || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]) ||
        !is_hex(p[5]))
        return -1;
    return (long)(hex_value(p[2]) << 12 | hex_value(p[3]) << 8 | hex_value(p[4]) << 4 | hex_value(p[5]));
}

static inline const unsigned char *skip_ws(const unsigned char *p, const unsigned char *e) {
    while (p < e && (*p == ' ' || *p == '\t')) p++;
    return p;
}

/* One UTF-8 sequence starting at p (p[0] >= 0x80), per Unicode table 3-7: no overlong forms, no
 * encoded surrogates, nothing above U+10FFFF (what Python's strict utf-8 decoder accepts).
 * Returns the pointer after it, or NULL. */
static inline const unsigned char *utf8_seq(const unsigned char *p, const unsigned char *e) {
    unsigned char c = p[0];
    ptrdiff_t left = e - p;
    if (c >= 0xC2 && c <= 0xDF) {
        if (left < 2 || (p[1] & 0xC0) != 0x80) return NULL;
        return p + 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (left < 3) return NULL;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
        if (p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80) return NULL;
        return p + 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (left < 4) return NULL;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
        if (p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return NULL;
        return p + 4;
    }
    return NULL;
}

/* A string body: p is just after the opening quote. Returns the pointer after the closing quote. */
static const unsigned char *scan_string(const unsigned char *p, const unsigned char *e) {
    for (;;) {
        while (p < e && plain[*p]) p++;
        if (p >= e) return NULL;
        unsigned char c = *p;
        if (c == '"') return p + 1;
        if (c == '\\') {
            if (e - p < 2) return NULL;
            c = p[1];
            if (c == 'u') {
                long unit = u_escape(p, e);
                if (unit < 0) return NULL;
                p += 6;
                if (unit >= 0xD800 && unit <= 0xDFFF) {
                    /* a surrogate: only a high half followed at once by a low half is a character */
                    if (unit >= 0xDC00) return NULL;
                    long low = u_escape(p, e);
                    if (low < 0xDC00 || low > 0xDFFF) return NULL;
                    p += 6;
                }
            } else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' ||
                       c == 'r' || c == 't') {
                p += 2;
            } else {
                return NULL;
            }
        } else if (c < 0x20) {
            return NULL; /* a raw control character: refused by both parsers */
        } else {
            p = utf8_seq(p, e);
            if (p == NULL) return NULL;
        }
    }
}

/* Whether the decimal digits [a, a_end) then [b, b_end), the first at 10^308 (and not 0), make a
 * value below 2^1024 - 2^970, i.e. a finite double. */
static int below_overflow(const unsigned char *a, const unsigned char *a_end, const unsigned char *b,
                          const unsigned char *b_end) {
    const char *t = OVERFLOW_DIGITS;
    for (;;) {
        unsigned char c;
        if (a < a_end)
            c = *a++;
        else if (b < b_end)
            c = *b++;
        else
            return *t != '\0'; /* the rest of t holds a non-zero digit: below; or equal: not below */
        if (*t == '\0') return 0; /* equal so far, and more digits follow */
        if (c != (unsigned char)*t) return c < (unsigned char)*t;
        t++;
    }
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? that the worker's decoder reads: an integer of at
 * most MAX_INT_DIGITS characters (sign included), or a float whose leading digit is below
 * 10^MAX_EXP10 (so it cannot overflow to infinity; the decoder refuses those). Returns the pointer
 * after it or NULL. */
static const unsigned char *scan_number(const unsigned char *p, const unsigned char *e) {
    const unsigned char *start = p;
    if (p < e && *p == '-') p++;
    if (p >= e) return NULL;
    const unsigned char *int_start = p;
    int zero = 0;
    if (*p == '0') {
        p++;
        zero = 1;
    } else if (*p >= '1' && *p <= '9') {
        while (p < e && is_digit(*p)) p++;
    } else {
        return NULL;
    }
    const unsigned char *int_end = p, *frac = p, *frac_end = p;
    long long int_digits = p - int_start;
    int is_float = 0;
    if (p < e && *p == '.') {
        p++;
        if (p >= e || !is_digit(*p)) return NULL;
        frac = p;
        while (p < e && is_digit(*p)) p++;
        frac_end = p;
        is_float = 1;
    }
    long long exp = 0;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        int negative = 0;
        if (p < e && (*p == '+' || *p == '-')) negative = *p++ == '-';
        if (p >= e || !is_digit(*p)) return NULL;
        for (; p < e && is_digit(*p); p++)
            if (exp < 1000000000LL) exp = exp * 10 + (*p - '0'); /* capped: only "huge" matters */
        if (negative) exp = -exp;
        is_float = 1;
    }
    if (!is_float) return p - start <= MAX_INT_DIGITS ? p : NULL; /* the sign counts, as in msgspec */
    /* 0.xxx is below 1, so below 10^exp; d.ddd (int_digits digits) is below 10^(int_digits + exp).
     * With the leading digit at 10^308 (as json.dumps writes 1e308 up to DBL_MAX) compare the digits
     * with the overflow threshold; a 0.xxx form that may reach it is left to Python. */
    long long lead = zero ? exp - 1 : int_digits - 1 + exp;
    if (lead < MAX_EXP10) return p;
    if (lead == MAX_EXP10 && !zero && below_overflow(int_start, int_end, frac, frac_end)) return p;
    return NULL;
}

/* Whether [p, e) (one line, no terminator) is exactly one JSON value with optional spaces/tabs. */
static int valid_line(const unsigned char *p, const unsigned char *e) {
    char stack[MAX_DEPTH];
    int depth = 0;
    p = skip_ws(p, e);
    if (p >= e) return 0; /* blank: the caller counts it */
value:
    if (p >= e) return 0;
    switch (*p) {
    case '{':
        if (depth >= MAX_DEPTH) return 0; /* an empty {} is a level too */
        p = skip_ws(p + 1, e);
        if (p < e && *p == '}') {
            p++;
            goto after_value;
        }
        stack[depth++] = '{';
        goto key;
    case '[':
        if (depth >= MAX_DEPTH) return 0;
        p = skip_ws(p + 1, e);
        if (p < e && *p == ']') {
            p++;
            goto after_value;
        }
        stack[depth++] = '[';
        goto value;
    case '"':
        p = scan_string(p + 1, e);
        if (p == NULL) return 0;
        goto after_value;
    case 't':
        if (e - p < 4 || memcmp(p, "true", 4) != 0) return 0;
        p += 4;
        goto after_value;
    case 'f':
        if (e - p < 5 || memcmp(p, "false", 5) != 0) return 0;
        p += 5;
        goto after_value;
    case 'n':
        if (e - p < 4 || memcmp(p, "null", 4) != 0) return 0;
        p += 4;
        goto after_value;
    default:
        p = scan_number(p, e);
        if (p == NULL) return 0;
        goto after_value;
    }
key:
    if (p >= e || *p != '"') return 0;
    p = scan_string(p + 1, e);
    if (p == NULL) return 0;
    p = skip_ws(p, e);
    if (p >= e || *p != ':') return 0;
    p = skip_ws(p + 1, e);
    goto value;
after_value:
    p = skip_ws(p, e);
    if (depth == 0) return p == e;
    if (p >= e) return 0;
    if (*p == ',') {
        p = skip_ws(p + 1, e);
        if (stack[depth - 1] == '{') goto key;
        goto value;
    }
    if ((*p == '}' && stack[depth - 1] == '{') || (*p == ']' && stack[depth - 1] == '[')) {
        depth--;
        p++;
        goto after_value;
    }
    return 0;
}

static int get_range(Py_buffer *view, Py_ssize_t *start, Py_ssize_t *end) {
    if (*start < 0 || *end > view->len || *start > *end) {
        PyErr_Format(PyExc_ValueError, "range [%zd, %zd) is outside a buffer of %zd bytes", *start, *end,
                     view->len);
        return -1;
    }
    return 0;
}

static PyObject *scan_jsonl(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, end, max_record;
    if (!PyArg_ParseTuple(args, "y*nnn", &view, &start, &end, &max_record)) return NULL;
    if (get_range(&view, &start, &end) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *base = (const unsigned char *)view.buf;
    Py_ssize_t bad = -1, lines = 0;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *p = base + start, *stop = base + end;
    while (p < stop) {
        const unsigned char *nl = memchr(p, '\n', (size_t)(stop - p));
        if (nl == NULL || nl - p > max_record || !valid_line(p, nl)) {
            bad = p - base;
            break;
        }
        lines++;
        p = nl + 1;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return Py_BuildValue("nn", bad, lines);
}

static PyObject *nth_newline(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, end, n;
    if (!PyArg_ParseTuple(args, "y*nnn", &view, &start, &end, &n)) return NULL;
    if (get_range(&view, &start, &end) < 0 || n < 1) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "n must be >= 1");
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *base = (const unsigned char *)view.buf;
    const unsigned char *p = base + start, *stop = base + end;
    Py_ssize_t result = -1;
    while (p < stop) {
        const unsigned char *nl = memchr(p, '\n', (size_t)(stop - p));
        if (nl == NULL) break;
        p = nl + 1;
        if (--n == 0) {
            result = p - base;
            break;
        }
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(result);
}

static PyMethodDef methods[] = {
    {"scan_jsonl", scan_jsonl, METH_VARARGS,
     "scan_jsonl(buf, start, end, max_record) -> (bad, lines): see the module source."},
    {"nth_newline", nth_newline, METH_VARARGS,
     "nth_newline(buf, start, end, n) -> offset after the n-th newline, or -1."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan",
                                    "The partitioner's hot loop over JSON Lines, in C.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__scan(void) {
    init_tables();
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "RULES", RULES) < 0 || PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0 ||
        PyModule_AddIntConstant(m, "MAX_INT_DIGITS", MAX_INT_DIGITS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
