/* The DSSE example of docs/runners.md: sign an in-toto statement (a file) with
 * libprovsign; print the DSSE envelope, then the log entry of its receipt
 * on a second line. Built and run by the suite (tests/integration/
 * test-provenance.sh), its envelope checked by `provsign verify`, openssl and
 * the sigstore verifier.
 *
 *   sign-statement PRINCIPAL STATEMENT.json   (socket: $PROVSIGN_AGENT_SOCK or the default) */
#include <stdio.h>
#include <stdlib.h>
#include <provsign.h>

int main(int argc, char **argv) {
        static char statement[PROVSIGN_DSSE_MAX_PAYLOAD];
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        char *envelope = NULL;
        FILE *f = argc == 3 ? fopen(argv[2], "rb") : NULL;

        if (!f)
                return 2;
        size_t len = fread(statement, 1, sizeof statement, f);
        fclose(f);

        int r = provsign_connect(NULL, &conn);
        if (r == 0)
                r = provsign_sign_dsse(conn, argv[1], "application/vnd.in-toto+json", statement, len, NULL, 0,
                                       &envelope, &sig);
        if (r != 0) {
                fprintf(stderr, "%s: %s\n", provsign_strerror(r), conn ? provsign_last_message(conn) : "");
                provsign_close(conn);
                return r > 0 ? 3 : 4;
        }
        printf("%s\nlogged as entry %llu\n", envelope, (unsigned long long) provsign_signature_log_seq(sig));
        free(envelope);
        provsign_signature_free(sig);
        provsign_close(conn);
        return 0;
}
