/* test_fault_parse.c -- unit test of the STRATA_FAULT parser (worker/base/fault.c): accepted
 * specs give the expected fields, malformed ones are refused with a message naming the part. */
#include <string.h>

#include "fault.h"
#include "test_util.h"

int main(void) {
  fault_spec_t s;
  char err[256];
  CHECK_EQ_INT(fault_parse("kill:rank=2:step=3", &s, err, sizeof err), 0);
  CHECK_EQ_INT(s.action, 0);
  CHECK_EQ_INT(s.rank, 2);
  CHECK_EQ_INT((int)s.step, 3);
  CHECK_EQ_INT((int)s.site, (int)FAULT_AT_STEP);
  CHECK_EQ_INT(fault_parse("hang:rank=1:step=2:op=allreduce", &s, err, sizeof err), 0);
  CHECK_EQ_INT(s.action, 1);
  CHECK_EQ_INT((int)s.site, (int)FAULT_AT_ALLREDUCE);
  CHECK_EQ_INT(fault_parse("exit:rank=0:step=4:code=7", &s, err, sizeof err), 0);
  CHECK_EQ_INT(s.action, 2);
  CHECK_EQ_INT(s.code, 7);
  CHECK_EQ_INT(fault_parse("kill:rank=1:during=checkpoint", &s, err, sizeof err), 0);
  CHECK_EQ_INT((int)s.site, (int)FAULT_AT_CHECKPOINT);
  CHECK_EQ_INT((int)s.step, -1);
  CHECK_EQ_INT(s.attempt, -1);
  CHECK_EQ_INT(fault_parse("kill:rank=1:step=7:attempt=0", &s, err, sizeof err), 0);
  CHECK_EQ_INT(s.attempt, 0);
  CHECK_EQ_INT((int)s.step, 7);
  CHECK_TRUE(s.host[0] == '\0');
  CHECK_EQ_INT(fault_parse("kill:host=n2:step=9", &s, err, sizeof err), 0);
  CHECK_TRUE(strcmp(s.host, "n2") == 0);
  CHECK_EQ_INT((int)s.step, 9);
  CHECK_EQ_INT(fault_parse("kill:host=:step=9", &s, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "host") != NULL);
  CHECK_EQ_INT(fault_parse("kill:rank=1:attempt=two", &s, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "attempt") != NULL);
  CHECK_EQ_INT(fault_parse("kill:rank=1:op=recv", &s, err, sizeof err), 0);
  CHECK_EQ_INT((int)s.site, (int)FAULT_AT_RECV);
  CHECK_EQ_INT(fault_parse("explode:rank=1", &s, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "explode") != NULL);
  CHECK_EQ_INT(fault_parse("kill:rank=x", &s, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "rank") != NULL);
  CHECK_EQ_INT(fault_parse("kill:rank=-1", &s, err, sizeof err), -1);
  CHECK_EQ_INT(fault_parse("kill:rank", &s, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "key=value") != NULL);
  CHECK_EQ_INT(fault_parse("kill:op=sideways", &s, err, sizeof err), -1);
  CHECK_TRUE(strstr(err, "sideways") != NULL);
  CHECK_EQ_INT(fault_parse("kill:color=red", &s, err, sizeof err), -1);
  CHECK_EQ_INT(fault_parse("", &s, err, sizeof err), -1);
  /* with STRATA_FAULT unset, fault_point is a no-op and keeps the step for failure messages */
  fault_point(FAULT_AT_STEP, 5);
  fault_point(FAULT_AT_ALLREDUCE, -1);
  CHECK_EQ_INT((int)fault_step_, 5);
  return test_finish("rel_fault_parse");
}
