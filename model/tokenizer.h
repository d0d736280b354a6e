/* model/tokenizer.h — tokenizers (byte-level BPE from tokenizer.json or a GGUF
 * "gpt2" vocabulary, SentencePiece-style GGUF "llama" vocabularies), streaming
 * detokenization and chat templates.
 *
 * Encoding follows Hugging Face `tokenizers` exactly for the byte-level BPE
 * family (Qwen2/2.5/3, Llama 3):
 *   1. added tokens (special or not) are cut out of the raw text first,
 *      leftmost-longest; with ST_TOK_PARSE_SPECIAL clear, tokens marked special
 *      are left as text (HF split_special_tokens=True);
 *   2. each remaining piece is NFC-normalised (utf8proc) when the tokenizer
 *      asks for it, split by the pre-tokenizer regex (PCRE2, UTF + UCP, JIT,
 *      `\s` rewritten to the Unicode White_Space set that Oniguruma uses), and
 *      every pre-token is BPE-merged (lowest merge rank first, leftmost on ties).
 * Input that is not valid UTF-8 is first made valid the way Python's
 * bytes.decode("utf-8", errors="replace") does (each maximal ill-formed
 * subpart becomes U+FFFD): HF's API only takes str, so that is the text HF
 * would have been given.
 *
 * Decoding concatenates the bytes of each token and interprets them as UTF-8,
 * replacing ill-formed subparts by U+FFFD exactly as Rust's
 * String::from_utf8_lossy (HF) does.
 *
 * Thread safety: encoding uses scratch memory inside the tokenizer, so one
 * st_tokenizer_t encodes on one thread at a time. Decoding and the queries are
 * read-only and may run concurrently. */
#ifndef STRATA_TOKENIZER_H
#define STRATA_TOKENIZER_H

#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_tokenizer st_tokenizer_t;

/* Limits on what a tokenizer file may hold (docs/limits.md); larger is
 * ST_ERR_FORMAT naming the file, the entry and the limit. Token ids are below
 * ST_MODEL_MAX_VOCAB. */
#define ST_TOK_MAX_JSON_BYTES   (512u << 20)  /* tokenizer.json */
#define ST_TOK_MAX_TOKEN_BYTES  65536         /* one vocabulary string, merge side or added token */
#define ST_TOK_MAX_MERGES       (1 << 23)
#define ST_TOK_MAX_REGEX_BYTES  65536         /* the pre-tokenizer regex */
#define ST_TOK_MAX_SPECIALS     64            /* ids a post-processor adds around the text */

typedef enum st_tokenizer_kind {
    ST_TOKENIZER_BPE = 0,   /* byte-level BPE (tokenizer.json, GGUF "gpt2") */
    ST_TOKENIZER_SPM,       /* SentencePiece-style BPE with scores (GGUF "llama") */
} st_tokenizer_kind;

/* ---- loading ------------------------------------------------------------ */

/* Loads a Hugging Face tokenizer.json (path to the file, or to a directory
 * holding it). Sibling tokenizer_config.json, generation_config.json and
 * config.json are read when present for BOS/EOS and the stop tokens.
 * Supported: model BPE (merges as "a b" strings or ["a","b"] pairs,
 * ignore_merges), normalizer null/NFC, pre_tokenizer Split(Regex, Isolated)
 * + ByteLevel(use_regex=false) or ByteLevel(use_regex=true), decoder ByteLevel,
 * post_processor ByteLevel / TemplateProcessing (prefix/suffix specials).
 * Anything else is ST_ERR_UNSUPPORTED naming the JSON key. Malformed JSON is
 * ST_ERR_FORMAT naming file:line:column. */
st_status st_tokenizer_load_json(const char *path, st_tokenizer_t **out);

/* Loads the vocabulary stored in a GGUF file's metadata (tokenizer.ggml.*):
 * model "gpt2" (byte-level BPE; tokenizer.ggml.pre picks the regex: "qwen2",
 * "deepseek-r1-qwen", "llama-bpe"/"llama3"/"llama-v3", "gpt2"/"default") or
 * "llama" (SentencePiece with scores and <0xXX> byte tokens). */
st_status st_tokenizer_load_gguf(const st_model *m, st_tokenizer_t **out);
/* The same from a parsed GGUF header (for vocab-only files). */
st_status st_tokenizer_load_gguf_meta(const struct st_gguf *g, const char *path, st_tokenizer_t **out);

/* Picks by m->tok_source: tokenizer.json for HF directories, GGUF metadata for
 * GGUF files. ST_ERR_FORMAT with a hint when the model carries no tokenizer. */
