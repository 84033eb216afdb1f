/* Bounded JSON values: see jsonval.h. */
#include <string.h>

#include "jsonval.h"

const char *proto_json_string(const json_t *v, size_t max) {
        size_t n;

        if (!json_is_string(v))
                return NULL;
        n = json_string_length(v);
        if (n == 0 || n > max || strlen(json_string_value(v)) != n)
                return NULL;
        return json_string_value(v);
}
