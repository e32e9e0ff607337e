/* test_tune_pick.c -- coll_tune_pick (worker/parallel/coll_tune.h): the tuner's choice at one
 * size is the fastest median, unless the previous size's choice has a median within the fastest's
 * median's confidence interval and within 2% of it. */
#include "coll_tune.h"
#include "test_util.h"

int main(void) {
  /* Three candidates: medians 10, 11, 13 us; their confidence intervals' upper ends 12, 12.5, 14. */
  const double med[3] = {10, 11, 13}, hi[3] = {12, 12.5, 14};
  CHECK_EQ_INT(coll_tune_pick(3, med, hi, -1), 0); /* first size: the fastest */
  CHECK_EQ_INT(coll_tune_pick(3, med, hi, 0), 0);  /* the previous choice is the fastest */
  CHECK_EQ_INT(coll_tune_pick(3, med, hi, 1), 0);  /* 11 <= 12, but 10% slower: replaced */
  const double med_close[3] = {10, 10.2, 13};
  CHECK_EQ_INT(coll_tune_pick(3, med_close, hi, 1), 1); /* 10.2 <= 12 and within 2%: kept */
  const double med_edge[3] = {10, 10.21, 13};
  CHECK_EQ_INT(coll_tune_pick(3, med_edge, hi, 1), 0); /* just over 2% */
  CHECK_EQ_INT(coll_tune_pick(3, med, hi, 2), 0);  /* 13 > 12: clearly slower, replaced */
  CHECK_EQ_INT(coll_tune_pick(3, med, hi, 3), 0);  /* not a candidate at this size */

  /* The bound is the fastest's interval, not the previous choice's own: a noisy previous choice
   * with a wide interval is still replaced when its median is beyond the fastest's. */
  const double med2[2] = {20, 23}, hi_2[2] = {22, 40};
  CHECK_EQ_INT(coll_tune_pick(2, med2, hi_2, 1), 0);
  /* Equal to both bounds is within them; within the interval but over 2% is not. */
  const double med3[2] = {20, 20.4}, hi_3[2] = {20.4, 21};
  CHECK_EQ_INT(coll_tune_pick(2, med3, hi_3, 1), 1);
  const double med5[2] = {20, 22}, hi_5[2] = {22, 22};
  CHECK_EQ_INT(coll_tune_pick(2, med5, hi_5, 1), 0);

  /* The fastest is found wherever it stands; ties go to the lowest index. */
  const double med4[4] = {9, 7, 8, 7}, hi_4[4] = {9, 7.5, 9, 8};
  CHECK_EQ_INT(coll_tune_pick(4, med4, hi_4, -1), 1);
  CHECK_EQ_INT(coll_tune_pick(4, med4, hi_4, 3), 3); /* a tie with the fastest is within noise */
  CHECK_EQ_INT(coll_tune_pick(4, med4, hi_4, 2), 1); /* 8 > 7.5 */
  CHECK_EQ_INT(coll_tune_pick(1, med4, hi_4, 0), 0); /* one candidate */

  /* The median's 95% interval: ceil(n/2 + 0.98 sqrt(n)), within 1..n. */
  CHECK_EQ_INT(coll_tune_median_upper_rank(1), 1);
  CHECK_EQ_INT(coll_tune_median_upper_rank(9), 8);    /* 4.5 + 2.94 */
  CHECK_EQ_INT(coll_tune_median_upper_rank(60), 38);  /* 30 + 7.59 */
  CHECK_EQ_INT(coll_tune_median_upper_rank(200), 114); /* 100 + 13.86 */
  return test_finish("test_tune_pick");
}
