/*
 * chaos_history_fuzz.c: the chaos history reader (chaos/history.h) over
 * arbitrary bytes, split into lines as chaos_ops_load() would. Every line
 * is either a record added whole or refused with words and a code; a
 * refused line leaves the history as it was; nothing crashes, leaks or
 * reads past its input. Small limits, so the limit paths run too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"
#include "meridian.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct chaos_limits limits = chaos_limits_default();
    struct chaos_ops   *ops    = NULL;
    struct chaos_error  err;

    limits.records_max   = 64;
    limits.processes_max = 8;
    limits.line_size_max = 4096;
    limits.bytes_max     = 1u << 20;
    if (chaos_ops_new(&limits, &ops) != MRD_OK) {
        return 0;
    }
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && data[i] != '\n') {
            continue;
        }
        size_t len    = i - start;
        size_t before = chaos_ops_count(ops);
        int    rv
            = chaos_ops_add_line(ops, (const char *) data + start, len, &err);
        size_t after = chaos_ops_count(ops);
        if (rv == MRD_OK ? after != before + 1 : after != before) {
            abort(); /* a line is taken whole or not at all */
        }
        if (rv != MRD_OK && err.text[0] == '\0') {
            abort(); /* every refusal has words */
        }
        start = i + 1;
    }
    chaos_ops_free(ops);
    return 0;
}
