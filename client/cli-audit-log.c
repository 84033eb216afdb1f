/* provsign audit export | verify | proof | find (issue 5).
 *
 * Export and find are streamed replies (several Response frames for one
 * request), which the one-request-one-reply library API does not carry:
 * this file speaks the framed protocol itself over its own connection
 * (proto/frame.h), one frame in memory at a time. Verify is offline
 * (audit-log.c). Nothing here is part of libprovsign. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "audit-log.h"
#include "cli.h"
#include "frame.h"
#include "names.h"
#include "receipt-json.h"
#include "receipt.h"

int cmd_audit_export(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_audit_verify(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_audit_proof(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_audit_find(const struct cli_ctx *ctx, int argc, char **argv);

/* ---- The streamed transport ---- */

static int stream_connect(const struct cli_ctx *ctx, int *ret_fd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const char *path = ctx->socket_path;
        if (strlen(path) >= sizeof sa.sun_path) {
                fprintf(stderr, "provsign: cannot reach agent at %s: path too long\n", path);
                return CLI_EXIT_UNREACHABLE;
        }
        strcpy(sa.sun_path, path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                fprintf(stderr, "provsign: cannot reach agent at %s: %m\n", path);
                if (fd >= 0)
                        close(fd);
                return CLI_EXIT_UNREACHABLE;
        }
        *ret_fd = fd;
        return CLI_EXIT_OK;
}

static int send_request(int fd, Provsign__Request *req) {
        uint8_t *buf;
        size_t len;
        req->protocol_version = PROVSIGN_PROTOCOL_VERSION;
        int r = proto_frame_pack(&req->base, &buf, &len);
        if (r < 0)
                return r;
        size_t off = 0;
        while (off < len) {
                ssize_t k = send(fd, buf + off, len - off, MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        r = k < 0 ? -errno : -EPIPE;
                        break;
                }
                off += (size_t) k;
        }
        free(buf);
        return r;
}

static int read_exact(int fd, uint8_t *p, size_t n) {
        size_t got = 0;
        while (got < n) {
                ssize_t k = read(fd, p + got, n - got);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        return got ? -EPROTO : -ECONNRESET;
                got += (size_t) k;
        }
        return 0;
}

/* One Response frame; the caller frees it. */
static int read_response(int fd, Provsign__Response **ret) {
        uint8_t hdr[PROTO_FRAME_HEADER], *payload;
        size_t len;
        int r = read_exact(fd, hdr, sizeof hdr);
        if (r < 0)
                return r;
        if (proto_frame_peek(hdr, sizeof hdr, PROTO_FRAME_MAX, &len) <= 0)
                return -EPROTO;
        payload = malloc(len ? len : 1);
        if (!payload)
                return -ENOMEM;
        r = read_exact(fd, payload, len);
        if (r == -ECONNRESET)
                r = -EPROTO;
        Provsign__Response *resp = r < 0 ? NULL : provsign__response__unpack(NULL, len, payload);
        free(payload);
        if (r < 0)
                return r;
        if (!resp)
                return -EPROTO;
        *ret = resp;
        return 0;
}

/* A refusal or a transport failure, as cli_call_failed() words them. */
static int stream_failed(const struct cli_ctx *ctx, const char *verb, int r, const Provsign__Response *resp) {
        if (resp) {
                fprintf(stderr, "%s: %s\n", proto_status_name((int) resp->status), cli_safe(resp->message));
                return CLI_EXIT_REFUSED;
        }
        if (r == -ECONNRESET || r == -EPIPE) {
                fprintf(stderr, "provsign: lost connection to agent at %s: %s\n", ctx->socket_path, strerror(-r));
                return CLI_EXIT_UNREACHABLE;
        }
        if (r == -EPROTO) {
                fprintf(stderr, "provsign: %s: malformed reply from agent at %s\n", verb, ctx->socket_path);
                return CLI_EXIT_LOCAL;
        }
        fprintf(stderr, "provsign: %s: %s\n", verb, strerror(-r));
        return CLI_EXIT_LOCAL;
}

/* Connects and sends req: CLI_EXIT_OK with *ret_fd, or the exit code after
 * saying why (and *ret_fd -1). */
