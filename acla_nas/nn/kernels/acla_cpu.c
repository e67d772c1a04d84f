/* Fused CPU kernels of the ACLA attention core (acla_nas/nn/attention_native.py).
 *
 * Key positions from the offset predictor's output, bilinear sampling (grid_sample, zeros
 * padding, align_corners=False) and the arithmetic that uses the samples, in one place, so no
 * sampling grid and no (B, C, H*K, W) sample buffer is ever written:
 *
 *   mode 0  logit[b,l,k,y,x] = scale_l * <q_l[b,y,x,:], sample_lk(b,y,x)>      (also <g, sample>)
 *   mode 1  out_l[b,y,x,:]   = sum_k attn[b,l,k,y,x] * sample_lk(b,y,x)
 *   mode 2  backward: with v = attn * g_l[b,y,x,:] + glogit * q_l[b,y,x,:] per key,
 *           grad q_l = sum_k glogit * sample, grad ref_l = bilinear scatter of v,
 *           grad off = bilinear derivative of <v, corner values>, through the key's position
 *
 * The key k of layer l at query (y, x) sits at (x + off[b, offc_l + 2k, y, x], y + off[b, offc_l
 * + 2k + 1, y, x]) query pixels, normalised to [-1, 1] as (2p + 1) / W - 1 and sampled in the
 * layer's own map (another size is sampled at the corresponding position). Maps are
 * channels-last: q, g, out (B,H,W,C_l) rows ld apart (the layers may share one buffer), ref, gref
 * (B,h_l,w_l,C_l) contiguous; off (B, *, H, W) channel-first as the convolution writes it;
 * attention arrays (B,L,K,H,W). Every output is written whole (no zeroed buffers needed).
 * REAL is float or double (one library each). Threads split the query rows (modes 0, 1) or the
 * batch (mode 2, whose scatter stays inside one batch element), each output computed by one
 * thread in a fixed order: the same bits whatever the thread count.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#ifndef REAL
#define REAL float
#endif
#ifndef REAL_SIZE /* sizeof(REAL), for the preprocessor */
#define REAL_SIZE 4
#endif
typedef REAL real;
#define FLOOR(v) _Generic((v), float: floorf, default: floor)(v)

typedef struct {
    int mode, n, B, H, W, K, nthreads;
    const int *C, *h, *w;
    const int *ldq, *ldg, *ldo; /* per layer: elements between consecutive query rows of q, g, out */
    const int *offc;            /* per layer: the channel of key 0's x offset in off (and goff) */
    const double *scale;
    real **q, **ref, **g, **out, **gref;
    const real *off; /* (B, *, H, W): the offset predictor's output, batch elements off_sb apart */
    long long off_sb;
    real *goff; /* mode 2: the gradient of off (only the channels of the layers' keys written) */
    long long goff_sb;
    real *logit;        /* mode 0: written */
    const real *attn;   /* modes 1, 2 */
    const real *glogit; /* mode 2: the logits' gradient times the layer's scale */
} job_t;

/* The 4 corners of key k of every query of one row (y) and layer, in branch-free loops over x
 * that the compiler vectorises: bilinear weights, the corners' rows (the zero row outside the
 * map) and, for the backward pass, their gradient rows (a sink outside the map), and the
 * fractions fx, fy for the position's gradient. A key with all 4 corners outside, or at a
 * non-finite position, gets weights 0 and zero rows (zero sample, zero gradient). The position
 * in the layer's map: ix = ((gx + 1) w_l - 1) / 2 with gx = (2 (x + dx) + 1) / W - 1, i.e.
 * ix = (x + dx + 1/2) w_l / W - 1/2 (align_corners=False; equal up to rounding). */
typedef struct {
    real *w0, *w1, *w2, *w3, *fx, *fy;
    const real **r0, **r1, **r2, **r3;
    real **g0, **g1, **g2, **g3;
} taps_t;

