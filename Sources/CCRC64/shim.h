#ifndef GUARDIAN_CCRC64_SHIM_H
#define GUARDIAN_CCRC64_SHIM_H

// CRC-64/GO-ISO (the LTX file checksum, CRC64.swift) with carry-less
// multiplication (PCLMULQDQ): header-only, compiled into the Swift module
// that imports it, nothing linked. The table algorithm in CRC64.swift stays
// the reference and handles the ends; this folds the bulk of a buffer.
//
// The reflected representation: a 16-byte block loaded little-endian holds
// the polynomial whose x^127 coefficient is bit 0 of its first byte. Folding
// a block X = H·x^64 + L forward by d bits and adding the block Y found there:
//   X·x^d + Y ≡ H·(x^(d+64) mod P) + L·(x^d mod P) + Y   (mod P)
// Each product is one 64×64 carry-less multiplication; in the reflected
// representation the product comes out one bit short, so the constants are
// x^(d+63) mod P and x^(d-1) mod P (bit-reversed). Four blocks are folded in
// parallel (d = 512), then combined (d = 384, 256, 128) into one block that
// is congruent to the whole input: its CRC from a zero register is the
// input's CRC from the given register (which is xored into the first 8 bytes).

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

/// Whether this CPU has PCLMULQDQ and SSE4.1 (what crc64_iso_clmul_fold needs).
static inline int crc64_iso_clmul_available(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c & (1u << 1)) != 0 && (c & (1u << 19)) != 0;
}

__attribute__((target("pclmul,sse4.1"), always_inline))
static inline __m128i crc64_iso_fold16(__m128i x, __m128i k, __m128i y) {
    __m128i h = _mm_clmulepi64_si128(x, k, 0x00);  // H (low lane) × x^(d+63)
    __m128i l = _mm_clmulepi64_si128(x, k, 0x11);  // L (high lane) × x^(d-1)
    return _mm_xor_si128(_mm_xor_si128(h, l), y);
}

/// Folds `count` bytes of `data` (a multiple of 64, at least 64), continuing
/// from register `crc`, into the 16 bytes at `out`. `k`: 8 constants, pairs
/// for d = 512, 384, 256, 128 (CRC64Tables builds them).
__attribute__((target("pclmul,sse4.1")))
static inline void crc64_iso_clmul_fold(uint64_t crc, const void *data, size_t count, const uint64_t *k, uint8_t *out) {
    const uint8_t *p = (const uint8_t *)data;
    __m128i x0 = _mm_loadu_si128((const __m128i *)(p + 0));
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    x0 = _mm_xor_si128(x0, _mm_cvtsi64_si128((long long)crc));
    p += 64;
    count -= 64;
    const __m128i k512 = _mm_loadu_si128((const __m128i *)(k + 0));
    while (count >= 64) {
        x0 = crc64_iso_fold16(x0, k512, _mm_loadu_si128((const __m128i *)(p + 0)));
        x1 = crc64_iso_fold16(x1, k512, _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = crc64_iso_fold16(x2, k512, _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = crc64_iso_fold16(x3, k512, _mm_loadu_si128((const __m128i *)(p + 48)));
        p += 64;
        count -= 64;
    }
    __m128i r = crc64_iso_fold16(x0, _mm_loadu_si128((const __m128i *)(k + 2)), x3);
    r = crc64_iso_fold16(x1, _mm_loadu_si128((const __m128i *)(k + 4)), r);
    r = crc64_iso_fold16(x2, _mm_loadu_si128((const __m128i *)(k + 6)), r);
    _mm_storeu_si128((__m128i *)out, r);
}

#else

static inline int crc64_iso_clmul_available(void) { return 0; }
static inline void crc64_iso_clmul_fold(uint64_t crc, const void *data, size_t count, const uint64_t *k, uint8_t *out) {
    (void)crc; (void)data; (void)count; (void)k; (void)out;
}

#endif

#endif
