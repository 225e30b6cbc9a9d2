/*
 * cluster/internal.h: remoting internals shared by the cluster sources. Not
 * installed.
 */
#ifndef TROUPE_CLUSTER_INTERNAL_H
#define TROUPE_CLUSTER_INTERNAL_H

#include "cluster/transport.h"
#include "troupe/remote.h"

/* A node of another process, named by (system name, address). Process-wide
 * and never freed, like its node table entry. The owner is the local
 * system whose remoting reaches it (the first one that learned of it). */
typedef struct troupe__rnode {
  struct troupe__rnode *next;
  uint64_t index;                 /* node table index */
  uint64_t owner;                 /* node index of the owning local system */
  char name[64];
  char address[192];              /* "host:port" (no scheme) */
} troupe__rnode;

/* Find or add the remote node; owner is used when it is added. */
int troupe__rnode_get(const char *name, size_t nlen, const char *addr,
                      size_t alen, uint64_t owner, troupe__rnode **out);


#endif
