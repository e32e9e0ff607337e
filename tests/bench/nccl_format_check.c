/* nccl_format_check.c -- `strata bench`'s output against real nccl-tests output, character by
 * character.
 *
 * The sample below is real nccl-tests output (versions 2.13-2.16, the "# nThread" line first),
 * copied from public bug reports: the header and device lines from all_reduce_perf on 8 RTX 4090
 * (NVIDIA/nccl issue 1530), rows from all_reduce_perf on two DGX A100 with NCCL 2.16.5
 * (NVIDIA/nccl issue 812, 2-decimal times), on 2 GPUs (NVIDIA/nccl-tests issue 167, 1-decimal
 * times) and on two nodes (NVIDIA/nccl-tests issue 182, integral times), and the footer of
 * alltoall_perf (NVIDIA/nccl-tests issue 287).
 *
 * Every line kind is checked twice with nccl-tests' own printf format (src/common.cu): first the
 * sample's lines are re-printed from their parsed fields and must come out identical (so the
 * formats below are nccl-tests' as it really prints), then strata's lines likewise. Lines without
 * fields (the table's three header lines, "#", "# Using devices") must equal the sample's. The
 * numbers must also be written the way nccl-tests writes them (time with 2, 1 or 0 decimals by
 * size, bandwidths with 2, #wrong an integer or N/A).
 *
 * Expected order: the nThread line, "#", "# Using devices", one "#  Rank" line per rank,
 * Strata's own lines (each a '#' comment), "#", the three header lines, the rows, then
 * "# Out of bounds values", "# Avg bus bandwidth", "#".
 *
 * Usage: nccl_format_check OUTPUT NRANKS   (OUTPUT: the stdout of strata bench)
 *        nccl_format_check --sample        (checks the embedded sample only)
 * Exits 0 when every line matches, 1 with one message per mismatch (expected and got).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const sample_head[] = {
    "# nThread 1 nGpus 8 minBytes 8 maxBytes 134217728 step: 2(factor) warmup iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0",
    "#",
    "# Using devices",
    "#  Rank  0 Group  0 Pid  28307 on      gpu59 device  0 [0x16] NVIDIA GeForce RTX 4090",
    "#  Rank  1 Group  0 Pid  28307 on      gpu59 device  1 [0x27] NVIDIA GeForce RTX 4090",
    "#  Rank  2 Group  0 Pid  28307 on      gpu59 device  2 [0x38] NVIDIA GeForce RTX 4090",
    "#",
    "#                                                              out-of-place                       in-place          ",
    "#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong",
    "#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)       ",
};
static const char *const sample_rows[] = {
    "           8             2     float     sum      -1    93.12    0.00    0.00      0    92.93    0.00    0.00      0",
    "          16             4     float     sum      -1    93.30    0.00    0.00      0    93.24    0.00    0.00      0",
    "      199680         49920     float     max      -1    125.8    1.59    2.98      0    125.1    1.60    2.99      0",
    "   134217728      33554432     float     sum      -1    29770    4.51    4.51      0    29873    4.49    4.49      0",
};
static const char *const sample_foot[] = {
    "# Out of bounds values : 0 OK",
    "# Avg bus bandwidth    : 0 ",
    "#",
};
#define N_HEAD_FIXED 3 /* sample_head[7..9]: the table header */

static int failures;

static void mismatch(const char *what, int line, const char *want, const char *got) {
  failures++;
  fprintf(stderr, "line %d (%s) differs from nccl-tests' layout:\n  want: \"%s\"\n  got:  \"%s\"\n",
          line, what, want, got);
}

/* nccl-tests: PRINT("# nThread %d nGpus %d minBytes %ld maxBytes %ld step: %ld(%s) warmup iters:
 * %d iters: %d agg iters: %d validation: %d graph: %d\n", ...) */
static void check_nthread(const char *l, int line) {
  int nt, ng, w, it, agg, val, gr, n = 0;
  long mn, mx;
  char step[32], kind[16], want[512] = "(does not parse)";
  if (sscanf(l, "# nThread %d nGpus %d minBytes %ld maxBytes %ld step: %31[0-9.](%15[a-z]) warmup "
             "iters: %d iters: %d agg iters: %d validation: %d graph: %d%n",
             &nt, &ng, &mn, &mx, step, kind, &w, &it, &agg, &val, &gr, &n) == 11 && !l[n])
    snprintf(want, sizeof want, "# nThread %d nGpus %d minBytes %ld maxBytes %ld step: %s(%s) warmup "
             "iters: %d iters: %d agg iters: %d validation: %d graph: %d", nt, ng, mn, mx, step, kind,
             w, it, agg, val, gr);
  if (strcmp(want, l)) mismatch("# nThread", line, want, l);
}

