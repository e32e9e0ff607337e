/* device.h -- the simulated accelerator: a device profile (peak FLOP/s per dtype, HBM capacity
 * and bandwidth, the intra- and inter-instance links), the time model built on it (roofline op
 * time, alpha-beta transfer time on the link a transfer crosses, ring collective costs), the
 * built-in profiles (a100, h100, trn1, trn1-core, trn2, trn3, trn4) with their efficiency model,
 * JSON profile files, and the calibration of the
 * `cpu` profile on the machine Strata runs on.
 *
 * Topology: rank r is chip r; chips fill instances in order, instance = r / chips_per_instance.
 * Two ranks on one instance talk over the intra-instance link (NeuronLink / NVLink), otherwise
 * over the inter-instance network (EFA), whose per-instance bandwidth is shared evenly by the
 * instance's chips (every data-parallel group reduces at the same time), so one chip's share
 * is inter_bw / chips_per_instance.
 *
 * Time model (units: seconds, bytes, FLOP):
 *   op        t = max(flops / peak_flops[dtype], bytes / hbm_bw)                  (roofline)
 *   transfer  t = latency + bytes / bandwidth on the link crossed                   (alpha-beta)
 *   ring all-reduce over p ranks, n bytes:  2(p-1) a + 2(p-1)/p n / B + (p-1)/p n g
 *   reduce-scatter / all-gather (n = whole array):  (p-1) a + (p-1)/p n / B
 * where a and B are the latency and bandwidth of the slowest link of the ring (the ring visits
 * the ranks in the given order and closes back to the first) and g = 1 / reduce_bw (0 = reduce
 * cost ignored).
 *
 * JSON profile (all fields required, numbers; units in the names):
 *   { "name": "mychip", "peak_tflops_fp32": 40, "peak_tflops_bf16": 160, "peak_tflops_fp8": 320,
 *     "hbm_gib": 32, "hbm_gbps": 820, "chips_per_instance": 16,
 *     "intra_gbps": 384, "intra_latency_us": 1.5, "inter_gbps": 100, "inter_latency_us": 15,
 *     "reduce_gbps": 0 }
 *   GB/s are decimal (1e9 bytes/s); hbm_gib is GiB (2^30 bytes); inter_gbps is the instance's
 *   whole network bandwidth in GB/s (800 Gbps EFA = 100 GB/s).
 */
#ifndef STRATA_DEVICE_H
#define STRATA_DEVICE_H

#include <stddef.h>

typedef enum { DEV_FP32 = 0, DEV_BF16 = 1, DEV_FP8 = 2, DEV_DTYPE_COUNT } device_dtype_t;

#define DEVICE_ONE_MACHINE (1 << 20) /* chips_per_instance of the calibrated `cpu` device */

#define DEV_SHARE_MAX 16 /* ranks per host whose sharing rate is measured */

typedef struct {
  char name[64];
  double peak_flops[DEV_DTYPE_COUNT]; /* dense FLOP/s per compute dtype */
  double hbm_bytes;                   /* device memory capacity, bytes */
  double hbm_Bps;                     /* device memory bandwidth, bytes/s */
  int chips_per_instance;             /* chips (ranks) per instance; DEVICE_ONE_MACHINE for the
                                         calibrated host (every rank on one "instance") */
  double intra_Bps;                   /* chip-to-chip link bandwidth inside an instance, bytes/s */
  double intra_lat_s;                 /* one hop inside an instance, s */
  double inter_Bps;                   /* network bandwidth of a whole instance, bytes/s */
  double inter_lat_s;                 /* one hop between instances, s */
  double reduce_Bps;                  /* reduction throughput (gamma = 1/reduce_Bps); 0 = free */
  double op_overhead_s;               /* fixed cost per op (kernel launch, loop set-up); 0 for the
                                         built-in accelerators, measured for `cpu` */
  double coll_lat_s;                  /* > 0: latency of one step of a collective (ring step),
                                         replacing the link latency in collectives when larger;
                                         0 for the built-ins, measured for `cpu` in strata train */
  double timeshare;                   /* cpu in strata train: > 1 when the job's ranks outnumber
                                         the host's cores; every figure above is already scaled
                                         by it (informational; 0 or 1: dedicated) */
  /* ---- time-shared cores (cpu in strata train, measured at start-up; share_ranks 0: none):
   * the pipeline phase then runs the ranks of a host as processes sharing its cores
   * (simulate.c, SIMULATION.md "Time sharing") */
  int share_ranks;                    /* consecutive world ranks that share one host's cores */
  double share_rate[DEV_SHARE_MAX + 1]; /* [k], k = 1..share_ranks: the fraction of a core a
                                           computing rank gets while k of its host's ranks compute
                                           and the others wait in the collectives library */
  /* ---- efficiency model (SIMULATION.md "Efficiency model"): every field 0 = the ideal
   * roofline and ring, factors of 1 -- the cpu profile and JSON files without these fields */
  double mm_eff;            /* fraction of peak a large GEMM reaches (cuBLAS / NKI microbenchmarks) */
  double mm_fp8_eff;        /* the same for a GEMM at the fp8 rate, its scaling bookkeeping
                               included (0: mm_eff) */
  int mm_tile_m, mm_tile_n; /* output tile of the GEMM library: tile quantisation (0: none) */
  int mm_units;             /* tiles computed at once (SMs, NeuronCores): wave quantisation */
  double attn_fused_eff;    /* > 0: fused (flash) attention available, at this fraction of peak
                               with no T^2 HBM traffic (used unless the job asks for unfused) */
  double hbm_eff;           /* fraction of hbm_Bps memory-bound ops reach (STREAM-like copies) */
  double intra_bus_eff, inter_bus_eff; /* collective bus bandwidth / line rate (nccl-tests,
                                          nccom-test busbw) */
  double coll_base_s;       /* fixed cost of one collective call (launch, synchronisation) */
  int coll_auto;            /* 1: the algorithm the library would pick (ring, tree, or
                               hierarchical intra- then inter-instance), the fastest modelled */
  double overlap_slowdown;  /* compute time lost per second of DP communication it overlaps
                               (the collective's kernels share the chip) */
  int projection;           /* 1: an unreleased chip; figures beyond the announcement assumed */
} device_t;

