/* session_file: session ID rules; a two-stage turn written and committed round-trips tokens and
 * the filled part of a KV cache bit for bit; a reader rolls forward to the .kv.next a commit
 * record names; an uncommitted turn is ignored; a flipped byte, a truncated, a missing and a
 * stale file each get their own status; a file of another model or stage layout is refused with
 * a message saying so; a corrupt commit record is refused; list, delete, and a failed write.
 * Tensor parallelism: a one-stage turn split over T = 2 ranks (one part file per rank, named
 * .tp<t>-of-2, the commit record naming T and both parts) round-trips; a part read as another
 * tensor-parallel rank or T is refused naming --tp; list and delete cover every part. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

  /* a two-stage turn: both stages write their .kv.next, then the commit record */
  char dir[] = "/tmp/strata_session_test_XXXXXX";
  CHECK_TRUE(mkdtemp(dir) != NULL);
  kv_cache_t *c, *d;
  CHECK_EQ_INT(kv_cache_create(3, 8, 20, &c, err, sizeof err), 0);
  CHECK_EQ_INT(kv_cache_create(3, 8, 20, &d, err, sizeof err), 0);
  for (size_t i = 0; i < 3 * 20 * 8; i++) c->k[i] = (float)i * 0.5f, c->v[i] = -(float)i;
  c->n_pos = 11;
  int32_t toks[12];
  for (int i = 0; i < 12; i++) toks[i] = 100 + i;
  session_header_t h0, h1;
  memset(&h0, 0, sizeof h0);
  h0.model_id = 0x1234;
  h0.vocab = 256, h0.ctx = 20, h0.layers = 6, h0.heads = 2, h0.dim = 8;
  h0.stage = 0, h0.stages = 2, h0.layer_begin = 0, h0.layer_end = 3;
  h1 = h0;
  h1.stage = 1, h1.layer_begin = 3, h1.layer_end = 6;
  session_commit_t rec;
  memset(&rec, 0, sizeof rec);
  rec.model_id = 0x1234, rec.stages = 2, rec.n_tokens = 12, rec.n_kv = 11, rec.generation = 1;
  int eno = -1;
  CHECK_EQ_INT(session_write_stage(dir, "s1", &h0, 1, toks, 12, c, &rec.sum[0], &rec.bytes[0], &eno, err, sizeof err),
               SESSION_OK);
  CHECK_EQ_INT(eno, 0);
  CHECK_EQ_INT(session_write_stage(dir, "s1", &h1, 1, NULL, 0, c, &rec.sum[1], &rec.bytes[1], &eno, err, sizeof err),
               SESSION_OK);
  /* sizes as session_file_bytes predicts them (the disk quota relies on it) */
  CHECK_EQ_INT(rec.bytes[0], session_file_bytes(12, 11, 3, 8));
  CHECK_EQ_INT(rec.bytes[1], session_file_bytes(0, 11, 3, 8));
  /* before the commit record the session does not exist */
  session_commit_t got;
  CHECK_EQ_INT(session_commit_read(dir, "s1", &got, err, sizeof err), 1);
  CHECK_EQ_INT(session_count(dir), 0);
  CHECK_EQ_INT(session_uncommitted_files(dir, "s1"), 0); /* only .kv.next files: a turn never committed */
  CHECK_EQ_INT(session_commit_write(dir, "s1", &rec, &eno, err, sizeof err), 0);
  char path[4400];
  session_commit_path(path, sizeof path, dir, "s1");
  size_t reclen = 0;
  free(test_read_file(path, &reclen));
  CHECK_EQ_INT(reclen, session_commit_bytes(2));
  CHECK_EQ_INT(session_commit_read(dir, "s1", &got, err, sizeof err), 0);
  CHECK_EQ_INT(got.generation, 1);
  CHECK_EQ_INT(got.stages, 2);
  CHECK_TRUE(got.sum[0] == rec.sum[0] && got.sum[1] == rec.sum[1] && got.bytes[1] == rec.bytes[1]);

  /* stage 0 reads its part from .kv.next (a crash before the promotion: roll forward) */
  int32_t *rt = NULL;
  int nrt = 0;
  CHECK_EQ_INT(session_read_stage(dir, "s1", &h0, &got, d, &rt, &nrt, err, sizeof err), SESSION_OK);
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
  session_path(path, sizeof path, dir, "s1", 0, 2, 0, 1);
  CHECK_TRUE(access(path, F_OK) == 0); /* ... and promoted it */
  /* stage 1 promotes as phase 3 does */
  CHECK_EQ_INT(session_promote(dir, "s1", 1, 2, 0, 1, 1, err, sizeof err), 0);
  CHECK_EQ_INT(session_read_stage(dir, "s1", &h1, &got, d, NULL, NULL, err, sizeof err), SESSION_OK);

  /* another model / another layout */
  session_header_t other = h1;
  other.model_id = 0x9999;
  CHECK_EQ_INT(session_read_stage(dir, "s1", &other, &got, d, NULL, NULL, err, sizeof err), SESSION_MISMATCH);
  CHECK_TRUE(strstr(err, "another model") != NULL);
  other = h1;
  other.layer_begin = 2;
  CHECK_EQ_INT(session_read_stage(dir, "s1", &other, &got, d, NULL, NULL, err, sizeof err), SESSION_MISMATCH);
  CHECK_TRUE(strstr(err, "same --tp and number of ranks") != NULL);

  /* turn 2 written by stage 1 only, never committed: the record's turn 1 is still read */
  c->n_pos = 12;
  uint64_t sum2, bytes2;
  CHECK_EQ_INT(session_write_stage(dir, "s1", &h1, 2, NULL, 0, c, &sum2, &bytes2, &eno, err, sizeof err), SESSION_OK);
  CHECK_EQ_INT(session_read_stage(dir, "s1", &h1, &got, d, NULL, NULL, err, sizeof err), SESSION_OK);
  CHECK_EQ_INT(d->n_pos, 11);
  session_discard_next(dir, "s1", 1, 2, 0, 1);
  /* ... a stage file of another turn than the record names: stale, naming both turns */
  CHECK_EQ_INT(session_write_stage(dir, "s1", &h1, 2, NULL, 0, c, &sum2, &bytes2, &eno, err, sizeof err), SESSION_OK);
  CHECK_EQ_INT(session_promote(dir, "s1", 1, 2, 0, 1, 2, err, sizeof err), 0);
  CHECK_EQ_INT(session_read_stage(dir, "s1", &h1, &got, d, NULL, NULL, err, sizeof err), SESSION_STALE);
  CHECK_TRUE(strstr(err, "turn 2") && strstr(err, "turn 1"));
  /* corruption: a flipped byte, a truncated file, a missing file. A file saved again is another
   * save (its header holds the time saved, which its checksum covers), so the record is
   * committed again with the new checksum, as a turn's commit does. */
  c->n_pos = 11;
  CHECK_EQ_INT(session_write_stage(dir, "s1", &h1, 1, NULL, 0, c, &rec.sum[1], &rec.bytes[1], &eno, err, sizeof err),
               SESSION_OK);
  CHECK_EQ_INT(session_promote(dir, "s1", 1, 2, 0, 1, 1, err, sizeof err), 0);
  CHECK_EQ_INT(session_commit_write(dir, "s1", &rec, &eno, err, sizeof err), 0);
  CHECK_EQ_INT(session_commit_read(dir, "s1", &got, err, sizeof err), 0);
  CHECK_EQ_INT(session_read_stage(dir, "s1", &h1, &got, d, NULL, NULL, err, sizeof err), SESSION_OK);
  session_path(path, sizeof path, dir, "s1", 1, 2, 0, 1);
  FILE *f = fopen(path, "r+b");
  CHECK_TRUE(f != NULL);
  fseek(f, (long)sizeof(session_header_t) + 60, SEEK_SET);
  fputc(0x5a, f);
  fclose(f);
  CHECK_EQ_INT(session_read_stage(dir, "s1", &h1, &got, d, NULL, NULL, err, sizeof err), SESSION_CORRUPT);
  CHECK_TRUE(strstr(err, "checksum") != NULL);
  CHECK_EQ_INT(truncate(path, 100), 0);
  CHECK_EQ_INT(session_read_stage(dir, "s1", &h1, &got, d, NULL, NULL, err, sizeof err), SESSION_CORRUPT);
  CHECK_TRUE(strstr(err, "truncated") != NULL);
  unlink(path);
  CHECK_EQ_INT(session_read_stage(dir, "s1", &h1, &got, d, NULL, NULL, err, sizeof err), SESSION_MISSING);
  CHECK_TRUE(strstr(err, "missing") != NULL);
  /* a corrupt commit record */
  session_commit_path(path, sizeof path, dir, "s1");
  size_t rl = 0;
  char *rb = test_read_file(path, &rl);
  CHECK_TRUE(rb != NULL);
  if (rb) {
    rb[20] ^= 1;
    f = fopen(path, "wb");
    fwrite(rb, 1, rl, f);
    fclose(f);
    CHECK_EQ_INT(session_commit_read(dir, "s1", &got, err, sizeof err), -1);
    CHECK_TRUE(strstr(err, "checksum") != NULL);
    rb[20] ^= 1;
    f = fopen(path, "wb");
    fwrite(rb, 1, rl, f);
    fclose(f);
    free(rb);
  }
  /* list and delete */
  session_info_t *v;
  int n;
  CHECK_EQ_INT(session_list(dir, &v, &n, err, sizeof err), 0);
  CHECK_EQ_INT(n, 1);
  if (n == 1) {
    CHECK_TRUE(strcmp(v[0].id, "s1") == 0);
    CHECK_EQ_INT(v[0].n_tokens, 12);
    CHECK_EQ_INT(v[0].stages, 2);
    CHECK_EQ_INT(v[0].generation, 1);
    CHECK_EQ_INT(v[0].bytes, rec.bytes[0] + rec.bytes[1] + session_commit_bytes(2));
  }
  free(v);
  /* the metrics gauge's count: one per commit record, other names ignored */
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
  /* stage files without a commit record (an older Strata's): not restorable, and said so */
  CHECK_EQ_INT(session_write_stage(dir, "old", &h0, 1, toks, 12, c, &sum2, &bytes2, &eno, err, sizeof err),
               SESSION_OK);
  CHECK_EQ_INT(session_promote(dir, "old", 0, 2, 0, 1, 1, err, sizeof err), 0);
  CHECK_EQ_INT(session_uncommitted_files(dir, "old"), 1);
  session_delete_stage(dir, "old", 0, 2, 0, 1);
  CHECK_EQ_INT(session_uncommitted_files(dir, "old"), 0);
  /* a write that fails (the target is a directory): SESSION_IO with errno, nothing left over */
  char blocker[4400];
  snprintf(blocker, sizeof blocker, "%s/b.stage0-of-2.kv.next", dir);
  CHECK_EQ_INT(mkdir(blocker, 0755), 0);
  snprintf(junk, sizeof junk, "%s/b.stage0-of-2.kv.next/x", dir);
  jf = fopen(junk, "w");
  if (jf) fclose(jf);
  CHECK_EQ_INT(session_write_stage(dir, "b", &h0, 1, toks, 12, c, &sum2, &bytes2, &eno, err, sizeof err), SESSION_IO);
  CHECK_TRUE(eno != 0);
  CHECK_TRUE(strstr(err, "cannot write session file") != NULL);
  unlink(junk);
  rmdir(blocker);
  CHECK_EQ_INT(session_delete(dir, "b", err, sizeof err), 1); /* the temporary was removed */
  /* tensor parallelism: stage 0 of 1 split over T = 2 ranks, each holding half of the heads */
  {
    session_header_t p0 = h0, p1;
    p0.stages = 1, p0.layer_end = 3, p0.tp_rank = 0, p0.tp_size = 2;
    p1 = p0;
    p1.tp_rank = 1;
    session_commit_t tr;
    memset(&tr, 0, sizeof tr);
    tr.model_id = 0x1234, tr.stages = 1, tr.tp = 2, tr.n_tokens = 12, tr.n_kv = 11, tr.generation = 1;
    CHECK_EQ_INT(session_write_stage(dir, "tp", &p0, 1, toks, 12, c, &tr.sum[0], &tr.bytes[0], &eno, err, sizeof err),
                 SESSION_OK);
    for (size_t i = 0; i < 3 * 20 * 8; i++) c->k[i] += 1000.0f; /* rank 1's heads differ */
    CHECK_EQ_INT(session_write_stage(dir, "tp", &p1, 1, NULL, 0, c, &tr.sum[1], &tr.bytes[1], &eno, err, sizeof err),
                 SESSION_OK);
    CHECK_EQ_INT(session_commit_write(dir, "tp", &tr, &eno, err, sizeof err), 0);
    session_commit_path(path, sizeof path, dir, "tp");
    free(test_read_file(path, &reclen));
    CHECK_EQ_INT(reclen, session_commit_bytes(2));
    CHECK_EQ_INT(session_commit_read(dir, "tp", &got, err, sizeof err), 0);
    CHECK_EQ_INT(got.tp, 2);
    CHECK_EQ_INT(got.stages, 1);
    CHECK_TRUE(got.sum[1] == tr.sum[1] && got.bytes[1] == tr.bytes[1]);
    CHECK_EQ_INT(session_promote(dir, "tp", 0, 1, 0, 2, 1, err, sizeof err), 0);
    CHECK_EQ_INT(session_promote(dir, "tp", 0, 1, 1, 2, 1, err, sizeof err), 0);
    session_path(path, sizeof path, dir, "tp", 0, 1, 1, 2);
    CHECK_TRUE(strstr(path, "/tp.stage0-of-1.tp1-of-2.kv") != NULL);
    CHECK_TRUE(access(path, F_OK) == 0);
    CHECK_EQ_INT(session_read_stage(dir, "tp", &p1, &got, d, NULL, NULL, err, sizeof err), SESSION_OK);
    CHECK_TRUE(d->n_pos == 11 && d->k[8 * 20 + 3] == c->k[8 * 20 + 3]); /* layer 1, position 0, column 3 */
    CHECK_EQ_INT(session_read_stage(dir, "tp", &p0, &got, d, &rt, &nrt, err, sizeof err), SESSION_OK);
    CHECK_TRUE(nrt == 12 && rt && rt[11] == toks[11]);
    free(rt);
    CHECK_TRUE(d->k[8 * 20 + 3] == c->k[8 * 20 + 3] - 1000.0f);
    /* rank 1's file presented as rank 0's (renamed): another layout, naming --tp */
    session_header_t q = p0;
    q.tp_size = 4;
    CHECK_EQ_INT(session_read_stage(dir, "tp", &q, &got, d, NULL, NULL, err, sizeof err), SESSION_MISSING);
    char p0path[4400];
    session_path(p0path, sizeof p0path, dir, "tp", 0, 1, 0, 2);
    CHECK_EQ_INT(rename(path, p0path), 0);
    CHECK_EQ_INT(session_read_stage(dir, "tp", &p0, &got, d, NULL, NULL, err, sizeof err), SESSION_MISMATCH);
    CHECK_TRUE(strstr(err, "--tp") != NULL);
    CHECK_EQ_INT(rename(p0path, path), 0);
    CHECK_EQ_INT(session_list(dir, &v, &n, err, sizeof err), 0);
    CHECK_EQ_INT(n, 1);
    if (n == 1) {
      CHECK_EQ_INT(v[0].tp, 2);
      CHECK_EQ_INT(v[0].bytes, tr.bytes[0] + tr.bytes[1] + session_commit_bytes(2));
    }
    free(v);
    CHECK_EQ_INT(session_delete(dir, "tp", err, sizeof err), 0);
    CHECK_EQ_INT(session_count(dir), 0);
  }
  kv_cache_free(c);
  kv_cache_free(d);
  CHECK_EQ_INT(rmdir(dir), 0);
  CHECK_EQ_INT(session_count(dir), 0); /* a missing directory counts 0 */
  return test_finish("session_file");
}