st_status st_tokenizer_from_model(const st_model *m, st_tokenizer_t **out);

/* What a user names on the command line: a tokenizer.json, a directory
 * holding one (a Hugging Face model directory), or a GGUF file (only its
 * metadata is read; vocabulary-only files work). */
st_status st_tokenizer_load_path(const char *path, st_tokenizer_t **out);

void st_tokenizer_free(st_tokenizer_t *tok);   /* accepts NULL */

/* ---- encoding ----------------------------------------------------------- */

enum st_tok_flags {
    ST_TOK_PARSE_SPECIAL = 1u << 0,  /* match added tokens marked special (<|im_start|> ...) in the text */
    ST_TOK_ADD_SPECIAL   = 1u << 1,  /* add the BOS/EOS the tokenizer adds by default (HF add_special_tokens) */
    ST_TOK_DEFAULT       = ST_TOK_PARSE_SPECIAL | ST_TOK_ADD_SPECIAL, /* HF tokenizer.encode(text) */
};

/* Encodes text[0, len) into ids[0, cap). *n_ids receives the number of ids of
 * the full encoding; when it exceeds cap, nothing useful is in ids and the
 * call returns ST_ERR_USAGE ("needs N ids") — grow and retry, or use
 * st_tokenizer_encode_alloc. Not reentrant (see thread safety). */
st_status st_tokenizer_encode(st_tokenizer_t *tok, const char *text, size_t len, unsigned flags,
                              int32_t *ids, int64_t cap, int64_t *n_ids);

/* Same, appending to a growing malloc'ed array: *ids (NULL or from an earlier
 * call), *n (ids in it) and *cap (its capacity, in ids) are updated. The
 * caller frees *ids. */
st_status st_tokenizer_encode_alloc(st_tokenizer_t *tok, const char *text, size_t len, unsigned flags,
                                    int32_t **ids, int64_t *n, int64_t *cap);

/* ---- decoding ----------------------------------------------------------- */

enum st_detok_flags {
    ST_DETOK_SKIP_SPECIAL = 1u << 0,  /* drop special tokens (HF skip_special_tokens=True) */
};

/* Decodes ids into out like snprintf: writes at most cap-1 bytes plus a NUL
 * (cap may be 0), and *out_len receives the full length of the text. Ids
 * outside the vocabulary are skipped, as HF does. Invalid UTF-8 in the token
 * bytes becomes U+FFFD per maximal ill-formed subpart. */
st_status st_tokenizer_decode(const st_tokenizer_t *tok, const int32_t *ids, int64_t n, unsigned flags,
                              char *out, size_t cap, size_t *out_len);

/* Streaming decoder: push one token at a time and get the text that became
 * complete. An incomplete UTF-8 sequence at the end is held back until it
 * completes (or is found invalid, then U+FFFD). The concatenation of every
 * push and the final flush equals st_tokenizer_decode of the whole sequence.
 * Memory is allocated once in init; push never allocates. */
typedef struct st_detok_stream st_detok_stream_t;
st_status st_detok_stream_init(const st_tokenizer_t *tok, unsigned flags, st_detok_stream_t **out);
/* Returns the new text (NUL-terminated; *len bytes, may be 0), valid until
 * the next call on s. */
const char *st_detok_stream_push(st_detok_stream_t *s, int32_t id, size_t *len);
/* End of stream: returns the held-back bytes as U+FFFD (they never completed). */
const char *st_detok_stream_flush(st_detok_stream_t *s, size_t *len);
void st_detok_stream_reset(st_detok_stream_t *s);
void st_detok_stream_free(st_detok_stream_t *s);   /* accepts NULL */

/* ---- queries ------------------------------------------------------------ */

st_tokenizer_kind st_tokenizer_get_kind(const st_tokenizer_t *tok);
/* Size of the id space (max id + 1). GGUF vocabularies include their
 * padding entries; a model's logits may still be longer (Qwen pads to 151936). */
int64_t st_tokenizer_n_vocab(const st_tokenizer_t *tok);
/* The bytes one token decodes to (may be part of a UTF-8 sequence); NULL for
 * an id outside the vocabulary. Not NUL-terminated. */
const char *st_tokenizer_token_bytes(const st_tokenizer_t *tok, int32_t id, size_t *len);
/* The token's string as stored in the vocabulary (byte-level alphabet, "Ġthe";
 * added tokens: their content). NULL for an id outside the vocabulary. */
