/* Checkpoints: a C2SP signed note over the tree's size and root, signed with
 * the log key in the token, and the helper thread that signs a group's
 * checkpoint while the group commit (a signing worker's or the committer
 * thread's) writes and syncs the group. */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "audit-int.h"
#include "note.h"

int audit_sign_checkpoint(agent_audit *a, uint64_t size, const uint8_t root[32], char **ret_note) {
        char *body = NULL;
        int r = proto_checkpoint_format(a->origin, size, root, &body);
        if (r < 0)
                return r;
        uint8_t digest[32], sig[KEYS_MAX_SIGNATURE];
        size_t sig_len;
        SHA256((const uint8_t *) body, strlen(body), digest);
        r = keys_sign(a->store, a->log_key, digest, sizeof digest, sig, &sig_len);
        if (r >= 0)
                r = proto_note_assemble(body, a->origin, a->log_key_hash, sig, sig_len, ret_note);
        free(body);
        return r;
}

static void *ckpt_signer_main(void *arg) {
        struct ckpt_signer *k = arg;
        pthread_mutex_lock(&k->lock);
        for (;;) {
                while (!k->request && !k->stop)
                        pthread_cond_wait(&k->request_cond, &k->lock);
                if (!k->request)
                        break;
                k->request = false;
                uint64_t size = k->size;
                uint8_t root[32];
                memcpy(root, k->root, sizeof root);
                pthread_mutex_unlock(&k->lock);
                char *note = NULL;
                int r = audit_sign_checkpoint(k->audit, size, root, &note);
                pthread_mutex_lock(&k->lock);
                k->note = note;
                k->r = r;
                k->done = true;
                pthread_mutex_unlock(&k->lock);
                pthread_cond_signal(&k->done_cond);
                pthread_mutex_lock(&k->lock);
        }
        pthread_mutex_unlock(&k->lock);
        return NULL;
}

void audit_ckpt_post(struct ckpt_signer *k, uint64_t size, const uint8_t root[32]) {
        pthread_mutex_lock(&k->lock);
        k->size = size;
        memcpy(k->root, root, sizeof k->root);
        k->done = false;
        k->request = true;
        pthread_mutex_unlock(&k->lock);
        pthread_cond_signal(&k->request_cond); /* after the unlock: see workers_submit */
}

int audit_ckpt_wait(struct ckpt_signer *k, char **ret_note) {
        pthread_mutex_lock(&k->lock);
        while (!k->done)
                pthread_cond_wait(&k->done_cond, &k->lock);
        int r = k->r;
        *ret_note = k->note;
        k->note = NULL;
        pthread_mutex_unlock(&k->lock);
        return r;
}

int audit_ckpt_start(agent_audit *a) {
        struct ckpt_signer *k = &a->ckpt;
        k->audit = a;
        pthread_mutex_init(&k->lock, NULL);
        pthread_cond_init(&k->request_cond, NULL);
        pthread_cond_init(&k->done_cond, NULL);
        int r = pthread_create(&k->thread, NULL, ckpt_signer_main, k);
        if (r != 0) {
                pthread_mutex_destroy(&k->lock);
                pthread_cond_destroy(&k->request_cond);
                pthread_cond_destroy(&k->done_cond);
                return -r;
        }
        k->started = true;
        (void) pthread_setname_np(k->thread, "provsign-ckpt");
        return 0;
}

void audit_ckpt_stop(agent_audit *a) {
        struct ckpt_signer *k = &a->ckpt;
        if (!k->started)
                return;
        pthread_mutex_lock(&k->lock);
        k->stop = true;
        pthread_cond_signal(&k->request_cond);
        pthread_mutex_unlock(&k->lock);
        pthread_join(k->thread, NULL);
        pthread_mutex_destroy(&k->lock);
        pthread_cond_destroy(&k->request_cond);
        pthread_cond_destroy(&k->done_cond);
        k->started = false;
}
