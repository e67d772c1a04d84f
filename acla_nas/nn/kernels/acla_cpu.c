/* Fused CPU kernels of the ACLA attention core (acla_nas/nn/attention_c.py).
 *
 * Bilinear sampling (grid_sample, zeros padding, align_corners=False) fused with the arithmetic
 * that uses the samples, so no (B, C, H*K, W) sample buffer is ever written:
 *
 *   mode 0  logit[b,l,k,y,x] = scale_l * <q_l[b,y,x,:], sample_lk(b,y,x)>      (also <g, sample>)
 *   mode 1  out_l[b,y,x,:]   = sum_k attn[b,l,k,y,x] * sample_lk(b,y,x)
 *   mode 2  backward: with v = attn * g_l[b,y,x,:] + glogit * q_l[b,y,x,:] per key,
 *           grad q_l += glogit * sample, grad ref_l += bilinear scatter of v,
 *           grad grid = bilinear derivative of <v, corner values>
 *
 * Maps are channels-last: q, g, out (B,H,W,C_l) rows ld apart (the layers may share one buffer),
 * ref (B,h_l,w_l,C_l) contiguous; grids (B,H,K,W,2) with
 * (x, y) normalised to [-1, 1]; attention arrays (B,L,K,H,W). REAL is float or double (one
 * library each). Threads split the query rows (modes 0, 1) or the batch (mode 2, whose scatter
 * stays inside one batch element), so no two threads write the same memory.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#ifndef REAL
#define REAL float
#endif
typedef REAL real;

typedef struct {
    int mode, n, B, H, W, K, nthreads;
    const int *C, *h, *w;
    const int *ldq, *ldg, *ldo; /* per layer: elements between consecutive query rows of q, g, out */
    const double *scale;
    real **q, **ref, **grid, **g, **out, **gref, **ggrid;
    real *logit;        /* mode 0: written */
    const real *attn;   /* modes 1, 2 */
    const real *glogit; /* mode 2: the logits' gradient times the layer's scale */
} job_t;

/* The 4 corners of a sampling point: their weights and rows (the zero row outside the map, so
 * the loops below need no branch), and their offsets (-1 outside). Returns 0 when all 4 lie
 * outside (the sample is zero and has no gradient), or for a non-finite point. */
