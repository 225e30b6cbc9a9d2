/*
 * troupe/types.h: message, event and snapshot type descriptors, the CBOR
 * codec, the type registry, upcasters and the envelope wire format.
 *
 * Every value troupe moves (a message, an event, a snapshot) is a C struct
 * described once by a troupe_type: a stable manifest name, a schema version,
 * the struct size and a field table. From that table the runtime derives
 * copy, free, equality, CBOR encode/decode and a JSON rendering.
 *
 *   typedef struct deposited {
 *     int64_t amount;
 *     char *account;               // owned, NUL-terminated, NULL ok
 *     bool has_memo; char *memo;   // an optional field and its flag
 *   } deposited;
 *
 *   static const troupe_field deposited_fields[] = {
 *     TROUPE_FIELD(deposited, amount, I64),
 *     TROUPE_FIELD(deposited, account, STRING),
 *     TROUPE_FIELD_OPT(deposited, memo, STRING, has_memo),
 *   };
 *   static troupe_type deposited_type =          // not const: see below
 *       TROUPE_TYPE("bank.Deposited", 1, deposited, deposited_fields);
 *
 * The field macros check at compile time that the member exists, that its
 * C type matches the kind (int64_t for I64, char * for STRING, ...), that a
 * fixed array really is an array and that an optional field's flag is a
 * bool. docs/types.md is the guide; this header is the reference.
 */
#ifndef TROUPE_TYPES_H
#define TROUPE_TYPES_H

#include <stddef.h>
#include <string.h>

#include "troupe/common.h"
#include "troupe/error.h"

