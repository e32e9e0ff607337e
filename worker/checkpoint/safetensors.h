/* safetensors.h -- reading and writing safetensors files (Hugging Face's tensor format) and
 * the model.safetensors.index.json of sharded checkpoints.
 *
 * Format: an 8-byte little-endian u64 N, N bytes of UTF-8 JSON header, then the data buffer.
 * The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (byte
 * offsets into the buffer, end exclusive, little-endian row-major data) and may hold a
 * "__metadata__" object whose values are all strings. The writer pads the header with spaces
 * so the buffer starts 8-byte aligned, and lays tensors out in the order given.
 *
 * The reader (st_open on a file, st_parse on a buffer) accepts only well-formed files and
 * refuses, naming the tensor or field and what was expected:
 *   - files shorter than 8 bytes, a header length of 0, over ST_MAX_HEADER_BYTES (100 MB, as
 *     the reference implementation), or running past the end of the file;
 *   - a header that is not a JSON object (json-c), a tensor entry that is not an object, a
 *     missing or mistyped dtype / shape / data_offsets, an unknown dtype, negative dimensions;
 *   - numel * dtype size != end - begin (shape mismatch), offsets out of the buffer,
 *     overlapping tensors, holes between tensors or unused bytes at the end of the buffer;
 *   - __metadata__ that is not an object of strings.
 *
 * Usage
 *    st_tensor_desc_t t[] = {{"wte.weight", ST_F32, 2, {V, C}, wte}};
 *    const char *meta[] = {"format", "pt"};
 *    st_write("model.safetensors", t, 1, meta, 1, &xxh, err, sizeof err);
 *    st_file_t *f; st_open("model.safetensors", &f, err, sizeof err);
 *    const st_tensor_t *w = st_find(f, "wte.weight");   // w->data points at the bytes
 *    st_close(f);
 */
#ifndef STRATA_SAFETENSORS_H
#define STRATA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_HEADER_BYTES (100ull * 1000 * 1000) /* reference implementation's limit */
#define ST_MAX_DIMS 8

typedef enum {
  ST_BOOL, ST_U8, ST_I8, ST_I16, ST_U16, ST_F16, ST_BF16, ST_I32, ST_U32, ST_F32, ST_I64,
  ST_U64, ST_F64,
  ST_NUM_DTYPES
} st_dtype_t;

/* "F32" etc. and element size in bytes; st_dtype_parse returns -1 for an unknown name. */
const char *st_dtype_name(st_dtype_t dt);
size_t st_dtype_size(st_dtype_t dt);
int st_dtype_parse(const char *name, st_dtype_t *out);

/* A tensor to write: data holds numel * dtype size bytes, little-endian row-major. */
typedef struct {
  const char *name;
  st_dtype_t dtype;
  int ndim; /* 0..ST_MAX_DIMS (0 = scalar) */
  int64_t shape[ST_MAX_DIMS];
  const void *data;
} st_tensor_desc_t;

/* Writes `path` (created/truncated, fsync'd before returning). meta_kv is n_meta pairs of
 * key, value strings (may be NULL). If xxh64_out is non-NULL it receives the XXH64 (seed 0)
 * of the whole file as written; size_out (may be NULL) its size in bytes. Names must be
 * unique, non-empty and not "__metadata__". */
int st_write(const char *path, const st_tensor_desc_t *tensors, int n, const char *const *meta_kv,
             int n_meta, uint64_t *xxh64_out, uint64_t *size_out, char *err, size_t errlen);

/* A tensor of an opened file. data points into the file's mapping (valid until st_close). */
typedef struct {
  char *name;
  st_dtype_t dtype;
  int ndim;
  int64_t shape[ST_MAX_DIMS];
  uint64_t numel;
  uint64_t begin, end; /* byte offsets in the data buffer */
  const void *data;    /* not necessarily aligned: memcpy out of it */
} st_tensor_t;

typedef struct {
  int num_tensors;
  st_tensor_t *tensors; /* in header order */
  int num_meta;
  char **meta_keys, **meta_vals;
  /* private */
  void *map;         /* file mapping (st_open) or NULL */
  size_t map_len;
  const uint8_t *buffer; /* start of the data buffer */
  uint64_t buffer_len;
} st_file_t;

/* Opens and validates a file (memory-mapped). Errors name the file and the problem. */
int st_open(const char *path, st_file_t **out, char *err, size_t errlen);
/* Validates a complete file image in memory; tensors point into `buf`, which must outlive the
 * result. (The fuzzing entry point.) */
int st_parse(const void *buf, size_t len, st_file_t **out, char *err, size_t errlen);
void st_close(st_file_t *f);
const st_tensor_t *st_find(const st_file_t *f, const char *name);
const char *st_meta(const st_file_t *f, const char *key); /* NULL if absent */

/* Sharded checkpoints: model.safetensors.index.json =
 *   {"metadata": {"total_size": BYTES}, "weight_map": {"NAME": "model-00001-of-00002.safetensors", ...}}
 * total_size is the summed byte size of all tensors' data. */
typedef struct {
  uint64_t total_size;
  int n;
  char **names; /* tensor names */
  char **files; /* file holding each tensor (a bare file name, no '/') */
} st_index_t;

int st_index_write(const char *path, const st_index_t *idx, uint64_t *xxh64_out,
                   uint64_t *size_out, char *err, size_t errlen);
/* Reads and validates an index (size-bounded; file names must be plain names ending in
 * .safetensors, no path separators). */
int st_index_read(const char *path, st_index_t **out, char *err, size_t errlen);
void st_index_free(st_index_t *idx);
/* File for a tensor, NULL if absent. */
const char *st_index_file(const st_index_t *idx, const char *name);

/* "model-00002-of-00004.safetensors"-style shard name: prefix-%05d-of-%05d.safetensors. */
void st_shard_name(char *buf, size_t len, const char *prefix, int index, int count);

/* XXH64 (seed 0) and size of a whole file; -1 with a message if it cannot be read. */
int st_file_xxh64(const char *path, uint64_t *xxh64_out, uint64_t *size_out, char *err,
                  size_t errlen);

#endif /* STRATA_SAFETENSORS_H */