/* nccl-tests: "#  Rank %2d Group %2d Pid %6d on %10s device %2d [%04x:%02x:%02x] %s\n" (the
 * bracket held the PCI bus id; its text is free, as its own parser reads "[%[^]]]"). */
static void check_rank(const char *l, int line, int want_rank) {
  int rank, group, pid, dev, n = 0;
  char host[256], bus[128], want[1024] = "(does not parse)";
  if (sscanf(l, "#  Rank %d Group %d Pid %d on %255s device %d [%127[^]]] %n", &rank, &group, &pid,
             host, &dev, bus, &n) == 6 && n > 0 && l[n])
    snprintf(want, sizeof want, "#  Rank %2d Group %2d Pid %6d on %10s device %2d [%s] %s", rank,
             group, pid, host, dev, bus, l + n);
  if (strcmp(want, l)) mismatch("#  Rank", line, want, l);
  if (want_rank >= 0 && n > 0 && rank != want_rank) {
    char w[32];
    snprintf(w, sizeof w, "Rank %d", want_rank);
    mismatch("rank order", line, w, l);
  }
}

/* A decimal with exactly `dec` digits after the point (0: none). */
static int has_decimals(const char *t, int dec) {
  const char *dot = strchr(t, '.');
  return dec == 0 ? dot == NULL : dot && (int)strlen(dot + 1) == dec;
}

/* nccl-tests: PRINT("%12li  %12li  %8s  %6s  %6s", ...) then per placement
 * PRINT("  %7s  %6.2f  %6.2f  %5g", timeStr, ...) (or "%5s" with "N/A"), timeStr "%7.0f" from
 * 10000 us, "%7.1f" from 100 us, else "%7.2f". */
static void check_row(const char *l, int line) {
  char f[13][64], want[1024] = "(does not parse)";
  int n = 0;
  if (sscanf(l, "%63s %63s %63s %63s %63s %63s %63s %63s %63s %63s %63s %63s %63s%n", f[0], f[1], f[2],
             f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11], f[12], &n) == 13 && !l[n]) {
    int len = snprintf(want, sizeof want, "%12s  %12s  %8s  %6s  %6s", f[0], f[1], f[2], f[3], f[4]);
    for (int p = 0; p < 2; p++)
      len += snprintf(want + len, sizeof want - (size_t)len, "  %7s  %6s  %6s  %5s", f[5 + 4 * p],
                      f[6 + 4 * p], f[7 + 4 * p], f[8 + 4 * p]);
    for (int p = 0; p < 2; p++) {
      double t = atof(f[5 + 4 * p]);
      int dec = t >= 10000.0 ? 0 : t >= 100.0 ? 1 : 2;
      if (!has_decimals(f[5 + 4 * p], dec) || !has_decimals(f[6 + 4 * p], 2) ||
          !has_decimals(f[7 + 4 * p], 2) ||
          !(strcmp(f[8 + 4 * p], "N/A") == 0 || strspn(f[8 + 4 * p], "0123456789") == strlen(f[8 + 4 * p])))
        mismatch("number format (time: 2 decimals below 100 us, 1 below 10 ms, else 0; "
                 "bandwidths 2; #wrong an integer or N/A)", line, "", l);
    }
  }
  if (strcmp(want, l)) mismatch("row", line, want, l);
}

/* nccl-tests: PRINT("# Out of bounds values : %d %s\n", ...); PRINT("# Avg bus bandwidth    : %g
 * %s\n", bw, "") -- the empty string leaves a trailing space. */
