/* ckpt_tokenizer.h -- the BPE tokenizer a checkpoint carries, as a Hugging Face model directory
 * does, so that infer, serve, eval and Hugging Face tools turn text into the model's tokens and
 * back. ckpt_commit writes, for a model with vocabulary V:
 *   - the carried tokenizer, when one of V tokens was named at start-up (ckpt_carry_tokenizer:
 *     train --tokenizer DIR, or the tokenizer of the checkpoint a run resumes): its
 *     tokenizer.json, or its vocab.json + merges.txt (encoder.json + vocab.bpe are written under
 *     those names), and its tokenizer_config.json (a GPT-2-style one is written when it has none);
 *   - otherwise, for V = 50257, GPT-2's shipped data/gpt2/ files (vocab.json, merges.txt,
 *     tokenizer_config.json); a broken install without them warns and writes none;
 *   - otherwise nothing here (byte-level models: ckpt_write_tokenizer in checkpoint.h).
 * The carried files are read into memory when named, so the source directory may be rotated
 * away or changed while the run goes on. Set it at start-up, before any checkpoint is written
 * (not thread-safe against a concurrent ckpt_commit).
 *
 *   if (ckpt_carry_tokenizer("my_tok/", 32000, err, sizeof err)) fail(err);
 *   ... every later ckpt_commit of a 32000-token model carries my_tok's files ...
 *   ckpt_carry_tokenizer(NULL, 0, err, sizeof err);   // forget them
 */
#ifndef STRATA_CKPT_TOKENIZER_H
#define STRATA_CKPT_TOKENIZER_H

#include <stddef.h>

#include "gpt2.h"

/* Reads the tokenizer files of `dir` (the first of tokenizer.json, vocab.json + merges.txt,
 * encoder.json + vocab.bpe, as tokenizer.h's tok_load_dir looks for them; plus
 * tokenizer_config.json if present) for checkpoints of a `vocab`-token model. dir NULL forgets
 * the carried tokenizer. 0, or -1 with a message naming the directory and the fix in err (the
 * previously carried tokenizer is then forgotten too). */
int ckpt_carry_tokenizer(const char *dir, int vocab, char *err, size_t errlen);

/* Vocabulary of the carried tokenizer; 0 when none is carried. */
int ckpt_carried_tokenizer_vocab(void);

/* Writes the BPE tokenizer files described above into checkpoint directory `dir` (nothing for a
 * model with neither a carried tokenizer of its vocabulary nor GPT-2's). 0, or -1 with err. */
int ckpt_write_bpe_tokenizer(const char *dir, const gpt2_config_t *cfg, char *err, size_t errlen);

#endif
