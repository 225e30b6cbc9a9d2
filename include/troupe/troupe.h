/*
 * troupe/troupe.h: the umbrella header. Include this one.
 */
#ifndef TROUPE_TROUPE_H
#define TROUPE_TROUPE_H

#include "troupe/common.h"
#include "troupe/error.h"
#include "troupe/log.h"
#include "troupe/types.h"
#include "troupe/actor.h"
#include "troupe/remote.h"
#include "troupe/mesh.h"
#include "troupe/persistence.h"
#include "troupe/cluster.h"
#include "troupe/sharding.h"
#include "troupe/projection.h"

#endif