static int stream_request(const struct cli_ctx *ctx, const char *verb, Provsign__Request *req, int *ret_fd) {
        int fd, r = stream_connect(ctx, &fd);
        *ret_fd = -1;
        if (r != CLI_EXIT_OK)
                return r;
        r = send_request(fd, req);
        if (r < 0) {
                close(fd);
                return stream_failed(ctx, verb, r, NULL);
        }
        *ret_fd = fd;
        return CLI_EXIT_OK;
}

static int parse_u64(const char *s, uint64_t *ret) {
        uint64_t v = 0;
        if (!*s)
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t) (*s - '0')) / 10)
                        return -EINVAL;
                v = v * 10 + (uint64_t) (*s - '0');
        }
        *ret = v;
        return 0;
}

/* ---- Output of entries ---- */

enum format { FORMAT_JSONL, FORMAT_CSV };

static void csv_cell(FILE *f, const char *s) {
        if (!strpbrk(s, ",\"\r\n")) {
                fputs(s, f);
                return;
        }
        fputc('"', f);
        for (; *s; s++) {
                if (*s == '"')
                        fputc('"', f);
                fputc(*s, f);
        }
        fputc('"', f);
}

static json_t *b64_list(ProtobufCBinaryData *h, size_t n);

/* One entry; proof (a sparse export's inclusion proof, stolen) is added to
 * the JSON object as "inclusion_proof". */
static int print_entry(enum format fmt, const uint8_t *leaf, size_t n, uint64_t *ret_seq, json_t *proof) {
        Provsign__AuditEntry *e = provsign__audit_entry__unpack(NULL, n, leaf);
        if (!e) {
                json_decref(proof);
                return -EPROTO;
        }
        *ret_seq = e->seq;
        json_t *o = client_audit_entry_json(e, leaf, n);
        provsign__audit_entry__free_unpacked(e, NULL);
        if (!o || (proof && json_object_set_new(o, "inclusion_proof", proof) < 0)) {
                if (!o)
                        json_decref(proof);
                json_decref(o);
                return -EPROTO;
        }
        int r = 0;
        if (fmt == FORMAT_JSONL) {
                if (json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER) < 0)
                        r = -EIO;
                fputc('\n', stdout);
        } else {
                for (size_t i = 0; i < CLIENT_AUDIT_N_COLUMNS; i++) {
                        json_t *v = json_object_get(o, client_audit_columns[i]);
                        if (i)
                                fputc(',', stdout);
                        if (json_is_string(v))
                                csv_cell(stdout, json_string_value(v));
                        else if (json_is_integer(v))
                                printf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
                        else if (json_is_object(v)) {
                                char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
                                if (!s)
                                        r = -ENOMEM;
                                else
                                        csv_cell(stdout, s);
                                free(s);
                        }
                }
                fputc('\n', stdout);
        }
        json_decref(o);
        return r;
}

static json_t *b64_list(ProtobufCBinaryData *h, size_t n) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < n; i++) {
                char *s = cli_base64(h[i].data, h[i].len);
                if (!s || json_array_append_new(a, json_string(s)) < 0) {
                        json_decref(a);
                        a = NULL;
                }
                free(s);
        }
        return a;
}

/* ---- Filters (export and find) ---- */

static int parse_time(const char *s, int64_t *ret) {
        char buf[PROTO_TIME_LEN + 1];
        /* Second precision "…:SSZ" is the same instant with .000000. */
        if (strlen(s) == 20 && s[19] == 'Z') {
                memcpy(buf, s, 19);
                memcpy(buf + 19, ".000000Z", 9);
                s = buf;
        }
        return proto_time_parse_us(s, ret);
}

struct filter_opts {
        uint8_t digest[48];
        ProtobufCBinaryData digest_bin;
        char *principal, *keyid;     /* borrowed from argv; "" when not given */
        int64_t since_us, until_us;
};

#define FILTER_OPTIONS \
        { "digest", required_argument, NULL, 'd' }, \
        { "principal", required_argument, NULL, 'P' }, \
        { "key", required_argument, NULL, 'K' }, \
        { "since", required_argument, NULL, 's' }, \
        { "until", required_argument, NULL, 'u' }
#define FILTER_SHORT "d:P:K:s:u:"

/* One filter option c (FILTER_OPTIONS): 1 when it was one and is valid, 0
 * when c is not a filter option, or the usage error's exit code (< 0 as
 * -code). */
