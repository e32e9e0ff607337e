/* test_runlog.c -- the run directory's records under write failures (worker/base/runlog.c, and the
 * coordinator's use of it in worker/train/coordinator.c). One case per invocation:
 *   append      a line log on /dev/full fails naming the file and the error; on a full tmpfs the
 *               line that does not fit is cut off again (ftruncate): the file holds exactly the
 *               whole lines that fitted, and appends after the failure fail without a byte.
 *   steps       the steps log's policy on a full tmpfs: one warning naming the file, the error and
 *               the first lost step; later records are dropped; runlog_steps_close says 0.
 *   atomic      a whole file on a full tmpfs: commit fails naming the file, the previous file is
 *               byte-identical and PATH.tmp is gone (a write error remembered by the streaming
 *               API, and one found only by fflush); with room it is replaced; a symbolic link
 *               at PATH.tmp is not followed.
 *   json        non-finite numbers are null (runlog_json_num, and a raw json-c NaN double);
 *               strings with '"', '\', newline, control characters and '/' round-trip through
 *               json-c; the compact and multi-line layouts, byte for byte.
 *   coord_nan   the coordinator (1-rank world) with a run directory, data path and transport
 *               containing '"', '\' and a newline, a step whose loss is NaN (no last-stage
 *               report), lr NaN and grad_norm inf: steps.jsonl, report.json and trace.json parse
 *               with json-c, the non-finite values are null and the strings come back intact.
 *   coord_lost  steps.jsonl fails (a link to /dev/full) while report.json can be written: the run
 *               finishes, one warning, report.json says "steps_log_complete": false.
 *   coord_full  the coordinator on a full tmpfs: one warning each for steps.jsonl and trace.json,
 *               coord_finish fails naming report.json and report.pb with ENOSPC's message, and the
 *               previous report.json and trace.json are unchanged, with no temporary left.
 * Helpers for tests/reliability/full_disk.sh:
 *   check-steps FILE   every line of a steps.jsonl parses as one JSON object with consecutive
 *                      "step" from 1 and a numeric "loss"; the file ends with a newline; prints
 *                      the number of lines.
 *   get FILE KEY[.KEY] prints the member: a string as it is, anything else as JSON text (exit 1
 *                      when absent or the file is not JSON).
 * Cases that mount a tmpfs exit 77 (ctest: skipped) with a message when mounting is not allowed. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coordinator.h"
#include "layout.h"
#include "runlog.h"
#include "test_util.h"

#define SKIP_CODE 77

static char tmpfs_dir[256]; /* the mounted tmpfs, "" when none */

/* Mounts a tmpfs of `size` (e.g. "16k") on a new directory; exits 77 when not permitted. */
static const char *mount_tiny(const char *size) {
  snprintf(tmpfs_dir, sizeof tmpfs_dir, "/tmp/strata-runlog.XXXXXX");
  if (!mkdtemp(tmpfs_dir)) {
    fprintf(stderr, "cannot create a directory under /tmp: %s\n", strerror(errno));
    exit(1);
  }
  char opt[64];
  snprintf(opt, sizeof opt, "size=%s,mode=0755", size);
  if (mount("tmpfs", tmpfs_dir, "tmpfs", 0, opt) != 0) {
    int e = errno;
    rmdir(tmpfs_dir);
    printf("SKIP: cannot mount a tmpfs on %s (%s): this test needs root (CAP_SYS_ADMIN)\n",
           tmpfs_dir, strerror(e));
    exit(SKIP_CODE);
  }
  return tmpfs_dir;
}

static void unmount_tiny(void) {
  if (!tmpfs_dir[0]) return;
  if (umount2(tmpfs_dir, MNT_DETACH) != 0) fprintf(stderr, "umount %s: %s\n", tmpfs_dir, strerror(errno));
  rmdir(tmpfs_dir);
  tmpfs_dir[0] = '\0';
}

/* Fills the file system holding `dir` with a ballast file until it is full. */
static void fill(const char *dir) {
  char path[512], block[4096];
  snprintf(path, sizeof path, "%s/ballast", dir);
  memset(block, 0, sizeof block);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  CHECK_TRUE(fd >= 0);
  if (fd < 0) return;
  while (write(fd, block, sizeof block) > 0) {
  }
  CHECK_EQ_INT(errno, ENOSPC);
  close(fd);
}

