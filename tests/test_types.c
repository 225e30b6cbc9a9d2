/*
 * test_types.c: type descriptors: the field macros, troupe_type_prepare's
 * validation and flags, deep copy and free, equality, the registry, and
 * preparation racing on many threads.
 */
#include "tt.h"
#include "types_fixtures.h"

#include <pthread.h>

#include "core/types_internal.h"

static void test_macros(void) {
  const troupe_field *f = fx_sink_fields;
  TT_EQ_STR(f[0].name, "i8");
  TT_EQ_INT(f[0].kind, TROUPE_K_I8);
  TT_EQ_INT(f[0].shape, TROUPE_FS_SCALAR);
  TT_EQ_INT(f[0].offset, offsetof(fx_sink, i8));
  TT_EQ_INT(f[0].elem_size, 1);
  const troupe_field *oi = &f[18];
  TT_EQ_STR(oi->name, "oi");
  TT_EQ_INT(oi->flags, TROUPE_FF_OPTIONAL);
  TT_EQ_INT(oi->present_offset, offsetof(fx_sink, has_oi));
  const troupe_field *arr = &f[22];
  TT_EQ_STR(arr->name, "a_i16");
  TT_EQ_INT(arr->shape, TROUPE_FS_ARRAY);
  TT_EQ_INT(arr->count, 3);
  TT_EQ_INT(arr->elem_size, 2);
  const troupe_field *vec = &f[32];
  TT_EQ_STR(vec->name, "v_tag");
  TT_EQ_INT(vec->shape, TROUPE_FS_VEC);
  TT_EQ_INT(vec->elem_size, sizeof(fx_tag));
  TT_ASSERT(vec->type == &fx_tag_type);
  TT_EQ_INT(fx_sink_type.nfields, sizeof fx_sink_fields / sizeof fx_sink_fields[0]);
  TT_EQ_INT(fx_sink_type.size, sizeof(fx_sink));
}

static void test_prepare_flags(void) {
  TT_EQ_INT(troupe_type_prepare(&fx_point_type), 0);
  TT_EQ_INT(troupe_type_prepare(&fx_point_type), 0);   /* idempotent */
  TT_ASSERT(fx_point_type._flags & TROUPE__TF_PREPARED);
  TT_ASSERT(fx_point_type._flags & TROUPE__TF_FLAT);
  TT_EQ_INT(troupe_type_prepare(&fx_sink_type), 0);
  TT_ASSERT(!(fx_sink_type._flags & TROUPE__TF_FLAT));
  TT_ASSERT(!(fx_tag_type._flags & TROUPE__TF_FLAT));   /* prepared as nested */
  TT_ASSERT(fx_tag_type._flags & TROUPE__TF_PREPARED);
  TT_ASSERT(fx_money_type._flags & TROUPE__TF_FLAT);
  TT_ASSERT(!(fx_blob_type._flags & TROUPE__TF_FLAT));
  TT_EQ_INT(troupe_type_prepare(&fx_node_type), 0);     /* recursive via vec */
  TT_ASSERT(!(fx_node_type._flags & TROUPE__TF_FLAT));
  TT_EQ_INT(troupe_type_prepare(NULL), TROUPE_EINVAL);
  /* A copy of a prepared descriptor is prepared on its own. */
  troupe_type copy = fx_point_type;
  TT_EQ_INT(troupe_type_prepare(&copy), 0);
  TT_ASSERT(copy._flags != fx_point_type._flags);
  fx_point p = {1, 2};
  troupe_buf b = {0};
  TT_EQ_INT(troupe_encode(&copy, &p, &b, NULL), 0);
  TT_EQ_INT(b.len, 7);
  troupe_buf_free(&b);
}

/* A flat struct with refs, bools and fixed arrays: memcpy is the copy. */
typedef struct flatmix {
  troupe_ref who;
  bool ok;
  double xs[4];
  fx_point at;
} flatmix;
static const troupe_field flatmix_fields[] = {
    TROUPE_FIELD(flatmix, who, REF),
    TROUPE_FIELD(flatmix, ok, BOOL),
    TROUPE_FIELD_ARRAY(flatmix, xs, F64),
    TROUPE_FIELD_NESTED(flatmix, at, &fx_point_type),
};
static troupe_type flatmix_type = TROUPE_TYPE("test.FlatMix", 1, flatmix, flatmix_fields);