static int filter_opt(const char *verb, int c, const char *arg, struct filter_opts *f) {
        int alg;
        size_t dlen;
        switch (c) {
        case 'd':
                if (proto_digest_spec_parse(arg, &alg, f->digest, &dlen) < 0)
                        return -cli_usage_error(verb, "invalid --digest '%s': expected sha256:HEX or sha384:HEX", arg);
                f->digest_bin = (ProtobufCBinaryData){ .len = dlen, .data = f->digest };
                return 1;
        case 'P':
                f->principal = (char *) arg;
                return 1;
        case 'K':
                f->keyid = (char *) arg;
                return 1;
        case 's':
                if (parse_time(arg, &f->since_us) < 0 || f->since_us == 0)
                        return -cli_usage_error(verb, "invalid --since '%s': expected RFC 3339 UTC", arg);
                return 1;
        case 'u':
                if (parse_time(arg, &f->until_us) < 0 || f->until_us == 0)
                        return -cli_usage_error(verb, "invalid --until '%s': expected RFC 3339 UTC", arg);
                return 1;
        default:
                return 0;
        }
}

static bool filter_any(const struct filter_opts *f) {
        return f->digest_bin.len || f->principal[0] || f->keyid[0] || f->since_us || f->until_us;
}

#define FILTER_HELP \
        "  -d, --digest ALG:HEX     entries whose digest, or an annotation value of the\n" \
        "                           form sha256:HEX, is ALG:HEX (sha256 or sha384)\n" \
        "  -P, --principal NAME     entries of principal NAME\n" \
        "  -K, --key KEYID          entries naming key KEYID (signatures, key events)\n" \
        "  -s, --since T            logged at or after T (RFC 3339 UTC, e.g.\n" \
        "                           2026-11-25T18:20:01Z or with microseconds)\n" \
        "  -u, --until T            logged at or before T\n"

/* ---- audit export ---- */

static void export_help(void) {
        printf("Usage: provsign audit export [--from-seq SEQ] [--to-seq SEQ] [--previous-size M]\n"
               "                             [--digest ALG:HEX] [--principal NAME] [--key KEYID]\n"
               "                             [--since T] [--until T] [--format jsonl|csv]\n"
               "\n"
               "Streams the agent's audit log to stdout (auditor role). JSON Lines: one\n"
               "object per entry (seq, time, event, uid, gid, pid, exe, principal, keyid,\n"
               "digest, payload_type, annotations, status, leaf), then one final object\n"
               "with the signed checkpoint covering every exported entry, its tree_size,\n"
               "the left/right hashes tying the range to its root and, with\n"
               "--previous-size, the consistency proof from that size. Check it offline\n"
               "with 'provsign audit verify'. CSV has the entry columns only (for\n"
               "spreadsheets; it cannot be verified).\n"
               "\n"
               "With a filter (--digest, --principal, --key, --since, --until) the export\n"
               "is sparse: only the matching entries of the range, found through the\n"
               "agent's index. It starts with the checkpoint object (\"sparse\": true),\n"
               "each entry carries its \"inclusion_proof\" in the checkpoint's tree, and\n"
               "it ends with {\"end\": true, \"entries\": N}.\n"
               "\n"
               "  -f, --from-seq SEQ       first entry (default 0; also --from)\n"
               "  -t, --to-seq SEQ         last entry, inclusive (default: the newest; also --to)\n"
               "  -p, --previous-size M    include a consistency proof from tree size M\n"
               "                           (the size of the checkpoint you kept)\n"
               FILTER_HELP
               "  -F, --format jsonl|csv   output format (default jsonl)\n"
               "  -h, --help               show this help\n");
}

/* The checkpoint object of an export (last line; a sparse export's first). */
static int print_checkpoint(const Provsign__ExportResponse *x) {
        json_t *cons = json_null();
        if (x->from_size > 0)
                cons = json_pack("{s:I, s:o}", "from_size", (json_int_t) x->from_size, "proof",
                                 b64_list(x->consistency_proof, x->n_consistency_proof));
        json_t *o = x->sparse ? json_pack("{s:s, s:I, s:b, s:o}", "checkpoint", x->checkpoint, "tree_size",
                                          (json_int_t) x->tree_size, "sparse", 1, "consistency", cons)
                              : json_pack("{s:s, s:I, s:o, s:o, s:o}", "checkpoint", x->checkpoint, "tree_size",
                                          (json_int_t) x->tree_size, "left", b64_list(x->left, x->n_left), "right",
                                          b64_list(x->right, x->n_right), "consistency", cons);
        return cli_print_json(o);
}

