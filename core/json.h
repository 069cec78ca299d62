/* json.h: a small JSON reader (RFC 8259) for the core's own inputs (JSON Schemas).
 * Values live in one arena freed at once; strings are decoded to UTF-8, numbers keep
 * their source text beside a double. Bounded: nesting depth, and the text's size is the
 * caller's to cap. Errors name the byte offset. */
#ifndef REALM_JSON_H
#define REALM_JSON_H
#include "rt.h"

enum { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ };

typedef struct JsonVal JsonVal;
struct JsonVal {
    uint32_t type;
    uint32_t n;            /* ARR: items; OBJ: members */
    const uint8_t *s;      /* STR: decoded UTF-8 (NUL after it); NUM: source text */
    uint64_t slen;
    double num;            /* NUM */
    JsonVal *items;        /* ARR: n values; OBJ: 2n values, key (STR) then value */
};

typedef struct JsonDoc JsonDoc;   /* the arena */

/* Parse len bytes; NULL with rt_err ("invalid JSON at byte N: ...") */
JsonVal *json_parse(const uint8_t *text, uint64_t len, uint32_t max_depth, JsonDoc **doc);
void json_free(JsonDoc *doc);

/* The member `key` of an object (NULL when absent or v is not an object). */
const JsonVal *json_get(const JsonVal *v, const char *key);
bool json_str_is(const JsonVal *v, const char *s);   /* a string equal to s */

#endif
