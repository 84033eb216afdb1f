/* The provsign CLI: shared definitions for the verb implementations.
 *
 * Exit codes are a contract (docs/cli.md): scripts and CI
 * branch on them. Machine output goes to stdout only; every diagnostic goes
 * to stderr. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "provsign.h"

enum {
        CLI_EXIT_OK = 0,
        CLI_EXIT_VERIFY_FAILED = 1, /* a verification failed */
        CLI_EXIT_USAGE = 2,         /* unknown verb/option, missing or invalid argument */
        CLI_EXIT_REFUSED = 3,       /* the agent answered with a refusal status */
        CLI_EXIT_UNREACHABLE = 4,   /* cannot connect, the agent hung up mid-call, or timed out */
        CLI_EXIT_LOCAL = 5,         /* local error: file, malformed reply, out of memory */
};

struct cli_ctx {
        const char *socket_path;    /* --socket > $PROVSIGN_AGENT_SOCK > default */
        uint64_t timeout_ms;        /* --timeout > $PROVSIGN_TIMEOUT > 60 s */
        const char *timeout_text;   /* as given, for messages ("60s") */
};

/* A verb: argv[0] is the verb's name; returns a CLI_EXIT_* code. */
struct cli_verb {
        const char *name;
        int (*run)(const struct cli_ctx *ctx, int argc, char **argv);
        const char *summary;
};

