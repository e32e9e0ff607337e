/* commands.h -- the `strata` subcommands. Each lives in its own cmd_<name>.c and is called by
 * main.c with argv[0] = the subcommand name, after main has checked the environment variables.
 * Returns the process exit code (0 success, 2 bad input, 1 any other failure).
 *
 * MPI is not initialised yet: a command checks its flags (and whatever else it can check alone)
 * first, so bad input is refused at once, then calls cli_mpi_start before it touches MPI or
 * the collectives. Under mpirun every rank refuses the same flags with exit code 2 before MPI
 * starts, and mpirun exits 2. After cli_mpi_start, main ends the job: 2 from every rank
 * finishes cleanly, any other failure aborts it with that code. */
#ifndef STRATA_COMMANDS_H
#define STRATA_COMMANDS_H

int cmd_bench(int argc, char **argv);    /* cmd_bench.c */
int cmd_train(int argc, char **argv);    /* cmd_train.c */
int cmd_eval(int argc, char **argv);     /* cmd_eval.c */
int cmd_simulate(int argc, char **argv); /* cmd_simulate.c */
int cmd_infer(int argc, char **argv);    /* cmd_infer.c */
int cmd_serve(int argc, char **argv);    /* cmd_serve.c */
int cmd_report(int argc, char **argv);   /* cmd_report.c */
int cmd_tokenize(int argc, char **argv); /* cmd_tokenize.c */

/* Initialises MPI (MPI_THREAD_MULTIPLE) once and the rank of the log prefix; 0, or 1 after
 * printing why MPI could not start (main.c). */
int cli_mpi_start(void);

#endif
