/*
 * common.c: the error table, assertions, clocks and small codecs shared by
 * every module. Nothing here allocates.
 */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const struct {
    const char *name;
    const char *text;
} mrd_err_table[] = {
#define MRD_ERR_ROW_(name, code, text) [code] = { "MRD_" #name, text },
    MRD_ERRORS(MRD_ERR_ROW_)
#undef MRD_ERR_ROW_
};

const char *
mrd_strerror(int err)
{
    if (err < 0 || (size_t) err >= MRD_ARRAY_SIZE(mrd_err_table)
        || mrd_err_table[err].text == NULL) {
        return "unknown error code";
    }
    return mrd_err_table[err].text;
}

const char *
mrd_errname(int err)
{
    if (err < 0 || (size_t) err >= MRD_ARRAY_SIZE(mrd_err_table)
        || mrd_err_table[err].name == NULL) {
        return "MRD_EUNKNOWN";
    }
    return mrd_err_table[err].name;
}

const char *
mrd_state_type_name(int type)
{
    static const char *const names[] = {
        [MRD_STATE_COUNTER] = "counter",
        [MRD_STATE_LWW]     = "lww",
        [MRD_STATE_MVREG]   = "mvreg",
        [MRD_STATE_FLAG]    = "flag",
        [MRD_STATE_SET]     = "set",
        [MRD_STATE_MAP]     = "map",
    };
    if (type < 0 || (size_t) type >= MRD_ARRAY_SIZE(names)
        || names[type] == NULL) {
        return "?";
    }
    return names[type];
}

void
mrd_panic(const char *file, int line, const char *expr)
{
    fprintf(
        stderr, "meridian: assertion failed: %s (%s:%d)\n", expr, file, line);
    fflush(stderr);
    abort();
}

static uint64_t
mrd_clock_ns(clockid_t id)
{
    struct timespec ts;
    int             rv = clock_gettime(id, &ts);
    MRD_ASSERT(rv == 0); /* only fails for an invalid clock id */
    return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

uint64_t
mrd_now_mono_ms(void)
{
    return mrd_clock_ns(CLOCK_MONOTONIC) / 1000000u;
}

uint64_t
mrd_now_mono_us(void)
{
    return mrd_clock_ns(CLOCK_MONOTONIC) / 1000u;
}

uint64_t
mrd_now_real_ms(void)
{
    return mrd_clock_ns(CLOCK_REALTIME) / 1000000u;
}

/* Checks one multi-byte sequence starting at s[i] with lead byte c; returns
 * its length, or 0 when it is malformed. Follows RFC 3629, table 3-7. */
static size_t
mrd_utf8_seq(const unsigned char *s, size_t size, size_t i)
{
    unsigned char c = s[i];
    size_t        n;
    unsigned char lo = 0x80, hi = 0xBF;

    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) {
            lo = 0xA0; /* overlong */
        } else if (c == 0xED) {
            hi = 0x9F; /* surrogates */
        }
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) {
            lo = 0x90; /* overlong */
        } else if (c == 0xF4) {
            hi = 0x8F; /* above U+10FFFF */
        }
    } else {
        return 0;
    }
    if (size - i < n) {
        return 0;
    }
    if (s[i + 1] < lo || s[i + 1] > hi) {
        return 0;
    }
    for (size_t k = 2; k < n; k++) {
        if (s[i + k] < 0x80 || s[i + k] > 0xBF) {
            return 0;
        }
    }
    return n;
}

bool
mrd_utf8_valid(const char *str, size_t size)
{
    const unsigned char *s = (const unsigned char *) str;
    size_t               i = 0;

    while (i < size) {
        if (s[i] == 0) {
            return false;
        }
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = mrd_utf8_seq(s, size, i);
        if (n == 0) {
            return false;
        }
        i += n;
    }
    return true;
}

int
mrd_stream_name_check(const char *name, size_t size)
{
    if (name == NULL || size == 0 || size > MRD_STREAM_NAME_SIZE_MAX) {
        return MRD_ENAME;
    }
    return mrd_utf8_valid(name, size) ? MRD_OK : MRD_ENAME;
}

void
mrd_be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t) v;
        v >>= 8;
    }
}

uint64_t
mrd_be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

void
mrd_be32_put(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        p[i] = (uint8_t) v;
        v >>= 8;
    }
}

uint32_t
mrd_be32_get(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}