static json_t *proof_json(const Provsign__ExportResponse *x, size_t i) {
        if (i >= x->n_proofs || !x->proofs[i])
                return NULL;
        return b64_list(x->proofs[i]->hashes, x->proofs[i]->n_hashes);
}

int cmd_audit_export(const struct cli_ctx *ctx, int argc, char **argv) {
        static const struct option options[] = {
                { "from-seq", required_argument, NULL, 'f' },
                { "to-seq", required_argument, NULL, 't' },
                { "from", required_argument, NULL, 'f' },
                { "to", required_argument, NULL, 't' },
                { "previous-size", required_argument, NULL, 'p' },
                { "format", required_argument, NULL, 'F' },
                FILTER_OPTIONS,
                { "help", no_argument, NULL, 'h' },
                {}
        };
        static const char verb[] = "audit export";
        Provsign__ExportRequest er = PROVSIGN__EXPORT_REQUEST__INIT;
        struct filter_opts fo = { .principal = (char *) "", .keyid = (char *) "" };
        enum format fmt = FORMAT_JSONL;
        bool to_set = false, sparse = false, header = false;
        int c, r, fd = -1;
        uint64_t count = 0;

        while ((c = getopt_long(argc, argv, ":f:t:p:F:h" FILTER_SHORT, options, NULL)) >= 0) {
                int k = filter_opt(verb, c, optarg, &fo);
                if (k < 0)
                        return -k;
                if (k > 0)
                        continue;
                switch (c) {
                case 'f':
                        if (parse_u64(optarg, &er.from_seq) < 0)
                                return cli_usage_error(verb, "invalid --from-seq '%s': expected a sequence number", optarg);
                        break;
                case 't':
                        if (parse_u64(optarg, &er.to_seq) < 0)
                                return cli_usage_error(verb, "invalid --to-seq '%s': expected a sequence number", optarg);
                        to_set = true;
                        break;
                case 'p':
                        if (parse_u64(optarg, &er.previous_size) < 0 || er.previous_size == 0)
                                return cli_usage_error(verb, "invalid --previous-size '%s': expected a tree size of at least 1",
                                                       optarg);
                        break;
                case 'F':
                        if (strcmp(optarg, "jsonl") == 0)
                                fmt = FORMAT_JSONL;
                        else if (strcmp(optarg, "csv") == 0)
                                fmt = FORMAT_CSV;
                        else
                                return cli_usage_error(verb, "invalid --format '%s': expected jsonl or csv", optarg);
                        break;
                case 'h':
                        export_help();
                        return CLI_EXIT_OK;
                default:
                        return cli_getopt_error(verb, c, argv);
                }
        }
        r = cli_extra_args(verb, argc, argv);
        if (r != CLI_EXIT_OK)
                return r;
        if (to_set && er.to_seq < er.from_seq)
                return cli_usage_error(verb, "--to-seq %" PRIu64 " is before --from-seq %" PRIu64, er.to_seq, er.from_seq);
        if (to_set && er.to_seq == 0) {
                /* to_seq 0 means "the newest" on the wire: only entry 0 is --to-seq 0. */
                return cli_usage_error(verb, "--to-seq 0: export entry 0 with --from-seq 0 --to-seq 0 is not supported;"
                                             " omit --to-seq");
        }
        if (fo.until_us && fo.since_us > fo.until_us)
                return cli_usage_error(verb, "--since is after --until");
        er.digest = fo.digest_bin;
        er.principal = fo.principal;
        er.keyid = fo.keyid;
        er.since_us = fo.since_us;
        er.until_us = fo.until_us;
        sparse = filter_any(&fo);

        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        req.body_case = PROVSIGN__REQUEST__BODY_EXPORT;
        req.export = &er;
        r = stream_request(ctx, verb, &req, &fd);
        if (r != CLI_EXIT_OK)
                return r;
        if (fmt == FORMAT_CSV) {
                for (size_t i = 0; i < CLIENT_AUDIT_N_COLUMNS; i++)
                        printf("%s%s", i ? "," : "", client_audit_columns[i]);
                putchar('\n');
        }
        uint64_t expect = er.from_seq;
        for (;;) {
                Provsign__Response *resp = NULL;
                r = read_response(fd, &resp);
                if (r < 0) {
                        r = stream_failed(ctx, verb, r, NULL);
                        goto out;
                }
                if (resp->status != PROVSIGN__STATUS__OK) {
                        r = stream_failed(ctx, verb, 0, resp);
                        provsign__response__free_unpacked(resp, NULL);
                        goto out;
                }
                Provsign__ExportResponse *x = resp->body_case == PROVSIGN__RESPONSE__BODY_EXPORT ? resp->export : NULL;
                /* A sparse export: the checkpoint first, proofs with every leaf,
                 * seqs ascending; a full one: consecutive leaves. */
                bool bad = !x || x->sparse != sparse || (!sparse && !x->done && x->first_seq != expect) ||
                           (sparse && !header && (x->done || !x->checkpoint[0] || x->n_leaves)) ||
                           (sparse && x->n_proofs != x->n_leaves);
                if (bad) {
                        provsign__response__free_unpacked(resp, NULL);
                        r = stream_failed(ctx, verb, -EPROTO, NULL);
                        goto out;
                }
                if (sparse && !header) {
                        header = true;
                        r = fmt == FORMAT_JSONL ? print_checkpoint(x) : CLI_EXIT_OK;
                        provsign__response__free_unpacked(resp, NULL);
                        if (r != CLI_EXIT_OK)
                                goto out;
                        continue;
                }
                for (size_t i = 0; i < x->n_leaves; i++) {
                        uint64_t seq;
                        json_t *proof = NULL;
                        if (sparse && fmt == FORMAT_JSONL && !(proof = proof_json(x, i)))
                                r = -EPROTO;
                        else
                                r = print_entry(fmt, x->leaves[i].data, x->leaves[i].len, &seq, proof);
                        if (r < 0 || (sparse ? seq < expect : seq != expect)) {
                                provsign__response__free_unpacked(resp, NULL);
                                r = stream_failed(ctx, verb, r < 0 ? r : -EPROTO, NULL);
                                goto out;
                        }
                        expect = seq + 1;
                        count++;
                }
                if (x->done) {
                        if (fmt != FORMAT_JSONL)
                                r = CLI_EXIT_OK;
                        else if (sparse)
                                r = cli_print_json(json_pack("{s:b, s:I}", "end", 1, "entries", (json_int_t) count));
                        else
                                r = print_checkpoint(x);
                        provsign__response__free_unpacked(resp, NULL);
                        if (fflush(stdout) != 0 || ferror(stdout)) {
                                fprintf(stderr, "provsign: %s: cannot write the export: %m\n", verb);
                                r = CLI_EXIT_LOCAL;
                        }
                        goto out;
                }
                provsign__response__free_unpacked(resp, NULL);
        }
out:
        if (fd >= 0)
                close(fd);
        return r;
}