int cmd_sign(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_key(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_status(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_audit(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_receipt(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_attest(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_provenance(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_verify(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_metrics(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_key_bundle(const struct cli_ctx *ctx, int argc, char **argv);

/* cli_receipt_json: the receipt of sig as the JSON object of `sign --json`
 * and --receipt (receipt-json.h); NULL on out of memory. */
json_t *cli_receipt_json(const provsign_signature *sig);

/* cli_attest_output: signs payload as a DSSE envelope (provsign_sign_dsse)
 * and writes it, one line, to out_path (NULL or "-": stdout); with
 * receipt_path, first writes {"keyid", "principal", "receipt"} there (the
 * form `provsign receipt verify` and `provsign verify --receipt` read).
 * Prints its own diagnostics; returns a CLI_EXIT_* code. */
int cli_attest_output(const struct cli_ctx *ctx, const char *verb, const char *principal, const char *type,
                      const uint8_t *payload, size_t len, const struct provsign_annotation *ann, size_t n_ann,
                      const char *out_path, const char *receipt_path);

/* cli_subcommand: runs the sub-verb argv[1] of verb from table (n
 * entries): "provsign VERB SUB ..." calls SUB's run() with argv + 1.
 * "--help"/"-h" prints the table under usage; a missing or unknown
 * sub-verb is a usage error. Returns a CLI_EXIT_* code. */
int cli_subcommand(const struct cli_ctx *ctx, const char *verb, const struct cli_verb *table, size_t n,
                   int argc, char **argv);

/* cli_usage_error: prints "provsign VERB: <message>" and
 * "Try 'provsign VERB --help'." to stderr (VERB NULL: the program) and
 * returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* cli_getopt_error: the usage error for getopt_long()'s '?' or ':' (the
 * option string must start with ':' and opterr be 0). */
int cli_getopt_error(const char *verb, int c, char **argv);

/* cli_extra_args: a usage error when positional arguments remain after
 * getopt_long(), else CLI_EXIT_OK. */
int cli_extra_args(const char *verb, int argc, char **argv);

/* cli_parse_time: RFC 3339 UTC (second or microsecond precision) to µs
 * since the epoch (cli-audit-log.c). */
int cli_parse_time(const char *s, int64_t *ret);

/* cli_connect: connects to ctx->socket_path with ctx->timeout_ms as every
 * call's deadline. CLI_EXIT_OK with *ret set, or CLI_EXIT_UNREACHABLE after
 * printing why ("timed out" for a missed deadline). */
int cli_connect(const struct cli_ctx *ctx, provsign_conn **ret);

/* cli_call_failed: maps a failed library call's result (r != 0) to an exit
 * code after printing one diagnostic line:
 *   r > 0                  "STATUS_NAME: agent's message"         -> 3
 *   -ECONNRESET/-EPIPE/... "provsign: lost connection to agent"   -> 4
 *   -ETIMEDOUT             "provsign: WHAT: timed out waiting ..." -> 4
 *   -EPROTO and the rest   "provsign: <what>: <strerror>"         -> 5 */
int cli_call_failed(const struct cli_ctx *ctx, provsign_conn *conn, int r, const char *what);

/* cli_exit_code: the exit code cli_call_failed() gives r, printing
 * nothing (0 for 0). */
int cli_exit_code(int r);

/* cli_parse_annotation: splits a --annotation KEY=VALUE argument in place
 * (argv is ours to modify) into *ret. CLI_EXIT_OK, or CLI_EXIT_USAGE after
 * printing why (no '=' or an empty KEY). */
int cli_parse_annotation(const char *verb, char *arg, struct provsign_annotation *ret);

/* cli_print_json: prints j (compact, one line) and a newline to stdout and
 * drops the reference. NULL j (a failed build, e.g. invalid UTF-8 from the
 * agent) prints a diagnostic instead. Returns a CLI_EXIT_* code. */
int cli_print_json(json_t *j);

/* cli_base64: new NUL-terminated standard base64 of in (free()), or NULL on
 * out of memory. */
char *cli_base64(const uint8_t *in, size_t len);

/* cli_format_time: RFC 3339 UTC with second precision
 * ("2025-11-25T17:34:00Z") of microseconds since the epoch, into buf.
 * false when us is 0 (unknown) or unrepresentable. */
bool cli_format_time(int64_t us, char buf[static 32]);

/* cli_read_file: reads all of path ("-": standard input), at most max
 * bytes, into a new NUL-terminated buffer (free()) with its length in
 * *ret_len (may be NULL). On failure prints "provsign: VERB: cannot read
 * WHAT PATH: reason" and returns CLI_EXIT_LOCAL. */
int cli_read_file(const char *verb, const char *what, const char *path, size_t max, char **ret, size_t *ret_len);

/* cli_write_file: writes data to path through a new file beside it,
 * renamed over path when complete; never follows a symlink at path (it is
 * replaced). The file gets the mode of the regular file it replaces, else
 * 0644 whatever the umask. On failure prints "provsign: VERB: cannot write
 * WHAT PATH: reason" and returns CLI_EXIT_LOCAL. */
int cli_write_file(const char *verb, const char *what, const char *path, const char *data, size_t len);

/* cli_write_new_file: the same, but an existing path (of any kind) is
 * never replaced: it fails with "File exists". */
int cli_write_new_file(const char *verb, const char *what, const char *path, const char *data, size_t len);

/* cli_read_trust: reads and parses the trust file at path (trust.h). On
 * failure prints "provsign: VERB: PATH:LINE: why" and returns
 * CLI_EXIT_LOCAL; release t with client_trust_done(). */
struct client_trust;
int cli_read_trust(const char *verb, const char *path, struct client_trust *t);

/* cli_audit_verify_lines: feeds the export's lines from f to v: 0
 * verified so far, 1 failed, -errno (-EIO: a read error, said here). */
typedef struct client_audit_verify client_audit_verify;
int cli_audit_verify_lines(client_audit_verify *v, FILE *f, const char *path);

/* cli_audit_verify_trust: `provsign audit verify --trust` over the tile
 * directories or export files paths[0..n) (cli-audit-trust.c). Returns a CLI_EXIT_* code. */
int cli_audit_verify_trust(const char *trust_path, const char *state_path, char **dirs, size_t n, bool json);

/* cli_file_sha256: the lowercase hex SHA-256 of the file at path. On
 * failure prints "provsign: VERB: cannot read WHAT PATH: reason" and
 * returns CLI_EXIT_LOCAL. */
int cli_file_sha256(const char *verb, const char *what, const char *path, char hex[65]);

/* cli_safe: s with every control character (C0, DEL, and C1 U+0080..U+009F)
 * and every byte of invalid UTF-8 replaced by '?', for writing
 * agent-supplied text to a terminal. Returns a static buffer (truncated at
 * 1023 bytes, never inside a character); not reentrant. */
const char *cli_safe(const char *s);

/* cli_write_text: writes agent-supplied text of several lines (a
 * checkpoint note) to f as cli_safe() would, but keeping newlines and
 * tabs; no length limit. 0, -EIO. */
int cli_write_text(FILE *f, const char *s);

/* cli_verify_metrics_count: adds one to the verification counter
 * provsign_verifications_total{outcome,reason} in the Prometheus text file
 * at path (client/cli-verify-metrics.c; created when missing), atomically
 * and under a lock. Prints its own diagnostics; returns a CLI_EXIT_* code. */
int cli_verify_metrics_count(const char *path, const char *outcome, const char *reason);
