/* checkpoint.h -- checkpoints: a directory that Hugging Face tools and Strata both read.
 *
 * Layout of a checkpoint directory DIR:
 *   config.json                      HF GPT-2 config (model_type "gpt2", vocab_size, n_positions,
 *                                    n_embd, n_layer, n_head, layer_norm_epsilon 1e-5,
 *                                    activation_function "gelu_new", tie_word_embeddings true,
 *                                    architectures ["GPT2LMHeadModel"])
 *   model.safetensors                weights of a one-stage run (HF names and [in, out] layout; F32,
 *                                    or BF16 when the model's bf16_params says they are bf16
 *                                    values, as in a bf16-sr run: each tensor narrowed only if
 *                                    every value is exactly a bf16, else F32), or
 *   model-0000s-of-0000P.safetensors one file per pipeline stage s (the tensors it owns), plus
 *   model.safetensors.index.json     {"metadata": {"total_size": N}, "weight_map": {...}}
 *   optimizer.safetensors            AdamW moments "exp_avg.<name>", "exp_avg_sq.<name>" (F32), or
 *   optimizer-0000s-of-0000P.safetensors per stage (optional: only when moments are saved)
 *   vocab.json, merges.txt,          a BPE model's tokenizer (ckpt_tokenizer.h): the one it was
 *   tokenizer_config.json            trained with (train --tokenizer DIR; tokenizer.json instead
 *                                    of vocab.json + merges.txt when DIR has that), else GPT-2's
 *                                    shipped data/gpt2/ files for a vocabulary of 50257
 *   train_state.pb                   TrainState protobuf (proto/train_state.proto): step, data
 *                                    seed and position, RNG state, full config, layout, and the
 *                                    size + XXH64 of every other file above.
 * wte.weight is written once, by the stage that has the embedding (stage 0), even when the
 * last stage holds a tied copy; a loader fills every copy from that one tensor.
 * Tensors are always whole (the logical, tp = 1 shape; vocabulary unpadded), whatever tensor
 * parallelism wrote them: a tensor-parallel stage gathers its T parts (ckpt_assemble_full) and
 * one rank writes them (ckpt_write_shard_full); a loader takes its rank's part of each
 * (gpt2_tensor_slice), so any T x P x D layout loads any checkpoint.
 *
 * Writing is atomic: files go into DIR.tmp-XXXXXX (same parent), are fsync'd, the directory
 * is fsync'd and renamed to DIR (an existing DIR is swapped out atomically with
 * renameat2(RENAME_EXCHANGE) and removed -- only if it is itself a Strata checkpoint; any other
 * existing directory is refused, never deleted), and the parent is fsync'd. A crash leaves either the old DIR or the new one, plus at most a
 * stale DIR.tmp-* that readers ignore.
 *
 * Pipeline use (one writer per stage; with data parallelism only replica 0 of each stage):
 *    coordinator: ckpt_begin(dir, tmp, sizeof tmp, ...); broadcast tmp
 *    every stage: ckpt_write_shard(tmp, model, exp_avg, exp_avg_sq, stage, P, ...); barrier
 *                 (tensor-parallel: all-gather the parts of params and moments over the TP
 *                 group, ckpt_assemble_full each, and TP rank 0 ckpt_write_shard_full)
 *    coordinator: ckpt_commit(tmp, dir, &cfg, &state, P, ...)
 * Single rank: ckpt_save(dir, model, exp_avg, exp_avg_sq, &state, ...) does all three.
 *
 * Moments (exp_avg, exp_avg_sq) are flat float arrays with the layout of model->params
 * (num_params elements, tensor t at t.offset); pass NULL to skip them.
 *
 * Reading: ckpt_load verifies the directory (train_state.pb decodes; every file it lists exists
 * with the recorded size and XXH64; the weights are present) and then copies each tensor of the
 * given shard by name, whatever layout wrote it (resume onto another tp x pp x dp works; a
 * tensor-parallel shard takes its slice of each whole tensor). It refuses a
 * checkpoint of another model shape naming the tensor and both shapes, a dtype other than F32
 * or BF16 (BF16 is widened to fp32 exactly), or a missing tensor. Tensor names may also carry HF's "transformer." prefix.
 *
 * Llama (llama.h, strata train --arch llama): a whole model on one rank, saved by ckpt_save_llama,
 * or pipeline stages (llama_create_range), each writing its own tensors with
 * ckpt_write_shard_llama and the coordinator committing with ckpt_commit_llama (the files of a
 * GPT-2 pipeline checkpoint, above); ckpt_load_llama reads the tensors a model (or stage) holds
 * from either form, by name: config.json with LlamaConfig keys
 * (model_type "llama", architectures ["LlamaForCausalLM"], hidden_size, intermediate_size,
 * num_attention_heads, num_key_value_heads, num_hidden_layers, rms_norm_eps, rope_theta,
 * max_position_embeddings, vocab_size, tie_word_embeddings false), model.safetensors with
 * LlamaForCausalLM's tensor names ([out, in] weights, as nn.Linear), optimizer.safetensors and
 * train_state.pb as above (its ModelConfig holds vocab, ctx, layers, heads, dim; config.json the
 * rest). A loader of one family refuses a checkpoint of the other in one sentence.
 * Every function returns 0 or -1 with a message in err naming the file and the problem.
 */
