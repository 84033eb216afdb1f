/* Fuzzes the tlog checkpoint text parser (proto_checkpoint_parse, note.h):
 * the input is the text of a note, as proto_note_verify returns it.
 *
 * Invariants:
 *   - the result is 0, -EBADMSG or -EMSGSIZE (only over the size limit),
 *     and the out-parameters are written only on success;
 *   - on success the origin is the input's first line (non-empty, no NUL,
 *     no newline), and proto_checkpoint_format(origin, size, root) is a
 *     prefix of the input: the whole input when it has no extension lines,
 *     else the input up to them. Parsing the formatted text gives the same
 *     origin, size and root (parse→format round-trips exactly). */

#include <errno.h>
#include <string.h>

#include "note.h"

#include "fuzz.h"

/* Number of newlines in p[0..n). */
static size_t count_lines(const char *p, size_t n) {
        size_t k = 0;
        for (const char *q = p; (q = memchr(q, '\n', n - (size_t) (q - p))); q++)
                k++;
        return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const uint8_t untouched[PROTO_CHECKPOINT_HASH_LEN] = { 0xa5 };
        const char *text = (const char *) data;
        char *origin = NULL, *formatted = NULL, *origin2 = NULL;
        uint64_t tree_size = 42, tree_size2 = 0;
        uint8_t root[PROTO_CHECKPOINT_HASH_LEN], root2[PROTO_CHECKPOINT_HASH_LEN];
        size_t flen;
        int r;

        memcpy(root, untouched, sizeof root);
        r = proto_checkpoint_parse(text, size, &origin, &tree_size, root);
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG || r == -EMSGSIZE);
                FUZZ_CHECK(r != -EMSGSIZE || size > PROTO_NOTE_MAX_SIZE);
                FUZZ_CHECK(origin == NULL && tree_size == 42 && memcmp(root, untouched, sizeof root) == 0);
                return 0;
        }
        FUZZ_CHECK(r == 0 && origin);

        size_t olen = strlen(origin);
        FUZZ_CHECK(olen > 0 && olen < size && !memchr(origin, '\n', olen));
        FUZZ_CHECK(memcmp(origin, text, olen) == 0 && text[olen] == '\n');
        FUZZ_CHECK(count_lines(text, size) >= 3 && text[size - 1] == '\n');

        FUZZ_CHECK(proto_checkpoint_format(origin, tree_size, root, &formatted) == 0);
        flen = strlen(formatted);
        FUZZ_CHECK(flen <= size && memcmp(formatted, text, flen) == 0);
        FUZZ_CHECK((flen == size) == (count_lines(text, size) == 3));

        FUZZ_CHECK(proto_checkpoint_parse(formatted, flen, &origin2, &tree_size2, root2) == 0);
        FUZZ_CHECK(strcmp(origin, origin2) == 0 && tree_size == tree_size2 && memcmp(root, root2, sizeof root) == 0);

        free(origin);
        free(origin2);
        free(formatted);
        return 0;
}
