/*
 * troupe/types.h: message, event and snapshot type descriptors.
 *
 * Every value troupe moves (a message, an event, a snapshot) is a C struct
 * described once by a troupe_type: a stable manifest name, a schema version,
 * the struct size and a field table. From that table the runtime derives
 * copy, free, equality, CBOR encode/decode and a JSON rendering.
 *
 * STATUS: skeleton owned by the types/codec work (issue 3); the struct
 * layout and the entry points used by core (troupe_type_prepare,
 * troupe_value_copy, troupe_value_free) are fixed.
 */
#ifndef TROUPE_TYPES_H
#define TROUPE_TYPES_H

#include "troupe/common.h"
#include "troupe/error.h"

#ifdef __cplusplus
extern "C" {
#endif

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

/* An owned byte buffer inside a described value. */
typedef struct troupe_bytes {
  uint8_t *data;
  size_t len;
} troupe_bytes;

/* An owned variable-length array inside a described value: `len` elements
 * of the field's element kind, contiguous at `items`. */
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

typedef struct troupe_buf troupe_buf;

/* Custom codec for types a field table cannot describe. All optional
 * except encode/decode when fields are absent. */
typedef struct troupe_type_ops {
  int (*copy)(const struct troupe_type *t, void *dst, const void *src);
  void (*free)(const struct troupe_type *t, void *value);
  bool (*equal)(const struct troupe_type *t, const void *a, const void *b);
  int (*encode)(const struct troupe_type *t, const void *value, troupe_buf *out);
  int (*decode)(const struct troupe_type *t, const uint8_t *data, size_t len,
                void *value);
} troupe_type_ops;

/*
 * A type descriptor. Declare it static and never change it after first use.
 * `_flags` is the runtime's: leave it zero.
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

/*
 * Validate a descriptor and compute its runtime flags. Idempotent and
 * thread-safe; called implicitly on first use. Returns TROUPE_EINVAL for a
 * malformed descriptor (with the reason in troupe_errmsg()).
 */
TROUPE_EXTERN int troupe_type_prepare(const troupe_type *t);

/* Deep copy: dst receives copies of every owned buffer of src. On failure
 * dst is left zeroed and nothing leaks. Any thread. */
TROUPE_EXTERN int troupe_value_copy(const troupe_type *t, void *dst,
                                    const void *src);
/* Free the owned buffers of a value (not the struct itself). NULL ok. */
TROUPE_EXTERN void troupe_value_free(const troupe_type *t, void *value);

#ifdef __cplusplus
}
#endif
#endif
