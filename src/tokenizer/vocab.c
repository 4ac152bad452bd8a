#include "tokenizer/vocab.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static size_t capacity_for(size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2 + 1) cap <<= 1;
    return cap;
}

bool dq_str_map_init(dq_str_map *m, size_t expected) {
    m->cap = capacity_for(expected);
    m->count = 0;
    m->slots = calloc(m->cap, sizeof *m->slots);
    return m->slots != NULL;
}

void dq_str_map_free(dq_str_map *m) {
    free(m->slots);
    m->slots = NULL;
}

static bool str_map_grow(dq_str_map *m) {
    dq_str_map bigger = {calloc(m->cap * 2, sizeof(dq_str_slot)), m->cap * 2, 0};
    if (!bigger.slots) return false;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key) dq_str_map_put(&bigger, m->slots[i].key, m->slots[i].len, m->slots[i].id);
    free(m->slots);
    *m = bigger;
    return true;
}

bool dq_str_map_put(dq_str_map *m, const char *key, uint32_t len, int32_t id) {
    if ((m->count + 1) * 2 > m->cap && !str_map_grow(m)) return false;
    size_t i = hash_bytes(key, len) & (m->cap - 1);
    while (m->slots[i].key) {
        if (m->slots[i].len == len && memcmp(m->slots[i].key, key, len) == 0) return true;
        i = (i + 1) & (m->cap - 1);
    }
    m->slots[i] = (dq_str_slot){key, len, id};
    m->count++;
    return true;
}

int32_t dq_str_map_get(const dq_str_map *m, const char *key, size_t len) {
    size_t i = hash_bytes(key, len) & (m->cap - 1);
    while (m->slots[i].key) {
        if (m->slots[i].len == len && memcmp(m->slots[i].key, key, len) == 0) return m->slots[i].id;
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

static uint64_t pair_key(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1);
}

static size_t pair_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k;
}

bool dq_pair_map_init(dq_pair_map *m, size_t expected) {
    m->cap = capacity_for(expected);
    m->count = 0;
    m->slots = calloc(m->cap, sizeof *m->slots);
    return m->slots != NULL;
}

void dq_pair_map_free(dq_pair_map *m) {
    free(m->slots);
    m->slots = NULL;
}

static bool pair_map_insert(dq_pair_map *m, uint64_t k, int32_t rank) {
    size_t i = pair_hash(k) & (m->cap - 1);
    while (m->slots[i].key) {
        if (m->slots[i].key == k) return true; /* first (lowest) rank wins */
        i = (i + 1) & (m->cap - 1);
    }
    m->slots[i] = (dq_pair_slot){k, rank};
    m->count++;
    return true;
}

bool dq_pair_map_put(dq_pair_map *m, int32_t a, int32_t b, int32_t rank) {
    if ((m->count + 1) * 2 > m->cap) {
        dq_pair_map bigger = {calloc(m->cap * 2, sizeof(dq_pair_slot)), m->cap * 2, 0};
        if (!bigger.slots) return false;
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].key) pair_map_insert(&bigger, m->slots[i].key, m->slots[i].rank);
        free(m->slots);
        *m = bigger;
    }
    return pair_map_insert(m, pair_key(a, b), rank);
}

int32_t dq_pair_map_get(const dq_pair_map *m, int32_t a, int32_t b) {
    uint64_t k = pair_key(a, b);
    size_t i = pair_hash(k) & (m->cap - 1);
    while (m->slots[i].key) {
        if (m->slots[i].key == k) return m->slots[i].rank;
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}
