/* safetensors.c -- the safetensors writer and validating reader, and the sharded-checkpoint
 * index (model.safetensors.index.json). The header is built and parsed with json-c; the data
 * buffer is streamed out with an XXH64 of the whole file computed on the way (the checkpoint
 * records it), and read back through a read-only mapping. Contract in safetensors.h. */
#include "safetensors.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* Largest index.json accepted (a GPT-2 index with thousands of tensors is ~100 KB). */
#define ST_MAX_INDEX_BYTES (64ull * 1024 * 1024)
/* Write buffer for streaming tensors out. */
#define ST_IO_CHUNK_BYTES (1u << 20)

static const struct {
  const char *name;
  size_t size;
} dtypes[ST_NUM_DTYPES] = {
    [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},   [ST_I8] = {"I8", 1},
    [ST_I16] = {"I16", 2},   [ST_U16] = {"U16", 2}, [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_I32] = {"I32", 4}, [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},   [ST_I64] = {"I64", 8}, [ST_U64] = {"U64", 8},
    [ST_F64] = {"F64", 8},
};

const char *st_dtype_name(st_dtype_t dt) { return (unsigned)dt < ST_NUM_DTYPES ? dtypes[dt].name : "?"; }
size_t st_dtype_size(st_dtype_t dt) { return (unsigned)dt < ST_NUM_DTYPES ? dtypes[dt].size : 0; }

int st_dtype_parse(const char *name, st_dtype_t *out) {
  for (int i = 0; i < ST_NUM_DTYPES; i++)
    if (strcmp(name, dtypes[i].name) == 0) {
      *out = (st_dtype_t)i;
      return 0;
    }
  return -1;
}

void st_shard_name(char *buf, size_t len, const char *prefix, int index, int count) {
  snprintf(buf, len, "%s-%05d-of-%05d.safetensors", prefix, index, count);
}

/* ---------------------------------------------------------------- writing */

typedef struct {
  int fd;
  XXH64_state_t *xxh;
  uint64_t written;
} wfile_t;

static int wf_write(wfile_t *w, const void *p, size_t n) {
  const uint8_t *b = p;
  XXH64_update(w->xxh, p, n);
  while (n > 0) {
    ssize_t k = write(w->fd, b, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    b += k;
    n -= (size_t)k;
    w->written += (uint64_t)k;
  }
  return 0;
}

static int checked_numel(int ndim, const int64_t *shape, uint64_t *numel) {
  uint64_t n = 1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0) return -1;
    if (__builtin_mul_overflow(n, (uint64_t)shape[d], &n)) return -1;
  }
  *numel = n;
  return 0;
}