static size_t file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (size_t)st.st_size : (size_t)-1;
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK_TRUE(f != NULL);
  if (!f) return;
  CHECK_TRUE(fputs(text, f) >= 0);
  CHECK_EQ_INT(fclose(f), 0);
}

static int file_is(const char *path, const char *text) {
  size_t n = 0;
  char *got = test_read_file(path, &n);
  int same = got && n == strlen(text) && memcmp(got, text, n) == 0;
  free(got);
  return same;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; hay && (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

/* stderr into a file while a piece of code runs (the warnings are the behaviour under test). */
static int saved_stderr = -1;
static char capture_path[256];
static void capture_begin(void) {
  snprintf(capture_path, sizeof capture_path, "/tmp/strata-runlog-stderr.XXXXXX");
  int fd = mkstemp(capture_path);
  CHECK_TRUE(fd >= 0);
  fflush(stderr);
  saved_stderr = dup(2);
  dup2(fd, 2);
  close(fd);
}
static char *capture_end(void) {
  fflush(stderr);
  dup2(saved_stderr, 2);
  close(saved_stderr);
  size_t n = 0;
  char *text = test_read_file(capture_path, &n);
  unlink(capture_path);
  char *z = realloc(text, n + 1);
  if (!z) {
    free(text);
    return NULL;
  }
  z[n] = '\0';
  fprintf(stderr, "--- captured stderr ---\n%s--- end ---\n", z);
  return z;
}

/* ---- append ---- */

static void case_append(void) {
  char err[512];
  runlog_lines_t l;
  CHECK_EQ_INT(runlog_lines_open(&l, "/dev/full", 1, err, sizeof err), 0);
  CHECK_EQ_INT(runlog_lines_append(&l, "{\"step\": 1}\n", 12, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "/dev/full") && strstr(err, strerror(ENOSPC)));
  runlog_lines_close(&l, err, sizeof err);

  /* 4 KiB of tmpfs and 100-byte lines: 40 fit (4000 bytes); the 41st writes 96 bytes, then
   * ENOSPC, and those 96 bytes must go again */
  const char *dir = mount_tiny("4k");
  char path[512], line[100];
  snprintf(path, sizeof path, "%s/steps.jsonl", dir);
  memset(line, 'x', sizeof line);
  line[sizeof line - 1] = '\n';
  CHECK_EQ_INT(runlog_lines_open(&l, path, 0, err, sizeof err), 0);
  int n_ok = 0, rc = 0;
  while (n_ok < 1000 && (rc = runlog_lines_append(&l, line, sizeof line, err, sizeof err)) == 0) n_ok++;
  CHECK_EQ_INT(rc, -1);
  CHECK_EQ_INT(n_ok, 40);
  CHECK_TRUE(strstr(err, path) && strstr(err, strerror(ENOSPC)));
  CHECK_EQ_INT(file_size(path), 40 * sizeof line);
  /* a later append fails without adding a byte */
  CHECK_EQ_INT(runlog_lines_append(&l, line, sizeof line, err, sizeof err), -1);
  CHECK_EQ_INT(file_size(path), 40 * sizeof line);
  CHECK_EQ_INT(runlog_lines_close(&l, err, sizeof err), 0);
  size_t n = 0;
  char *text = test_read_file(path, &n);
  CHECK_TRUE(text != NULL);
  for (size_t i = 0; text && i < n; i++)
    if (text[i] != (i % sizeof line == sizeof line - 1 ? '\n' : 'x')) {
      test_fail(__FILE__, __LINE__, "byte %zu of %s is not part of a whole line", i, path);
      break;
    }
  free(text);
  /* append mode keeps the lines; truncating mode starts again */
  CHECK_EQ_INT(runlog_lines_open(&l, path, 1, err, sizeof err), 0);
  runlog_lines_close(&l, err, sizeof err);
  CHECK_EQ_INT(file_size(path), 40 * sizeof line);
  CHECK_EQ_INT(runlog_lines_open(&l, path, 0, err, sizeof err), 0);
  runlog_lines_close(&l, err, sizeof err);
  CHECK_EQ_INT(file_size(path), 0);
  unmount_tiny();
}

/* ---- steps ---- */

static json_object *record(int64_t step) {
  json_object *o = json_object_new_object();
  runlog_json_add(o, "step", json_object_new_int64(step));
  runlog_json_add(o, "loss", runlog_json_num(5.5, "%.9g"));
  runlog_json_add(o, "pad", json_object_new_string("................................................"
                                                   "................................................"));
  return o;
}

static void case_steps(void) {
  const char *dir = mount_tiny("4k");
  char path[512], err[512];
  snprintf(path, sizeof path, "%s/steps.jsonl", dir);
  runlog_lines_t l;
  CHECK_EQ_INT(runlog_lines_open(&l, path, 0, err, sizeof err), 0);
  capture_begin();
  for (int64_t s = 1; s <= 200; s++) runlog_steps_append(&l, s, record(s));
  int complete = runlog_steps_close(&l);
  char *out = capture_end();
  CHECK_EQ_INT(complete, 0);
  CHECK_EQ_INT(count(out, "warning:"), 1);
  char want[700];
  snprintf(want, sizeof want, "%s: %s; step %lld and later are not logged", path, strerror(ENOSPC),
           (long long)l.lost_step);
  CHECK_TRUE(strstr(out, want) != NULL);
  free(out);
  /* the file: steps 1 .. lost_step - 1, each a whole line */
  size_t n = 0;
  char *text = test_read_file(path, &n);
  CHECK_TRUE(text && n > 0 && text[n - 1] == '\n');
  int lines = 0;
  for (size_t i = 0; text && i < n; i++) lines += text[i] == '\n';
  CHECK_TRUE(l.lost_step > 1 && l.lost_step < 200);
  CHECK_EQ_INT(lines, l.lost_step - 1);
  free(text);
  unmount_tiny();
}

/* ---- atomic ---- */

static void case_atomic(void) {
  const char *dir = mount_tiny("16k");
  char path[512], tmp[520], err[1024];
  snprintf(path, sizeof path, "%s/report.json", dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  const char *old = "{\"previous\": true}\n";
  write_text(path, old);
  fill(dir);
  /* one buffer: the data reaches the file at fflush, which fails */
  char big[6000];
  memset(big, 'y', sizeof big);
  CHECK_EQ_INT(runlog_write_file(path, big, sizeof big, err, sizeof err), -1);
  fprintf(stderr, "full disk: %s\n", err);
  CHECK_TRUE(strstr(err, path) && strstr(err, strerror(ENOSPC)));
  CHECK_TRUE(file_is(path, old));
  CHECK_TRUE(!exists(tmp));
  /* a small file: the failure shows at fflush in commit */
  CHECK_EQ_INT(runlog_write_file(path, "{}\n", 3, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, strerror(ENOSPC)) != NULL);
  CHECK_TRUE(file_is(path, old));
  CHECK_TRUE(!exists(tmp));
  /* the streaming API: the error of a write is remembered and reported at commit */
  runlog_file_t w;
  CHECK_EQ_INT(runlog_file_open(&w, path, err, sizeof err), 0);
  for (int i = 0; i < 2000; i++) runlog_file_printf(&w, "{\"event\": %d},\n", i);
  CHECK_EQ_INT(w.err_no, ENOSPC);
  CHECK_EQ_INT(runlog_file_commit(&w, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "(write: ") && strstr(err, strerror(ENOSPC)));
  CHECK_TRUE(file_is(path, old));
  CHECK_TRUE(!exists(tmp));
  /* room again: the file is replaced */
  char ballast[512];
  snprintf(ballast, sizeof ballast, "%s/ballast", dir);
  CHECK_EQ_INT(unlink(ballast), 0);
  CHECK_EQ_INT(runlog_write_file(path, "{\"new\": 1}\n", 11, err, sizeof err), 0);
  CHECK_TRUE(file_is(path, "{\"new\": 1}\n"));
  CHECK_TRUE(!exists(tmp));
  /* a symbolic link at PATH.tmp is refused, its target untouched */
  char target[512];
  snprintf(target, sizeof target, "%s/target", dir);
  write_text(target, "keep\n");
  CHECK_EQ_INT(symlink(target, tmp), 0);
  CHECK_EQ_INT(runlog_write_file(path, "{}\n", 3, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, tmp) != NULL);
  CHECK_TRUE(file_is(target, "keep\n"));
  CHECK_TRUE(file_is(path, "{\"new\": 1}\n"));
  unmount_tiny();
}

/* ---- json ---- */

static void case_json(void) {
  CHECK_TRUE(runlog_json_num(NAN, "%.9g") == NULL);
  CHECK_TRUE(runlog_json_num(INFINITY, "%.9g") == NULL);
  CHECK_TRUE(runlog_json_num(-INFINITY, "%.6g") == NULL);
  const char *nasty = "a\"b\\c\nd\te\x01/f";
  json_object *o = json_object_new_object();
  runlog_json_add(o, "step", json_object_new_int64(3));
  runlog_json_add(o, "loss", runlog_json_num(2.5, "%.9g"));
  runlog_json_add(o, "nan", runlog_json_num(NAN, "%.9g"));
  runlog_json_add(o, "raw_nan", json_object_new_double(NAN)); /* not via runlog_json_num */
  runlog_json_add(o, "raw_inf", json_object_new_double(-INFINITY));
  runlog_json_add(o, "share", runlog_json_num(0.25, "%.4f"));
  runlog_json_add(o, "s", runlog_json_str(nasty));
  runlog_json_add(o, "none", runlog_json_str(NULL));
  json_object *arr = json_object_new_array();
  json_object_array_add(arr, json_object_new_int(1));
  json_object_array_add(arr, json_object_new_int(2));
  runlog_json_add(o, "a", arr);
  size_t len = 0;
  char *text = runlog_json_text(o, 0, &len);
  const char *want = "{\"step\": 3, \"loss\": 2.5, \"nan\": null, \"raw_nan\": null, \"raw_inf\": "
                     "null, \"share\": 0.2500, \"s\": \"a\\\"b\\\\c\\nd\\te\\u0001/f\", \"none\": "
                     "null, \"a\": [1, 2]}";
  CHECK_TRUE(text && !strcmp(text, want));
  CHECK_EQ_INT(len, strlen(want));
  if (text && strcmp(text, want)) fprintf(stderr, "got  %s\nwant %s\n", text, want);
  json_object *back = text ? json_tokener_parse(text) : NULL;
  json_object *v = NULL;
  CHECK_TRUE(back && json_object_object_get_ex(back, "s", &v) && !strcmp(json_object_get_string(v), nasty));
  CHECK_TRUE(back && json_object_object_get_ex(back, "nan", &v) && v == NULL);
  json_object_put(back);
  free(text);
  /* the report layout: members one per line, array elements one per line */
  json_object *doc = json_object_new_object();
  runlog_json_add(doc, "world_size", json_object_new_int(2));
  json_object *stages = json_object_new_array();
  for (int s = 0; s < 2; s++) {
    json_object *e = json_object_new_object();
    runlog_json_add(e, "stage", json_object_new_int(s));
    runlog_json_add(e, "compute_s", runlog_json_num(0.5 * s, "%.6g"));
    json_object_array_add(stages, e);
  }
  runlog_json_add(doc, "stages", stages);
  runlog_json_add(doc, "empty", json_object_new_array());
  runlog_json_add(doc, "model", o);
  text = runlog_json_text(doc, 1, NULL);
  const char *want_doc = "{\n  \"world_size\": 2,\n  \"stages\": [\n    {\"stage\": 0, \"compute_s\": 0},\n"
                         "    {\"stage\": 1, \"compute_s\": 0.5}\n  ],\n  \"empty\": [],\n  \"model\": ";
  CHECK_TRUE(text && !strncmp(text, want_doc, strlen(want_doc)));
  if (text && strncmp(text, want_doc, strlen(want_doc))) fprintf(stderr, "got  %s\nwant %s\n", text, want_doc);
  back = text ? json_tokener_parse(text) : NULL;
  CHECK_TRUE(back != NULL);
  json_object_put(back);
  free(text);
  json_object_put(doc);
}

/* ---- the coordinator ---- */

typedef struct {
  coll_comm_t *world;
  layout_t lay;
  coord_info_t info;
} coord_env_t;

static int coord_env(coord_env_t *e, const char *out_dir, const char *data, const char *transport) {
  char err[512];
  memset(e, 0, sizeof *e);
  coll_config_t cc = coll_config_default();
  if (coll_comm_create(MPI_COMM_WORLD, &cc, &e->world) != COLL_OK) return -1;
  layout_model_t lm = {256, 16, 1, 2, 16};
  if (layout_init(&e->lay, &lm, 1, 1, 1, 1, 1, 4, NULL, err, sizeof err)) {
    fprintf(stderr, "layout: %s\n", err);
    return -1;
  }
  e->info.layout = &e->lay;
  e->info.model = (strata_model_cfg_t){256, 16, 1, 2, 16};
  e->info.train.batch = 4;
  e->info.train.seq_len = 16;
  e->info.train.microbatches = 1;
  e->info.train.lr = 3e-3;
  e->info.train.total_steps = 3;
  snprintf(e->info.train.schedule, sizeof e->info.train.schedule, "gpipe");
  snprintf(e->info.train.data_path, sizeof e->info.train.data_path, "%s", data);
  e->info.out_dir = out_dir;
  e->info.transport = transport;
  e->info.total_steps = 3;
  e->info.log_every = 1;
  e->info.quiet = 1;
  e->info.bucket_mb = 4;
  return 0;
}

/* One step through coord_step: loss NaN (no last-stage report) unless has_loss. */
static int coord_one_step(coord_t *c, int64_t step, int has_loss, double lr, double grad_norm) {
  strata_step_report_t rep;
  strata_step_report_init(&rep);
  rep.step = (uint64_t)step;
  rep.has_loss = has_loss;
  rep.loss = 5.0;
  rep.tokens = 64;
  rep.compute_s = 1e-3;
  char err[512];
  double loss = 0;
  coord_trace(c, TRACE_FWD, 0, 0.0, 1e-4);
  int rc = coord_step(c, &rep, 1e-3, lr, grad_norm, &loss, err, sizeof err);
  if (rc) fprintf(stderr, "coord_step: %s\n", err);
  return rc;
}

static json_object *member(json_object *o, const char *key, int *present) {
  json_object *v = NULL;
  *present = o && json_object_object_get_ex(o, key, &v);
  return v;
}

static void case_coord_nan(void) {
  char base[256], dir[512], data[600], path[700], err[512];
  snprintf(base, sizeof base, "/tmp/strata-runlog.XXXXXX");
  CHECK_TRUE(mkdtemp(base) != NULL);
  snprintf(dir, sizeof dir, "%s/we\"ir\\d\nrun", base);
  CHECK_EQ_INT(mkdir(dir, 0755), 0);
  snprintf(data, sizeof data, "%s/da\"ta\\.txt", dir);
  const char *transport = "m\"p\\i\n";
  coord_env_t e;
  CHECK_EQ_INT(coord_env(&e, dir, data, transport), 0);
  coord_t *c = NULL;
  CHECK_EQ_INT(coord_create(e.world, &e.info, &c, err, sizeof err), 0);
  if (!c) return;
  CHECK_EQ_INT(coord_one_step(c, 1, 0, NAN, INFINITY), 0);
  coord_set_val_loss(c, 1, NAN, 0);
  CHECK_EQ_INT(coord_finish(c, err, sizeof err), 0);
  coord_free(c);
  coll_comm_destroy(e.world);

  int present = 0;
  snprintf(path, sizeof path, "%s/report.json", dir);
  json_object *rep = json_object_from_file(path);
  CHECK_TRUE(rep != NULL);
  CHECK_TRUE(member(rep, "final_loss", &present) == NULL && present);
  CHECK_TRUE(member(rep, "val_loss", &present) == NULL && present);
  json_object *cfg = member(rep, "config", &present);
  json_object *v = member(cfg, "data", &present);
  CHECK_TRUE(v && !strcmp(json_object_get_string(v), data));
  v = member(rep, "transport", &present);
  CHECK_TRUE(v && !strcmp(json_object_get_string(v), transport));
  v = member(rep, "steps_log_complete", &present);
  CHECK_TRUE(v && json_object_get_boolean(v));
  v = member(rep, "world_size", &present);
  CHECK_TRUE(v && json_object_get_int(v) == 1);
  json_object_put(rep);
  size_t n = 0;
  char *text = test_read_file(path, &n);
  char *z = text ? realloc(text, n + 1) : NULL;
  if (z) z[n] = '\0';
  CHECK_TRUE(z && !strstr(z, "nan") && !strstr(z, "inf") && !strstr(z, "NaN"));
  free(z ? z : text);

  snprintf(path, sizeof path, "%s/steps.jsonl", dir);
  text = test_read_file(path, &n);
  z = text ? realloc(text, n + 1) : NULL;
  if (z) z[n] = '\0';
  CHECK_TRUE(z && n > 0 && z[n - 1] == '\n' && count(z, "\n") == 1);
  json_object *line = z ? json_tokener_parse(z) : NULL;
  CHECK_TRUE(line != NULL);
  CHECK_TRUE(member(line, "loss", &present) == NULL && present);
  CHECK_TRUE(member(line, "lr", &present) == NULL && present);
  CHECK_TRUE(member(line, "grad_norm", &present) == NULL && present);
  v = member(line, "step", &present);
  CHECK_TRUE(v && json_object_get_int(v) == 1);
  json_object_put(line);
  free(z ? z : text);

  snprintf(path, sizeof path, "%s/trace.json", dir);
  json_object *trace = json_object_from_file(path);
  CHECK_TRUE(trace != NULL);
  json_object_put(trace);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
  CHECK_EQ_INT(system(cmd), 0);
}

static void case_coord_lost(void) {
  char dir[256], path[512], err[512];
  snprintf(dir, sizeof dir, "/tmp/strata-runlog.XXXXXX");
  CHECK_TRUE(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/steps.jsonl", dir);
  CHECK_EQ_INT(symlink("/dev/full", path), 0);
  coord_env_t e;
  CHECK_EQ_INT(coord_env(&e, dir, "data.txt", "mpi"), 0);
  coord_t *c = NULL;
  CHECK_EQ_INT(coord_create(e.world, &e.info, &c, err, sizeof err), 0);
  if (!c) return;
  capture_begin();
  for (int s = 1; s <= 3; s++) CHECK_EQ_INT(coord_one_step(c, s, 1, 1e-3, 1.0), 0);
  CHECK_EQ_INT(coord_finish(c, err, sizeof err), 0);
  char *out = capture_end();
  coord_free(c);
  coll_comm_destroy(e.world);
  CHECK_EQ_INT(count(out, "warning:"), 1);
  CHECK_EQ_INT(count(out, "steps.jsonl: No space left on device; step 1 and later are not logged"), 1);
  free(out);
  snprintf(path, sizeof path, "%s/report.json", dir);
  json_object *rep = json_object_from_file(path);
  int present = 0;
  json_object *v = member(rep, "steps_log_complete", &present);
  CHECK_TRUE(present && json_object_is_type(v, json_type_boolean) && !json_object_get_boolean(v));
  v = member(rep, "trace_written", &present);
  CHECK_TRUE(present && json_object_get_boolean(v));
  v = member(rep, "steps_done", &present);
  CHECK_TRUE(v && json_object_get_int(v) == 3);
  json_object_put(rep);
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK_EQ_INT(system(cmd), 0);
}

static void case_coord_full(void) {
  const char *dir = mount_tiny("16k");
  char path[512], err[2048];
  const char *old_report = "{\"previous\": \"report\"}\n", *old_trace = "{\"previous\": \"trace\"}\n";
  snprintf(path, sizeof path, "%s/report.json", dir);
  write_text(path, old_report);
  snprintf(path, sizeof path, "%s/trace.json", dir);
  write_text(path, old_trace);
  coord_env_t e;
  CHECK_EQ_INT(coord_env(&e, dir, "data.txt", "mpi"), 0);
  coord_t *c = NULL;
  CHECK_EQ_INT(coord_create(e.world, &e.info, &c, err, sizeof err), 0);
  if (!c) {
    unmount_tiny();
    return;
  }
  fill(dir);
  capture_begin();
  for (int s = 1; s <= 3; s++) CHECK_EQ_INT(coord_one_step(c, s, 1, 1e-3, 1.0), 0);
  int rc = coord_finish(c, err, sizeof err);
  char *out = capture_end();
  coord_free(c);
  coll_comm_destroy(e.world);
  fprintf(stderr, "coord_finish: %s\n", err);
  CHECK_EQ_INT(rc, -1);
  char want[600];
  snprintf(want, sizeof want, "cannot write %s/report.json (write: %s)", dir, strerror(ENOSPC));
  CHECK_TRUE(strstr(err, want) != NULL);
  snprintf(want, sizeof want, "cannot write %s/report.pb (write: %s)", dir, strerror(ENOSPC));
  CHECK_TRUE(strstr(err, want) != NULL);
  CHECK_EQ_INT(count(out, "warning:"), 2);
  CHECK_EQ_INT(count(out, "steps.jsonl: No space left on device; step 1 and later are not logged"), 1);
  CHECK_EQ_INT(count(out, "trace.json (write: No space left on device)"), 1);
  free(out);
  snprintf(path, sizeof path, "%s/report.json", dir);
  CHECK_TRUE(file_is(path, old_report));
  snprintf(path, sizeof path, "%s/trace.json", dir);
  CHECK_TRUE(file_is(path, old_trace));
  const char *tmps[] = {"report.json.tmp", "report.pb.tmp", "trace.json.tmp", "report.pb"};
  for (int i = 0; i < 4; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, tmps[i]);
    CHECK_TRUE(!exists(path));
  }
  snprintf(path, sizeof path, "%s/steps.jsonl", dir);
  CHECK_EQ_INT(file_size(path), 0);
  unmount_tiny();
}

/* ---- helpers for the scripts ---- */

static int check_steps(const char *path) {
  size_t n = 0;
  char *text = test_read_file(path, &n);
  if (!text && n == 0 && exists(path)) return printf("0\n"), 0;
  if (!text) return fprintf(stderr, "cannot read %s\n", path), 1;
  if (n > 0 && text[n - 1] != '\n') return fprintf(stderr, "%s does not end with a newline\n", path), 1;
  int lines = 0;
  json_tokener *tok = json_tokener_new();
  for (size_t at = 0; at < n;) {
    char *nl = memchr(text + at, '\n', n - at);
    size_t len = (size_t)(nl - (text + at));
    json_tokener_reset(tok);
    json_object *o = json_tokener_parse_ex(tok, text + at, (int)len);
    int whole = o && json_tokener_get_error(tok) == json_tokener_success &&
                json_tokener_get_parse_end(tok) == len;
    json_object *step = NULL, *loss = NULL;
    lines++;
    if (!whole || !json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, "step", &step) || json_object_get_int64(step) != lines ||
        !json_object_object_get_ex(o, "loss", &loss) ||
        !(json_object_is_type(loss, json_type_double) || json_object_is_type(loss, json_type_int))) {
      fprintf(stderr, "%s line %d is not a whole step record of step %d: %.*s\n", path, lines,
              lines, (int)len, text + at);
      json_object_put(o);
      json_tokener_free(tok);
      free(text);
      return 1;
    }
    json_object_put(o);
    at += len + 1;
  }
  json_tokener_free(tok);
  free(text);
  printf("%d\n", lines);
  return 0;
}

static int get_member(const char *path, const char *keys) {
  json_object *root = json_object_from_file(path);
  if (!root) return fprintf(stderr, "%s is not valid JSON: %s\n", path, json_util_get_last_err()), 1;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", keys);
  json_object *v = root;
  for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save))
    if (!json_object_object_get_ex(v, k, &v)) {
      fprintf(stderr, "%s has no member %s\n", path, keys);
      json_object_put(root);
      return 1;
    }
  if (json_object_is_type(v, json_type_string)) printf("%s\n", json_object_get_string(v));
  else printf("%s\n", json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put(root);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "check-steps")) return check_steps(argv[2]);
  if (argc == 4 && !strcmp(argv[1], "get")) return get_member(argv[2], argv[3]);
  if (argc != 2) {
    fprintf(stderr, "usage: %s append|steps|atomic|json|coord_nan|coord_lost|coord_full | "
            "check-steps FILE | get FILE KEY[.KEY]\n", argv[0]);
    return 2;
  }
  const char *c = argv[1];
  if (!strcmp(c, "append")) case_append();
  else if (!strcmp(c, "steps")) case_steps();
  else if (!strcmp(c, "atomic")) case_atomic();
  else if (!strcmp(c, "json")) case_json();
  else if (!strncmp(c, "coord_", 6)) {
    MPI_Init(&argc, &argv);
    if (!strcmp(c, "coord_nan")) case_coord_nan();
    else if (!strcmp(c, "coord_lost")) case_coord_lost();
    else if (!strcmp(c, "coord_full")) case_coord_full();
    else fprintf(stderr, "unknown case %s\n", c), test_failures++;
    MPI_Finalize();
  } else {
    fprintf(stderr, "unknown case %s\n", c);
    return 2;
  }
  unmount_tiny();
  return test_finish(c);
}
