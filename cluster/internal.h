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


/*
 * The in-process transport (cluster/inproc.c): n endpoints joined by one
 * SPSC ring per ordered pair. An endpoint is attached to one system at a
 * time (a restarted worker attaches its new system to the same endpoint);
 * attach sets the system's xroute/xpoll/xflush hooks and opens its wake-up
 * handles on the system's loop. attach and detach run on the endpoint's
 * thread, before the system runs and after it has terminated.
 */
typedef struct troupe__inproc troupe__inproc;
troupe__inproc *troupe__inproc_new(uint32_t n);
/* Free the rings and every envelope still in them (no thread may use an
 * endpoint any more). */
void troupe__inproc_free(troupe__inproc *ip);
int troupe__inproc_attach(troupe__inproc *ip, uint32_t i, troupe_system *sys);
/* Drop what waits for this endpoint (earlier incarnations' messages). */
void troupe__inproc_detach(troupe__inproc *ip, uint32_t i);

#endif