int st_write(const char *path, const st_tensor_desc_t *tensors, int n, const char *const *meta_kv,
             int n_meta, uint64_t *xxh64_out, uint64_t *size_out, char *err, size_t errlen) {
  int rc = -1;
  json_object *hdr = json_object_new_object();
  wfile_t w = {-1, XXH64_createState(), 0};
  char *pad = NULL;
  if (!hdr || !w.xxh) {
    strata_fail(err, errlen, "safetensors '%s': out of memory for its header", path);
    goto exit;
  }
  XXH64_reset(w.xxh, 0);
  if (n_meta > 0) {
    json_object *meta = json_object_new_object();
    json_object_object_add(hdr, "__metadata__", meta);
    for (int i = 0; i < n_meta; i++)
      json_object_object_add(meta, meta_kv[2 * i], json_object_new_string(meta_kv[2 * i + 1]));
  }
  uint64_t off = 0;
  for (int i = 0; i < n; i++) {
    const st_tensor_desc_t *t = &tensors[i];
    uint64_t numel;
    if (!t->name || !*t->name || strcmp(t->name, "__metadata__") == 0) {
      strata_fail(err, errlen, "safetensors '%s': tensor %d has an empty or reserved name", path, i);
      goto exit;
    }
    if (json_object_object_get_ex(hdr, t->name, NULL)) {
      strata_fail(err, errlen, "safetensors '%s': tensor '%s' given twice", path, t->name);
      goto exit;
    }
    if ((unsigned)t->dtype >= ST_NUM_DTYPES || t->ndim < 0 || t->ndim > ST_MAX_DIMS ||
        checked_numel(t->ndim, t->shape, &numel) != 0) {
      strata_fail(err, errlen, "safetensors '%s': tensor '%s' has an invalid dtype or shape", path,
             t->name);
      goto exit;
    }
    uint64_t bytes = numel * st_dtype_size(t->dtype);
    json_object *e = json_object_new_object();
    json_object *shape = json_object_new_array();
    for (int d = 0; d < t->ndim; d++) json_object_array_add(shape, json_object_new_int64(t->shape[d]));
    json_object *offs = json_object_new_array();
    json_object_array_add(offs, json_object_new_int64((int64_t)off));
    json_object_array_add(offs, json_object_new_int64((int64_t)(off + bytes)));
    json_object_object_add(e, "dtype", json_object_new_string(st_dtype_name(t->dtype)));
    json_object_object_add(e, "shape", shape);
    json_object_object_add(e, "data_offsets", offs);
    json_object_object_add(hdr, t->name, e);
    off += bytes;
  }
  size_t jlen;
  const char *js =
      json_object_to_json_string_length(hdr, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &jlen);
  size_t padded = (jlen + 7) & ~(size_t)7; /* 8 + padded is a multiple of 8 */
  pad = js ? malloc(padded - jlen + 1) : NULL;
  if (!pad) {
    strata_fail(err, errlen, "safetensors '%s': out of memory for the header of %d tensors", path, n);
    goto exit;
  }
  memset(pad, ' ', padded - jlen);
  w.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (w.fd < 0) {
    strata_fail(err, errlen, "safetensors '%s': cannot create: %s", path, strerror(errno));
    goto exit;
  }
  uint8_t len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
  if (wf_write(&w, len8, 8) || wf_write(&w, js, jlen) || wf_write(&w, pad, padded - jlen))
    goto io_fail;
  for (int i = 0; i < n; i++) {
    uint64_t numel = 0;
    checked_numel(tensors[i].ndim, tensors[i].shape, &numel);
    const uint8_t *p = tensors[i].data;
    uint64_t bytes = numel * st_dtype_size(tensors[i].dtype);
    if (bytes > 0 && !p) {
      strata_fail(err, errlen, "safetensors '%s': tensor '%s' has no data", path, tensors[i].name);
      goto exit;
    }
    while (bytes > 0) {
      size_t k = bytes > ST_IO_CHUNK_BYTES ? ST_IO_CHUNK_BYTES : (size_t)bytes;
      if (wf_write(&w, p, k)) goto io_fail;
      p += k;
      bytes -= k;
    }
  }
  if (fsync(w.fd) != 0) goto io_fail;
  if (xxh64_out) *xxh64_out = XXH64_digest(w.xxh);
  if (size_out) *size_out = w.written;
  rc = 0;
exit:
  if (w.fd >= 0 && close(w.fd) != 0 && rc == 0) {
    strata_fail(err, errlen, "safetensors '%s': close failed: %s", path, strerror(errno));
    rc = -1;
  }
  if (w.xxh) XXH64_freeState(w.xxh);
  free(pad);
  json_object_put(hdr);
  return rc;
io_fail:
  strata_fail(err, errlen, "safetensors '%s': write failed: %s (disk full?)", path, strerror(errno));
  goto exit;
}

/* ---------------------------------------------------------------- reading */

void st_close(st_file_t *f) {
  if (!f) return;
  for (int i = 0; i < f->num_tensors; i++) free(f->tensors[i].name);
  free(f->tensors);
  for (int i = 0; i < f->num_meta; i++) {
    free(f->meta_keys[i]);
    free(f->meta_vals[i]);
  }
  free(f->meta_keys);
  free(f->meta_vals);
  if (f->map) munmap(f->map, f->map_len);
  free(f);
}