static inline int corners(real gx, real gy, int hr, int wr, int c, const real *ref, const real *zero, real *wt,
                          const real **rp, ptrdiff_t *off, real *fxo, real *fyo) {
    real ix = ((gx + 1) * wr - 1) / 2, iy = ((gy + 1) * hr - 1) / 2;
    if (!(ix >= -1 && ix < wr && iy >= -1 && iy < hr)) {
        for (int i = 0; i < 4; ++i) {
            wt[i] = 0;
            rp[i] = zero;
            off[i] = -1;
        }
        *fxo = *fyo = 0;
        return 0;
    }
    real x0f = floor(ix), y0f = floor(iy);
    int x0 = (int)x0f, y0 = (int)y0f;
    real fx = ix - x0f, fy = iy - y0f;
    wt[0] = (1 - fx) * (1 - fy);
    wt[1] = fx * (1 - fy);
    wt[2] = (1 - fx) * fy;
    wt[3] = fx * fy;
    for (int i = 0; i < 4; ++i) {
        int cx = x0 + (i & 1), cy = y0 + (i >> 1);
        int ok = cx >= 0 && cx < wr && cy >= 0 && cy < hr;
        off[i] = ok ? ((ptrdiff_t)cy * wr + cx) * c : -1;
        rp[i] = ok ? ref + off[i] : zero;
    }
    *fxo = fx;
    *fyo = fy;
    return 1;
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

/* modes 0 and 1, one query row y of batch element b, layer l */
INLINE void rows_layer(const job_t *j, int b, int y, int l, const real *zero, const int c) {
    const int H = j->H, W = j->W, K = j->K, n = j->n, hr = j->h[l], wr = j->w[l];
    const real sc = (real)j->scale[l];
    const real *ref = j->ref[l] + (size_t)b * hr * wr * c;
    const real *grid = j->grid[l] + (size_t)b * H * K * W * 2;
    for (int x = 0; x < W; ++x) {
        size_t p = ((size_t)b * H + y) * W + x;
        for (int k = 0; k < K; ++k) {
            const real *gp = grid + (((size_t)y * K + k) * W + x) * 2;
            size_t ai = ((((size_t)b * n + l) * K + k) * H + y) * W + x;
            real wt[4], fx, fy;
            const real *rp[4];
            ptrdiff_t off[4];
            int any = corners(gp[0], gp[1], hr, wr, c, ref, zero, wt, rp, off, &fx, &fy);
            const real *r0p = rp[0], *r1p = rp[1], *r2p = rp[2], *r3p = rp[3];
            const real w0 = wt[0], w1 = wt[1], w2 = wt[2], w3 = wt[3];
            if (j->mode == 0) {
                real acc = 0;
                if (any) {
                    const real *qv = j->q[l] + p * j->ldq[l];
#pragma omp simd reduction(+ : acc)
                    for (int i = 0; i < c; ++i) acc += qv[i] * (w0 * r0p[i] + w1 * r1p[i] + w2 * r2p[i] + w3 * r3p[i]);
                }
                j->logit[ai] = sc * acc;
            } else {
                real a = j->attn[ai];
                if (!any || a == 0) continue; /* a dropped key costs nothing */
                real *ov = j->out[l] + p * j->ldo[l];
                const real a0 = a * w0, a1 = a * w1, a2 = a * w2, a3 = a * w3;
#pragma omp simd
                for (int i = 0; i < c; ++i) ov[i] += a0 * r0p[i] + a1 * r1p[i] + a2 * r2p[i] + a3 * r3p[i];
            }
        }
    }
}

/* modes 0 and 1 over query rows [r0, r1) of the (B*H) rows */
static void rows_pass(const job_t *j, int r0, int r1, const real *zero) {
    for (int r = r0; r < r1; ++r) {
        int b = r / j->H, y = r % j->H;
        for (int l = 0; l < j->n; ++l) {
#define ROWS(cc) rows_layer(j, b, y, l, zero, cc)
            WITH_CHANNELS(j->C[l], ROWS)
#undef ROWS
        }
    }
}

/* mode 2, batch element b, layer l; zero: a row of zeros, sink: a row that takes the writes meant
 * for corners outside the map */
INLINE void backward_layer(const job_t *j, int b, int l, const real *zero, real *sink, const int c) {
    const int H = j->H, W = j->W, K = j->K, n = j->n, hr = j->h[l], wr = j->w[l];
    const size_t rsz = (size_t)b * hr * wr * c;
    const real *ref = j->ref[l] + rsz;
    real *gref = j->gref[l] + rsz;
    const real *grid = j->grid[l] + (size_t)b * H * K * W * 2;
    real *ggrid = j->ggrid[l] + (size_t)b * H * K * W * 2;
    for (int y = 0; y < H; ++y) {
        for (int x = 0; x < W; ++x) {
            size_t p = ((size_t)b * H + y) * W + x;
            const real *qv = j->q[l] + p * j->ldq[l], *gv = j->g[l] + p * j->ldg[l];
            real *gq = j->out[l] + p * j->ldo[l];
            for (int k = 0; k < K; ++k) {
                size_t ai = ((((size_t)b * n + l) * K + k) * H + y) * W + x;
                real a = j->attn[ai], gl = j->glogit[ai];
                if (a == 0 && gl == 0) continue;
                size_t gi = (((size_t)y * K + k) * W + x) * 2;
                real wt[4], fx, fy;
                const real *rp[4];
                ptrdiff_t off[4];
                if (!corners(grid[gi], grid[gi + 1], hr, wr, c, ref, zero, wt, rp, off, &fx, &fy)) continue;
                const real *r0p = rp[0], *r1p = rp[1], *r2p = rp[2], *r3p = rp[3];
                real *g0 = off[0] >= 0 ? gref + off[0] : sink, *g1 = off[1] >= 0 ? gref + off[1] : sink;
                real *g2 = off[2] >= 0 ? gref + off[2] : sink, *g3 = off[3] >= 0 ? gref + off[3] : sink;
                const real w0 = wt[0], w1 = wt[1], w2 = wt[2], w3 = wt[3];
                real d0 = 0, d1 = 0, d2 = 0, d3 = 0;
#pragma omp simd reduction(+ : d0, d1, d2, d3)
                for (int i = 0; i < c; ++i) {
                    real v = a * gv[i] + gl * qv[i];
                    real x0 = r0p[i], x1 = r1p[i], x2 = r2p[i], x3 = r3p[i];
                    d0 += v * x0;
                    d1 += v * x1;
                    d2 += v * x2;
                    d3 += v * x3;
                    gq[i] += gl * (w0 * x0 + w1 * x1 + w2 * x2 + w3 * x3);
                    g0[i] += w0 * v;
                    g1[i] += w1 * v;
                    g2[i] += w2 * v;
                    g3[i] += w3 * v;
                }
                real gx = (d1 - d0) * (1 - fy) + (d3 - d2) * fy;
                real gy = (d2 - d0) * (1 - fx) + (d3 - d1) * fx;
                ggrid[gi] = gx * (real)wr / 2;
                ggrid[gi + 1] = gy * (real)hr / 2;
            }
        }
    }
}

/* mode 2 over batch elements [b0, b1) */
static void backward_pass(const job_t *j, int b0, int b1, const real *zero, real *sink) {
    for (int b = b0; b < b1; ++b) {
        for (int l = 0; l < j->n; ++l) {
#define BACK(cc) backward_layer(j, b, l, zero, sink, cc)
            WITH_CHANNELS(j->C[l], BACK)
#undef BACK
        }
    }
}

/* Runs one pass; returns 0 on success. Threads: OpenMP, which in a PyTorch process is PyTorch's
 * own runtime (the library is loaded after torch, and libgomp.so.1 is matched by its name), so
 * the kernel runs on PyTorch's worker threads instead of competing with them while they spin. */
int acla_run(job_t *job) {
    const int units = job->mode == 2 ? job->B : job->B * job->H;
    int nt = job->nthreads < 1 ? 1 : job->nthreads, cmax = 1, failed = 0;
    if (nt > units) nt = units;
    for (int l = 0; l < job->n; ++l)
        if (job->C[l] > cmax) cmax = job->C[l];
#pragma omp parallel num_threads(nt) reduction(| : failed)
    {
        real *zero = (real *)calloc((size_t)cmax, sizeof(real));
        real *sink = (real *)malloc(sizeof(real) * (size_t)cmax);
#pragma omp for schedule(static)
        for (int u = 0; u < units; ++u) {
            if (!zero || !sink) {
                failed = 1;
            } else if (job->mode == 2) {
                backward_pass(job, u, u + 1, zero, sink);
            } else {
                rows_pass(job, u, u + 1, zero);
            }
        }
        free(zero);
        free(sink);
    }
    return failed;
}
