/* tok_spm.c: the SentencePiece-style "llama" tokenizer (llama.cpp's SPM path).
 *
 * Spaces become "▁" (with one more in front when the fragment starts the text
 * or follows a special token and add_space_prefix is set); the text is cut
 * into UTF-8 characters; adjacent pairs whose concatenation is a token are
 * merged, highest score first (ties: leftmost first), until no pair is a
 * token; any symbol that is not a token falls back to its bytes (<0xNN>). */
#include "tok_internal.h"

bool spm_init(Tokenizer *t) {
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        uint8_t name[6] = { '<', '0', 'x', (uint8_t)hex[b >> 4], (uint8_t)hex[b & 15], '>' };
        int32_t id = tok_find(t, name, 6);
        if (id < 0) {
            uint8_t one = (uint8_t)b;
            id = tok_find(t, &one, 1);
        }
        t->byte_tok[b] = id;
    }
    return true;
}

static bool try_add(const Tokenizer *t, const TokSym *sym, int32_t left, int32_t right, TokHeap *h) {
    if (left < 0 || right < 0) return true;
    uint32_t size = sym[left].n + sym[right].n;
    int32_t id = tok_find(t, sym[left].text, size);
    if (id < 0) return true;
    return tok_heap_push(h, (TokBigram){ t->score[id], left, right, size });
}

bool spm_encode(const Tokenizer *t, const uint8_t *text, uint64_t len, bool prefix_space, IdVec *out) {
    /* escape: ' ' -> "▁" */
    uint64_t n_sp = prefix_space ? 1 : 0;
    for (uint64_t i = 0; i < len; i++) n_sp += text[i] == ' ';
    const uint64_t blen = len + (prefix_space ? 1 : 0) + 2 * n_sp;
    if (blen == 0) return true;
    if (blen >= 0x7FFFFFFF) {
        rt_err("tokenizer: text too long", NULL);
        return false;
    }
    uint8_t *buf = rt_malloc(blen);
    TokSym *sym = rt_malloc(blen * sizeof(TokSym));
    TokHeap h = { 0 };
    bool ok = buf && sym;
    if (!ok) rt_err_as(REALM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory", NULL);
    int32_t ns = 0;
    if (ok) {
        uint64_t k = 0;
        if (prefix_space) buf[k++] = 0xE2, buf[k++] = 0x96, buf[k++] = 0x81;
        for (uint64_t i = 0; i < len; i++) {
            if (text[i] == ' ') buf[k++] = 0xE2, buf[k++] = 0x96, buf[k++] = 0x81;
            else buf[k++] = text[i];
        }
        for (uint64_t off = 0; off < blen;) {
            uint32_t n = (uint32_t)RT_MIN((uint64_t)unicode_utf8_len(buf[off]), blen - off);
            sym[ns] = (TokSym){ buf + off, ns - 1, -1, n };
            off += n;
            sym[ns].next = off == blen ? -1 : ns + 1;
            ns++;
        }
        for (int32_t i = 1; ok && i < ns; i++) ok = try_add(t, sym, i - 1, i, &h);
    }
    while (ok && h.n > 0) {
        TokBigram b = tok_heap_pop(&h);
        TokSym *l = &sym[b.left], *r = &sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = b.left;
        ok = try_add(t, sym, l->prev, b.left, &h) && try_add(t, sym, b.left, l->next, &h);
    }
    for (int32_t i = 0; ok && ns > 0 && i != -1; i = sym[i].next) {
        int32_t id = tok_find(t, sym[i].text, sym[i].n);
        if (id >= 0) {
            ok = tok_vec_push(out, id);
            continue;
        }
        for (uint32_t j = 0; ok && j < sym[i].n; j++) {
            int32_t bid = t->byte_tok[sym[i].text[j]];
            if (bid < 0) bid = t->unk; /* llama.cpp throws here (vocab without byte tokens) */
            if (bid >= 0) ok = tok_vec_push(out, bid);
        }
    }
    rt_free(h.p);
    rt_free(sym);
    rt_free(buf);
    return ok;
}