static int get_u64(json_object *v, uint64_t *out) {
  if (!v || !json_object_is_type(v, json_type_int)) return -1;
  errno = 0;
  int64_t x = json_object_get_int64(v);
  if (x < 0) return -1;
  if (x == INT64_MAX) { /* json-c saturates; accept only if it really is a uint64 */
    uint64_t u = json_object_get_uint64(v);
    *out = u;
    return 0;
  }
  *out = (uint64_t)x;
  return 0;
}

static int parse_tensor(const char *name, json_object *e, st_tensor_t *t, uint64_t buffer_len,
                        char *err, size_t errlen) {
  json_object *jd, *js, *jo;
  if (!json_object_is_type(e, json_type_object))
    return strata_fail(err, errlen, "tensor '%s': entry is not a JSON object; expected {\"dtype\", \"shape\", "
                       "\"data_offsets\"}", name);
  if (!json_object_object_get_ex(e, "dtype", &jd) || !json_object_is_type(jd, json_type_string))
    return strata_fail(err, errlen, "tensor '%s': missing or non-string \"dtype\"", name);
  if (st_dtype_parse(json_object_get_string(jd), &t->dtype) != 0)
    return strata_fail(err, errlen,
                  "tensor '%s': unknown dtype \"%.32s\"; expected one of F64 F32 F16 BF16 I64 I32 I16 "
                  "I8 U64 U32 U16 U8 BOOL",
                  name, json_object_get_string(jd));
  if (!json_object_object_get_ex(e, "shape", &js) || !json_object_is_type(js, json_type_array))
    return strata_fail(err, errlen, "tensor '%s': missing or non-array \"shape\"", name);
  size_t nd = json_object_array_length(js);
  if (nd > ST_MAX_DIMS)
    return strata_fail(err, errlen, "tensor '%s': shape has %zu dimensions; at most %d are supported", name,
                       nd, ST_MAX_DIMS);
  t->ndim = (int)nd;
  for (size_t d = 0; d < nd; d++) {
    uint64_t v;
    if (get_u64(json_object_array_get_idx(js, d), &v) != 0 || v > (uint64_t)INT64_MAX)
      return strata_fail(err, errlen, "tensor '%s': shape[%zu] is not a non-negative integer", name, d);
    t->shape[d] = (int64_t)v;
  }
  if (checked_numel(t->ndim, t->shape, &t->numel) != 0 ||
      t->numel > UINT64_MAX / st_dtype_size(t->dtype))
    return strata_fail(err, errlen, "tensor '%s': shape overflows 64 bits", name);
  if (!json_object_object_get_ex(e, "data_offsets", &jo) || !json_object_is_type(jo, json_type_array) ||
      json_object_array_length(jo) != 2 || get_u64(json_object_array_get_idx(jo, 0), &t->begin) ||
      get_u64(json_object_array_get_idx(jo, 1), &t->end))
    return strata_fail(err, errlen, "tensor '%s': \"data_offsets\" must be [begin, end] with non-negative integers",
                       name);
  if (t->end < t->begin)
    return strata_fail(err, errlen, "tensor '%s': data_offsets [%llu, %llu] end before begin", name,
                       (unsigned long long)t->begin, (unsigned long long)t->end);
  uint64_t want = t->numel * st_dtype_size(t->dtype);
  if (t->end - t->begin != want) {
    char shp[160] = "";
    size_t o = 0;
    for (int d = 0; d < t->ndim && o < sizeof shp - 24; d++)
      o += (size_t)snprintf(shp + o, sizeof shp - o, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    strata_fail(err, errlen,
           "tensor '%s': shape [%s] of %s needs %llu bytes but data_offsets [%llu, %llu] span "
           "%llu bytes (shape mismatch)",
           name, shp, st_dtype_name(t->dtype), (unsigned long long)want,
           (unsigned long long)t->begin, (unsigned long long)t->end,
           (unsigned long long)(t->end - t->begin));
    return -1;
  }
  if (t->end > buffer_len)
    return strata_fail(err, errlen,
                  "tensor '%s': data_offsets [%llu, %llu] run past the end of the data buffer (%llu "
                  "bytes): file truncated or offsets out of range",
                  name, (unsigned long long)t->begin, (unsigned long long)t->end,
                  (unsigned long long)buffer_len);
  return 0;
}

typedef struct {
  uint64_t begin, end;
  int index;
} span_t;

static int cmp_by_offset(const void *a, const void *b) {
  const span_t *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* No overlaps, no holes, and the buffer is used exactly. */
static int check_layout(st_file_t *f, char *err, size_t errlen) {
  int rc = -1, n = f->num_tensors;
  span_t *order = malloc(sizeof(span_t) * (size_t)(n ? n : 1));
  if (!order) return strata_fail(err, errlen, "out of memory for checking the layout of %d tensors", n);
  for (int i = 0; i < n; i++) order[i] = (span_t){f->tensors[i].begin, f->tensors[i].end, i};
  qsort(order, (size_t)n, sizeof(span_t), cmp_by_offset);
  uint64_t pos = 0;
  const char *prev = NULL;
  for (int k = 0; k < n; k++) {
    const st_tensor_t *t = &f->tensors[order[k].index];
    if (t->begin < pos) {
      strata_fail(err, errlen, "tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' (which ends at %llu)",
             t->name, (unsigned long long)t->begin, (unsigned long long)t->end, prev,
             (unsigned long long)pos);
      goto exit;
    }
    if (t->begin > pos) {
      strata_fail(err, errlen,
             "tensor '%s': data_offsets begin at %llu but the previous tensor%s%s ends at %llu: "
             "a hole of %llu unused bytes",
             t->name, (unsigned long long)t->begin, prev ? " " : "", prev ? prev : "",
             (unsigned long long)pos, (unsigned long long)(t->begin - pos));
      goto exit;
    }
    pos = t->end;
    prev = t->name;
  }
  if (pos != f->buffer_len) {
    strata_fail(err, errlen,
           "the tensors cover %llu bytes of a %llu-byte data buffer: %llu unused bytes at the "
           "end (a hole, or a truncated header)",
           (unsigned long long)pos, (unsigned long long)f->buffer_len,
           (unsigned long long)(f->buffer_len - pos));
    goto exit;
  }
  rc = 0;
exit:
  free(order);
  return rc;
}

/* "__metadata__": a map of strings, copied into f->meta_keys / meta_vals. */
static int read_metadata(st_file_t *f, json_object *meta, char *err, size_t errlen) {
  if (!json_object_is_type(meta, json_type_object))
    return strata_fail(err, errlen, "\"__metadata__\" is not an object; expected a map of strings");
  int m = json_object_object_length(meta);
  f->meta_keys = calloc((size_t)(m ? m : 1), sizeof(char *));
  f->meta_vals = calloc((size_t)(m ? m : 1), sizeof(char *));
  if (!f->meta_keys || !f->meta_vals) return strata_fail(err, errlen, "out of memory for %d metadata entries", m);
  json_object_object_foreach(meta, mk, mv) {
    if (!json_object_is_type(mv, json_type_string))
      return strata_fail(err, errlen, "\"__metadata__\" value of \"%.64s\" is not a string (safetensors metadata "
                         "values must be strings)", mk);
    int i = f->num_meta++; /* st_close frees both, also when one copy failed */
    f->meta_keys[i] = strdup(mk);
    f->meta_vals[i] = strdup(json_object_get_string(mv));
    if (!f->meta_keys[i] || !f->meta_vals[i])
      return strata_fail(err, errlen, "out of memory for the metadata entry \"%.64s\"", mk);
  }
  return 0;
}

int st_parse(const void *buf, size_t len, st_file_t **out, char *err, size_t errlen) {
  const uint8_t *b = buf;
  int rc = -1;
  json_object *root = NULL;
  json_tokener *tok = NULL;
  *out = NULL;
  st_file_t *f = calloc(1, sizeof *f);
  if (!f) return strata_fail(err, errlen, "out of memory for a safetensors file's state");
  if (len < 8) {
    strata_fail(err, errlen, "file is %zu bytes, shorter than the 8-byte header length", len);
    goto fail;
  }
  uint64_t n = 0;
  for (int i = 0; i < 8; i++) n |= (uint64_t)b[i] << (8 * i);
  if (n == 0) {
    strata_fail(err, errlen, "header length is 0; expected a JSON header of at least 2 bytes");
    goto fail;
  }
  if (n > ST_MAX_HEADER_BYTES) {
    strata_fail(err, errlen, "header length %llu bytes exceeds the %llu-byte limit: not a safetensors file or corrupt",
           (unsigned long long)n, (unsigned long long)ST_MAX_HEADER_BYTES);
    goto fail;
  }
  if (n > len - 8) {
    strata_fail(err, errlen,
           "header length %llu runs past the end of the file (%zu bytes, so at most %zu): file "
           "truncated",
           (unsigned long long)n, len, len - 8);
    goto fail;
  }
  const char *hdr = (const char *)b + 8;
  if (memchr(hdr, 0, (size_t)n)) {
    strata_fail(err, errlen, "header contains a NUL byte; expected UTF-8 JSON");
    goto fail;
  }
  tok = json_tokener_new();
  if (!tok) goto fail;
  root = json_tokener_parse_ex(tok, hdr, (int)n);
  enum json_tokener_error jerr = json_tokener_get_error(tok);
  if (!root || jerr != json_tokener_success) {
    strata_fail(err, errlen, "header is not valid JSON (%s at byte %zu of %llu)",
           jerr == json_tokener_continue ? "unexpected end" : json_tokener_error_desc(jerr),
           json_tokener_get_parse_end(tok), (unsigned long long)n);
    goto fail;
  }
  for (size_t i = json_tokener_get_parse_end(tok); i < n; i++)
    if (hdr[i] != ' ' && hdr[i] != '\t' && hdr[i] != '\n' && hdr[i] != '\r') {
      strata_fail(err, errlen, "header has trailing bytes after the JSON object (byte %zu); only space padding is allowed", i);
      goto fail;
    }
  if (!json_object_is_type(root, json_type_object)) {
    strata_fail(err, errlen, "header is JSON but not an object; expected {\"name\": {...}, ...}");
    goto fail;
  }
  f->buffer = b + 8 + n;
  f->buffer_len = len - 8 - n;
  int cap = json_object_object_length(root);
  f->tensors = calloc((size_t)(cap ? cap : 1), sizeof *f->tensors);
  if (!f->tensors) {
    strata_fail(err, errlen, "out of memory for a header of %d tensors", cap);
    goto fail;
  }
  json_object_object_foreach(root, key, val) {
    if (strcmp(key, "__metadata__") == 0) {
      if (read_metadata(f, val, err, errlen)) goto fail;
      continue;
    }
    st_tensor_t *t = &f->tensors[f->num_tensors];
    t->name = strdup(key);
    if (!t->name) {
      strata_fail(err, errlen, "out of memory for the name of tensor '%.64s'", key);
      goto fail;
    }
    f->num_tensors++;
    if (parse_tensor(key, val, t, f->buffer_len, err, errlen) != 0) goto fail;
    t->data = f->buffer + t->begin;
  }
  if (check_layout(f, err, errlen) != 0) goto fail;
  *out = f;
  rc = 0;
exit:
  if (tok) json_tokener_free(tok);
  json_object_put(root);
  return rc;
fail:
  st_close(f);
  goto exit;
}

int st_open(const char *path, st_file_t **out, char *err, size_t errlen) {
  char msg[512];
  int rc = -1;
  void *map = NULL;
  size_t size = 0;
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return strata_fail(err, errlen, "safetensors file '%s': cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    strata_fail(err, errlen, "safetensors file '%s': not a regular file", path);
    goto exit;
  }
  size = (size_t)st.st_size;
  if (size < 8) {
    strata_fail(err, errlen, "safetensors file '%s': file is %zu bytes, shorter than the 8-byte header length (truncated)",
           path, size);
    goto exit;
  }
  map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) {
    map = NULL;
    strata_fail(err, errlen, "safetensors file '%s': cannot map: %s", path, strerror(errno));
    goto exit;
  }
  if (st_parse(map, size, out, msg, sizeof msg) != 0) {
    strata_fail(err, errlen, "safetensors file '%s': %s", path, msg);
    goto exit;
  }
  (*out)->map = map;
  (*out)->map_len = size;
  map = NULL;
  rc = 0;
exit:
  if (map) munmap(map, size);
  close(fd);
  return rc;
}

const st_tensor_t *st_find(const st_file_t *f, const char *name) {
  for (int i = 0; i < f->num_tensors; i++)
    if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
  return NULL;
}

const char *st_meta(const st_file_t *f, const char *key) {
  for (int i = 0; i < f->num_meta; i++)
    if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
  return NULL;
}

/* ---------------------------------------------------------------- checksums */

int st_file_xxh64(const char *path, uint64_t *xxh64_out, uint64_t *size_out, char *err,
                  size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return strata_fail(err, errlen, "file '%s': cannot open: %s", path, strerror(errno));
  int rc = -1;
  XXH64_state_t *s = XXH64_createState();
  char *buf = malloc(ST_IO_CHUNK_BYTES);
  uint64_t total = 0;
  if (!s || !buf) {
    strata_fail(err, errlen, "file '%s': out of memory for checksumming it", path);
    goto exit;
  }
  XXH64_reset(s, 0);
  for (;;) {
    ssize_t k = read(fd, buf, ST_IO_CHUNK_BYTES);
    if (k < 0) {
      if (errno == EINTR) continue;
      strata_fail(err, errlen, "file '%s': read failed: %s", path, strerror(errno));
      goto exit;
    }
    if (k == 0) break;
    XXH64_update(s, buf, (size_t)k);
    total += (uint64_t)k;
  }
  *xxh64_out = XXH64_digest(s);
  if (size_out) *size_out = total;
  rc = 0;
exit:
  if (s) XXH64_freeState(s);
  free(buf);
  close(fd);
  return rc;
}

/* ---------------------------------------------------------------- index */

void st_index_free(st_index_t *idx) {
  if (!idx) return;
  for (int i = 0; i < idx->n; i++) {
    free(idx->names[i]);
    free(idx->files[i]);
  }
  free(idx->names);
  free(idx->files);
  free(idx);
}

const char *st_index_file(const st_index_t *idx, const char *name) {
  for (int i = 0; i < idx->n; i++)
    if (strcmp(idx->names[i], name) == 0) return idx->files[i];
  return NULL;
}

static int valid_shard_file_name(const char *s) {
  size_t n = strlen(s);
  return n > 12 && n < 256 && !strchr(s, '/') && !strchr(s, '\\') && s[0] != '.' &&
         strcmp(s + n - 12, ".safetensors") == 0;
}

int st_index_write(const char *path, const st_index_t *idx, uint64_t *xxh64_out,
                   uint64_t *size_out, char *err, size_t errlen) {
  int rc = -1;
  json_object *root = json_object_new_object(), *meta = json_object_new_object(),
              *map = json_object_new_object();
  json_object_object_add(meta, "total_size", json_object_new_int64((int64_t)idx->total_size));
  json_object_object_add(root, "metadata", meta);
  for (int i = 0; i < idx->n; i++)
    json_object_object_add(map, idx->names[i], json_object_new_string(idx->files[i]));
  json_object_object_add(root, "weight_map", map);
  size_t len;
  const char *js = json_object_to_json_string_length(
      root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
  if (!js) {
    strata_fail(err, errlen, "index '%s': out of memory for its text", path);
    goto exit;
  }
  if (strata_write_synced("index", path, js, len, "\n", err, errlen) != 0) goto exit;
  if (xxh64_out && st_file_xxh64(path, xxh64_out, size_out, err, errlen) != 0) goto exit;
  rc = 0;
exit:
  json_object_put(root);
  return rc;
}

int st_index_read(const char *path, st_index_t **out, char *err, size_t errlen) {
  int rc = -1;
  char *text = NULL;
  json_object *root = NULL;
  json_tokener *tok = NULL;
  st_index_t *idx = NULL;
  *out = NULL;
  FILE *fp = strata_fopen_regular(path);
  if (!fp)
    return strata_fail(err, errlen, "index '%s': cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(fp), &st) != 0 || (uint64_t)st.st_size > ST_MAX_INDEX_BYTES || st.st_size == 0) {
    strata_fail(err, errlen, "index '%s': size %lld bytes is empty or over the %llu-byte limit", path,
           (long long)st.st_size, (unsigned long long)ST_MAX_INDEX_BYTES);
    goto exit;
  }
  text = malloc((size_t)st.st_size);
  tok = json_tokener_new();
  if (!text || !tok) {
    strata_fail(err, errlen, "index '%s': out of memory for reading %lld bytes", path, (long long)st.st_size);
    goto exit;
  }
  if (fread(text, 1, (size_t)st.st_size, fp) != (size_t)st.st_size) {
    strata_fail(err, errlen, "index '%s': read failed", path);
    goto exit;
  }
  root = json_tokener_parse_ex(tok, text, (int)st.st_size);
  json_object *meta, *ts, *map;
  if (!root || !json_object_is_type(root, json_type_object)) {
    strata_fail(err, errlen, "index '%s': not a JSON object", path);
    goto exit;
  }
  idx = calloc(1, sizeof *idx);
  if (!idx) {
    strata_fail(err, errlen, "index '%s': out of memory for its state", path);
    goto exit;
  }
  if (!json_object_object_get_ex(root, "metadata", &meta) ||
      !json_object_object_get_ex(meta, "total_size", &ts) || get_u64(ts, &idx->total_size) != 0) {
    strata_fail(err, errlen, "index '%s': missing or invalid \"metadata\": {\"total_size\": BYTES}", path);
    goto exit;
  }
  if (!json_object_object_get_ex(root, "weight_map", &map) || !json_object_is_type(map, json_type_object)) {
    strata_fail(err, errlen, "index '%s': missing \"weight_map\" object", path);
    goto exit;
  }
  int n = json_object_object_length(map);
  idx->names = calloc((size_t)(n ? n : 1), sizeof(char *));
  idx->files = calloc((size_t)(n ? n : 1), sizeof(char *));
  if (!idx->names || !idx->files) {
    strata_fail(err, errlen, "index '%s': out of memory for %d entries", path, n);
    goto exit;
  }
  json_object_object_foreach(map, key, val) {
    if (!json_object_is_type(val, json_type_string) || !valid_shard_file_name(json_object_get_string(val))) {
      strata_fail(err, errlen,
             "index '%s': weight_map entry '%.64s' must name a file like "
             "model-00001-of-00002.safetensors in the same directory",
             path, key);
      goto exit;
    }
    int i = idx->n++; /* st_index_free frees both, also when one copy failed */
    idx->names[i] = strdup(key);
    idx->files[i] = strdup(json_object_get_string(val));
    if (!idx->names[i] || !idx->files[i]) {
      strata_fail(err, errlen, "index '%s': out of memory for the entry '%.64s'", path, key);
      goto exit;
    }
  }
  *out = idx;
  idx = NULL;
  rc = 0;
exit:
  st_index_free(idx);
  if (tok) json_tokener_free(tok);
  json_object_put(root);
  free(text);
  fclose(fp);
  return rc;
}
