/* Shared by the fuzzing harnesses (docs/fuzzing.md).
 *
 * Each tests/fuzz/fuzz-<name>.c defines LLVMFuzzerTestOneInput(). Built with
 * -fsanitize=fuzzer it links libFuzzer's main (`fuzz-<name>`); otherwise it
 * links main.c, which replays files and directories (`replay-<name>`, a meson
 * test over tests/fuzz/corpus/<name>/).
 *
 * A harness returns 0 for every input. An invariant that does not hold is a
 * bug: FUZZ_CHECK() prints it and aborts, which both drivers report as a
 * crash. It is not assert(): it must not vanish with NDEBUG. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                                           \
        do {                                                                                                       \
                if (!(cond)) {                                                                                     \
                        fprintf(stderr, "%s:%d: %s: invariant failed: %s\n", __FILE__, __LINE__, __func__, #cond); \
                        abort();                                                                                   \
                }                                                                                                  \
        } while (0)

#define FUZZ_N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))
