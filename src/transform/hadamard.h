/* Orthogonal matrices for the function-preserving rotations of
 * transform/rotate.c: Hadamard matrices of the orders public rotation
 * codebases build (QuaRot, SpinQuant: a small Hadamard matrix of order m
 * times a Sylvester one of order 2^k), and Haar-random orthogonal matrices
 * for any order. Every matrix is n x n, row-major, float; every draw is a
 * function of the seed alone. */
#ifndef DQ_HADAMARD_H
#define DQ_HADAMARD_H
#include <stdbool.h>
#include <stdint.h>

#include "dashq.h"

/* Whether dq_hadamard builds order n: n = 2^k · m1 · m2 with each m either 1
 * or q+1 for a prime q ≡ 3 (mod 4) (Paley's first construction). Covers
 * 576 = 8·72 (SmolLM2's width), 1536 = 128·12, 14336 = 64·224 (Llama-3's
 * FFN), 5120 = 256·20; not 36 or 52 (35 and 51 are not prime; 72 = 71+1 and
 * 104 = 103+1 are Paley orders). */
bool dq_hadamard_exists(int n);
/* H (n x n) with entries ±1 and H Hᵀ = n I. DQ_ERR_ARG naming n when no
 * construction here reaches it. */
dq_status dq_hadamard(int n, float *H, dq_error *err);
/* Q = diag(±1) H / √n, the signs drawn from seed: QuaRot's random Hadamard. */
dq_status dq_random_hadamard(int n, uint64_t seed, float *Q, dq_error *err);
/* Q from the QR factorisation of a Gaussian matrix, signs fixed so that R
 * has a positive diagonal: Haar-distributed (Mezzadri 2007), any n. */
dq_status dq_random_orthogonal(int n, uint64_t seed, float *Q, dq_error *err);
/* The random Hadamard rotation where order n has one, else the Haar-random
 * one: HeRo-Q's starting point and the split rotation's rotated part. */
dq_status dq_hadamard_or_random(int n, uint64_t seed, float *Q, dq_error *err);
/* max |QᵀQ − I|, in double: how far Q is from orthogonal. */
double dq_orthogonality_error(const float *Q, int n);
#endif
