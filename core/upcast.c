/*
 * upcast.c: upcasters and reading old data. A chain of steps, each from a
 * (manifest, version) to a registered type, is resolved under the registry
 * lock and then run without it (upcasters are user code).
 */
#include "core/types_internal.h"
#include "core/registry.h"

/* Longer chains are refused: a schema with more versions than this can
 * still register a direct upcaster from an old version to a recent one. */
#define MAX_STEPS 64

typedef struct step {
  const troupe_type *from;    /* registered at the step's start, or NULL */
  const troupe_type *to;
  troupe_upcast_fn fn;
  void *data;
} step;

static int check_manifest(const char *m, size_t *len) {
  if (!m || !m[0])
    return troupe__err(TROUPE_EINVAL, "empty manifest");
  size_t n = strlen(m);
  if (n > TROUPE_MANIFEST_MAX)
    return troupe__err(TROUPE_EINVAL, "manifest longer than %d bytes",
                       TROUPE_MANIFEST_MAX);
  *len = n;
  return 0;
}

/* Under the lock: the chain from (m, version) and the type at its end. */
static int chain_locked(const char *m, size_t n, uint32_t version,
                        step *steps, size_t *nsteps, const troupe_type **end) {
  const char *cm = m;
  size_t cn = n;
  uint32_t cv = version;
  size_t k = 0;
  for (;;) {
    troupe__reg_entry *e = troupe__reg_find(cm, cn, cv);
    if (e && e->up_to) {
      if (k == MAX_STEPS)
        return troupe__err(TROUPE_ETYPE,
                           "upcaster chain from '%.*s' v%u is longer than %d",
                           (int)n, m, version, MAX_STEPS);
      steps[k].from = e->type;
      steps[k].to = e->up_to;
      steps[k].fn = e->up_fn;
      steps[k].data = e->up_data;
      k++;
      cm = e->up_to->manifest;
      cn = strlen(cm);
      cv = e->up_to->version;
      continue;
    }
    if (!e || !e->type)
      return troupe__err(TROUPE_ETYPE, "no type registered for '%.*s' v%u",
                         (int)cn, cm, cv);
    *nsteps = k;
    *end = e->type;
    return 0;
  }
}

int troupe_upcaster_register(const char *from_manifest, uint32_t from_version,
                             const troupe_type *to, troupe_upcast_fn fn,
                             void *data) {
  size_t n;
  int rc = check_manifest(from_manifest, &n);
  if (rc) return rc;
  if (from_version == 0 || !to)
    return troupe__err(TROUPE_EINVAL, "upcaster: version 0 or NULL target");
  if ((rc = troupe_type_register(to))) return rc;
  if (strcmp(from_manifest, to->manifest) == 0 &&
      (from_version == UINT32_MAX || to->version != from_version + 1))
    return troupe__err(TROUPE_EINVAL,
                       "upcaster from '%s' v%u must go to v%u, not v%u",
                       from_manifest, from_version, from_version + 1,
                       to->version);
  troupe__reg_lock();
  troupe__reg_entry *e;
  rc = troupe__reg_get(from_manifest, n, from_version, &e);
  if (!rc && e->up_to) {
    if (e->up_to != to || e->up_fn != fn || e->up_data != data)
      rc = troupe__err(TROUPE_EEXIST, "an upcaster from '%s' v%u exists",
                       from_manifest, from_version);
    troupe__reg_unlock();
    return rc;
  }
  if (!rc) {
    /* Refuse a cycle: follow the chain from `to` and see if it comes back. */
    const char *cm = to->manifest;
    uint32_t cv = to->version;
    for (int k = 0; k <= MAX_STEPS; k++) {
      if (strcmp(cm, from_manifest) == 0 && cv == from_version) {
        rc = troupe__err(TROUPE_EINVAL,
                         "upcaster from '%s' v%u to '%s' v%u closes a cycle",
                         from_manifest, from_version, to->manifest,
                         to->version);
        break;
      }
      troupe__reg_entry *x = troupe__reg_find(cm, strlen(cm), cv);
      if (!x || !x->up_to) break;
      cm = x->up_to->manifest;
      cv = x->up_to->version;
    }
  }
  if (!rc) {
    e->up_to = to;
    e->up_fn = fn;
    e->up_data = data;
  }
  troupe__reg_unlock();
  return rc;
}