#ifndef STRATA_CHECKPOINT_H
#define STRATA_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "gpt2.h"
#include "llama.h"
#include "strata_proto.h"

#define CKPT_CONFIG_FILE "config.json"
#define CKPT_STATE_FILE "train_state.pb"
#define CKPT_INDEX_FILE "model.safetensors.index.json"
#define CKPT_MODEL_FILE "model.safetensors"
#define CKPT_OPTIM_FILE "optimizer.safetensors"
#define CKPT_MODEL_PREFIX "model"     /* model-00001-of-00002.safetensors */
#define CKPT_OPTIM_PREFIX "optimizer" /* optimizer-00001-of-00002.safetensors */
#define CKPT_TOKENIZER_FILE "tokenizer.json"                /* byte-level models only */
#define CKPT_TOKENIZER_CONFIG_FILE "tokenizer_config.json"
#define CKPT_GPT2_EOT 50256 /* GPT-2's <|endoftext|> */
#define CKPT_LAYER_NORM_EPS 1e-5
#define CKPT_MAX_CONFIG_BYTES (1u << 20)

/* Creates DIR.tmp-XXXXXX next to DIR (creating DIR's parent if needed) and returns its path in
 * tmp_out. */
int ckpt_begin(const char *dir, char *tmp_out, size_t tmp_len, char *err, size_t errlen);

/* Writes stage `stage` of `num_stages`: the weights the shard owns (wte.weight only when
 * m->range.has_embed) into model.safetensors (num_stages == 1) or
 * model-<stage+1>-of-<num_stages>.safetensors, and, when exp_avg and exp_avg_sq are given,
 * the moments of the same tensors into the matching optimizer file. The shard must be whole
 * (m->range.tp_size == 1; otherwise ckpt_write_shard_full). */
int ckpt_write_shard(const char *tmp_dir, const gpt2_model_t *m, const float *exp_avg,
                     const float *exp_avg_sq, int stage, int num_stages, char *err, size_t errlen);

/* Tensor parallelism. The "full layout" of a shard: its whole logical tensors in catalogue
 * order, tensor i at the sum of full_numel of the tensors before it (at tp = 1 the model's own
 * flat layout). ckpt_full_numel: the elements of that layout. */
size_t ckpt_full_numel(const gpt2_model_t *m);
/* Assembles one flat array (parameters or a moment) of the full layout from the parts of all
 * m->range.tp_size ranks: parts holds tp_size arrays of m->num_params, rank r's at
 * r * num_params (as coll_allgather leaves them); padding rows of the vocabulary are dropped.
 * full receives ckpt_full_numel(m) floats. 0, or -1 with a message. */
int ckpt_assemble_full(const gpt2_model_t *m, const float *parts, float *full, char *err,
                       size_t errlen);
/* The same two for any family's catalogue (a GPT-2 shard or a Llama stage): tensors[0..n) with
 * num_params local elements per rank, each tensor's tp_size parts. */
