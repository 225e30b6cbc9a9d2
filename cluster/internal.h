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
/* Cut (blocked) or restore the link between endpoints a and b, both
 * directions: while cut, envelopes between them are lost (counted as the
 * sender's dead letters), as on a partitioned network. Any thread; for
 * the multi-node test kit. */
void troupe__inproc_block(troupe__inproc *ip, uint32_t a, uint32_t b,
                          bool blocked);

/*
 * The in-memory transport (cluster/memtransport.c, scheme "mem"), for
 * tests. An instance joins network NET when it listens on "NET/NAME"; NAME
 * is its node address ("a:1"; "x:0" picks a free "x:<n>"). It must listen
 * before it connects. Systems using it run on their own threads as usual;
 * the calls below steer a network from any thread (one mutex per network).
 * Frames are delivered in send order per link direction, and each endpoint
 * handles its events (up, down, frames) in the order the network produced
 * them, on its loop. Names below are node addresses (NAME).
 */
typedef struct troupe__memnet troupe__memnet;
typedef struct troupe__memnet_stats {
  uint64_t sent;        /* frames accepted by send */
  uint64_t delivered;   /* handed to the receiving endpoint */
  uint64_t dropped;     /* lost: drop rules, links going down */
  uint64_t connects;    /* links established */
  uint64_t refused;     /* connection attempts refused (secret differs) */
  uint64_t links;       /* links up now */
  size_t in_flight;     /* frames waiting in the network */
} troupe__memnet_stats;
extern const troupe__transport_class troupe__transport_mem;
/* Find or create network `name` and hold a reference (NULL on error). */
troupe__memnet *troupe__memnet_get(const char *name);
void troupe__memnet_put(troupe__memnet *net);
/* Manual delivery: frames wait until pumped. Default: automatic (a frame
 * is handed over when sent unless a delay rule holds it). */
void troupe__memnet_set_manual(troupe__memnet *net, bool manual);
/* One delivery step: every frame not held (and not behind a held frame of
 * its link direction) is handed over; held frames count down one step.
 * Returns the number handed over. */
size_t troupe__memnet_pump(troupe__memnet *net);
/* Pump until nothing is in flight or max_steps steps ran. */
size_t troupe__memnet_pump_all(troupe__memnet *net, size_t max_steps);
/* Lose the next n frames from -> to (counted as dead letters of the
 * sender). 0 clears. */
int troupe__memnet_drop(troupe__memnet *net, const char *from, const char *to,
                        uint32_t n);
/* Hold frames from -> to for `steps` extra pump steps (0 clears). */
int troupe__memnet_delay(troupe__memnet *net, const char *from,
                         const char *to, uint32_t steps);
/* Cut a from b (b NULL: from everyone): their links go down, frames in
 * flight on them are dropped, and no link forms until healed. */
int troupe__memnet_partition(troupe__memnet *net, const char *a,
                             const char *b);
/* Undo partition(a, b) (a "*": every partition); waiting outbound conns
 * connect at once. */
int troupe__memnet_heal(troupe__memnet *net, const char *a, const char *b);
/* A connection reset between a and b: down, then up again at once. */
int troupe__memnet_disconnect(troupe__memnet *net, const char *a,
                              const char *b);
void troupe__memnet_get_stats(troupe__memnet *net, troupe__memnet_stats *out);

#endif