/* 1 when the profile carries an efficiency model (mm_eff > 0), 0 for the ideal roofline. */
int device_has_eff(const device_t *d);
/* 1 when the job's ranks time-share a host's cores with measured sharing rates (the pipeline
 * then runs on one clock per host: simulate.c), 0 otherwise. */
int device_time_shared(const device_t *d);
/* Achievable fraction of peak of `count` independent GEMMs C(m x n) = A(m x k) B(k x n):
 * mm_eff x tile quantisation (m n / (ceil(m/tm) tm ceil(n/tn) tn)) x wave quantisation
 * (tiles / (ceil(tiles / units) units)). 1 without an efficiency model. */
double device_matmul_eff(const device_t *d, double m, double n, double k, double count);
/* The same for a GEMM whose math runs in dt: at DEV_FP8 with mm_fp8_eff set, mm_fp8_eff takes
 * mm_eff's place. */
double device_matmul_eff_dt(const device_t *d, device_dtype_t dt, double m, double n, double k,
                            double count);

const char *device_dtype_name(device_dtype_t d); /* "fp32", "bf16", "fp8" */
int device_dtype_size(device_dtype_t d);         /* bytes per element: 4, 2, 1 */
int device_parse_dtype(const char *s, device_dtype_t *out);

/* Built-in profiles: "trn1", "trn1-core", "trn2", "trn3", "trn4" (a projection), "h100",
 * "a100" (figures, sources and assumptions in worker/sim/SIMULATION.md and in
 * worker/sim/devices/NAME.json, which hold the same figures). 0 ok, -1 unknown name. */
int device_builtin(const char *name, device_t *out);
/* Loads a JSON profile (format above). On error returns -1 with a message naming the file and
 * the field (missing, not a number, not positive). */
int device_load_json(const char *path, device_t *out, char *err, size_t errlen);
/* Checks that every figure is positive (reduce_Bps may be 0); message names the field. */
int device_validate(const device_t *d, char *err, size_t errlen);
/* "trn1"/.../"cpu" (calibrated), a path to a .json file, or the NAME of a shipped profile,
 * share/strata/devices/NAME.json (datapath.h; "trn1-measured"). */
int device_resolve(const char *spec, device_t *out, char *err, size_t errlen);

/* ---- time model ---- */
/* Roofline time of an op: max(flops / peak[dtype], bytes / hbm_Bps) + op_overhead_s. */
double device_op_time(const device_t *d, device_dtype_t dt, double flops, double bytes);
/* The same with the efficiency model: flops at peak x flop_eff (a GEMM's device_matmul_eff, the
 * fused attention's attn_fused_eff; 0 or 1 = peak), bytes at hbm_Bps x hbm_eff. */
double device_op_time_eff(const device_t *d, device_dtype_t dt, double flops, double bytes,
                          double flop_eff);
/* The link between two ranks: latency (s) and bandwidth (bytes/s); same rank: 0 and +inf. */
void device_link(const device_t *d, int rank_a, int rank_b, double *lat_s, double *Bps);
/* alpha-beta point-to-point time of `bytes` from rank a to rank b (0 if a == b). */
double device_p2p_time(const device_t *d, int rank_a, int rank_b, double bytes);
/* Slowest link of the ring ranks[0] -> ranks[1] -> ... -> ranks[p-1] -> ranks[0]. */
void device_ring_bottleneck(const device_t *d, const int *ranks, int p, double *lat_s, double *Bps);
/* Ring all-reduce of n bytes over ranks[0..p): 2(p-1)a + 2(p-1)/p n/B + (p-1)/p n g; 0 if p<=1.
 * With an efficiency model (coll_auto): B is the bus bandwidth (line rate x bus efficiency of
 * the slowest link), every call pays coll_base_s, and the cheapest of ring, tree (2 ceil(log2 p)
 * a + 2 n/B) and -- when the ranks span instances with m > 1 of them on each -- hierarchical
 * (reduce-scatter inside the instance, all-reduce of n/m across instances, all-gather inside)
 * is taken, as NCCL's tuner picks the fastest algorithm for the size. */