int troupe_type_resolve(const char *manifest, uint32_t version,
                        const troupe_type **out) {
  size_t n;
  int rc = check_manifest(manifest, &n);
  if (rc) return rc;
  if (!out) return troupe__err(TROUPE_EINVAL, "troupe_type_resolve: NULL out");
  step steps[MAX_STEPS];
  size_t ns;
  troupe__reg_lock();
  rc = chain_locked(manifest, n, version, steps, &ns, out);
  troupe__reg_unlock();
  return rc;
}

/* Move a value of type `from` into `to` by field name: encode, decode. */
static int by_name(const troupe_type *from, const void *old,
                   const troupe_type *to, void *nv,
                   const troupe_codec_opts *opts) {
  troupe_buf b = {0};
  int rc = troupe_encode(from, old, &b, opts);
  if (!rc) rc = troupe_decode(to, b.data, b.len, nv, opts);
  troupe_buf_free(&b);
  return rc;
}

static void drop(const troupe_type *t, void *v) {
  if (!v) return;
  troupe_value_free(t, v);
  free(v);
}

int troupe_decode_as(const char *manifest, uint32_t version,
                     const uint8_t *data, size_t len,
                     const troupe_type *target, void *value,
                     const troupe_codec_opts *opts) {
  size_t n;
  int rc = check_manifest(manifest, &n);
  if (rc) return rc;
  if (!value) return troupe__err(TROUPE_EINVAL, "troupe_decode_as: NULL value");
  step steps[MAX_STEPS];
  size_t ns;
  const troupe_type *end;
  troupe__reg_lock();
  rc = chain_locked(manifest, n, version, steps, &ns, &end);
  troupe__reg_unlock();
  if (rc) {
    if (target) memset(value, 0, target->size);
    return rc;
  }
  if (target && target != end) {
    memset(value, 0, target->size);
    return troupe__err(TROUPE_ETYPE,
                       "'%s' v%u decodes to '%s' v%u, not '%s' v%u", manifest,
                       version, end->manifest, end->version, target->manifest,
                       target->version);
  }
  if (ns == 0) return troupe_decode(end, data, len, value, opts);

  /* Run the chain. `cur` is the value in hand (NULL: still bytes). */
  const troupe_type *cur_t = NULL;
  void *cur = NULL;
  for (size_t k = 0; k < ns; k++) {
    const step *s = &steps[k];
    bool last = k + 1 == ns;
    void *nv = last ? value : troupe__tcalloc(1, s->to->size);
    if (!nv) {
      rc = troupe__err(TROUPE_ENOMEM, "upcast: no memory");
      drop(cur_t, cur);
      break;
    }
    memset(nv, 0, s->to->size);
    if (!cur && !s->from) {
      /* Bytes without an old descriptor: decode with the new one, then
       * let the upcaster fix the value up. */
      rc = troupe_decode(s->to, data, len, nv, opts);
      if (!rc && s->fn) rc = s->fn(s->data, NULL, NULL, s->to, nv);
    } else {
      if (!cur) {
        cur_t = s->from;
        cur = troupe__tcalloc(1, cur_t->size);
        if (!cur) rc = troupe__err(TROUPE_ENOMEM, "upcast: no memory");
        else rc = troupe_decode(cur_t, data, len, cur, opts);
      }
      if (!rc) {
        if (s->fn) rc = s->fn(s->data, cur_t, cur, s->to, nv);
        else rc = by_name(cur_t, cur, s->to, nv, opts);
      }
    }
    drop(cur_t, cur);
    cur = NULL;
    if (rc) {
      troupe_value_free(s->to, nv);
      if (nv != value) free(nv);
      break;
    }
    if (!last) {
      cur = nv;
      cur_t = s->to;
    }
  }
  if (rc) memset(value, 0, end->size);
  return rc;
}
