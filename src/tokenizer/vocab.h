/* Hash maps for tokenizers: piece bytes -> id, and (left id, right id) -> merge rank. */
#ifndef DQ_VOCAB_H
#define DQ_VOCAB_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *key; /* not owned */
    uint32_t len;
    int32_t id;
} dq_str_slot;

typedef struct {
    dq_str_slot *slots;
    size_t cap; /* power of two */
    size_t count;
} dq_str_map;

bool dq_str_map_init(dq_str_map *m, size_t expected);
void dq_str_map_free(dq_str_map *m);
/* Inserts key -> id; keeps the first id when the key is already present. */
bool dq_str_map_put(dq_str_map *m, const char *key, uint32_t len, int32_t id);
int32_t dq_str_map_get(const dq_str_map *m, const char *key, size_t len); /* -1 if absent */

typedef struct {
    uint64_t key; /* (left << 32) | right, ids + 1 so that 0 marks an empty slot */
    int32_t rank;
} dq_pair_slot;

typedef struct {
    dq_pair_slot *slots;
    size_t cap;
    size_t count;
} dq_pair_map;

bool dq_pair_map_init(dq_pair_map *m, size_t expected);
void dq_pair_map_free(dq_pair_map *m);
bool dq_pair_map_put(dq_pair_map *m, int32_t a, int32_t b, int32_t rank);
int32_t dq_pair_map_get(const dq_pair_map *m, int32_t a, int32_t b); /* -1 if absent */
#endif
