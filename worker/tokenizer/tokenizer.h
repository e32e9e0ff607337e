/* tokenizer.h -- byte-level BPE, exactly as GPT-2 encodes text (tiktoken's `gpt2` encoding),
 * and the other byte-level BPE vocabularies of Hugging Face tokenizer.json files.
 *
 * Encoding text, as OpenAI's encoder.py and tiktoken do it:
 *  1. Pre-tokenisation: a regular expression cuts the text into pieces. GPT-2's pattern is
 *       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *     (contractions, letter runs, number runs, other runs each with at most one leading space,
 *     then whitespace, leaving the last space of a run to the word after it). It runs in PCRE2
 *     (JIT, UTF + UCP: \s is Unicode White_Space plus U+180E; tiktoken's Rust \s is White_Space,
 *     JavaScript's lacks U+0085 and has U+FEFF: those three characters are where the ports
 *     differ). A tokenizer.json's Split pre-tokenizer brings its own pattern (Llama 3's).
 *     Bytes that are not valid UTF-8 match nothing; each run of them is a piece of its own, so
 *     any byte string encodes and decode(encode(x)) == x.
 *  2. Each piece's bytes start as one token per byte (the vocabulary's tokens are byte strings,
 *     written in vocabulary files through GPT-2's byte-to-unicode map: printable Latin-1 bytes
 *     as themselves, the other 68 bytes as U+0100..U+0143), then the adjacent pair of lowest
 *     merge rank is merged, leftmost first, until no adjacent pair has a merge. A cache of
 *     recent pieces (one per tokenizer) skips this for words seen before.
 *  3. Special tokens (`<|endoftext|>`, tokenizer.json's added tokens marked special) are never
 *     produced by merges; tok_encode finds their text only when asked to (allow_special).
 *
 * Files (tok_load_dir reads the first it finds in DIR):
 *   tokenizer.json                Hugging Face, model.type "BPE" with a ByteLevel pre-tokenizer
 *   vocab.json + merges.txt       Hugging Face GPT2Tokenizer's files
 *   encoder.json + vocab.bpe      OpenAI's GPT-2 release (the same content; data/gpt2/ ships them)
 * A missing or malformed file is refused with one sentence naming the file, what is wrong and
 * where (line or key).
 *
 * Threads: a tok_t is read-only after loading except for its piece cache, so encode on one
 * thread at a time per tok_t; decoding functions may be called from any thread.
 *
 *   tok_t *t;
 *   if (tok_load_dir("data/gpt2", &t, err, sizeof err)) fail(err);
 *   tok_ids_t ids = {0};
 *   tok_encode(t, "Hello world", 11, 0, &ids, err, sizeof err);   // 15496 995
 *   char *text; size_t n;
 *   tok_decode(t, ids.v, ids.n, &text, &n, err, sizeof err);      // "Hello world"
 *   free(text); tok_ids_free(&ids); tok_free(t);
 */
#ifndef STRATA_TOKENIZER_H
#define STRATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct tok tok_t;

/* A growable array of token ids (zero-initialise it; tok_encode appends). */
typedef struct {
  int32_t *v;
  size_t n;   /* ids held */
  size_t cap; /* ids allocated */
} tok_ids_t;

void tok_ids_free(tok_ids_t *ids);

/* GPT-2's end-of-text token, which starts every document of an llm.c shard. */
#define TOK_GPT2_EOT 50256
#define TOK_GPT2_VOCAB 50257
/* The shipped GPT-2 vocabulary, relative to share/strata/ (datapath.h). */
#define TOK_GPT2_DIR "data/gpt2"

/* 1 when DIR holds one of the sets of Files (a checkpoint that carries its tokenizer), else 0. */
int tok_dir_has_files(const char *dir);
/* Loads a tokenizer from DIR (see Files). 0, or -1 with err. */
int tok_load_dir(const char *dir, tok_t **out, char *err, size_t errlen);
/* From a vocabulary (encoder.json / vocab.json: {"token": id, ...}) and a merges file
 * (vocab.bpe / merges.txt: one "left right" pair per line, by rank; a first line starting
 * "#version" is skipped). `<|endoftext|>`, when in the vocabulary, is the special token. */
int tok_load_files(const char *vocab_json, const char *merges_txt, tok_t **out, char *err, size_t errlen);
/* From a Hugging Face tokenizer.json of byte-level BPE type. */
int tok_load_hf_json(const char *path, tok_t **out, char *err, size_t errlen);
/* The shipped GPT-2 files (share/strata/data/gpt2/). */
int tok_load_gpt2(tok_t **out, char *err, size_t errlen);
/* The tokenizer of a model with `vocab` tokens whose checkpoint is `dir`: none (*out NULL, 0)
 * for a byte-level model (256: token = byte); else the checkpoint's files (Files), or for
 * 50257 tokens without them GPT-2's shipped vocabulary; none for another vocabulary without
 * files (the model then takes token ids). -1 with err for files that cannot be read or a
 * tokenizer with more tokens than the model. */
int tok_load_model(const char *dir, int vocab, tok_t **out, char *err, size_t errlen);
void tok_free(tok_t *t);

/* Largest id + 1 (50257 for GPT-2). */
int tok_vocab_size(const tok_t *t);
/* The id of `<|endoftext|>` (or of tokenizer.json's first special token named like an end of
 * text: <|endoftext|>, <|end_of_text|>, </s>), -1 when there is none. */
int32_t tok_eot(const tok_t *t);
/* Bytes of token `id` (its text for a special token); NULL with *len 0 for an id outside the
 * vocabulary or unused. */
const char *tok_token_bytes(const tok_t *t, int32_t id, size_t *len);

/* Appends the ids of text[0..n) to *out. allow_special: text equal to a special token becomes
 * that token; otherwise it is ordinary text (tiktoken's encode_ordinary). 0, or -1 with err
 * (out of memory, or an internal regex failure). */
int tok_encode(tok_t *t, const char *text, size_t n, int allow_special, tok_ids_t *out, char *err,
               size_t errlen);

/* The bytes of ids[0..n) concatenated into a new NUL-terminated buffer (*text, *len without the
 * NUL; free it). The bytes are those encoded, whether or not they are valid UTF-8 (a cut
 * between tokens can split a character): utf8.h validates and streams. -1 with err for an id
 * outside the vocabulary, naming it and its position. */
int tok_decode(const tok_t *t, const int32_t *ids, size_t n, char **text, size_t *len, char *err,
               size_t errlen);

#endif /* STRATA_TOKENIZER_H */