/* ---- audit verify ---- */

static void verify_help(void) {
        printf("Usage: provsign audit verify --log-key PEM [--previous CHECKPOINT] [--json] FILE\n"
               "\n"
               "Verifies an export from 'provsign audit export' offline (FILE '-' is\n"
               "standard input): every readable field equals the decoding of its leaf;\n"
               "the entries are consecutive; every sign entry's key is its principal's\n"
               "active key at that position (from the key events); the leaves hash into\n"
               "the checkpoint's root; the checkpoint is signed by the log key; and with\n"
               "--previous, the log is an extension of that older checkpoint (nothing\n"
               "removed or rewritten). A filtered (sparse) export is checked entry by\n"
               "entry: each leaf's inclusion proof leads to the checkpoint's root.\n"
               "Prints a summary; on failure, the first sequence\n"
               "number that fails and why, and exits 1.\n"
               "\n"
               "  -k, --log-key PEM            the log's public key (a copy you keep)\n"
               "  -p, --previous CHECKPOINT    a checkpoint note you kept from an earlier\n"
               "                               export (export with --previous-size its size)\n"
               "  -j, --json                   print the summary as JSON\n"
               "  -h, --help                   show this help\n");
}

int cmd_audit_verify(const struct cli_ctx *ctx, int argc, char **argv) {
        static const struct option options[] = {
                { "log-key", required_argument, NULL, 'k' },
                { "previous", required_argument, NULL, 'p' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        static const char verb[] = "audit verify";
        const char *key_path = NULL, *prev_path = NULL;
        char *pem = NULL, *prev = NULL, *line = NULL;
        client_audit_verify *v = NULL;
        bool json = false;
        FILE *f = NULL;
        size_t cap = 0;
        int c, r;
        (void) ctx;

        while ((c = getopt_long(argc, argv, ":k:p:jh", options, NULL)) >= 0)
                switch (c) {
                case 'k':
                        key_path = optarg;
                        break;
                case 'p':
                        prev_path = optarg;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'h':
                        verify_help();
                        return CLI_EXIT_OK;
                default:
                        return cli_getopt_error(verb, c, argv);
                }
        if (!key_path)
                return cli_usage_error(verb, "--log-key is required");
        if (argc - optind != 1)
                return cli_usage_error(verb, "expected one FILE (the export; '-' for standard input)");
        const char *path = argv[optind];

        r = cli_read_file(verb, "log key", key_path, 64 * 1024, &pem, NULL);
        if (r != CLI_EXIT_OK)
                goto out;
        if (prev_path) {
                r = cli_read_file(verb, "previous checkpoint", prev_path, 64 * 1024, &prev, NULL);
                if (r != CLI_EXIT_OK)
                        goto out;
        }
        f = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
        if (!f) {
                fprintf(stderr, "provsign: %s: cannot read export %s: %m\n", verb, path);
                r = CLI_EXIT_LOCAL;
                goto out;
        }
        if (client_audit_verify_new(pem, prev, &v) < 0) {
                fprintf(stderr, "provsign: out of memory\n");
                r = CLI_EXIT_LOCAL;
                goto out;
        }
        int k = 0;
        for (;;) {
                ssize_t n = getline(&line, &cap, f);
                if (n < 0)
                        break;
                if (n > 0 && line[n - 1] == '\n')
                        n--;
                k = client_audit_verify_line(v, line, (size_t) n);
                if (k != 0)
                        break;
        }
        if (ferror(f)) {
                fprintf(stderr, "provsign: %s: cannot read export %s: %m\n", verb, path);
                r = CLI_EXIT_LOCAL;
                goto out;
        }
        if (k == 0)
                k = client_audit_verify_finish(v);
        if (k < 0) {
                fprintf(stderr, "provsign: %s: %s\n", verb, strerror(-k));
                r = CLI_EXIT_LOCAL;
                goto out;
        }
        if (k > 0) {
                bool has_seq;
                uint64_t seq;
                const char *reason;
                client_audit_verify_failure(v, &has_seq, &seq, &reason);
                if (json) {
                        json_t *o = json_pack("{s:b, s:o, s:s}", "verified", 0, "seq",
                                              has_seq ? json_integer((json_int_t) seq) : json_null(), "reason", reason);
                        (void) cli_print_json(o);
                }
                if (has_seq)
                        fprintf(stderr, "FAILED at seq %" PRIu64 ": %s\n", seq, reason);
                else
                        fprintf(stderr, "FAILED: %s\n", reason);
                r = CLI_EXIT_VERIFY_FAILED;
                goto out;
        }
        json_t *s = client_audit_verify_summary(v);
        if (json)
                r = cli_print_json(s);
        else if (!s) {
                fprintf(stderr, "provsign: out of memory\n");
                r = CLI_EXIT_LOCAL;
        } else if (json_is_true(json_object_get(s, "sparse"))) {
                json_t *n = json_object_get(s, "entries");
                printf("verified: %" JSON_INTEGER_FORMAT " entries of a filtered export, each proven in the checkpoint's"
                       " tree (key states not checked)\n", json_integer_value(n));
                if (json_integer_value(n) > 0)
                        printf("seqs: %" JSON_INTEGER_FORMAT "..%" JSON_INTEGER_FORMAT "\n",
                               json_integer_value(json_object_get(s, "first_seq")),
                               json_integer_value(json_object_get(s, "last_seq")));
                printf("checkpoint: %s, tree size %" JSON_INTEGER_FORMAT "\n",
                       cli_safe(json_string_value(json_object_get(s, "origin"))),
                       json_integer_value(json_object_get(s, "checkpoint_size")));
                if (prev)
                        printf("consistent with the previous checkpoint\n");
                json_decref(s);
                r = CLI_EXIT_OK;
        } else {
                printf("verified: %" JSON_INTEGER_FORMAT " entries (seq %" JSON_INTEGER_FORMAT "..%" JSON_INTEGER_FORMAT ")\n",
                       json_integer_value(json_object_get(s, "entries")), json_integer_value(json_object_get(s, "first_seq")),
                       json_integer_value(json_object_get(s, "last_seq")));
                printf("principals: %" JSON_INTEGER_FORMAT "\n", json_integer_value(json_object_get(s, "principals")));
                printf("keys: %" JSON_INTEGER_FORMAT " (%" JSON_INTEGER_FORMAT " unknown before the range)\n",
                       json_integer_value(json_object_get(s, "keys")),
                       json_integer_value(json_object_get(s, "keys_unknown_before_range")));
                json_t *t1 = json_object_get(s, "first_time"), *t2 = json_object_get(s, "last_time");
                printf("first: %s\nlast: %s\n", json_is_string(t1) ? json_string_value(t1) : "-",
                       json_is_string(t2) ? json_string_value(t2) : "-");
                printf("checkpoint: %s, tree size %" JSON_INTEGER_FORMAT "\n", cli_safe(json_string_value(json_object_get(s, "origin"))),
                       json_integer_value(json_object_get(s, "checkpoint_size")));
                if (prev)
                        printf("consistent with the previous checkpoint\n");
                json_decref(s);
                r = CLI_EXIT_OK;
        }
out:
        if (f && f != stdin)
                fclose(f);
        client_audit_verify_free(v);
        free(line);
        free(pem);
        free(prev);
        return r;
}

/* ---- audit proof ---- */

static void proof_help(void) {
        printf("Usage: provsign audit proof --seq N\n"
               "\n"
               "Prints the inclusion proof of log entry N and the checkpoint it leads to,\n"
               "as a receipt JSON object (log_seq, log_time, leaf, tree_size,\n"
               "inclusion_proof, checkpoint): 'provsign receipt verify' checks it.\n"
               "\n"
               "  -s, --seq N    the entry\n"
               "  -h, --help     show this help\n");
}

int cmd_audit_proof(const struct cli_ctx *ctx, int argc, char **argv) {
        static const struct option options[] = {
                { "seq", required_argument, NULL, 's' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        static const char verb[] = "audit proof";
        Provsign__ProofRequest pr = PROVSIGN__PROOF_REQUEST__INIT;
        bool have = false;
        int c, r, fd = -1;

        while ((c = getopt_long(argc, argv, ":s:jh", options, NULL)) >= 0)
                switch (c) {
                case 's':
                        if (parse_u64(optarg, &pr.seq) < 0)
                                return cli_usage_error(verb, "invalid --seq '%s': expected a sequence number", optarg);
                        have = true;
                        break;
                case 'j':
                        break; /* the output is JSON anyway */
                case 'h':
                        proof_help();
                        return CLI_EXIT_OK;
                default:
                        return cli_getopt_error(verb, c, argv);
                }
        r = cli_extra_args(verb, argc, argv);
        if (r != CLI_EXIT_OK)
                return r;
        if (!have)
                return cli_usage_error(verb, "--seq is required");
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        req.body_case = PROVSIGN__REQUEST__BODY_PROOF;
        req.proof = &pr;
        r = stream_request(ctx, verb, &req, &fd);
        if (r != CLI_EXIT_OK)
                return r;
        Provsign__Response *resp = NULL;
        r = read_response(fd, &resp);
        if (r < 0) {
                r = stream_failed(ctx, verb, r, NULL);
                goto out;
        }
        if (resp->status != PROVSIGN__STATUS__OK) {
                r = stream_failed(ctx, verb, 0, resp);
                goto out;
        }
        const Provsign__Receipt *rc = resp->body_case == PROVSIGN__RESPONSE__BODY_PROOF && resp->proof->receipt
                                              ? resp->proof->receipt : NULL;
        if (!rc || rc->n_inclusion_proof > PROTO_MERKLE_MAX_PROOF) {
                r = stream_failed(ctx, verb, -EPROTO, NULL);
                goto out;
        }
        uint8_t proof[PROTO_MERKLE_MAX_PROOF][PROTO_MERKLE_HASH_LEN];
        for (size_t i = 0; i < rc->n_inclusion_proof; i++) {
                if (rc->inclusion_proof[i].len != PROTO_MERKLE_HASH_LEN) {
                        r = stream_failed(ctx, verb, -EPROTO, NULL);
                        goto out;
                }
                memcpy(proof[i], rc->inclusion_proof[i].data, PROTO_MERKLE_HASH_LEN);
        }
        struct client_receipt cr = {
                .log_seq = rc->log_seq, .log_time_us = rc->log_time_us, .leaf = rc->leaf.data,
                .leaf_len = rc->leaf.len, .tree_size = rc->tree_size,
                .proof = rc->n_inclusion_proof ? (const uint8_t (*)[PROTO_MERKLE_HASH_LEN]) proof : NULL,
                .n_proof = rc->n_inclusion_proof, .checkpoint = rc->checkpoint,
        };
        r = cli_print_json(client_receipt_to_json(&cr));
out:
        if (resp)
                provsign__response__free_unpacked(resp, NULL);
        if (fd >= 0)
                close(fd);
        return r;
}

/* ---- audit find ---- */

static void find_help(void) {
        printf("Usage: provsign audit find (--digest ALG:HEX | --principal NAME | --key KEYID)...\n"
               "                           [--since T] [--until T]\n"
               "\n"
               "Prints the log entries (JSON Lines, as 'audit export') that match every\n"
               "filter given. The agent answers from its index (index.sqlite in its\n"
               "state directory), without reading the whole log.\n"
               "\n"
               FILTER_HELP
               "  -h, --help               show this help\n");
}

int cmd_audit_find(const struct cli_ctx *ctx, int argc, char **argv) {
        static const struct option options[] = {
                FILTER_OPTIONS,
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        static const char verb[] = "audit find";
        Provsign__FindRequest fr = PROVSIGN__FIND_REQUEST__INIT;
        struct filter_opts fo = { .principal = (char *) "", .keyid = (char *) "" };
        int c, r, fd = -1;

        while ((c = getopt_long(argc, argv, ":jhp:" FILTER_SHORT, options, NULL)) >= 0) {
                int k = filter_opt(verb, c, optarg, &fo);
                if (k < 0)
                        return -k;
                if (k > 0)
                        continue;
                switch (c) {
                case 'p':
                        fo.principal = optarg; /* the short option before --key came */
                        break;
                case 'j':
                        break; /* the output is JSON anyway */
                case 'h':
                        find_help();
                        return CLI_EXIT_OK;
                default:
                        return cli_getopt_error(verb, c, argv);
                }
        }
        r = cli_extra_args(verb, argc, argv);
        if (r != CLI_EXIT_OK)
                return r;
        if (!fo.digest_bin.len && !fo.principal[0] && !fo.keyid[0])
                return cli_usage_error(verb, "name at least one of --digest, --principal and --key");
        if (fo.until_us && fo.since_us > fo.until_us)
                return cli_usage_error(verb, "--since is after --until");
        fr.digest = fo.digest_bin;
        fr.principal = fo.principal;
        fr.keyid = fo.keyid;
        fr.since_us = fo.since_us;
        fr.until_us = fo.until_us;

        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        req.body_case = PROVSIGN__REQUEST__BODY_FIND;
        req.find = &fr;
        r = stream_request(ctx, verb, &req, &fd);
        if (r != CLI_EXIT_OK)
                return r;
        for (;;) {
                Provsign__Response *resp = NULL;
                r = read_response(fd, &resp);
                if (r < 0) {
                        r = stream_failed(ctx, verb, r, NULL);
                        goto out;
                }
                if (resp->status != PROVSIGN__STATUS__OK) {
                        r = stream_failed(ctx, verb, 0, resp);
                        provsign__response__free_unpacked(resp, NULL);
                        goto out;
                }
                if (resp->body_case != PROVSIGN__RESPONSE__BODY_FIND) {
                        provsign__response__free_unpacked(resp, NULL);
                        r = stream_failed(ctx, verb, -EPROTO, NULL);
                        goto out;
                }
                Provsign__FindResponse *x = resp->find;
                for (size_t i = 0; i < x->n_leaves; i++) {
                        uint64_t seq;
                        if (print_entry(FORMAT_JSONL, x->leaves[i].data, x->leaves[i].len, &seq, NULL) < 0) {
                                provsign__response__free_unpacked(resp, NULL);
                                r = stream_failed(ctx, verb, -EPROTO, NULL);
                                goto out;
                        }
                }
                bool done = x->done;
                provsign__response__free_unpacked(resp, NULL);
                if (done)
                        break;
        }
        r = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_LOCAL;
out:
        if (fd >= 0)
                close(fd);
        return r;
}
