/* Unit-test helper: run a shell command and assert it succeeded. */
#pragma once

/* test_sh: formats the command (at most 1023 bytes) and asserts that
 * system() ran it with exit status 0. */
void test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
