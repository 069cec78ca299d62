/* unicode.c: code point classes, lowercase, UTF-8, the GPT-2 byte alphabet. */
#include "unicode.h"

uint16_t unicode_flags(uint32_t cpt) {
    if (cpt >= UNICODE_MAX_CPT) return UCP_UNDEFINED;
    /* last range whose start <= cpt; range 0 starts at 0 */
    uint32_t lo = 0, hi = unicode_n_ranges; /* answer in [lo, hi) */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (unicode_range_start[mid] <= cpt) lo = mid;
        else hi = mid;
    }
    return unicode_range_flags[lo];
}

uint32_t unicode_tolower(uint32_t cpt) {
    if (cpt < 0x80) return (cpt >= 'A' && cpt <= 'Z') ? cpt + 32 : cpt;
    uint32_t lo = 0, hi = unicode_n_lower;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (unicode_lower[mid][0] < cpt) lo = mid + 1;
        else hi = mid;
    }
    return (lo < unicode_n_lower && unicode_lower[lo][0] == cpt) ? unicode_lower[lo][1] : cpt;
}

static inline bool is_cont(uint8_t b) { return (b & 0xC0) == 0x80; }

uint32_t unicode_utf8_next(const uint8_t *s, uint64_t n, uint64_t *pos) {
    uint64_t o = *pos;
    uint8_t b0 = s[o];
    if (!(b0 & 0x80)) {
        *pos = o + 1;
        return b0;
    }
    if (b0 & 0x40) {
        if (!(b0 & 0x20)) {
            if (o + 1 < n && is_cont(s[o + 1])) {
                *pos = o + 2;
                return ((uint32_t)(b0 & 0x1F) << 6) | (s[o + 1] & 0x3F);
            }
        } else if (!(b0 & 0x10)) {
            if (o + 2 < n && is_cont(s[o + 1]) && is_cont(s[o + 2])) {
                *pos = o + 3;
                return ((uint32_t)(b0 & 0x0F) << 12) | ((uint32_t)(s[o + 1] & 0x3F) << 6) | (s[o + 2] & 0x3F);
            }
        } else if (!(b0 & 0x08)) {
            if (o + 3 < n && is_cont(s[o + 1]) && is_cont(s[o + 2]) && is_cont(s[o + 3])) {
                *pos = o + 4;
                return ((uint32_t)(b0 & 0x07) << 18) | ((uint32_t)(s[o + 1] & 0x3F) << 12) |
                       ((uint32_t)(s[o + 2] & 0x3F) << 6) | (s[o + 3] & 0x3F);
            }
        }
    }
    *pos = o + 1; /* invalid: one byte becomes U+FFFD */
    return UNICODE_REPLACEMENT;
}

uint32_t *unicode_utf8_decode(const uint8_t *s, uint64_t n, uint64_t *count) {
    uint32_t *out = rt_malloc((n ? n : 1) * sizeof(uint32_t));
    if (!out) {
        rt_err_as(REALM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory decoding ", "UTF-8", NULL);
        return NULL;
    }
    uint64_t pos = 0, k = 0;
    while (pos < n) out[k++] = unicode_utf8_next(s, n, &pos);
    *count = k;
    return out;
}

int unicode_utf8_put(uint32_t cpt, uint8_t *out) {
    if (cpt < 0x80) {
        out[0] = (uint8_t)cpt;
        return 1;
    }
    if (cpt < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cpt >> 6));
        out[1] = (uint8_t)(0x80 | (cpt & 0x3F));
        return 2;
    }
    if (cpt >= UNICODE_MAX_CPT) cpt = UNICODE_REPLACEMENT;
    if (cpt < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cpt >> 12));
        out[1] = (uint8_t)(0x80 | ((cpt >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cpt & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cpt >> 18));
    out[1] = (uint8_t)(0x80 | ((cpt >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cpt >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cpt & 0x3F));
    return 4;
}

static inline bool byte_is_printable(uint32_t b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* The bytes that are not printable, in order: 0x00..0x20 (33), 0x7F..0xA0 (34), 0xAD (1). */
uint32_t unicode_byte_to_cpt(uint8_t b) {
    if (byte_is_printable(b)) return b;
    if (b <= 0x20) return 0x100 + b;
    if (b <= 0xA0) return 0x100 + 33 + (b - 0x7F);
    return 0x100 + 33 + 34; /* 0xAD */
}

int unicode_cpt_to_byte(uint32_t cpt) {
    if (cpt < 0x100) return byte_is_printable(cpt) ? (int)cpt : -1;
    if (cpt < 0x100 + 33) return (int)(cpt - 0x100);
    if (cpt < 0x100 + 33 + 34) return (int)(cpt - 0x100 - 33 + 0x7F);
    if (cpt == 0x100 + 33 + 34) return 0xAD;
    return -1;
}
