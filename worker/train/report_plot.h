/* report_plot.h -- `strata report --plot`: PNG plots of a loaded run directory (report_read.h)
 * through gnuplot.
 *
 * Into the plot directory (created when missing): steps.dat (step, loss, tokens/s, step
 * seconds), breakdown.dat (per stage the compute / communication / pipeline-idle shares; one
 * row "all" from the steps' mean shares for a run without stages), report.gp (the script), and
 * from it loss.png (loss per step, the validation loss as a dashed line), tokens_per_s.png and
 * breakdown.png (stacked shares per stage). The script uses the pngcairo terminal, falling back
 * to png. gnuplot is env STRATA_GNUPLOT (a path or a name on PATH), default "gnuplot".
 */
#ifndef STRATA_REPORT_PLOT_H
#define STRATA_REPORT_PLOT_H

#include <stddef.h>

#include "report_read.h"

/* Writes the plots of run into plot_dir and lists the PNGs on stdout ("plots:" then one
 * "  PATH (N bytes)" line each). 0, or -1 with a message: gnuplot missing (how to install it),
 * a file that cannot be written, gnuplot's own error, or a PNG it did not write. */
int report_plot(const char *plot_dir, const report_run_t *run, char *err, size_t errlen);

#endif /* STRATA_REPORT_PLOT_H */
