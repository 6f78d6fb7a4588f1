/*
 * common.h: what every Meridian module shares: assertions, attributes, clocks,
 * UTF-8 checks and the error table. Pure libc; linked into libmeridian,
 * meridiand and meridianctl alike.
 */
#ifndef MRD_COMMON_H
#define MRD_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meridian.h"

#define MRD_MUST_USE __attribute__((warn_unused_result))
#define MRD_NORETURN __attribute__((noreturn))
#define MRD_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define MRD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Assertions catch our own bugs and stay on in every build. Never assert on
 * input from peers, clients or disk: reject it, count it and answer. */
MRD_NORETURN void mrd_panic(const char *file, int line, const char *expr);
#define MRD_ASSERT(e) ((e) ? (void) 0 : mrd_panic(__FILE__, __LINE__, #e))
#ifdef MRD_DEBUG
#define MRD_DEBUG_ASSERT(e) MRD_ASSERT(e)
#else
#define MRD_DEBUG_ASSERT(e) ((void) 0)
#endif

/* Milliseconds and microseconds of CLOCK_MONOTONIC, for deadlines. */
uint64_t mrd_now_mono_ms(void);
uint64_t mrd_now_mono_us(void);
/* Milliseconds since the Unix epoch, CLOCK_REALTIME, for the HLC and logs. */
uint64_t mrd_now_real_ms(void);

/* True when s[0..size) is well-formed UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF) and holds no NUL byte. */
bool mrd_utf8_valid(const char *s, size_t size);

/* Big-endian helpers for LMDB keys, so keys sort by number. */
void     mrd_be64_put(uint8_t *p, uint64_t v);
uint64_t mrd_be64_get(const uint8_t *p);
void     mrd_be32_put(uint8_t *p, uint32_t v);
uint32_t mrd_be32_get(const uint8_t *p);

#endif /* MRD_COMMON_H */