size_t ckpt_tensors_full_numel(const gpt2_tensor_t *tensors, int num_tensors);
int ckpt_assemble_tensors(const gpt2_tensor_t *tensors, int num_tensors, size_t num_params, const float *parts,
                          float *full, char *err, size_t errlen);
/* ckpt_write_shard from whole tensors: params, exp_avg, exp_avg_sq (the moments may be NULL) in
 * the full layout, written with the logical shapes. Any tp_size. */
int ckpt_write_shard_full(const char *tmp_dir, const gpt2_model_t *m, const float *params,
                          const float *exp_avg, const float *exp_avg_sq, int stage,
                          int num_stages, char *err, size_t errlen);

/* Coordinator, after every stage wrote: checks that all num_stages weight files exist, writes
 * the index (num_stages > 1) and config.json, records every file's size and XXH64 in
 * state->files, writes train_state.pb (state->model is set from cfg), fsyncs and renames
 * tmp_dir to dir. On failure tmp_dir is left for ckpt_abort. */
int ckpt_commit(const char *tmp_dir, const char *dir, const gpt2_config_t *cfg,
                strata_train_state_t *state, int num_stages, char *err, size_t errlen);

/* Removes a temporary directory left by a failed write (flat directory only). */
void ckpt_abort(const char *tmp_dir);

/* Single-rank save: begin + write_shard(0, 1) + commit (abort on failure). The model must own
 * the whole network (one stage). */
int ckpt_save(const char *dir, const gpt2_model_t *m, const float *exp_avg,
              const float *exp_avg_sq, strata_train_state_t *state, char *err, size_t errlen);

/* Reads DIR/config.json into cfg; validates model_type "gpt2", positive sizes, n_embd divisible
 * by n_head, and (when present) layer_norm_epsilon 1e-5, activation gelu_new, tied embeddings. */
int ckpt_read_config(const char *dir, gpt2_config_t *cfg, char *err, size_t errlen);
/* The same for a config.json at `path` (a Hugging Face GPT-2 config, e.g. `strata train
 * --config FILE`); also refuses an n_inner other than 4 x n_embd. */
int ckpt_read_config_file(const char *path, gpt2_config_t *cfg, char *err, size_t errlen);

/* The model family of a config.json. */
typedef enum { CKPT_ARCH_GPT2 = 0, CKPT_ARCH_LLAMA = 1 } ckpt_arch_t;
/* "gpt" or "llama": the value of strata train's --arch. */
const char *ckpt_arch_name(ckpt_arch_t arch);

typedef struct {
  ckpt_arch_t arch;
  gpt2_config_t shape;  /* vocab, ctx, layers, heads, dim (either family) */
  llama_config_t llama; /* arch LLAMA: the whole configuration */
} ckpt_model_config_t;

/* Reads a config.json of either family: model_type "gpt2" (the checks of ckpt_read_config_file)
 * or "llama" (LlamaConfig keys; num_key_value_heads defaults to num_attention_heads, rms_norm_eps
 * to 1e-6 and rope_theta to 10000 as in Hugging Face; tie_word_embeddings true, rope_scaling,
 * biases, a hidden_act other than silu and what llama_config_check refuses are refused).
 * ckpt_read_config(_file) refuse a Llama config in one sentence. */
int ckpt_read_model_config_file(const char *path, ckpt_model_config_t *cfg, char *err, size_t errlen);
int ckpt_read_model_config(const char *dir, ckpt_model_config_t *cfg, char *err, size_t errlen);

/* Writes a Llama config.json (the keys above, bos / eos as ckpt_special_token) at path. */
int ckpt_write_llama_config(const char *path, const llama_config_t *cfg, char *err, size_t errlen);

/* ckpt_save and ckpt_load of a whole Llama model (moments in m's flat layout, or NULL). Loading
 * refuses a GPT-2 checkpoint, another shape, or another kv_heads / ffn / eps / theta. */
int ckpt_save_llama(const char *dir, const llama_model_t *m, const float *exp_avg,
                    const float *exp_avg_sq, strata_train_state_t *state, char *err, size_t errlen);
