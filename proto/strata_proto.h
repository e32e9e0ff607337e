/* strata_proto.h -- the public face of proto/. */
#ifndef STRATA_PROTO_H
#define STRATA_PROTO_H
#endif