static void test_flat_kinds(void) {
  TT_EQ_INT(troupe_type_prepare(&flatmix_type), 0);
  TT_ASSERT(flatmix_type._flags & TROUPE__TF_FLAT);
  flatmix a = {{1, 2}, true, {1, 2, 3, 4}, {5, 6}}, c;
  TT_EQ_INT(troupe_value_copy(&flatmix_type, &c, &a), 0);
  TT_ASSERT(memcmp(&a, &c, sizeof a) == 0);
  troupe_value_free(&flatmix_type, &c);   /* a no-op */
  TT_ASSERT(c.ok);
}

/* Descriptors that must be refused, each with its reason. */
typedef struct two {
  int32_t a;
  int32_t b;
  char *s;
  bool has;
} two;

static int prep_fields(const troupe_field *f, uint32_t n, uint32_t size,
                       uint32_t version, const char *manifest) {
  troupe_type *t = calloc(1, sizeof *t);
  t->manifest = manifest;
  t->version = version;
  t->size = size;
  t->fields = f;
  t->nfields = n;
  int rc = troupe_type_prepare(t);
  /* Leaked on purpose when prepared: descriptors must outlive the
   * process's use of them. Refused ones can go. */
  if (rc) free(t);
  return rc;
}

static troupe_type self_type;
static const troupe_field self_fields[] = {
    TROUPE_FIELD_RAW("me", TROUPE_K_NESTED, TROUPE_FS_SCALAR, 0, 0, 0, 8, 0,
                     &self_type)};
static troupe_type self_type = {"test.Self", 1, 8, self_fields, 1, 0, NULL};

static void noop_free(const troupe_type *t, void *v) { (void)t; (void)v; }
static const troupe_type_ops half_ops = {NULL, noop_free, NULL, NULL, NULL};
static const troupe_type_ops enc_only_ops = {NULL, NULL, NULL,
                                             fx_money_encode, NULL};

