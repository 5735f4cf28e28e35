/*
 * FNV-1a (64 bits), the hash of the in-memory tables: fast, and weak against keys chosen to collide,
 * which each table bounds by its caps (a long chain costs time, never memory).
 */
#ifndef GW_HASH_H
#define GW_HASH_H

#include <stddef.h>
#include <stdint.h>

#define GW_FNV1A_BASIS 14695981039346656037ULL

/* |h| (GW_FNV1A_BASIS, a table's own seed, or the hash of what came before) carried over |n| bytes at |p|. */
static inline uint64_t gw_fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

#endif