static void check_foot(const char *const *l, int line) {
  char want[256] = "(does not parse)", ok[16], bw[64];
  int wrong, n = 0;
  if (sscanf(l[0], "# Out of bounds values : %d %15s%n", &wrong, ok, &n) == 2 && !l[0][n])
    snprintf(want, sizeof want, "# Out of bounds values : %d %s", wrong, ok);
  if (strcmp(want, l[0])) mismatch("# Out of bounds values", line, want, l[0]);
  snprintf(want, sizeof want, "(does not parse)");
  if (sscanf(l[1], "# Avg bus bandwidth    : %63[-0-9.e+] %n", bw, &n) == 1 && !l[1][n])
    snprintf(want, sizeof want, "# Avg bus bandwidth    : %s ", bw);
  if (strcmp(want, l[1])) mismatch("# Avg bus bandwidth", line + 1, want, l[1]);
  if (strcmp(l[2], "#")) mismatch("the closing #", line + 2, "#", l[2]);
}

static void check_sample(void) {
  check_nthread(sample_head[0], 1);
  for (int i = 3; i <= 5; i++) check_rank(sample_head[i], i + 1, i - 3);
  for (size_t i = 0; i < sizeof sample_rows / sizeof *sample_rows; i++) check_row(sample_rows[i], (int)i + 100);
  check_foot(sample_foot, 200);
}

/* Splits text into lines in place (no final empty line). */
static int split_lines(char *text, char ***out) {
  int n = 0, cap = 64;
  char **v = malloc((size_t)cap * sizeof *v);
  for (char *p = text; v && *p;) {
    char *e = strchr(p, '\n');
    if (e) *e = '\0';
    if (n == cap) {
      cap *= 2;
      char **nv = realloc(v, (size_t)cap * sizeof *v);
      if (!nv) break;
      v = nv;
    }
    v[n++] = p;
    if (!e) break;
    p = e + 1;
  }
  *out = v;
  return n;
}

int main(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "--sample")) {
    check_sample();
    printf("nccl-tests sample: %s\n", failures ? "the formats do not reproduce it" : "reproduced by the formats");
    return failures ? 1 : 0;
  }
  if (argc != 3) {
    fprintf(stderr, "usage: nccl_format_check OUTPUT NRANKS | nccl_format_check --sample\n");
    return 2;
  }
  check_sample(); /* the formats first reproduce the real output */
  if (failures) return 1;
  const int nranks = atoi(argv[2]);
  FILE *f = fopen(argv[1], "r");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", argv[1]);
    return 2;
  }
  static char text[1 << 20];
  size_t len = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[len] = '\0';
  char **l;
  int n = split_lines(text, &l), i = 0;
#define NEED(k)                                                          \
  if (i + (k) > n) {                                                     \
    fprintf(stderr, "output ends at line %d, before the table is complete\n", n); \
    return 1;                                                            \
  }
  NEED(3);
  check_nthread(l[i], i + 1);
  if (strncmp(l[i], "# nThread 1 nGpus 1 minBytes ", 29))
    mismatch("one process per rank", i + 1, "# nThread 1 nGpus 1 minBytes ...", l[i]);
  i++;
  for (int k = 1; k <= 2; k++, i++)
    if (strcmp(l[i], sample_head[k])) mismatch("fixed line", i + 1, sample_head[k], l[i]);
  NEED(nranks);
  for (int r = 0; r < nranks; r++, i++) check_rank(l[i], i + 1, r);
  while (i < n && strcmp(l[i], "#")) { /* Strata's own lines */
    if (strncmp(l[i], "# ", 2) || !strncmp(l[i], "#  Rank", 7)) mismatch("a '# ' comment", i + 1, "# ...", l[i]);
    i++;
  }
  NEED(1 + N_HEAD_FIXED);
  for (int k = 6; k < 6 + 1 + N_HEAD_FIXED; k++, i++)
    if (strcmp(l[i], sample_head[k])) mismatch("table header", i + 1, sample_head[k], l[i]);
  int rows = 0;
  for (; i < n && l[i][0] != '#'; i++, rows++) check_row(l[i], i + 1);
  NEED(3);
  check_foot((const char *const *)l + i, i + 1);
  if (i + 3 != n) mismatch("end of output", i + 4, "(nothing after the closing #)", l[i + 3]);
  free(l);
  if (rows == 0) mismatch("rows", i + 1, "at least one row", "none");
  printf("%s: nccl-tests layout, %d device lines, %d rows, %d mismatches\n", argv[1], nranks, rows,
         failures);
  return failures ? 1 : 0;
}