double device_allreduce_time(const device_t *d, const int *ranks, int p, double bytes);
/* Ring reduce-scatter or all-gather of an n-byte array: (p-1)a + (p-1)/p n/B (+ (p-1)/p n g
 * for reduce-scatter); 0 if p <= 1. */
double device_reduce_scatter_time(const device_t *d, const int *ranks, int p, double bytes);
double device_allgather_time(const device_t *d, const int *ranks, int p, double bytes);

/* ---- calibration of the `cpu` profile ---- */
/* The single-thread matrix product the calibration times: row-major C (M x N) = A (M x K)
 * B (K x N). The default (NULL) is OpenBLAS's cblas_sgemm; the strata binary installs the
 * model's GEMM (gemm.h), so that the profile measures the library training runs on. */
typedef void (*device_matmul_fn)(int M, int N, int K, const float *a, const float *b, float *c);
void device_set_matmul(device_matmul_fn fn);
/* Measures single-thread sgemm GFLOP/s (M=N=K=384, best of 5), memcpy bandwidth (32 MiB
 * copies, best of 6) and fills a "cpu" profile: fp32 = bf16 = fp8 peak = the sgemm rate, HBM =
 * installed RAM, hbm_Bps = 2x the memcpy rate (read + write), reduce_Bps = memcpy / 1.5, every
 * rank on one instance, links = the memcpy rate with 1 us latency until device_calibrate_link
 * measures them. Takes well under a second. */
int device_calibrate_cpu(device_t *out);

/* Re-measures the cpu profile's peak on the matrix shapes a model actually runs (small
 * matrices reach far less than the square 384 peak): shapes[3i..3i+2] = M, N, K of an
 * sgemm C(MxN) = A(MxK) B(KxN), weight[i] how many times a step runs it. Sets every dtype's
 * peak to sum(weight * 2MNK) / sum(weight * best time) (single thread, best of 3). 0 or -1. */
int device_calibrate_cpu_shapes(device_t *d, const int *shapes, const double *weight, int n);
/* The shapes of a GPT-2 step (every linear's forward, input-gradient and weight-gradient sgemm,
 * the attention matmuls, the logits) for micro-batches of b sequences of T tokens, as one of tp
 * tensor-parallel ranks runs them (tp <= 1: the whole layer; else vocab is the padded
 * vocabulary); fills up to DEVICE_GPT2_SHAPES entries and returns the count. */
#define DEVICE_GPT2_SHAPES 24
int device_gpt2_shapes(int vocab, int layers, int heads, int dim, int b, int T, int tp, int *shapes,
                       double *weight);

/* A round trip of `bytes` between two ranks, `iters` times; returns 0 and the seconds of one
 * round trip (device_pingpong_coll reports the fastest, least disturbed by other load).
 * Supplied by the caller, so the time model itself does not depend on a transport. */
typedef int (*device_pingpong_fn)(void *ctx, size_t bytes, int iters, double *seconds_per_rt);
/* Fits alpha (latency) and beta (1/bandwidth) from a small (8 B) and a large (4 MiB)
 * ping-pong and stores them as both the intra- and inter-instance link (one machine). */
int device_calibrate_link(device_t *d, device_pingpong_fn fn, void *ctx);

/* A device_pingpong_fn over the collectives library: ctx is a coll_comm_t *. Collective over
 * the communicator: ranks 0 and 1 bounce the message, every rank receives rank 0's timing
 * (broadcast), the fastest of the iterations. Needs >= 2 ranks (returns -1 otherwise, and
 * on transport errors). Usage:
 *    device_calibrate_link(&dev, device_pingpong_coll, world_comm);   // on every rank */
int device_pingpong_coll(void *ctx, size_t bytes, int iters, double *seconds_per_rt);

/* Every figure of the profile in one line, for --verbose and `strata simulate`:
 * "trn2: fp32 166.8 / bf16 667 / fp8 1299 TFLOP/s, HBM 96.0 GiB @ 2900 GB/s, 16 chips/instance, ..." */
void device_describe(const device_t *d, char *buf, size_t len);
/* The banner's readable line: "trn2: 667 TFLOP/s bf16, 96 GiB HBM per chip, 16 chips per
 * instance", or for the calibrated host "cpu (this machine, measured): 38.2 GFLOP/s per rank,
 * 23.5 GiB memory, ranks exchange 9.8 GB/s". */
void device_summary(const device_t *d, char *buf, size_t len);

#endif /* STRATA_DEVICE_H */