static inline void taps_key(const job_t *j, int b, int y, int l, int k, int c, const real *ref, const real *zero,
                            real *gref, real *sink, const taps_t *t, int at) {
    const int H = j->H, W = j->W, hr = j->h[l], wr = j->w[l];
    const real *restrict ox = j->off + (size_t)b * j->off_sb + ((size_t)j->offc[l] + 2 * k) * H * W + (size_t)y * W;
    const real *restrict oy = ox + (size_t)H * W;
    const real rx = (real)wr / (real)W, ry = (real)hr / (real)H, rw = (real)wr, rh = (real)hr, yc = (real)y + 0.5f;
    real *restrict w0 = t->w0 + at, *restrict w1 = t->w1 + at, *restrict w2 = t->w2 + at, *restrict w3 = t->w3 + at;
    real *restrict fxs = t->fx + at, *restrict fys = t->fy + at;
    const real **restrict r0 = t->r0 + at, **restrict r1 = t->r1 + at, **restrict r2 = t->r2 + at,
               **restrict r3 = t->r3 + at;
    real **restrict g0 = t->g0 + at, **restrict g1 = t->g1 + at, **restrict g2 = t->g2 + at, **restrict g3 = t->g3 + at;
    const int grad = gref != NULL;
#pragma omp simd
    for (int x = 0; x < W; ++x) {
        real ix = ((real)x + 0.5f + ox[x]) * rx - 0.5f, iy = (yc + oy[x]) * ry - 0.5f;
        int in = ix >= -1 && ix < rw && iy >= -1 && iy < rh; /* false for a non-finite position */
        ix = in ? ix : -1;
        iy = in ? iy : -1;
        real x0f = FLOOR(ix), y0f = FLOOR(iy);
        int x0 = (int)x0f, y0 = (int)y0f;
        real m = in ? 1 : 0, fx = ix - x0f, fy = iy - y0f; /* 0 when outside (ix = iy = -1) */
        int vx0 = in & (x0 >= 0), vx1 = in & (x0 + 1 < wr), vy0 = y0 >= 0, vy1 = y0 + 1 < hr;
        ptrdiff_t o = ((ptrdiff_t)y0 * wr + x0) * c, o2 = o + (ptrdiff_t)wr * c;
        w0[x] = m * (1 - fx) * (1 - fy);
        w1[x] = m * fx * (1 - fy);
        w2[x] = m * (1 - fx) * fy;
        w3[x] = m * fx * fy;
        fxs[x] = fx;
        fys[x] = fy;
        r0[x] = (vx0 & vy0) ? ref + o : zero;
        r1[x] = (vx1 & vy0) ? ref + o + c : zero;
        r2[x] = (vx0 & vy1) ? ref + o2 : zero;
        r3[x] = (vx1 & vy1) ? ref + o2 + c : zero;
        if (grad) {
            g0[x] = (vx0 & vy0) ? gref + o : sink;
            g1[x] = (vx1 & vy0) ? gref + o + c : sink;
            g2[x] = (vx0 & vy1) ? gref + o2 : sink;
            g3[x] = (vx1 & vy1) ? gref + o2 + c : sink;
        }
    }
}

/* The per-layer bodies take the channel count as an argument and are always inlined, so the
 * dispatch below compiles them once more for each common count (16, 32, 64): fixed-length inner
 * loops without remainder handling, which matters with 8-16 float lanes and 32 channels. */
#define INLINE static inline __attribute__((always_inline))
#define WITH_CHANNELS(c, CALL)      \
    switch (c) {                    \
        case 16: CALL(16); break;   \
        case 32: CALL(32); break;   \
        case 64: CALL(64); break;   \
        default: CALL(c); break;    \
    }

/* Channels are processed in vectors of LANES (one 512-bit vector; narrower machines split it),
 * and a dot product's lanes are folded in a tree at the end: left to themselves the compilers
 * finish an `omp simd reduction` with a chain of 16 dependent scalar additions per key, which
 * was most of the kernel's time. GCC and clang vector extensions; a fixed order, so the same
 * bits whatever the thread count. */
typedef real vec __attribute__((vector_size(64)));
typedef real half __attribute__((vector_size(32)));
typedef real quarter __attribute__((vector_size(16)));
#define LANES ((int)(sizeof(vec) / sizeof(real)))
INLINE vec vload(const real *p) {
    vec v;
    memcpy(&v, p, sizeof v);
    return v;
}
INLINE void vstore(real *p, vec v) { memcpy(p, &v, sizeof v); }
/* The lanes' sum in a fixed tree: halves, quarters, then the last 4 (float) or 2 (double) lanes;
 * in registers where the compiler has __builtin_shufflevector (clang, GCC >= 12), the same
 * arithmetic lane by lane elsewhere. */
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define HAVE_SHUFFLEVECTOR 1
#endif
#endif
INLINE real vsum(vec v) {
#if defined(HAVE_SHUFFLEVECTOR) && REAL_SIZE == 4
    half h = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
             __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    quarter q = __builtin_shufflevector(h, h, 0, 1, 2, 3) + __builtin_shufflevector(h, h, 4, 5, 6, 7);
    return (q[0] + q[2]) + (q[1] + q[3]);
#elif defined(HAVE_SHUFFLEVECTOR) && REAL_SIZE == 8
    half h = __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
    quarter q = __builtin_shufflevector(h, h, 0, 1) + __builtin_shufflevector(h, h, 2, 3);
    return q[0] + q[1];
#else
    real h[LANES / 2], q[LANES / 4];
    for (int i = 0; i < LANES / 2; ++i) h[i] = v[i] + v[i + LANES / 2];
    for (int i = 0; i < LANES / 4; ++i) q[i] = h[i] + h[i + LANES / 4];
    return LANES == 16 ? (q[0] + q[2]) + (q[1] + q[3]) : q[0] + q[1];
#endif
}

