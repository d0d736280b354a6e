/* model/tokenizer-impl.h — the tokenizer's internals, shared by the core
 * (tokenizer.c), the tokenizer.json loader (tokenizer_json.c) and the GGUF
 * loader (tokenizer_gguf.c). Not a public header. */
#ifndef STRATA_TOKENIZER_IMPL_H
#define STRATA_TOKENIZER_IMPL_H

#include "model/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* token attributes (bit set) */
enum {
    ST_TA_NORMAL  = 1u << 0,   /* in the BPE/SPM model vocabulary (encodable by merges) */
    ST_TA_ADDED   = 1u << 1,   /* an added token, matched in the raw text */
    ST_TA_SPECIAL = 1u << 2,   /* added + special (HF special:true, GGUF CONTROL) */
    ST_TA_BYTE    = 1u << 3,   /* SPM <0xXX> byte token */
    ST_TA_UNUSED  = 1u << 4,   /* padding / unused: never produced by encode */
    ST_TA_UNKNOWN = 1u << 5,   /* SPM <unk> */
    ST_TA_NORMALIZED = 1u << 6,/* added token matched after normalisation (HF normalized:true) */
    ST_TA_PRESENT = 1u << 7,   /* the id has an entry at all */
};

struct st_tok_entry {
    uint32_t key_off, key_len;  /* stored string: alphabet form / SPM text / added content (arena) */
    uint32_t dec_off, dec_len;  /* bytes it decodes to (arena) */
    uint32_t attr;              /* ST_TA_* */
    float score;                /* SPM merge score */
};

struct st_pair_slot {           /* BPE merge table entry, open addressing */
    uint64_t key;               /* (left id << 32 | right id) + 1; 0 = empty */
    int32_t rank;               /* merge priority, lower first */
    int32_t id;                 /* merged token id */
};

struct st_added {               /* added token, in the match index */
    uint32_t off, len;          /* content (arena) */
    int32_t id;
    uint32_t attr;
};

/* BPE work item: a pair (pos, pos.next) with its merge rank. */
struct st_bpe_item { int32_t rank; int32_t pos; int32_t id; int32_t right_id; };
struct st_bpe_sym { int32_t id; int32_t prev, next; uint32_t start, len; };

struct st_tokenizer {
    st_tokenizer_kind kind;
    char *src_path;                   /* where it was loaded from (messages) */
    int64_t n_vocab;                  /* id space */
    struct st_tok_entry *tok;         /* (n_vocab) */
    char *arena;                      /* token strings; offsets in tok[] */
    size_t arena_len, arena_cap;      /* bytes */
    size_t max_dec_len;               /* longest decoded token, bytes */

    /* model vocabulary lookup: key bytes -> id (only ST_TA_NORMAL / SPM all) */
    struct st_vslot { int32_t id; uint32_t tag; } *vhash;  /* (vhash_mask + 1) slots: id (-1 empty), hash tag */
    uint64_t vhash_mask;

    /* byte-level BPE */
    struct st_pair_slot *pairs;       /* (pairs_mask + 1) */
    uint64_t pairs_mask;
    int64_t n_merges;
    int32_t byte_id[256];             /* initial symbol for each byte, -1 none */
    bool ignore_merges;               /* whole pre-token in vocab is emitted directly (Llama 3) */
    bool nfc;                         /* NFC normaliser */
    pcre2_code *re;                   /* pre-tokenizer split regex (Isolated) */
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
    bool jit;

    /* SPM */
    bool add_space_prefix;
    int32_t spm_byte[256];            /* <0xXX> token per byte, -1 none */
    int32_t unk_id;

    /* added tokens, sorted by (first byte, length desc) */
    struct st_added *added;           /* (n_added) */
    int64_t n_added;
    int32_t added_first[257];         /* index range per first byte: [added_first[b], added_first[b+1]) */
    bool any_normalized_added;

    int32_t bos_id, eos_id;
    int32_t *prefix_ids, *suffix_ids; /* added by ST_TOK_ADD_SPECIAL */
    int n_prefix, n_suffix;
    int32_t *stop_ids;                /* (n_stop), sorted */
    int64_t n_stop, cap_stop;

    /* encode scratch: grows, never shrinks */
    char *s_text; size_t s_text_cap;          /* UTF-8 repaired text */
    int32_t *s_u32; size_t s_u32_cap;         /* NFC work buffer (code points) */
    struct st_bpe_sym *s_sym; size_t s_sym_cap;
    struct st_bpe_item *s_heap; size_t s_heap_cap;
    char *s_spm; size_t s_spm_cap;            /* SPM escaped text */
    int32_t *s_ids; int64_t s_ids_n, s_ids_cap;
    char *s_nfc; size_t s_nfc_cap;            /* NFC output (bytes) */

    /* pre-token cache: bytes -> ids, for pre-tokens up to ST_WCACHE_MAX_KEY bytes.
     * Fixed size, allocated on first use, cleared when full. */
    struct st_wslot { uint64_t h; uint32_t off; uint16_t klen, nids; } *wc;  /* (wc_mask + 1) */
    uint64_t wc_mask, wc_used;
    char *wc_arena; size_t wc_len, wc_cap;    /* key bytes then ids (int32, aligned) */
};

#define ST_WCACHE_MAX_KEY 48

/* ---- builder (tokenizer.c) -------------------------------------------- */

/* New empty tokenizer with n_vocab ids, arena reserved for arena_hint bytes. */
st_status st_tok_new(st_tokenizer_kind kind, int64_t n_vocab, size_t arena_hint, const char *src_path,
                     st_tokenizer_t **out);
/* Sets id's strings: key (as stored) and dec (decoded bytes). */
st_status st_tok_set(st_tokenizer_t *t, int32_t id, const char *key, size_t key_len,
                     const char *dec, size_t dec_len, uint32_t attr);
/* Byte-level: sets id from its alphabet form (key) and derives the decoded
 * bytes with HF's ByteLevel decoder rule (all chars mapped, else verbatim). */
st_status st_tok_set_bytelevel(st_tokenizer_t *t, int32_t id, const char *key, size_t key_len, uint32_t attr);
/* Builds the vocabulary hash over tokens with ST_TA_NORMAL (BPE) or all (SPM). */
st_status st_tok_build_vocab(st_tokenizer_t *t);
/* Reserves the merge table for n merges. */
st_status st_tok_reserve_merges(st_tokenizer_t *t, int64_t n);
/* Adds merge rank `rank` of (left, right), given in the stored (alphabet) form.
 * ST_ERR_FORMAT naming `where` when a side or the result is not in the vocab. */
st_status st_tok_add_merge(st_tokenizer_t *t, const char *left, size_t left_len,
                           const char *right, size_t right_len, int64_t rank, const char *where);
/* Compiles a pre-tokenizer regex given in Hugging Face (Oniguruma) syntax. */
st_status st_tok_set_regex(st_tokenizer_t *t, const char *pattern, const char *where);
/* Finishes: added-token index, byte tables, stop ids (known texts). */
st_status st_tok_finish(st_tokenizer_t *t);
/* Adds id to the stop ids (ids outside the vocabulary are skipped); ST_ERR_NOMEM only. */
st_status st_tok_add_stop_internal(st_tokenizer_t *t, int32_t id);
int32_t st_tok_lookup(const st_tokenizer_t *t, const char *key, size_t len);

/* Regexes by GGUF tokenizer.ggml.pre name (NULL for unknown) */
extern const char *const st_tok_regex_qwen2;
extern const char *const st_tok_regex_llama3;
extern const char *const st_tok_regex_gpt2;

#endif
