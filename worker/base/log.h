/* log.h -- rank-prefixed logging for the worker. Every line a rank prints starts with
 * "[strata rN] " so interleaved mpirun output stays attributable. Only the coordinator prints
 * progress; other ranks print only warnings and errors. */
#ifndef STRATA_LOG_H
#define STRATA_LOG_H

/* Sets the rank shown in the prefix (-1, the default, prints "[strata] "). */
void strata_log_set_rank(int rank);
int strata_log_rank(void);
/* 1: drop every message. `strata` mutes the processes of an mpirun job other than the first
 * until MPI starts (main.c), so bad input found by every rank alike is reported once. */
void strata_log_mute(int mute);
/* To stderr: "[strata rN] error: ..." / "warning: ..." / plain info. */
void strata_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void strata_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void strata_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