/* modes 0 and 1, one query row y of batch element b, layer l */
INLINE void rows_layer(const job_t *j, int b, int y, int l, const taps_t *t, const real *zero, const int c) {
    const int H = j->H, W = j->W, K = j->K, n = j->n, hr = j->h[l], wr = j->w[l];
    const real sc = (real)j->scale[l];
    const real *ref = j->ref[l] + (size_t)b * hr * wr * c;
    const size_t p0 = ((size_t)b * H + y) * W;
    if (j->mode == 1) {
        for (int x = 0; x < W; ++x) memset(j->out[l] + (p0 + x) * j->ldo[l], 0, sizeof(real) * c);
    }
    for (int k = 0; k < K; ++k) {
        const size_t a0 = ((((size_t)b * n + l) * K + k) * H + y) * W;
        taps_key(j, b, y, l, k, c, ref, zero, NULL, NULL, t, 0);
        for (int x = 0; x < W; ++x) {
            const real *r0p = t->r0[x], *r1p = t->r1[x], *r2p = t->r2[x], *r3p = t->r3[x];
            const real w0 = t->w0[x], w1 = t->w1[x], w2 = t->w2[x], w3 = t->w3[x];
            if (j->mode == 0) {
                const real *qv = j->q[l] + (p0 + x) * j->ldq[l];
                vec acc = {0};
                real rest = 0;
                int i = 0;
                for (; i + LANES <= c; i += LANES)
                    acc += vload(qv + i) *
                           (w0 * vload(r0p + i) + w1 * vload(r1p + i) + w2 * vload(r2p + i) + w3 * vload(r3p + i));
                for (; i < c; ++i) rest += qv[i] * (w0 * r0p[i] + w1 * r1p[i] + w2 * r2p[i] + w3 * r3p[i]);
                j->logit[a0 + x] = sc * (vsum(acc) + rest);
            } else {
                const real a = j->attn[a0 + x];
                if (a == 0) continue; /* a dropped key costs nothing */
                real *ov = j->out[l] + (p0 + x) * j->ldo[l];
                const real a0w = a * w0, a1w = a * w1, a2w = a * w2, a3w = a * w3;
#pragma omp simd
                for (int i = 0; i < c; ++i) ov[i] += a0w * r0p[i] + a1w * r1p[i] + a2w * r2p[i] + a3w * r3p[i];
            }
        }
    }
}

/* The same passes with each query's vectors kept in registers across its K keys (queries outer,
 * keys inner): its query or gradient row loaded once, its weighted sum or query gradient
 * accumulated in registers and stored once. For channel counts of at most NV_MAX whole vectors
 * (with the dispatch below: 16, 32 and 64 floats, 16 and 32 doubles); the taps of all K keys of
 * the row are made first. Same arithmetic, in the same order, as the loops above. */
#define NV_MAX 4
#define FITS(c) ((c) % LANES == 0 && (c) / LANES <= NV_MAX)

