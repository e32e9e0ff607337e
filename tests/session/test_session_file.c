/* session_file: session ID rules; a session file round-trips tokens and the filled part of a
 * KV cache bit for bit; a flipped byte fails the checksum; a file of another model, another
 * stage layout or another format is refused with a message saying so; list and delete. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv_cache.h"
#include "session.h"
#include "test_util.h"

int main(void) {
  char err[1024];
  /* IDs */
  const char *good[] = {"a", "chat-1", "User_42", "ABCxyz09-_"};
  for (int i = 0; i < 4; i++) CHECK_EQ_INT(session_id_validate(good[i], err, sizeof err), 0);
  char id64[65], id65[66];
  memset(id64, 'z', 64);
  id64[64] = 0;
  memset(id65, 'z', 65);
  id65[65] = 0;
  CHECK_EQ_INT(session_id_validate(id64, err, sizeof err), 0);
  const char *bad[] = {"", "../x", "a/b", "x y", ".", "..", "a.b", "tab\t", id65};
  for (int i = 0; i < 9; i++) {
    CHECK_EQ_INT(session_id_validate(bad[i], err, sizeof err), -1);
    CHECK_TRUE(strstr(err, "invalid session ID") != NULL);
  }
  CHECK_EQ_INT(session_id_validate(NULL, err, sizeof err), -1);

  /* round trip */
  char dir[] = "/tmp/strata_session_test_XXXXXX";
  CHECK_TRUE(mkdtemp(dir) != NULL);
  kv_cache_t *c, *d;
  CHECK_EQ_INT(kv_cache_create(3, 8, 20, &c, err, sizeof err), 0);
  CHECK_EQ_INT(kv_cache_create(3, 8, 20, &d, err, sizeof err), 0);
  for (size_t i = 0; i < 3 * 20 * 8; i++) c->k[i] = (float)i * 0.5f, c->v[i] = -(float)i;
  c->n_pos = 11;
  int32_t toks[12];
  for (int i = 0; i < 12; i++) toks[i] = 100 + i;
  session_header_t h;
  memset(&h, 0, sizeof h);
  h.model_id = 0x1234;
  h.vocab = 256, h.ctx = 20, h.layers = 6, h.heads = 2, h.dim = 8;
  h.stage = 1, h.stages = 2, h.layer_begin = 3, h.layer_end = 6;
  CHECK_EQ_INT(session_write(dir, "s1", &h, toks, 12, c, err, sizeof err), 0);
  int32_t *rt = NULL;
  int nrt = 0;
  CHECK_EQ_INT(session_read(dir, "s1", &h, d, &rt, &nrt, err, sizeof err), 0);
  CHECK_EQ_INT(nrt, 12);
  CHECK_EQ_INT(d->n_pos, 11);
  CHECK_TRUE(rt && memcmp(rt, toks, sizeof toks) == 0);
  int same = 1;
  for (int l = 0; l < 3; l++)
    for (int t = 0; t < 11; t++)
      for (int j = 0; j < 8; j++) {
        size_t o = ((size_t)l * 20 + t) * 8 + j;
        same &= d->k[o] == c->k[o] && d->v[o] == c->v[o];
      }
  CHECK_TRUE(same);
  free(rt);
  session_header_t peek;
  CHECK_EQ_INT(session_peek(dir, "s1", &h, &peek, err, sizeof err), 0);
  CHECK_EQ_INT(peek.n_kv, 11);
  CHECK_EQ_INT(session_peek(dir, "nothere", &h, &peek, err, sizeof err), 1);
  /* another model / another layout */
  session_header_t other = h;
  other.model_id = 0x9999;
  CHECK_EQ_INT(session_read(dir, "s1", &other, d, NULL, NULL, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "another model") != NULL);
  other = h;
  other.layer_begin = 2;
  CHECK_EQ_INT(session_read(dir, "s1", &other, d, NULL, NULL, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "same number of ranks") != NULL);
  CHECK_EQ_INT(session_saved_stages(dir, "s1"), 0); /* only stage 1's file exists */
  /* corruption */
  char path[4400];
  session_path(path, sizeof path, dir, "s1", 1, 2);
  FILE *f = fopen(path, "r+b");
  CHECK_TRUE(f != NULL);
  fseek(f, (long)sizeof(session_header_t) + 60, SEEK_SET);
  fputc(0x5a, f);
  fclose(f);
  CHECK_EQ_INT(session_read(dir, "s1", &h, d, NULL, NULL, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "checksum") != NULL);
  /* list and delete */
  h.stage = 0;
  CHECK_EQ_INT(session_write(dir, "s1", &h, toks, 12, c, err, sizeof err), 0);
  CHECK_EQ_INT(session_saved_stages(dir, "s1"), 2);
  session_info_t *v;
  int n;
  CHECK_EQ_INT(session_list(dir, &v, &n, err, sizeof err), 0);
  CHECK_EQ_INT(n, 1);
  if (n == 1) {
    CHECK_TRUE(strcmp(v[0].id, "s1") == 0);
    CHECK_EQ_INT(v[0].n_tokens, 12);
    CHECK_EQ_INT(v[0].stages, 2);
  }
  free(v);
  /* the metrics gauge's count: one per stage-0 file, other names ignored */
  CHECK_EQ_INT(session_count(dir), 1);
  char junk[4200];
  snprintf(junk, sizeof junk, "%s/notes.txt", dir);
  FILE *jf = fopen(junk, "w");
  if (jf) fclose(jf);
  CHECK_EQ_INT(session_count(dir), 1);
  unlink(junk);
  CHECK_EQ_INT(session_delete(dir, "s1", err, sizeof err), 0);
  CHECK_EQ_INT(session_count(dir), 0);
  CHECK_EQ_INT(session_delete(dir, "s1", err, sizeof err), 1);
  CHECK_EQ_INT(session_delete(dir, "../s1", err, sizeof err), -1);
  CHECK_EQ_INT(session_list(dir, &v, &n, err, sizeof err), 0);
  CHECK_EQ_INT(n, 0);
  free(v);
  kv_cache_free(c);
  kv_cache_free(d);
  rmdir(dir);
  CHECK_EQ_INT(session_count(dir), 0); /* a missing directory counts 0 */
  return test_finish("session_file");
}