#ifdef __cplusplus
extern "C" {
#endif

struct troupe_system;

typedef enum troupe_kind {
  TROUPE_K_NONE = 0,
  TROUPE_K_I8, TROUPE_K_I16, TROUPE_K_I32, TROUPE_K_I64,
  TROUPE_K_U8, TROUPE_K_U16, TROUPE_K_U32, TROUPE_K_U64,
  TROUPE_K_F32, TROUPE_K_F64,
  TROUPE_K_BOOL,
  TROUPE_K_STRING,   /* char *, NUL-terminated, owned by the value; NULL ok */
  TROUPE_K_BYTES,    /* troupe_bytes, owned by the value */
  TROUPE_K_REF,      /* troupe_ref */
  TROUPE_K_NESTED,   /* an inline struct described by field.type */
  TROUPE_K__COUNT
} troupe_kind;

/* An owned byte buffer inside a described value. len 0 means empty
 * whatever data is; an empty buffer decodes as {NULL, 0}. */
typedef struct troupe_bytes {
  uint8_t *data;
  size_t len;
} troupe_bytes;

/* An owned variable-length array inside a described value: `len` elements
 * of the field's element kind, contiguous at `items` (allocated with
 * malloc; troupe_value_free frees it). */
typedef struct troupe_vec {
  void *items;
  size_t len;
} troupe_vec;

struct troupe_type;

/* Field shapes. */
#define TROUPE_FS_SCALAR   0   /* one element at offset */
#define TROUPE_FS_ARRAY    1   /* `count` elements inline at offset */
#define TROUPE_FS_VEC      2   /* a troupe_vec at offset */

/* Field flags. */
#define TROUPE_FF_OPTIONAL 0x1 /* a bool at present_offset says if present */

typedef struct troupe_field {
  const char *name;          /* stable wire name */
  uint8_t kind;              /* troupe_kind of one element */
  uint8_t shape;             /* TROUPE_FS_* */
  uint16_t flags;            /* TROUPE_FF_* */
  uint32_t offset;           /* offsetof(struct, member) */
  uint32_t count;            /* TROUPE_FS_ARRAY: number of elements */
  uint32_t elem_size;        /* size of one element */
  uint32_t present_offset;   /* TROUPE_FF_OPTIONAL: offset of the bool */
  const struct troupe_type *type; /* TROUPE_K_NESTED: element type */
} troupe_field;

/* ------------------------------------------------------------------ */
/* Growable byte buffer                                                */

/*
 * A growable byte buffer: the codec appends to it. Zero-initialised
 * ({0}) is a valid empty buffer, as is one after troupe_buf_init. The
 * bytes are data[0..len); cap is the allocated size. Reuse a buffer across
 * calls (set len = 0 or call troupe_buf_clear) to avoid allocations.
 * A buffer belongs to one thread at a time.
 */
typedef struct troupe_buf {
  uint8_t *data;
  size_t len;
  size_t cap;
} troupe_buf;

TROUPE_EXTERN void troupe_buf_init(troupe_buf *b);
/* Free the storage and reset to empty. NULL ok. */
TROUPE_EXTERN void troupe_buf_free(troupe_buf *b);
/* Forget the contents, keep the storage. */
TROUPE_EXTERN void troupe_buf_clear(troupe_buf *b);
/* Make room for `extra` more bytes after len. TROUPE_ENOMEM on failure
 * (the buffer is unchanged). */
TROUPE_EXTERN int troupe_buf_reserve(troupe_buf *b, size_t extra);
/* Append n bytes. */
TROUPE_EXTERN int troupe_buf_append(troupe_buf *b, const void *p, size_t n);

/* ------------------------------------------------------------------ */
/* Type descriptors                                                    */

/*
 * Custom codec for types a field table cannot describe. Every callback is
 * optional; a NULL one falls back to what the field table derives, so a
 * type without fields must supply encode and decode. copy and free come
 * together or not at all (a type without them is flat: copied with
 * memcpy).
 *   encode: append exactly one well-formed CBOR data item to `out` (it may
 *           be nested in a bigger value, so nothing else).
 *   decode: `data` is exactly that one item; `value` arrives zeroed. On
 *           failure leave `value` zeroed or freeable by `free`. The codec
 *           limits apply to the item's size only: a custom decoder must
 *           bound its own allocations.
 *   copy:   dst arrives zeroed; on failure leave it zeroed or freeable.
 *   equal:  NULL compares the canonical encodings.
 * Callbacks may run on any thread.
 */
typedef struct troupe_type_ops {
  int (*copy)(const struct troupe_type *t, void *dst, const void *src);
  void (*free)(const struct troupe_type *t, void *value);
  bool (*equal)(const struct troupe_type *t, const void *a, const void *b);
  int (*encode)(const struct troupe_type *t, const void *value, troupe_buf *out);
  int (*decode)(const struct troupe_type *t, const uint8_t *data, size_t len,
                void *value);
} troupe_type_ops;

/*
 * A type descriptor. Declare it `static troupe_type` (NOT const: the
 * runtime caches its preparation in `_flags`, so a const descriptor placed
 * in read-only memory would fault) and never change it after first use.
 * It must outlive every value, envelope and registry entry that names it
 * (in practice: static storage duration). `_flags` is the runtime's:
 * leave it zero.
 */
typedef struct troupe_type {
  const char *manifest;        /* stable name, e.g. "bank.Deposited" */
  uint32_t version;            /* schema version, >= 1 */
  uint32_t size;               /* sizeof(struct) */
  const troupe_field *fields;
  uint32_t nfields;
  uint32_t _flags;             /* runtime: prepared/flat bits */
  const troupe_type_ops *ops;  /* custom codec, or NULL */
} troupe_type;

/* Runtime bits in troupe_type._flags. */
#define TROUPE__TF_PREPARED 0x1u
#define TROUPE__TF_FLAT     0x2u   /* no owned pointers: copy is memcpy */

/* Limits of a descriptor, checked by troupe_type_prepare. */
#define TROUPE_MANIFEST_MAX 255   /* bytes in a manifest name */
#define TROUPE_FIELD_NAME_MAX 255 /* bytes in a field name */
#define TROUPE_FIELDS_MAX 1024    /* fields in one type */

/*
 * Validate a descriptor (and the nested types it names) and compute its
 * runtime flags. Idempotent and thread-safe; cheap after the first call
 * (one atomic load); called implicitly on first use by every function
 * below. Returns TROUPE_EINVAL for a malformed descriptor, with the
 * reason in troupe_errmsg(): empty or over-long manifest, version 0, a
 * field outside `size`, a member size that does not match its kind, a
 * duplicate field name, a nested type whose size is not the element size,
 * a by-value nesting cycle, ...
 */
TROUPE_EXTERN int troupe_type_prepare(const troupe_type *t);

/* Deep copy: dst receives copies of every owned buffer of src. On failure
 * dst is left zeroed and nothing leaks. Any thread. */
TROUPE_EXTERN int troupe_value_copy(const troupe_type *t, void *dst,
                                    const void *src);
/* Free the owned buffers of a value (not the struct itself) and set the
 * freed pointers to NULL. NULL ok. */
TROUPE_EXTERN void troupe_value_free(const troupe_type *t, void *value);

/*
 * Equality as the codec sees it: two values are equal exactly when their
 * canonical encodings are equal. Integers and bools by value; floats by
 * bits, except that every NaN equals every NaN (so -0.0 != 0.0); strings
 * by content (NULL equals only NULL); bytes by content; refs with
 * troupe_ref_eq; an absent optional field equals another absent one
 * whatever its member holds. false also when the type cannot be prepared.
 */
TROUPE_EXTERN bool troupe_value_equal(const troupe_type *t, const void *a,
                                      const void *b);

/* ------------------------------------------------------------------ */
/* Field-table macros                                                  */
/*
 * KIND is the suffix of a troupe_kind: I8 I16 I32 I64 U8 U16 U32 U64 F32
 * F64 BOOL STRING BYTES REF. The member's C type must be exactly the one
 * the kind names (int8_t ... uint64_t, float, double, bool, char *,
 * troupe_bytes, troupe_ref): `long long` is not accepted for I64 even
 * where it has the same size. The wire name is the member name; use
 * TROUPE_FIELD_RAW to choose another.
 */

/* The C type of one element of each kind (for the compile-time checks). */
#define TROUPE__CT_I8     int8_t
#define TROUPE__CT_I16    int16_t
#define TROUPE__CT_I32    int32_t
#define TROUPE__CT_I64    int64_t
#define TROUPE__CT_U8     uint8_t
#define TROUPE__CT_U16    uint16_t
#define TROUPE__CT_U32    uint32_t
#define TROUPE__CT_U64    uint64_t
#define TROUPE__CT_F32    float
#define TROUPE__CT_F64    double
#define TROUPE__CT_BOOL   bool
#define TROUPE__CT_STRING char *
#define TROUPE__CT_BYTES  troupe_bytes
#define TROUPE__CT_REF    troupe_ref

/* Evaluates to 0, or fails to compile with msg when cond is false. */
#define TROUPE__CHECK(cond, msg) \
  (0 * sizeof(struct { _Static_assert(cond, msg); int troupe__x; }))

#define TROUPE__M(S, m) (((S *)0)->m)
#define TROUPE__NELEM(S, m) (sizeof(TROUPE__M(S, m)) / sizeof(TROUPE__M(S, m)[0]))

/* Every member spelled out; the other macros expand to this. */
#define TROUPE_FIELD_RAW(name_, kind_, shape_, flags_, offset_, count_,     \
                         elem_size_, present_offset_, type_)                \
  { (name_), (uint8_t)(kind_), (uint8_t)(shape_), (uint16_t)(flags_),       \
    (uint32_t)(offset_), (uint32_t)(count_), (uint32_t)(elem_size_),        \
    (uint32_t)(present_offset_), (type_) }