INLINE void rows_layer_reg(const job_t *j, int b, int y, int l, const taps_t *t, const real *zero, const int c) {
    const int H = j->H, W = j->W, K = j->K, n = j->n, hr = j->h[l], wr = j->w[l], nv = c / LANES;
    const real sc = (real)j->scale[l];
    const real *ref = j->ref[l] + (size_t)b * hr * wr * c;
    const size_t p0 = ((size_t)b * H + y) * W, hw = (size_t)H * W;
    const size_t abase = (((size_t)b * n + l) * K) * hw + (size_t)y * W;
    for (int k = 0; k < K; ++k) taps_key(j, b, y, l, k, c, ref, zero, NULL, NULL, t, k * W);
    for (int x = 0; x < W; ++x) {
        if (j->mode == 0) {
            vec qv[NV_MAX];
            const real *qp = j->q[l] + (p0 + x) * j->ldq[l];
            for (int v = 0; v < nv; ++v) qv[v] = vload(qp + v * LANES);
            for (int k = 0; k < K; ++k) {
                const int s = k * W + x;
                const real *r0p = t->r0[s], *r1p = t->r1[s], *r2p = t->r2[s], *r3p = t->r3[s];
                const real w0 = t->w0[s], w1 = t->w1[s], w2 = t->w2[s], w3 = t->w3[s];
                vec acc = {0};
                for (int v = 0; v < nv; ++v) {
                    const int i = v * LANES;
                    acc += qv[v] * (w0 * vload(r0p + i) + w1 * vload(r1p + i) + w2 * vload(r2p + i) + w3 * vload(r3p + i));
                }
                j->logit[abase + k * hw + x] = sc * vsum(acc);
            }
        } else {
            vec acc[NV_MAX];
            for (int v = 0; v < nv; ++v) acc[v] = (vec){0};
            for (int k = 0; k < K; ++k) {
                const int s = k * W + x;
                const real a = j->attn[abase + k * hw + x];
                if (a == 0) continue; /* a dropped key costs nothing */
                const real *r0p = t->r0[s], *r1p = t->r1[s], *r2p = t->r2[s], *r3p = t->r3[s];
                const real a0w = a * t->w0[s], a1w = a * t->w1[s], a2w = a * t->w2[s], a3w = a * t->w3[s];
                for (int v = 0; v < nv; ++v) {
                    const int i = v * LANES;
                    acc[v] += a0w * vload(r0p + i) + a1w * vload(r1p + i) + a2w * vload(r2p + i) + a3w * vload(r3p + i);
                }
            }
            real *ov = j->out[l] + (p0 + x) * j->ldo[l];
            for (int v = 0; v < nv; ++v) vstore(ov + v * LANES, acc[v]);
        }
    }
}

INLINE void backward_row_reg(const job_t *j, int b, int y, int l, const taps_t *t, const real *zero, real *sink,
                             const int c) {
    const int H = j->H, W = j->W, K = j->K, n = j->n, hr = j->h[l], wr = j->w[l], nv = c / LANES;
    const size_t rsz = (size_t)b * hr * wr * c, hw = (size_t)H * W;
    const real *ref = j->ref[l] + rsz;
    real *gref = j->gref[l] + rsz;
    const real sx = (real)wr / (real)W, sy = (real)hr / (real)H; /* d ix / d off */
    const size_t p0 = ((size_t)b * H + y) * W, abase = (((size_t)b * n + l) * K) * hw + (size_t)y * W;
    real *gbase = j->goff + (size_t)b * j->goff_sb + (size_t)j->offc[l] * hw + (size_t)y * W;
    for (int k = 0; k < K; ++k) taps_key(j, b, y, l, k, c, ref, zero, gref, sink, t, k * W);
    for (int x = 0; x < W; ++x) {
        const real *qp = j->q[l] + (p0 + x) * j->ldq[l], *gp = j->g[l] + (p0 + x) * j->ldg[l];
        vec qv[NV_MAX], gv[NV_MAX], gq[NV_MAX];
        for (int v = 0; v < nv; ++v) {
            qv[v] = vload(qp + v * LANES);
            gv[v] = vload(gp + v * LANES);
            gq[v] = (vec){0};
        }
        for (int k = 0; k < K; ++k) {
            const int s = k * W + x;
            const size_t ai = abase + k * hw + x;
            const real a = j->attn[ai], gl = j->glogit[ai];
            real *gx_out = gbase + (size_t)2 * k * hw + x, *gy_out = gx_out + hw;
            if (a == 0 && gl == 0) {
                *gx_out = *gy_out = 0;
                continue;
            }
            const real *r0p = t->r0[s], *r1p = t->r1[s], *r2p = t->r2[s], *r3p = t->r3[s];
            real *g0 = t->g0[s], *g1 = t->g1[s], *g2 = t->g2[s], *g3 = t->g3[s];
            const real w0 = t->w0[s], w1 = t->w1[s], w2 = t->w2[s], w3 = t->w3[s];
            vec p0v = {0}, p1v = {0}, p2v = {0}, p3v = {0};
            for (int v = 0; v < nv; ++v) {
                const int i = v * LANES;
                const vec V = a * gv[v] + gl * qv[v];
                const vec x0 = vload(r0p + i), x1 = vload(r1p + i), x2 = vload(r2p + i), x3 = vload(r3p + i);
                p0v += V * x0;
                p1v += V * x1;
                p2v += V * x2;
                p3v += V * x3;
                gq[v] += gl * (w0 * x0 + w1 * x1 + w2 * x2 + w3 * x3);
                vstore(g0 + i, vload(g0 + i) + w0 * V);
                vstore(g1 + i, vload(g1 + i) + w1 * V);
                vstore(g2 + i, vload(g2 + i) + w2 * V);
                vstore(g3 + i, vload(g3 + i) + w3 * V);
            }
            const real d0 = vsum(p0v), d1 = vsum(p1v), d2 = vsum(p2v), d3 = vsum(p3v);
            const real fx = t->fx[s], fy = t->fy[s];
            *gx_out = ((d1 - d0) * (1 - fy) + (d3 - d2) * fy) * sx;
            *gy_out = ((d2 - d0) * (1 - fx) + (d3 - d1) * fx) * sy;
        }
        real *gqp = j->out[l] + (p0 + x) * j->ldo[l];
        for (int v = 0; v < nv; ++v) vstore(gqp + v * LANES, gq[v]);
    }
}

