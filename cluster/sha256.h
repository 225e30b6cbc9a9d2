/*
 * cluster/sha256.h: SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104), for
 * the TCP handshake's proof of the cluster secret. Internal; small and
 * dependency-free rather than fast (the handshake hashes a few hundred
 * bytes per connection).
 */
#ifndef TROUPE_CLUSTER_SHA256_H
#define TROUPE_CLUSTER_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TROUPE__SHA256_LEN 32
#define TROUPE__SHA256_BLOCK 64

typedef struct troupe__sha256 {
  uint32_t h[8];
  uint64_t total;                 /* bytes hashed so far */
  uint8_t block[TROUPE__SHA256_BLOCK];
  size_t fill;                    /* bytes in block */
} troupe__sha256_ctx;

void troupe__sha256_init(troupe__sha256_ctx *s);
void troupe__sha256_update(troupe__sha256_ctx *s, const void *data, size_t len);
void troupe__sha256_final(troupe__sha256_ctx *s, uint8_t out[TROUPE__SHA256_LEN]);
/* One-shot digest. */
void troupe__sha256(const void *data, size_t len,
                    uint8_t out[TROUPE__SHA256_LEN]);

/* HMAC-SHA-256 computed incrementally: init with the key, update with
 * the message in pieces, final. Keys longer than a block are hashed. */
typedef struct troupe__hmac_ctx {
  troupe__sha256_ctx inner, outer;
} troupe__hmac_ctx;

void troupe__hmac_init(troupe__hmac_ctx *h, const void *key, size_t key_len);
void troupe__hmac_update(troupe__hmac_ctx *h, const void *data, size_t len);
void troupe__hmac_final(troupe__hmac_ctx *h, uint8_t out[TROUPE__SHA256_LEN]);
void troupe__hmac_sha256(const void *key, size_t key_len, const void *data,
                         size_t len, uint8_t out[TROUPE__SHA256_LEN]);

/* Compare n bytes in time independent of where they differ. */
bool troupe__ct_equal(const void *a, const void *b, size_t n);

/* Wipe memory that held a secret (not optimised away). */
void troupe__wipe(void *p, size_t n);

/* Fill buf with n bytes from the kernel's CSPRNG (getrandom, falling back
 * to /dev/urandom). Returns 0 or TROUPE_EIO. */
int troupe__random_bytes(void *buf, size_t n);

#endif