const char *st_tokenizer_token_text(const st_tokenizer_t *tok, int32_t id, size_t *len);
/* Id of the token whose stored string (as token_text) equals text, or -1. */
int32_t st_tokenizer_find(const st_tokenizer_t *tok, const char *text, size_t len);
bool st_tokenizer_is_special(const st_tokenizer_t *tok, int32_t id);   /* special added / CONTROL */
bool st_tokenizer_is_added(const st_tokenizer_t *tok, int32_t id);     /* any added token */
int32_t st_tokenizer_bos(const st_tokenizer_t *tok);                   /* -1 when none */
int32_t st_tokenizer_eos(const st_tokenizer_t *tok);                   /* -1 when none */
/* End-of-generation tokens: eos, the eos ids of generation_config.json or
 * the GGUF eos/eot/eom keys, and the end-of-turn tokens found by text
 * (<|im_end|>, <|endoftext|>, <|eot_id|>, <|end_of_text|>, <|eom_id|>,
 * <|end|>, <end_of_turn>). Sorted ascending. */
const int32_t *st_tokenizer_stop_ids(const st_tokenizer_t *tok, int64_t *n);
bool st_tokenizer_is_stop(const st_tokenizer_t *tok, int32_t id);
/* Adds one stop id (deployment overrides). ST_ERR_CONFIG for an id outside the vocabulary. */
st_status st_tokenizer_add_stop(st_tokenizer_t *tok, int32_t id);
/* Longest token in decoded bytes (sizes streaming buffers). */
size_t st_tokenizer_max_token_bytes(const st_tokenizer_t *tok);

/* ---- UTF-8 and normalisation helpers (exposed for tests and the CLI) ---- */

/* Replaces each maximal ill-formed UTF-8 subpart of src by U+FFFD into dst
 * (cap bytes; needs at most 3*len). Returns the bytes written. */
size_t st_utf8_lossy(const char *src, size_t len, char *dst, size_t cap);
/* True when src is valid UTF-8. */
bool st_utf8_valid(const char *src, size_t len);

/* ---- chat templates ----------------------------------------------------- */

typedef enum st_chat_kind {
    ST_CHAT_NONE = 0,    /* no template: the prompt is used as is */
    ST_CHAT_CHATML,      /* plain ChatML, no default system prompt */
    ST_CHAT_QWEN2,       /* ChatML, default system "You are a helpful assistant." */
    ST_CHAT_QWEN25,      /* ChatML, default system "You are Qwen, created by Alibaba Cloud. ..." */
    ST_CHAT_QWEN3,       /* ChatML, <think> handling and the enable_thinking switch */
    ST_CHAT_LLAMA3,      /* Llama 3 header/eot format, <|begin_of_text|> first */
    ST_CHAT_LLAMA31,     /* Llama 3.1/3.2: system header with knowledge cut-off and date */
    ST_CHAT_KIND_COUNT
} st_chat_kind;

/* "none", "chatml", "qwen2", "qwen2.5", "qwen3", "llama3", "llama3.1". */
const char *st_chat_kind_name(st_chat_kind k);
/* Name (as above) to kind; ST_ERR_CONFIG with a did-you-mean hint otherwise. */
st_status st_chat_kind_from_name(const char *name, st_chat_kind *out);
/* Kind from a model's Jinja template text (st_model.chat_template): contains
 * "<|im_start|>" → a ChatML variant (Qwen3 when it handles <think> /
 * enable_thinking, Qwen2.5 / Qwen2 by their default system prompt, else
 * plain ChatML); "<|start_header_id|>" → Llama 3 (3.1 when it writes a
 * "Cutting Knowledge Date"). NULL or unknown → ST_CHAT_NONE. */
st_chat_kind st_chat_detect(const char *jinja_template);

struct st_chat_msg {
    const char *role;               /* "system", "user", "assistant", "tool" */
    const char *content;            /* UTF-8, NUL-terminated */
    const char *reasoning_content;  /* Qwen3 assistant turns: thinking text, or NULL */
};

/* Renders messages as the model's template does (same bytes as the Jinja
 * template in transformers' apply_chat_template, tools not supported).
 * enable_thinking only matters for ST_CHAT_QWEN3 (false appends the empty
 * <think> block). *out is malloc'ed and NUL-terminated; the caller frees it.
 * ST_ERR_USAGE for an unknown role or no messages where one is needed. */
st_status st_chat_render(st_chat_kind kind, const struct st_chat_msg *msgs, size_t n_msgs,
                         bool add_generation_prompt, bool enable_thinking,
                         char **out, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_TOKENIZER_H */