static void test_prepare_errors(void) {
  const troupe_field ok[] = {TROUPE_FIELD(two, a, I32)};
  TT_EQ_INT(prep_fields(ok, 1, sizeof(two), 1, "t.ok"), 0);
  TT_EQ_INT(prep_fields(ok, 1, sizeof(two), 0, "t.v0"), TROUPE_EINVAL);
  TT_ASSERT(strstr(troupe_errmsg(), "version 0"));
  TT_EQ_INT(prep_fields(ok, 1, sizeof(two), 1, ""), TROUPE_EINVAL);
  TT_EQ_INT(prep_fields(ok, 1, sizeof(two), 1, NULL), TROUPE_EINVAL);
  char longname[300];
  memset(longname, 'm', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  TT_EQ_INT(prep_fields(ok, 1, sizeof(two), 1, longname), TROUPE_EINVAL);
  TT_EQ_INT(prep_fields(ok, 1, 2, 1, "t.small"), TROUPE_EINVAL);
  TT_ASSERT(strstr(troupe_errmsg(), "field 'a': ends at 4, past size 2"));
  const troupe_field dup[] = {TROUPE_FIELD(two, a, I32),
                              TROUPE_FIELD_RAW("a", TROUPE_K_I32, 0, 0, 4, 0, 4,
                                               0, NULL)};
  TT_EQ_INT(prep_fields(dup, 2, sizeof(two), 1, "t.dup"), TROUPE_EINVAL);
  TT_ASSERT(strstr(troupe_errmsg(), "duplicate field 'a'"));
  const troupe_field badsize[] = {
      TROUPE_FIELD_RAW("a", TROUPE_K_I32, 0, 0, 0, 0, 8, 0, NULL)};
  TT_EQ_INT(prep_fields(badsize, 1, sizeof(two), 1, "t.bs"), TROUPE_EINVAL);
  const troupe_field badkind[] = {
      TROUPE_FIELD_RAW("a", 99, 0, 0, 0, 0, 4, 0, NULL)};
  TT_EQ_INT(prep_fields(badkind, 1, sizeof(two), 1, "t.bk"), TROUPE_EINVAL);
  const troupe_field badshape[] = {
      TROUPE_FIELD_RAW("a", TROUPE_K_I32, 7, 0, 0, 0, 4, 0, NULL)};
  TT_EQ_INT(prep_fields(badshape, 1, sizeof(two), 1, "t.bsh"), TROUPE_EINVAL);
  const troupe_field noname[] = {
      TROUPE_FIELD_RAW(NULL, TROUPE_K_I32, 0, 0, 0, 0, 4, 0, NULL)};
  TT_EQ_INT(prep_fields(noname, 1, sizeof(two), 1, "t.nn"), TROUPE_EINVAL);
  const troupe_field misaligned[] = {
      TROUPE_FIELD_RAW("a", TROUPE_K_I32, 0, 0, 2, 0, 4, 0, NULL)};
  TT_EQ_INT(prep_fields(misaligned, 1, sizeof(two), 1, "t.mis"), TROUPE_EINVAL);
  const troupe_field zeroarr[] = {
      TROUPE_FIELD_RAW("a", TROUPE_K_I32, TROUPE_FS_ARRAY, 0, 0, 0, 4, 0, NULL)};
  TT_EQ_INT(prep_fields(zeroarr, 1, sizeof(two), 1, "t.za"), TROUPE_EINVAL);
  const troupe_field bigarr[] = {
      TROUPE_FIELD_RAW("a", TROUPE_K_I32, TROUPE_FS_ARRAY, 0, 0, 0x40000000u, 4,
                       0, NULL)};
  TT_EQ_INT(prep_fields(bigarr, 1, sizeof(two), 1, "t.ba"), TROUPE_EINVAL);
  const troupe_field presence[] = {
      TROUPE_FIELD_RAW("a", TROUPE_K_I32, 0, TROUPE_FF_OPTIONAL, 0, 0, 4, 1000,
                       NULL)};
  TT_EQ_INT(prep_fields(presence, 1, sizeof(two), 1, "t.pr"), TROUPE_EINVAL);
  const troupe_field nested_size[] = {
      TROUPE_FIELD_RAW("p", TROUPE_K_NESTED, 0, 0, 0, 0, 4, 0, &fx_point_type)};
  TT_EQ_INT(prep_fields(nested_size, 1, sizeof(two), 1, "t.ns"), TROUPE_EINVAL);
  TT_ASSERT(strstr(troupe_errmsg(), "element size 4, kind needs 8"));
  const troupe_field nested_null[] = {
      TROUPE_FIELD_RAW("p", TROUPE_K_NESTED, 0, 0, 0, 0, 8, 0, NULL)};
  TT_EQ_INT(prep_fields(nested_null, 1, sizeof(two), 1, "t.nnull"), TROUPE_EINVAL);
  TT_EQ_INT(prep_fields(NULL, 3, sizeof(two), 1, "t.nofields"), TROUPE_EINVAL);
  TT_EQ_INT(troupe_type_prepare(&self_type), TROUPE_EINVAL);
  TT_ASSERT(strstr(troupe_errmsg(), "nests itself by value"));
  /* a nested type that is itself bad fails the outer one */
  static troupe_type bad_inner = {"t.badinner", 0, 8, fx_point_fields, 2, 0, NULL};
  const troupe_field outer[] = {
      TROUPE_FIELD_RAW("p", TROUPE_K_NESTED, 0, 0, 0, 0, 8, 0, &bad_inner)};
  TT_EQ_INT(prep_fields(outer, 1, sizeof(two), 1, "t.outer"), TROUPE_EINVAL);
  static troupe_type halfops = {"t.halfops", 1, 8, NULL, 0, 0, &half_ops};
  TT_EQ_INT(troupe_type_prepare(&halfops), TROUPE_EINVAL);
  static troupe_type enconly = {"t.enconly", 1, 8, NULL, 0, 0, &enc_only_ops};
  TT_EQ_INT(troupe_type_prepare(&enconly), TROUPE_EINVAL);
  /* operations on a refused type report the reason */
  troupe_buf b = {0};
  two v = {0};
  TT_EQ_INT(troupe_encode(&self_type, &v, &b, NULL), TROUPE_EINVAL);
  TT_EQ_INT(troupe_decode(&self_type, (const uint8_t *)"\xa0", 1, &v, NULL),
            TROUPE_EINVAL);
  TT_EQ_INT(troupe_value_copy(&self_type, &v, &v), TROUPE_EINVAL);
  TT_ASSERT(!troupe_value_equal(&self_type, &v, &v));
  troupe_value_free(&self_type, &v);
}

static void test_copy_free(void) {
  uint64_t seed = 1234;
  for (int i = 0; i < 200; i++) {
    fx_sink v, c;
    fx_gen_sink(&seed, &v);
    TT_EQ_INT(troupe_value_copy(&fx_sink_type, &c, &v), 0);
    TT_ASSERT(troupe_value_equal(&fx_sink_type, &v, &c));
    /* deep: no owned pointer is shared */
    TT_ASSERT(!v.s || v.s != c.s);
    TT_ASSERT(!v.by.data || v.by.data != c.by.data);
    TT_ASSERT(!v.v_s.items || v.v_s.items != c.v_s.items);
    TT_ASSERT(!v.blob.p || v.blob.p != c.blob.p);
    troupe_value_free(&fx_sink_type, &v);
    TT_ASSERT(v.s == NULL && v.v_tag.items == NULL && v.v_tag.len == 0);
    troupe_value_free(&fx_sink_type, &v);    /* twice is harmless */
    /* the copy outlives the original */
    troupe_buf b = {0};
    TT_EQ_INT(troupe_encode(&fx_sink_type, &c, &b, &fx_opts), 0);
    troupe_buf_free(&b);
    troupe_value_free(&fx_sink_type, &c);
  }
  troupe_value_free(&fx_sink_type, NULL);
  troupe_value_free(NULL, NULL);
  TT_EQ_INT(troupe_value_copy(NULL, NULL, NULL), TROUPE_EINVAL);
}

static void test_equality(void) {
  fx_sink a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  TT_ASSERT(troupe_value_equal(&fx_sink_type, &a, &b));
  a.s = "x";
  TT_ASSERT(!troupe_value_equal(&fx_sink_type, &a, &b));
  b.s = "x";
  TT_ASSERT(troupe_value_equal(&fx_sink_type, &a, &b));
  uint8_t d1[] = {1, 2}, d2[] = {1, 2};
  a.by = (troupe_bytes){d1, 2};
  b.by = (troupe_bytes){d2, 2};
  TT_ASSERT(troupe_value_equal(&fx_sink_type, &a, &b));
  b.by.len = 1;
  TT_ASSERT(!troupe_value_equal(&fx_sink_type, &a, &b));
  b.by = (troupe_bytes){d2, 2};
  a.has_os = true;
  TT_ASSERT(!troupe_value_equal(&fx_sink_type, &a, &b));
  b.has_os = true;
  b.os = "y";
  TT_ASSERT(!troupe_value_equal(&fx_sink_type, &a, &b));
  a.os = "y";
  TT_ASSERT(troupe_value_equal(&fx_sink_type, &a, &b));
  int64_t x1[] = {1, 2}, x2[] = {1, 3};
  a.ov = (troupe_vec){x1, 2};
  b.ov = (troupe_vec){x2, 2};
  TT_ASSERT(troupe_value_equal(&fx_sink_type, &a, &b));   /* ov absent */
  a.has_ov = b.has_ov = true;
  TT_ASSERT(!troupe_value_equal(&fx_sink_type, &a, &b));
  x2[1] = 2;
  TT_ASSERT(troupe_value_equal(&fx_sink_type, &a, &b));
  a.money.cents = 5;
  TT_ASSERT(!troupe_value_equal(&fx_sink_type, &a, &b));  /* custom equal */
}

/* ------------------------------------------------------------------ */
/* Registry                                                            */

static void test_registry(void) {
  TT_EQ_INT(troupe_type_register(&fx_point_type), 0);
  TT_EQ_INT(troupe_type_register(&fx_point_type), 0);
  TT_ASSERT(troupe_type_lookup("test.Point", 1) == &fx_point_type);
  TT_ASSERT(troupe_type_lookup("test.Point", 2) == NULL);
  TT_ASSERT(troupe_type_lookup("test.Nope", 1) == NULL);
  TT_ASSERT(troupe_type_lookup(NULL, 1) == NULL);
  /* an identical descriptor elsewhere (e.g. a static in a header) is fine */
  static troupe_type twin = TROUPE_TYPE("test.Point", 1, fx_point, fx_point_fields);
  TT_EQ_INT(troupe_type_register(&twin), 0);
  TT_ASSERT(troupe_type_lookup("test.Point", 1) == &fx_point_type);
  /* a different one is refused */
  static const troupe_field other_fields[] = {TROUPE_FIELD(fx_point, x, I32)};
  static troupe_type other = TROUPE_TYPE("test.Point", 1, fx_point, other_fields);
  TT_EQ_INT(troupe_type_register(&other), TROUPE_EEXIST);
  TT_ASSERT(strstr(troupe_errmsg(), "'test.Point' v1"));
  static troupe_type v2 = TROUPE_TYPE("test.Point", 2, fx_point, other_fields);
  static troupe_type v7 = TROUPE_TYPE("test.Point", 7, fx_point, other_fields);
  TT_EQ_INT(troupe_type_register(&v7), 0);
  TT_EQ_INT(troupe_type_register(&v2), 0);
  TT_ASSERT(troupe_type_latest("test.Point") == &v7);
  TT_ASSERT(troupe_type_latest("test.Nope") == NULL);
  TT_EQ_INT(troupe_type_register(&self_type), TROUPE_EINVAL);
  TT_EQ_INT(troupe_type_register(NULL), TROUPE_EINVAL);
  /* many types: the table grows */
  for (int i = 0; i < 500; i++) {
    char *m = malloc(32);
    snprintf(m, 32, "test.Many%d", i);
    troupe_type *t = calloc(1, sizeof *t);
    *t = (troupe_type)TROUPE_TYPE(m, 1 + (uint32_t)i % 3, fx_point, fx_point_fields);
    t->manifest = m;
    TT_EQ_INT(troupe_type_register(t), 0);
  }
  for (int i = 0; i < 500; i++) {
    char m[32];
    snprintf(m, sizeof m, "test.Many%d", i);
    const troupe_type *t = troupe_type_lookup(m, 1 + (uint32_t)i % 3);
    TT_ASSERT(t && strcmp(t->manifest, m) == 0);
  }
}

/* ------------------------------------------------------------------ */
/* Concurrency                                                         */

#define NTHREADS 8
#define NTYPES 64
static troupe_type race_types[NTYPES];
static troupe_field race_fields[NTYPES][2];
static pthread_barrier_t race_barrier;

static void *race_main(void *arg) {
  (void)arg;
  pthread_barrier_wait(&race_barrier);
  int bad = 0;
  for (int i = 0; i < NTYPES; i++) {
    if (troupe_type_prepare(&race_types[i])) bad++;
    fx_tag v = {"hello", {NULL, 0}}, w;
    troupe_buf b = {0};
    if (troupe_encode(&race_types[i], &v, &b, NULL)) bad++;
    if (troupe_decode(&race_types[i], b.data, b.len, &w, NULL)) bad++;
    else if (!troupe_value_equal(&race_types[i], &v, &w)) bad++;
    troupe_value_free(&race_types[i], &w);
    troupe_buf_free(&b);
    if (troupe_type_register(&race_types[i])) bad++;
  }
  return (void *)(intptr_t)bad;
}

static void test_prepare_race(void) {
  static char names[NTYPES][32];
  for (int i = 0; i < NTYPES; i++) {
    snprintf(names[i], sizeof names[i], "test.Race%d", i);
    race_fields[i][0] = (troupe_field)TROUPE_FIELD(fx_tag, name, STRING);
    race_fields[i][1] = (troupe_field)TROUPE_FIELD(fx_tag, blob, BYTES);
    race_types[i] = (troupe_type)TROUPE_TYPE(names[i], 1, fx_tag, race_fields[i]);
  }
  pthread_barrier_init(&race_barrier, NULL, NTHREADS);
  pthread_t th[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) pthread_create(&th[i], NULL, race_main, NULL);
  intptr_t bad = 0;
  for (int i = 0; i < NTHREADS; i++) {
    void *r;
    pthread_join(th[i], &r);
    bad += (intptr_t)r;
  }
  pthread_barrier_destroy(&race_barrier);
  TT_EQ_INT(bad, 0);
  for (int i = 0; i < NTYPES; i++) {
    TT_ASSERT(race_types[i]._flags & TROUPE__TF_PREPARED);
    TT_ASSERT(!(race_types[i]._flags & TROUPE__TF_FLAT));
  }
}

/* The runtime's hot path: a tell checks _flags, then memcpy or copy. */
static void test_hot_path_contract(void) {
  TT_EQ_INT(troupe_type_prepare(&flatmix_type), 0);
  uint32_t fl = flatmix_type._flags;
  for (int i = 0; i < 1000; i++) TT_EQ_INT(troupe_type_prepare(&flatmix_type), 0);
  TT_EQ_INT(flatmix_type._flags, fl);
}

int main(int argc, char **argv) {
  tt_init(argc, argv);
  TT_RUN(test_macros);
  TT_RUN(test_prepare_flags);
  TT_RUN(test_flat_kinds);
  TT_RUN(test_prepare_errors);
  TT_RUN(test_copy_free);
  TT_RUN(test_equality);
  TT_RUN(test_registry);
  TT_RUN(test_prepare_race);
  TT_RUN(test_hot_path_contract);
  return tt_done();
}
