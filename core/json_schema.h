/* json_schema.h: JSON Schema -> GBNF, with llama.cpp's common/json-schema-to-grammar.cpp as
 * the semantic reference (the same primitive rules, whitespace, property order and optional
 * chains), so a constrained sample always parses and validates against the schema.
 *
 * Covered: type (one or a list), const, enum, anyOf/oneOf, allOf of one schema, $ref to
 * #, #/$defs/..., #/definitions/... (recursion allowed), objects (properties, required,
 * additionalProperties false / true / a schema; absent means false where properties are
 * given, as llama.cpp; an object schema with neither is any object), arrays
 * (items, prefixItems or an items list, minItems/maxItems), strings (minLength/maxLength,
 * format date, time, date-time, uuid, pattern: a regex subset, always fully matched),
 * integers (minimum/maximum, exclusive ones: exact digit ranges), numbers (bounds: whole
 * numbers within them, plus fractions where they cannot cross a bound). Where a bound
 * cannot be expressed exactly the grammar allows a subset of the valid values (maxLength
 * and maxItems above 2000 cap at 2000), never more; keywords that would need more (not,
 * if/then/else, patternProperties, uniqueItems, multipleOf, ...) are refused by name.
 *
 * Bounded: the schema text (1 MiB), nesting (64), enum values (1024), alternatives (256),
 * properties per object (256), a pattern (4096 bytes), the grammar text (1 MiB). */
#ifndef REALM_JSON_SCHEMA_H
#define REALM_JSON_SCHEMA_H
#include "rt.h"

#define JSCHEMA_MAX_TEXT (1u << 20)
#define JSCHEMA_MAX_DEPTH 64
#define JSCHEMA_MAX_ENUM 1024
#define JSCHEMA_MAX_ALTS 256
#define JSCHEMA_MAX_PROPS 256
#define JSCHEMA_MAX_PATTERN 4096
#define JSCHEMA_MAX_REPEAT 2000      /* GBNF's {m,n} limit */
#define JSCHEMA_MAX_GRAMMAR (1u << 20)

/* GBNF for the schema in len bytes of JSON; rule names start with prefix (NULL: none), the
 * start rule is prefix + "root". NUL-terminated text from rt_malloc (the caller frees), its
 * length in *out_len; NULL with rt_err ("JSON schema at /path: problem"). */
char *json_schema_to_gbnf(const uint8_t *json, uint64_t len, const char *prefix, uint64_t *out_len);

#endif
