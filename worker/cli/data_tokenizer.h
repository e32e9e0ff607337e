/* data_tokenizer.h -- the BPE tokenizer through which `strata train` and `strata eval` read text
 * data (data.h's text encoder): each text file is encoded when it is opened, <|endoftext|>
 * first and then the ids of the whole file as ordinary text, exactly the tokens `strata tokenize
 * --in FILE` writes into its shard. Rank 0 (or a process without MPI) logs the tokenizer, the
 * bytes, tokens and seconds of each file.
 *
 *   if ((rc = data_tokenizer_install("train", "gpt2", NULL))) return rc;  // 2: bad input, said
 *   ... data_open(...) ...
 *   data_tokenizer_remove();
 */
#ifndef STRATA_DATA_TOKENIZER_H
#define STRATA_DATA_TOKENIZER_H

/* Installs the encoder of `flag` when given ("gpt2": the shipped vocabulary; else a directory as
 * `strata tokenize --tokenizer DIR` reads it), else of checkpoint `ckpt` when not NULL and its
 * model is not byte-level (tokenizer.h's tok_load_model), else none (text stays bytes).
 * Returns 0, or 2 after logging "CMD: ..." (unreadable files, no end-of-text token, more than
 * 65536 tokens). A checkpoint whose config cannot be read installs nothing: the command then
 * reports it where it reads the checkpoint. */
int data_tokenizer_install(const char *cmd, const char *flag, const char *ckpt);

/* Vocabulary of the installed tokenizer; 0 when none is installed. */
int data_tokenizer_vocab(void);

/* Removes the encoder and frees the tokenizer. */
void data_tokenizer_remove(void);

#endif