/* modes 0 and 1 over query rows [r0, r1) of the (B*H) rows */
static void rows_pass(const job_t *j, int r0, int r1, const taps_t *t, const real *zero) {
    for (int r = r0; r < r1; ++r) {
        int b = r / j->H, y = r % j->H;
        for (int l = 0; l < j->n; ++l) {
#define ROWS(cc) \
    if (FITS(cc)) rows_layer_reg(j, b, y, l, t, zero, cc); else rows_layer(j, b, y, l, t, zero, cc)
            WITH_CHANNELS(j->C[l], ROWS)
#undef ROWS
        }
    }
}

/* mode 2, query row y of batch element b, layer l (the layer's gradient map zeroed beforehand);
 * zero: a row of zeros, sink: a row that takes the writes meant for corners outside the map */
INLINE void backward_row(const job_t *j, int b, int y, int l, const taps_t *t, const real *zero, real *sink,
                         const int c) {
    const int H = j->H, W = j->W, K = j->K, n = j->n, hr = j->h[l], wr = j->w[l];
    const size_t rsz = (size_t)b * hr * wr * c;
    const real *ref = j->ref[l] + rsz;
    real *gref = j->gref[l] + rsz;
    const real sx = (real)wr / (real)W, sy = (real)hr / (real)H; /* d ix / d off */
    const size_t p0 = ((size_t)b * H + y) * W;
    real *gbase = j->goff + (size_t)b * j->goff_sb + (size_t)j->offc[l] * H * W + (size_t)y * W;
    for (int x = 0; x < W; ++x) memset(j->out[l] + (p0 + x) * j->ldo[l], 0, sizeof(real) * c);
    for (int k = 0; k < K; ++k) {
        const size_t a0 = ((((size_t)b * n + l) * K + k) * H + y) * W;
        real *gx_out = gbase + (size_t)2 * k * H * W, *gy_out = gx_out + (size_t)H * W;
        taps_key(j, b, y, l, k, c, ref, zero, gref, sink, t, 0);
        for (int x = 0; x < W; ++x) {
            const real a = j->attn[a0 + x], gl = j->glogit[a0 + x];
            if (a == 0 && gl == 0) {
                gx_out[x] = gy_out[x] = 0;
                continue;
            }
            const real *qv = j->q[l] + (p0 + x) * j->ldq[l], *gv = j->g[l] + (p0 + x) * j->ldg[l];
            real *gq = j->out[l] + (p0 + x) * j->ldo[l];
            const real *r0p = t->r0[x], *r1p = t->r1[x], *r2p = t->r2[x], *r3p = t->r3[x];
            real *g0 = t->g0[x], *g1 = t->g1[x], *g2 = t->g2[x], *g3 = t->g3[x];
            const real w0 = t->w0[x], w1 = t->w1[x], w2 = t->w2[x], w3 = t->w3[x];
            vec p0 = {0}, p1 = {0}, p2 = {0}, p3 = {0};
            real e0 = 0, e1 = 0, e2 = 0, e3 = 0;
            int i = 0;
            for (; i + LANES <= c; i += LANES) {
                const vec v = a * vload(gv + i) + gl * vload(qv + i);
                const vec x0 = vload(r0p + i), x1 = vload(r1p + i), x2 = vload(r2p + i), x3 = vload(r3p + i);
                p0 += v * x0;
                p1 += v * x1;
                p2 += v * x2;
                p3 += v * x3;
                vstore(gq + i, vload(gq + i) + gl * (w0 * x0 + w1 * x1 + w2 * x2 + w3 * x3));
                vstore(g0 + i, vload(g0 + i) + w0 * v);
                vstore(g1 + i, vload(g1 + i) + w1 * v);
                vstore(g2 + i, vload(g2 + i) + w2 * v);
                vstore(g3 + i, vload(g3 + i) + w3 * v);
            }
            for (; i < c; ++i) {
                real v = a * gv[i] + gl * qv[i];
                real x0 = r0p[i], x1 = r1p[i], x2 = r2p[i], x3 = r3p[i];
                e0 += v * x0;
                e1 += v * x1;
                e2 += v * x2;
                e3 += v * x3;
                gq[i] += gl * (w0 * x0 + w1 * x1 + w2 * x2 + w3 * x3);
                g0[i] += w0 * v;
                g1[i] += w1 * v;
                g2[i] += w2 * v;
                g3[i] += w3 * v;
            }
            const real d0 = vsum(p0) + e0, d1 = vsum(p1) + e1, d2 = vsum(p2) + e2, d3 = vsum(p3) + e3;
            const real fx = t->fx[x], fy = t->fy[x];
            gx_out[x] = ((d1 - d0) * (1 - fy) + (d3 - d2) * fy) * sx;
            gy_out[x] = ((d2 - d0) * (1 - fx) + (d3 - d1) * fx) * sy;
        }
    }
}