#define TROUPE__SCALAR_OFF(S, m, KIND)                                      \
  (offsetof(S, m) +                                                         \
   TROUPE__CHECK(_Generic(TROUPE__M(S, m), TROUPE__CT_##KIND: 1,            \
                          default: 0),                                      \
                 "member " #m " of " #S " is not of the C type of " #KIND))
#define TROUPE__ARRAY_OFF(S, m, KIND)                                       \
  (offsetof(S, m) +                                                         \
   TROUPE__CHECK(_Generic(&TROUPE__M(S, m),                                 \
                          TROUPE__CT_##KIND (*)[TROUPE__NELEM(S, m)]: 1,    \
                          default: 0),                                      \
                 "member " #m " of " #S " is not an array of " #KIND))
#define TROUPE__VEC_OFF(S, m)                                               \
  (offsetof(S, m) +                                                         \
   TROUPE__CHECK(_Generic(TROUPE__M(S, m), troupe_vec: 1, default: 0),      \
                 "member " #m " of " #S " is not a troupe_vec"))
#define TROUPE__PRESENT_OFF(S, has)                                         \
  (offsetof(S, has) +                                                       \
   TROUPE__CHECK(_Generic(TROUPE__M(S, has), bool: 1, default: 0),          \
                 "presence flag " #has " of " #S " is not a bool"))

/* A member of one of the KINDs above. */
#define TROUPE_FIELD(S, m, KIND)                                            \
  TROUPE_FIELD_RAW(#m, TROUPE_K_##KIND, TROUPE_FS_SCALAR, 0,                \
                   TROUPE__SCALAR_OFF(S, m, KIND), 0,                       \
                   sizeof(TROUPE__M(S, m)), 0, NULL)
/* An optional member: `has` (a bool member) says whether it is present;
 * an absent field is left out of the encoding. */
#define TROUPE_FIELD_OPT(S, m, KIND, has)                                   \
  TROUPE_FIELD_RAW(#m, TROUPE_K_##KIND, TROUPE_FS_SCALAR,                   \
                   TROUPE_FF_OPTIONAL, TROUPE__SCALAR_OFF(S, m, KIND), 0,   \
                   sizeof(TROUPE__M(S, m)), TROUPE__PRESENT_OFF(S, has),    \
                   NULL)
/* A fixed array member (`int32_t m[4]`), every element encoded. */
#define TROUPE_FIELD_ARRAY(S, m, KIND)                                      \
  TROUPE_FIELD_RAW(#m, TROUPE_K_##KIND, TROUPE_FS_ARRAY, 0,                 \
                   TROUPE__ARRAY_OFF(S, m, KIND), TROUPE__NELEM(S, m),      \
                   sizeof(TROUPE__M(S, m)[0]), 0, NULL)
/* A troupe_vec member whose items are C values of KIND. */
#define TROUPE_FIELD_VEC(S, m, KIND)                                        \
  TROUPE_FIELD_RAW(#m, TROUPE_K_##KIND, TROUPE_FS_VEC, 0,                   \
                   TROUPE__VEC_OFF(S, m), 0, sizeof(TROUPE__CT_##KIND), 0,  \
                   NULL)
#define TROUPE_FIELD_VEC_OPT(S, m, KIND, has)                               \
  TROUPE_FIELD_RAW(#m, TROUPE_K_##KIND, TROUPE_FS_VEC, TROUPE_FF_OPTIONAL,  \
                   TROUPE__VEC_OFF(S, m), 0, sizeof(TROUPE__CT_##KIND),     \
                   TROUPE__PRESENT_OFF(S, has), NULL)
/* An inline struct member described by *TYPEP (a troupe_type *). Its size
 * is checked against TYPEP->size when the outer type is prepared. */
#define TROUPE_FIELD_NESTED(S, m, TYPEP)                                    \
  TROUPE_FIELD_RAW(#m, TROUPE_K_NESTED, TROUPE_FS_SCALAR, 0,                \
                   offsetof(S, m), 0, sizeof(TROUPE__M(S, m)), 0, (TYPEP))
#define TROUPE_FIELD_NESTED_OPT(S, m, TYPEP, has)                           \
  TROUPE_FIELD_RAW(#m, TROUPE_K_NESTED, TROUPE_FS_SCALAR,                   \
                   TROUPE_FF_OPTIONAL, offsetof(S, m), 0,                   \
                   sizeof(TROUPE__M(S, m)), TROUPE__PRESENT_OFF(S, has),    \
                   (TYPEP))
#define TROUPE_FIELD_NESTED_ARRAY(S, m, TYPEP)                              \
  TROUPE_FIELD_RAW(#m, TROUPE_K_NESTED, TROUPE_FS_ARRAY, 0,                 \
                   offsetof(S, m), TROUPE__NELEM(S, m),                     \
                   sizeof(TROUPE__M(S, m)[0]), 0, (TYPEP))
/* A troupe_vec member whose items are `ELEM` structs described by TYPEP. */
#define TROUPE_FIELD_NESTED_VEC(S, m, ELEM, TYPEP)                          \
  TROUPE_FIELD_RAW(#m, TROUPE_K_NESTED, TROUPE_FS_VEC, 0,                   \
                   TROUPE__VEC_OFF(S, m), 0, sizeof(ELEM), 0, (TYPEP))

/* A descriptor initializer: `static troupe_type t = TROUPE_TYPE(...)`.
 * FIELDS must be an array (not a pointer). */
#define TROUPE_TYPE(manifest_, version_, S, FIELDS)                         \
  { (manifest_), (version_), (uint32_t)sizeof(S), (FIELDS),                 \
    (uint32_t)(sizeof(FIELDS) / sizeof((FIELDS)[0])), 0, NULL }
/* A descriptor with a custom codec (troupe_type_ops *OPS) and no fields. */
#define TROUPE_TYPE_OPS(manifest_, version_, S, OPS)                        \
  { (manifest_), (version_), (uint32_t)sizeof(S), NULL, 0, 0, (OPS) }

/* ------------------------------------------------------------------ */
/* Registry                                                            */
/*
 * One registry per process, shared by every actor system, protected by a
 * mutex: every registry function may be called from any thread. It maps
 * (manifest, version) to a descriptor and holds the upcasters. Entries are
 * never removed; the descriptors must outlive the process's use of them.
 */

/* Register a descriptor (preparing it). Registering the same descriptor
 * again, or a structurally identical one (same size, fields, nested types
 * and ops), is a no-op returning 0; a different descriptor under the same
 * manifest and version is TROUPE_EEXIST. */
TROUPE_EXTERN int troupe_type_register(const troupe_type *t);
/* The descriptor registered under (manifest, version), or NULL. */
TROUPE_EXTERN const troupe_type *troupe_type_lookup(const char *manifest,
                                                    uint32_t version);
/* The registered descriptor of `manifest` with the highest version, or
 * NULL. */
TROUPE_EXTERN const troupe_type *troupe_type_latest(const char *manifest);

/* ------------------------------------------------------------------ */
/* Codec                                                               */

/*
 * Decoding limits. A hostile input hits one of these and fails with
 * TROUPE_ETOOBIG (or TROUPE_EDECODE when malformed) instead of
 * allocating without bound or recursing off the stack. Zero in a member
 * means "the default".
 */
typedef struct troupe_limits {
  uint32_t max_depth;   /* nested maps/arrays/nested types (default 32) */
  size_t max_string;    /* bytes in one string, byte string or custom item
                           (default 16 MiB) */
  size_t max_items;     /* elements of one array/vec, entries of one map
                           (default 1 Mi) */
  size_t max_alloc;     /* total bytes one decode may allocate
                           (default 64 MiB) */
} troupe_limits;

#define TROUPE_LIMITS_DEFAULT_DEPTH  32u
#define TROUPE_LIMITS_DEFAULT_STRING ((size_t)16 << 20)
#define TROUPE_LIMITS_DEFAULT_ITEMS  ((size_t)1 << 20)
#define TROUPE_LIMITS_DEFAULT_ALLOC  ((size_t)64 << 20)

/* Replace the process-wide default limits (used when a call passes no
 * limits; zero members keep the built-in defaults). Any thread; calls
 * already running keep the limits they started with. */
TROUPE_EXTERN void troupe_limits_set_default(const troupe_limits *l);
/* The current process-wide default limits. Any thread. */
TROUPE_EXTERN void troupe_limits_get_default(troupe_limits *out);

/* Refs as text: write the URI of `ref` into buf (NUL-terminated when it
 * fits) and return its length (which may be >= size: call again with a
 * bigger buffer), or a negative code. */
typedef int (*troupe_ref_to_uri_fn)(struct troupe_system *sys, troupe_ref ref,
                                    char *buf, size_t size);
/* Parse `len` bytes of URI (not NUL-terminated) into a ref. */
typedef int (*troupe_ref_from_uri_fn)(struct troupe_system *sys,
                                      const char *uri, size_t len,
                                      troupe_ref *out);

/*
 * Options of one codec call. NULL, or a zeroed struct, means: default
 * limits, no system, the core's ref text functions (which turn refs into
 * "troupe://system@host:port/path" URIs and back).
 */
typedef struct troupe_codec_opts {
  const troupe_limits *limits;
  struct troupe_system *system;     /* passed to the ref functions */
  troupe_ref_to_uri_fn ref_to_uri;
  troupe_ref_from_uri_fn ref_from_uri;
} troupe_codec_opts;

/*
 * Encode a value as one canonical CBOR item, appended to `out`: a map
 * from field name (text) to value, keys in RFC 8949 deterministic order
 * (shorter names first, then bytewise), every non-optional field present,
 * integers and lengths in their shortest form, floats in the shortest of
 * half/single/double that keeps the value exactly (every NaN as f97e00),
 * NULL strings and none refs as null, refs as text URIs, fixed arrays and
 * vecs as arrays. Equal values (troupe_value_equal) give equal bytes.
 * Errors: TROUPE_EINVAL (bad descriptor, string not valid UTF-8, ...),
 * TROUPE_ETOOBIG (nesting deeper than max_depth), TROUPE_ENOMEM, or the
 * ref function's error. On error `out` keeps its previous length.
 * Any thread.
 */
TROUPE_EXTERN int troupe_encode(const troupe_type *t, const void *value,
                                troupe_buf *out, const troupe_codec_opts *opts);

/*
 * Decode one CBOR item (exactly the `len` bytes; trailing bytes are an
 * error) into `value` (t->size bytes, overwritten without being freed).
 * Tolerant: unknown fields are skipped, missing fields are zero (absent
 * when optional), null decodes as a NULL string, a none ref, empty bytes,
 * an empty vec or array and a zeroed nested value (an optional field given
 * as null is present with that value). Strict where it
 * matters: a field of the wrong CBOR type, an integer out of the member's
 * range, a duplicate field, invalid UTF-8 or a malformed item is
 * TROUPE_EDECODE with troupe_errmsg() naming the type and the field; a
 * limit exceeded is TROUPE_ETOOBIG. Indefinite-length strings and arrays
 * are accepted only inside skipped fields. On success the caller owns the
 * value (troupe_value_free); on failure it is zeroed and nothing leaks.
 * Any thread.
 */
TROUPE_EXTERN int troupe_decode(const troupe_type *t, const uint8_t *data,
                                size_t len, void *value,
                                const troupe_codec_opts *opts);

/*
 * Render a value as one line of JSON, appended to `out` and followed by a
 * NUL that is not counted in out->len. Fields in declaration order; absent
 * optional fields left out; bytes as base64 strings; refs as URI strings
 * (or "<ref node.uid>" when the ref function fails); NaN and infinities as
 * null; custom types through their CBOR encoding. For tools and logs, not
 * for parsing back. Any thread.
 */
TROUPE_EXTERN int troupe_value_to_json(const troupe_type *t, const void *value,
                                       troupe_buf *out,
                                       const troupe_codec_opts *opts);
/* Render any one CBOR item as JSON (for payloads whose type is not known):
 * maps with non-text keys get their keys rendered as strings, tags are
 * dropped, bytes become base64 strings. Limits as for decoding. */
TROUPE_EXTERN int troupe_cbor_to_json(const uint8_t *data, size_t len,
                                      troupe_buf *out,
                                      const troupe_limits *limits);

/* ------------------------------------------------------------------ */
/* Upcasting                                                           */

/*
 * An upcaster turns a value written as (from manifest, from version) into
 * a value of `to`. It is called with `new_value` zeroed (t->size bytes of
 * `to`) and:
 *   - when a descriptor for (from manifest, from version) is registered:
 *     `from` is it and `old_value` the decoded old value (freed by the
 *     caller afterwards; the upcaster may move owned pointers out of it
 *     if it sets them to NULL there);
 *   - otherwise `from` and `old_value` are NULL and `new_value` already
 *     holds the old payload decoded tolerantly with `to` (fields with the
 *     same name carry over); the upcaster only fixes it up.
 * Return 0 or a negative code; on failure leave new_value freeable.
 */
typedef int (*troupe_upcast_fn)(void *data, const troupe_type *from,
                                const void *old_value, const troupe_type *to,
                                void *new_value);

/*
 * Register an upcaster from (from_manifest, from_version) to `to`, which
 * is registered too if it is not yet. `to` is either the next version of
 * the same manifest (to->version == from_version + 1) or another manifest
 * (a rename; any version). fn may be NULL: then the old payload (or the
 * previous step's value, re-encoded) is decoded with `to` by field name.
 * `data` is passed to fn and must outlive the registry. One upcaster per
 * (from_manifest, from_version): registering a second is TROUPE_EEXIST;
 * one that would close a cycle is TROUPE_EINVAL. Any thread.
 */
TROUPE_EXTERN int troupe_upcaster_register(const char *from_manifest,
                                           uint32_t from_version,
                                           const troupe_type *to,
                                           troupe_upcast_fn fn, void *data);

/* The type that data written as (manifest, version) decodes to after its
 * upcaster chain (the registered type itself when no upcaster starts
 * there). TROUPE_ETYPE when neither a type nor an upcaster is known; the
 * error text names the manifest and version. Any thread. */
TROUPE_EXTERN int troupe_type_resolve(const char *manifest, uint32_t version,
                                      const troupe_type **out);

/*
 * Decode a payload written as (manifest, version) and upcast it to the
 * end of its chain. `target` must be what troupe_type_resolve returns (or
 * NULL: then it is resolved here); `value` has room for target->size
 * bytes. Errors as for troupe_decode, TROUPE_ETYPE for an unknown or
 * mismatched type, or an upcaster's own code. On failure value is zeroed.
 */
TROUPE_EXTERN int troupe_decode_as(const char *manifest, uint32_t version,
                                   const uint8_t *data, size_t len,
                                   const troupe_type *target, void *value,
                                   const troupe_codec_opts *opts);

/* ------------------------------------------------------------------ */
/* Envelope wire format                                                */
/*
 * The stable container for values that cross a process boundary or go
 * into a journal (docs/envelope-format.md):
 *
 *   [ format, manifest, version, payload ]            format = 1
 *   [ format, manifest, version, payload, metadata ]  when there is any
 *
 * a CBOR array of an unsigned format number, the manifest (text), the
 * schema version (unsigned), the payload (a byte string holding the
 * value's canonical CBOR encoding) and an optional map of metadata (text
 * keys in canonical order; values integers, text or byte strings).
 */
#define TROUPE_ENVELOPE_FORMAT 1
#define TROUPE_ENVELOPE_MAX_META 16

typedef enum troupe_meta_kind {
  TROUPE_META_INT = 1,     /* int64 in .i */
  TROUPE_META_TEXT = 2,    /* UTF-8 in .data/.len (not NUL-terminated) */
  TROUPE_META_BYTES = 3    /* bytes in .data/.len */
} troupe_meta_kind;

/* One metadata entry. Keys and values are borrowed, never owned. */
typedef struct troupe_meta {
  const char *key;          /* not NUL-terminated after decoding */
  size_t key_len;
  troupe_meta_kind kind;
  int64_t i;
  const uint8_t *data;
  size_t len;
} troupe_meta;

static inline troupe_meta troupe_meta_int(const char *key, int64_t v) {
  troupe_meta m = {key, key ? strlen(key) : 0, TROUPE_META_INT, v,
                   NULL, 0};
  return m;
}
static inline troupe_meta troupe_meta_text(const char *key, const char *v) {
  troupe_meta m = {key, key ? strlen(key) : 0, TROUPE_META_TEXT, 0,
                   (const uint8_t *)v, v ? strlen(v) : 0};
  return m;
}
static inline troupe_meta troupe_meta_bytes(const char *key, const void *v,
                                            size_t len) {
  troupe_meta m = {key, key ? strlen(key) : 0, TROUPE_META_BYTES, 0,
                   (const uint8_t *)v, len};
  return m;
}

/*
 * An envelope. To encode, set manifest, version, payload/payload_len and
 * meta/nmeta (format is ignored: the current one is written). After
 * decoding, every pointer points into the decoded input (which must stay
 * valid), except `manifest`, which points at the NUL-terminated copy in
 * `_manifest`.
 */
typedef struct troupe_envelope {
  uint32_t format;
  const char *manifest;
  uint32_t version;
  const uint8_t *payload;
  size_t payload_len;
  troupe_meta meta[TROUPE_ENVELOPE_MAX_META];
  size_t nmeta;
  char _manifest[TROUPE_MANIFEST_MAX + 1];
} troupe_envelope;

/* Append the canonical encoding of env (metadata sorted; duplicate keys,
 * more than TROUPE_ENVELOPE_MAX_META entries, an empty or over-long
 * manifest, version 0 or a non-UTF-8 text are TROUPE_EINVAL). Any thread. */
TROUPE_EXTERN int troupe_envelope_encode(const troupe_envelope *env,
                                         troupe_buf *out);
/* Encode `value` and wrap it in an envelope with t's manifest and version
 * and the given metadata (meta may be NULL when nmeta is 0). */
TROUPE_EXTERN int troupe_envelope_encode_value(const troupe_type *t,
                                               const void *value,
                                               const troupe_meta *meta,
                                               size_t nmeta, troupe_buf *out,
                                               const troupe_codec_opts *opts);
/*
 * Parse an envelope without decoding its payload (zero-copy: env points
 * into data). Tolerant of what a later format-1 writer may add (trailing
 * array elements are skipped; metadata in any key order). Errors:
 * TROUPE_EDECODE (malformed, duplicate metadata key, trailing bytes),
 * TROUPE_EUNSUPPORTED (a format newer than TROUPE_ENVELOPE_FORMAT),
 * TROUPE_ETOOBIG (more than TROUPE_ENVELOPE_MAX_META entries, manifest
 * longer than TROUPE_MANIFEST_MAX). Any thread.
 */
TROUPE_EXTERN int troupe_envelope_decode(const uint8_t *data, size_t len,
                                         troupe_envelope *env);
/* Resolve the envelope's type (after upcasting) and decode its payload
 * into `value`, which must have room for the resolved type's size: pass
 * `value_size` to have it checked (TROUPE_ETOOBIG when too small). *type
 * receives the resolved type. */
TROUPE_EXTERN int troupe_envelope_decode_value(const troupe_envelope *env,
                                               const troupe_type **type,
                                               void *value, size_t value_size,
                                               const troupe_codec_opts *opts);
/* The metadata entry named key, or NULL. */
TROUPE_EXTERN const troupe_meta *troupe_envelope_meta(
    const troupe_envelope *env, const char *key);

#ifdef __cplusplus
}
#endif
#endif
