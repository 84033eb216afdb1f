/* The libprovsign example of docs/runners.md: sign the SHA-256 of a file as a
 * principal and print the DER signature in hex. Built and run by the suite
 * (tests/integration/test-cli.sh), its output verified with openssl.
 *
 *   sign-file PRINCIPAL FILE      (socket: $PROVSIGN_AGENT_SOCK or the default) */
#include <stdio.h>
#include <openssl/evp.h>
#include <provsign.h>

int main(int argc, char **argv) {
        unsigned char buf[65536], digest[32];
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        size_t n, len;

        if (argc != 3)
                return 2;
        FILE *f = fopen(argv[2], "rb");
        if (!f || !md)
                return 5;
        EVP_DigestInit_ex(md, EVP_sha256(), NULL);
        while ((n = fread(buf, 1, sizeof buf, f)) > 0)
                EVP_DigestUpdate(md, buf, n);
        fclose(f);
        EVP_DigestFinal_ex(md, digest, NULL);
        EVP_MD_CTX_free(md);

        int r = provsign_connect(NULL, &conn);
        if (r == 0)
                r = provsign_sign(conn, argv[1], PROVSIGN_DIGEST_SHA256, digest, sizeof digest,
                                  "application/octet-stream", NULL, 0, &sig);
        if (r != 0) {
                fprintf(stderr, "%s: %s\n", provsign_strerror(r), conn ? provsign_last_message(conn) : "");
                provsign_close(conn);
                return r > 0 ? 3 : 4;
        }
        const unsigned char *der = provsign_signature_der(sig, &len);
        for (size_t i = 0; i < len; i++)
                printf("%02x", der[i]);
        printf("\n%s\n", provsign_signature_keyid(sig));
        provsign_signature_free(sig);
        provsign_close(conn);
        return 0;
}
