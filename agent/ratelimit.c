#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"

typedef struct window {
        char principal[65];
        uint64_t start_ms;
        uint32_t count;
} window;

static window *windows;
static size_t n_windows;

static window *find_or_add(const char *principal) {
        for (size_t i = 0; i < n_windows; i++)
                if (strcmp(windows[i].principal, principal) == 0)
                        return &windows[i];
        window *w = realloc(windows, (n_windows + 1) * sizeof *w);
        if (!w)
                return NULL;
        windows = w;
        w = &windows[n_windows++];
        *w = (window){ 0 };
        strncpy(w->principal, principal, sizeof w->principal - 1);
        return w;
}

bool ratelimit_allow(const char *principal, agent_rate rate, uint64_t now_ms, uint64_t *ret_retry_s) {
        if (rate.count == 0)
                return true;
        window *w = find_or_add(principal);
        if (!w)
                return false; /* out of memory: refuse rather than run unlimited */
        uint64_t len_ms = (uint64_t) rate.per_s * 1000u;
        if (w->count == 0 || now_ms - w->start_ms >= len_ms) {
                w->start_ms = now_ms;
                w->count = 0;
        }
        if (w->count >= rate.count) {
                *ret_retry_s = (w->start_ms + len_ms - now_ms + 999u) / 1000u;
                return false;
        }
        w->count++;
        return true;
}

agent_rate ratelimit_for(const agent_config *cfg, const agent_principal *p) {
        return p->rate_limit.count ? p->rate_limit : cfg->rate_limit;
}

void ratelimit_free(void) {
        free(windows);
        windows = NULL;
        n_windows = 0;
}