/* mode 2 over batch elements [b0, b1) */
static void backward_pass(const job_t *j, int b0, int b1, const taps_t *t, const real *zero, real *sink) {
    for (int b = b0; b < b1; ++b) {
        for (int l = 0; l < j->n; ++l) {
            const size_t sz = (size_t)j->h[l] * j->w[l] * j->C[l];
            memset(j->gref[l] + (size_t)b * sz, 0, sizeof(real) * sz);
        }
        /* query rows outer, layers inner: a query's rows of q and g (all layers side by side)
         * are read while they are in cache */
        for (int y = 0; y < j->H; ++y) {
            for (int l = 0; l < j->n; ++l) {
#define BACK(cc) \
    if (FITS(cc)) backward_row_reg(j, b, y, l, t, zero, sink, cc); else backward_row(j, b, y, l, t, zero, sink, cc)
                WITH_CHANNELS(j->C[l], BACK)
#undef BACK
            }
        }
    }
}

/* Runs one pass; returns 0 on success. Threads: OpenMP, which in a PyTorch process is PyTorch's
 * own runtime (the library is loaded after torch, and libgomp.so.1 is matched by its name), so
 * the kernel runs on PyTorch's worker threads instead of competing with them while they spin. */
int acla_run(job_t *job) {
    const int units = job->mode == 2 ? job->B : job->B * job->H;
    const size_t kw = (size_t)job->K * job->W; /* the taps of the K keys of a query row */
    int nt = job->nthreads < 1 ? 1 : job->nthreads, cmax = 1, failed = 0;
    if (nt > units) nt = units;
    for (int l = 0; l < job->n; ++l)
        if (job->C[l] > cmax) cmax = job->C[l];
#pragma omp parallel num_threads(nt) reduction(| : failed)
    {
        real *zero = (real *)calloc((size_t)cmax, sizeof(real));
        real *sink = (real *)malloc(sizeof(real) * (size_t)cmax);
        real *tr = (real *)malloc(sizeof(real) * 6 * kw);
        void **tp = (void **)malloc(sizeof(void *) * 8 * kw);
        taps_t t = {tr, tr + kw, tr + 2 * kw, tr + 3 * kw, tr + 4 * kw, tr + 5 * kw,
                    (const real **)tp, (const real **)tp + kw, (const real **)tp + 2 * kw, (const real **)tp + 3 * kw,
                    (real **)tp + 4 * kw, (real **)tp + 5 * kw, (real **)tp + 6 * kw, (real **)tp + 7 * kw};
#pragma omp for schedule(static)
        for (int u = 0; u < units; ++u) {
            if (!zero || !sink || !tr || !tp) {
                failed = 1;
            } else if (job->mode == 2) {
                backward_pass(job, u, u + 1, &t, zero, sink);
            } else {
                rows_pass(job, u, u + 1, &t, zero);
            }
        }
        free(zero);
        free(sink);
        free(tr);
        free(tp);
    }
    return failed;
}
