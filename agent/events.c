#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "events.h"
#include "log.h"

void agent_audit_lifecycle(agent *a, int event, const char *message) {
        Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
        e.event = (Provsign__AuditEvent) event;
        e.message = (char *) message;
        uint64_t seq;
        int r = audit_append(a->audit, &e, &seq, NULL, NULL);
        if (r < 0)
                log_warning("audit log: cannot record %s: %s", message, strerror(-r));
}

static int hash_file(const char *path, uint8_t out[32]) {
        FILE *f = fopen(path, "rbe");
        if (!f)
                return -errno;
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        int r = -ENOMEM;
        if (md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1) {
                uint8_t buf[8192];
                size_t n;
                while ((n = fread(buf, 1, sizeof buf, f)) > 0)
                        EVP_DigestUpdate(md, buf, n);
                r = ferror(f) ? -EIO : (EVP_DigestFinal_ex(md, out, NULL) == 1 ? 0 : -EIO);
        }
        EVP_MD_CTX_free(md);
        fclose(f);
        return r;
}

void agent_audit_policy_load(agent *a, const char *path, int status, const char *message) {
        uint8_t digest[32];
        Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
        e.event = PROVSIGN__AUDIT_EVENT__POLICY_LOAD;
        e.status = (Provsign__Status) status;
        e.payload_type = (char *) "text/x-provsign-agent-conf";
        char msg[600];
        snprintf(msg, sizeof msg, "%s: %s", path, message);
        e.message = msg;
        if (hash_file(path, digest) == 0) {
                e.digest_algorithm = PROVSIGN__DIGEST_ALGORITHM__SHA256;
                e.digest.data = digest;
                e.digest.len = sizeof digest;
        }
        uint64_t seq;
        int r = audit_append(a->audit, &e, &seq, NULL, NULL);
        if (r < 0)
                log_warning("audit log: cannot record the policy load: %s", strerror(-r));
}
