/* commands.h -- the `strata` subcommands. Each lives in its own cmd_<name>.c and is called by
 * main.c with MPI initialised and argv[0] = the subcommand name. Returns the process exit code
 * (0 success, 2 bad usage, 1 any other failure). */
#ifndef STRATA_COMMANDS_H
#define STRATA_COMMANDS_H

int cmd_bench(int argc, char **argv);    /* cmd_bench.c */
int cmd_train(int argc, char **argv);    /* cmd_train.c */
int cmd_eval(int argc, char **argv);     /* cmd_eval.c */
int cmd_simulate(int argc, char **argv); /* cmd_simulate.c */
int cmd_infer(int argc, char **argv);    /* cmd_infer.c */
int cmd_serve(int argc, char **argv);    /* cmd_serve.c */
int cmd_report(int argc, char **argv);   /* cmd_report.c */

#endif