int ckpt_load_llama(const char *dir, llama_model_t *m, float *exp_avg, float *exp_avg_sq,
                    strata_train_state_t *state_out, char *err, size_t errlen);
/* ckpt_write_shard and ckpt_commit of Llama pipeline stages: stage `stage` of num_stages writes
 * the tensors it holds (and their moments, or NULL), the coordinator commits with the whole
 * model's configuration (config.json as ckpt_save_llama writes it). A tensor-parallel stage
 * (tp_size > 1) gathers its parts over the TP group (ckpt_assemble_tensors) and one rank writes
 * the whole tensors with ckpt_write_shard_full_llama, as ckpt_write_shard_full; ckpt_load_llama
 * takes a tensor-parallel rank's part of each whole tensor, so any tp x pp layout resumes any. */
int ckpt_write_shard_llama(const char *tmp_dir, const llama_model_t *m, const float *exp_avg,
                           const float *exp_avg_sq, int stage, int num_stages, char *err, size_t errlen);
int ckpt_write_shard_full_llama(const char *tmp_dir, const llama_model_t *m, const float *params,
                                const float *exp_avg, const float *exp_avg_sq, int stage, int num_stages,
                                char *err, size_t errlen);
int ckpt_commit_llama(const char *tmp_dir, const char *dir, const llama_config_t *cfg,
                      strata_train_state_t *state, int num_stages, char *err, size_t errlen);

/* Writes a config.json for cfg at `path` (fsync'd): Hugging Face GPT-2 keys, with bos_token_id
 * and eos_token_id = ckpt_special_token(vocab). */
int ckpt_write_config(const char *path, const gpt2_config_t *cfg, char *err, size_t errlen);
/* The bos / eos id of a vocabulary: GPT-2's <|endoftext|> 50256 when the vocabulary has it, else
 * 0 (a byte model: the NUL byte, which text does not contain, so generation is not cut short). */
int ckpt_special_token(int vocab);
/* A byte-level model (vocab 256): DIR/tokenizer.json (a Hugging Face `tokenizers` byte-level BPE
 * without merges: id = byte value) and DIR/tokenizer_config.json (PreTrainedTokenizerFast, bos /
 * eos as config.json), so AutoTokenizer.from_pretrained(DIR) loads it. Other vocabularies: nothing
 * (0). 0, or -1 with a message. */
int ckpt_write_tokenizer(const char *dir, const gpt2_config_t *cfg, char *err, size_t errlen);

/* Reads DIR/train_state.pb; with verify, also checks every recorded file (exists, size,
 * XXH64) and that config.json and the weights are among them. */
int ckpt_read_state(const char *dir, strata_train_state_t *state, int verify, char *err,
                    size_t errlen);

/* Verifies DIR and loads the shard `m` (and its moments when exp_avg / exp_avg_sq are non-NULL)
 * by tensor name. state_out (may be NULL) receives the training state. */
int ckpt_load(const char *dir, gpt2_model_t *m, float *exp_avg, float *exp_avg_sq,
              strata_train_state_t *state_out, char *err, size_t errlen);

/* DIR name of the checkpoint of `step` in a run directory: RUN/ckpt-00000100. */
void ckpt_step_dir(char *buf, size_t len, const char *run_dir, uint64_t step);

/* --resume auto: the newest RUN/ckpt-<step> that verifies (torn or corrupt ones are skipped);
 * returns 0 and its path in out, or -1 with a message if there is none. */
int ckpt_find_latest(const char *run_dir, char *out, size_t outlen, char *err, size_t errlen);
/* The same, calling on_skip(ctx, dir, reason) for every newer checkpoint it skips (with the
 * verification error that rejected it), so --resume auto can say what it passed over. */
int ckpt_find_latest_logged(const char *run_dir, char *out, size_t outlen,
                            void (*on_skip)(void *ctx, const char *dir, const char *why), void *ctx,
                            char *err, size_t errlen);

/* --keep K: removes all but the newest K valid-named RUN/ckpt-* directories (and stale
 * RUN/ckpt-*.tmp-* directories). Returns the number removed, or -1. */
int ckpt_prune(const char *run_dir, int keep, char *err, size_t errlen);

#endif /* STRATA_CHECKPOINT_H */
