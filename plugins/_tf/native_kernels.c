/*
 * HarmonyRL's native kernels, compiled on the user's machine by its C compiler
 * (`cc -O3 -march=native`) and called through Deno FFI by native.ts.
 *
 * - hrl_sgemm_small: the matrix product C = A B with few rows in A (M <= 16),
 *   row-major, no transposes. An LSTM step's recurrent product is this shape
 *   (batch x hidden times hidden x 4 hidden), thousands of times per training
 *   step. BLAS libraries pack (copy) all of B on every call, which for a
 *   768 x 3072 B costs more than the product; this kernel streams B once, in
 *   place, and splits its columns over threads.
 * - hrl_pack_panels / hrl_sgemm_packed: the same product with B copied once
 *   into panels of NR columns, each a contiguous stream, for many products by
 *   one B (an LSTM's recurrent weights over a sequence, a model's weights while
 *   sampling): the same sums as hrl_sgemm_small, without reading K rows that lie
 *   pages apart.
 * - hrl_sgemm_batched: a batch of small products (an attention's per-head
 *   products), each on one thread, the batch split over the threads, where
 *   BLAS ran one call (and one round of its threads) per product. A transposed
 *   A is read in place; a transposed B is transposed in tiles first.
 * - hrl_add_rows: a dense layer's bias added to its product in place.
 * - hrl_attention_heads / hrl_attention_heads_grad: an attention's q, k, v heads
 *   from its fused projection, with the rotary embedding and q's scaling, and
 *   the gradient back (the same float32 operations as the tfjs ops).
 * - hrl_decode_attention: one query per head against a key/value cache, the
 *   attention of a Transformer's sampling step, in one call instead of two
 *   batched products and a softmax, reading the cache in place.
 * - hrl_gelu / hrl_gelu_grad: the Transformer's GELU, x·σ(1.702x), and its
 *   gradient, in one pass each over every core, where tfjs ran three and six
 *   elementwise kernels.
 * - hrl_causal_softmax / hrl_causal_softmax_grad: the softmax of a causal
 *   attention's scores (positions after a row's own are left out) and its
 *   gradient, in place of the mask addition, the softmax and its backward ops.
 * - hrl_layer_norm / hrl_layer_norm_grad: layer normalisation over rows and its
 *   gradient, one pass each instead of about eight and twelve tfjs kernels.
 * - hrl_adamw: one AdamW step of a weight, its moments and its gradient in one
 *   pass, with tfjs's float32 operations in tfjs's order (no fused
 *   multiply-adds), so the same bits as the thirteen tfjs ops it replaces.
 * - hrl_lstm_*: the elementwise loops of lstm_kernels.ts's fused LSTM cell
 *   steps, with the same float32 operations in the same order (no fused
 *   multiply-adds), so their results are the same bit for bit.
 *
 * Each output element is computed by one thread in a fixed order, so results
 * do not depend on the thread count.
 */
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__AVX512F__)
#define VL 16 /* floats per vector register */
#define MR 8  /* rows per block: 2 x MR accumulators fit the 32 registers */
#else
#define VL 8
#define MR 4
#endif
#define NR (2 * VL) /* columns per block */
#define MAX_THREADS 16

typedef float vf __attribute__((vector_size(VL * 4)));

static inline vf load_vf(const float *p) {
  vf v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void store_vf(float *p, vf v) { memcpy(p, &v, sizeof v); }

/*
 * A's layout in a product: element (i, k) of op(A) is at A[i * row + k * col]. Row-major A has
 * (row, col) = (K, 1); a transposed operand stored [K][M] has (1, M) and is read in place.
 */
struct a_layout {
  size_t row, col;
};

/*
 * C[0..R)[0..NR) = A[0..R)[0..K) B[0..K)[0..NR), for R <= MR rows. Always inlined with a
 * constant R, so that the accumulators stay in registers.
 */
static inline __attribute__((always_inline)) void block_rows(int R, int K, const float *A,
                                                             struct a_layout a, const float *B,
                                                             int ldb, float *C, int ldc) {
  vf acc0[MR], acc1[MR];
  for (int i = 0; i < R; i++) {
    acc0[i] = (vf){0};
    acc1[i] = (vf){0};
  }
  for (int k = 0; k < K; k++) {
    vf b0 = load_vf(B + (size_t)k * ldb);
    vf b1 = load_vf(B + (size_t)k * ldb + VL);
    const float *a_k = A + (size_t)k * a.col;
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
      float x = a_k[(size_t)i * a.row];
      acc0[i] += x * b0;
      acc1[i] += x * b1;
    }
  }
  for (int i = 0; i < R; i++) {
    store_vf(C + (size_t)i * ldc, acc0[i]);
    store_vf(C + (size_t)i * ldc + VL, acc1[i]);
  }
}

/* block_rows for any 1 <= rows <= MR. */
static void block(int rows, int K, const float *A, struct a_layout a, const float *B, int ldb,
                  float *C, int ldc) {
  switch (rows) {
#if MR == 8
    case 8: block_rows(8, K, A, a, B, ldb, C, ldc); break;
    case 7: block_rows(7, K, A, a, B, ldb, C, ldc); break;
    case 6: block_rows(6, K, A, a, B, ldb, C, ldc); break;
    case 5: block_rows(5, K, A, a, B, ldb, C, ldc); break;
#endif
    case 4: block_rows(4, K, A, a, B, ldb, C, ldc); break;
    case 3: block_rows(3, K, A, a, B, ldb, C, ldc); break;
    case 2: block_rows(2, K, A, a, B, ldb, C, ldc); break;
    default: block_rows(1, K, A, a, B, ldb, C, ldc); break;
  }
}

/* The same product for the last columns (fewer than NR), one element at a time. */
static void block_edge(int rows, int cols, int K, const float *A, struct a_layout a,
                       const float *B, int ldb, float *C, int ldc) {
  for (int i = 0; i < rows; i++) {
    for (int j = 0; j < cols; j++) {
      float sum = 0;
      for (int k = 0; k < K; k++) sum += A[i * a.row + k * a.col] * B[(size_t)k * ldb + j];
      C[(size_t)i * ldc + j] = sum;
    }
  }
}

/* NR columns of C [M][ldc] = op(A) B, from the NR columns at B (rows ldb apart), MR rows at a
 * time. */
static void column_block(int M, int K, const float *A, struct a_layout a, const float *B, int ldb,
                         float *C, int ldc) {
  for (int m = 0; m < M; m += MR) {
    int rows = M - m < MR ? M - m : MR;
    block(rows, K, A + m * a.row, a, B, ldb, C + (size_t)m * ldc, ldc);
  }
}

/* Columns [n0, n1) of C [M][N] = op(A) B [K][N]; n0 is a multiple of NR. */
static void product_columns(int M, int n0, int n1, int K, const float *A, struct a_layout a,
                            const float *B, int N, float *C) {
  int full_end = n0 + (n1 - n0) / NR * NR;
  for (int n = n0; n < full_end; n += NR) column_block(M, K, A, a, B + n, N, C + n, N);
  if (full_end < n1) block_edge(M, n1 - full_end, K, A, a, B + full_end, N, C + full_end, N);
}

/*
 * A small pool: the calling thread takes part 0 of a product and workers 1..T-1 the others.
 * Each worker has a semaphore that the caller posts once per job it takes part in; a worker
 * polls it for a while between jobs (an LSTM's products come back to back), then sleeps on it.
 * Semaphores rather than a condition variable: glibc before 2.39 can hang in
 * pthread_cond_broadcast (bug 25847), which happened here.
 */
#if defined(__APPLE__)
#include <dispatch/dispatch.h>
typedef dispatch_semaphore_t semaphore;
static void sem_setup(semaphore *s) { *s = dispatch_semaphore_create(0); }
static void sem_post_one(semaphore *s) { dispatch_semaphore_signal(*s); }
static int sem_try(semaphore *s) { return dispatch_semaphore_wait(*s, DISPATCH_TIME_NOW) == 0; }
static void sem_wait_one(semaphore *s) { dispatch_semaphore_wait(*s, DISPATCH_TIME_FOREVER); }
#else
#include <semaphore.h>
typedef sem_t semaphore;
static void sem_setup(semaphore *s) { sem_init(s, 0, 0); }
static void sem_post_one(semaphore *s) { sem_post(s); }
static int sem_try(semaphore *s) { return sem_trywait(s) == 0; }
static void sem_wait_one(semaphore *s) {
  while (sem_wait(s) != 0) {
  }
}
#endif

/* A job: run(job, part) does part `part` of `parts`. */
struct job {
  void (*run)(const struct job *job, int part);
  int parts;
  int M, N, K;           /* product: C[M][N] = A[M][K] B[K][N] */
  const float *A, *B;
  float *C;
  int heads, len, cap, hd; /* attention: q [heads][hd], k and v [heads][cap][hd] */
  const float *q, *k, *v;
  float *y;
  /* batched products: `batch` products C = op(A) op(B), op transposing where asked */
  int batch, trans_a, trans_b;
  /* layer norm over M rows of K: inputs, and outputs (xhat and rstd are saved forward) */
  const float *ln_x, *ln_gain, *ln_bias, *ln_dy, *ln_xhat_saved, *ln_rstd_saved;
  float *ln_y, *ln_xhat, *ln_rstd, *ln_dx, *ln_dgain, *ln_dbias;
  /* attention heads: batch, len (time), heads, hd as above; forward reads A (qkv) and writes
   * heads_q/k/v, the gradient reads q, k, v (dq, dk, dv) and writes y (dqkv) */
  const float *rope_cos, *rope_sin;
  float scale;
  float *heads_q, *heads_k, *heads_v;
  int heads_grad;
};

static struct job current;
static semaphore start[MAX_THREADS];
static atomic_int remaining;   /* worker parts of the current job not yet finished */
static int worker_count;       /* started workers */
static int thread_count = 1;   /* threads per job */
/* One job at a time uses the pool; a caller that finds it busy works alone. */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

/* Runs `job` split into at most `units` parts, over the pool when it is free. */
static void run_job(struct job job, int units) {
  int parts = thread_count < units ? thread_count : units;
  if (parts <= 1 || pthread_mutex_trylock(&pool_lock) != 0) {
    job.parts = 1;
    job.run(&job, 0);
    return;
  }
  job.parts = parts;
  current = job;
  atomic_store_explicit(&remaining, parts - 1, memory_order_release);
  for (int part = 1; part < parts; part++) sem_post_one(&start[part]);
  current.run(&current, 0);
  while (atomic_load_explicit(&remaining, memory_order_acquire) > 0) {
  }
  pthread_mutex_unlock(&pool_lock);
}

static void *worker_main(void *arg) {
  int part = (int)(size_t)arg;
  for (;;) {
    int posted = 0;
    for (int spin = 0; spin < 20000 && !posted; spin++) posted = sem_try(&start[part]);
    if (!posted) sem_wait_one(&start[part]);
    current.run(&current, part);
    atomic_fetch_sub_explicit(&remaining, 1, memory_order_acq_rel);
  }
  return NULL;
}

/* Threads per product (1..16); starts the workers it needs. Returns the count in use. */
int hrl_set_threads(int threads) {
  if (threads < 1) threads = 1;
  if (threads > MAX_THREADS) threads = MAX_THREADS;
  pthread_mutex_lock(&pool_lock);
  while (worker_count < threads - 1) {
    int part = worker_count + 1;
    pthread_t thread;
    sem_setup(&start[part]);
    if (pthread_create(&thread, NULL, worker_main, (void *)(size_t)part) != 0) break;
    pthread_detach(thread);
    worker_count++;
  }
  thread_count = threads < worker_count + 1 ? threads : worker_count + 1;
  int in_use = thread_count;
  pthread_mutex_unlock(&pool_lock);
  return in_use;
}

/*
 * 1 when the CPU has the AVX-512 subsets that OpenBLAS's SkylakeX kernels use (F, BW, DQ, VL),
 * else 0: how wasm-openblas picks OpenBLAS's kernels where /proc/cpuinfo cannot be read.
 */
int hrl_cpu_has_avx512(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
  return 0;
#endif
}

/* The widest vector, in floats, and the rows per block: what -march=native gave. */
int hrl_vector_floats(void) { return VL; }

/* Part `part` of a product: a share of C's column blocks. */
static void product_part(const struct job *job, int part) {
  int blocks = (job->N + NR - 1) / NR;
  int first = blocks * part / job->parts;
  int last = blocks * (part + 1) / job->parts;
  int n0 = first * NR;
  int n1 = last * NR < job->N ? last * NR : job->N;
  struct a_layout a = {.row = (size_t)job->K, .col = 1};
  if (n0 < n1) product_columns(job->M, n0, n1, job->K, job->A, a, job->B, job->N, job->C);
}

/* Part `part` of a product with B in panels (hrl_pack_panels): a share of the panels. */
static void packed_part(const struct job *job, int part) {
  int panels = job->N / NR;
  int first = panels * part / job->parts, last = panels * (part + 1) / job->parts;
  struct a_layout a = {.row = (size_t)job->K, .col = 1};
  for (int p = first; p < last; p++) {
    const float *panel = job->B + (size_t)p * job->K * NR;
    column_block(job->M, job->K, job->A, a, panel, NR, job->C + (size_t)p * NR, job->N);
  }
}

/* The columns per panel of hrl_pack_panels (N must be a multiple of it). */
int hrl_panel_columns(void) { return NR; }

/* P = B [K][N] in panels of NR columns, [N / NR][K][NR]: each panel one contiguous stream. */
void hrl_pack_panels(int K, int N, const float *B, float *P) {
  for (int n = 0; n < N; n += NR) {
    for (int k = 0; k < K; k++) {
      memcpy(P + (size_t)n * K + (size_t)k * NR, B + (size_t)k * N + n, NR * sizeof(float));
    }
  }
}

/* C[M][N] = A[M][K] B[K][N] with B packed by hrl_pack_panels; the same sums as hrl_sgemm_small. */
void hrl_sgemm_packed(int M, int N, int K, const float *A, const float *P, float *C) {
  if (M <= 0 || N <= 0) return;
  struct job job = {.run = packed_part, .M = M, .N = N, .K = K, .A = A, .B = P, .C = C};
  run_job(job, N / NR);
}

/* C[M][N] = A[M][K] B[K][N], all row-major and dense. */
void hrl_sgemm_small(int M, int N, int K, const float *A, const float *B, float *C) {
  if (M <= 0 || N <= 0) return;
  struct job job = {.run = product_part, .M = M, .N = N, .K = K, .A = A, .B = B, .C = C};
  run_job(job, (N + NR - 1) / NR);
}

/* Part `part` of an attention: a share of the heads. */
static inline vf exp_vf(vf x);
static inline float exp_scalar(float x);

/* The sum of a vector's lanes, halving the vector at each step. */
static inline float sum_lanes(vf v) {
#if VL == 16
  typedef float half __attribute__((vector_size(32)));
  half lo, hi;
  memcpy(&lo, &v, sizeof lo);
  memcpy(&hi, (char *)&v + sizeof lo, sizeof hi);
  half s8 = lo + hi;
#else
  vf s8 = v;
#endif
  typedef float quarter __attribute__((vector_size(16)));
  quarter a, b;
  memcpy(&a, &s8, sizeof a);
  memcpy(&b, (char *)&s8 + sizeof a, sizeof b);
  quarter s4 = a + b;
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

static void attention_part(const struct job *job, int part) {
  int first = job->heads * part / job->parts;
  int last = job->heads * (part + 1) / job->parts;
  int len = job->len, hd = job->hd;
  int vectors = hd / VL; /* whole vectors per head row; the rest one float at a time */
  float scores[len];
  float acc[hd];
  for (int h = first; h < last; h++) {
    const float *q = job->q + (size_t)h * hd;
    const float *k = job->k + (size_t)h * job->cap * hd;
    const float *v = job->v + (size_t)h * job->cap * hd;
    float top = -INFINITY;
    for (int j = 0; j < len; j++) {
      const float *kj = k + (size_t)j * hd;
      vf partial = (vf){0};
      for (int i = 0; i < vectors; i++) partial += load_vf(q + i * VL) * load_vf(kj + i * VL);
      float dot = sum_lanes(partial);
      for (int d = vectors * VL; d < hd; d++) dot += q[d] * kj[d];
      scores[j] = dot;
      if (dot > top) top = dot;
    }
    float sum = 0;
    int j = 0;
    vf sums = (vf){0};
    for (; j + VL <= len; j += VL) {
      vf e = exp_vf(load_vf(scores + j) - top);
      store_vf(scores + j, e);
      sums += e;
    }
    sum = sum_lanes(sums);
    for (; j < len; j++) {
      scores[j] = exp_scalar(scores[j] - top);
      sum += scores[j];
    }
    for (int d = 0; d < hd; d++) acc[d] = 0;
    for (int j = 0; j < len; j++) {
      float w = scores[j] / sum;
      const float *vj = v + (size_t)j * hd;
      for (int i = 0; i < vectors; i++) {
        store_vf(acc + i * VL, load_vf(acc + i * VL) + w * load_vf(vj + i * VL));
      }
      for (int d = vectors * VL; d < hd; d++) acc[d] += w * vj[d];
    }
    memcpy(job->y + (size_t)h * hd, acc, sizeof(float) * hd);
  }
}

/*
 * y[h] = softmax_j(q[h] . k[h][j]) v[h][j] summed over positions j < len, for each of `heads`
 * rows: q and y [heads][hd], k and v [heads][cap][hd] (rows len..cap-1 are not read).
 */
void hrl_decode_attention(int heads, int len, int cap, int hd, const float *q, const float *k,
                          const float *v, float *y) {
  if (heads <= 0 || hd <= 0) return;
  if (len <= 0) {
    memset(y, 0, sizeof(float) * heads * hd);
    return;
  }
  struct job job = {.run = attention_part, .heads = heads, .len = len, .cap = cap, .hd = hd,
                    .q = q, .k = k, .v = v, .y = y};
  run_job(job, heads);
}

/*
 * The LSTM cell loops of lstm_kernels.ts, operation for operation: every product and sum is
 * one float32 operation, never contracted into a fused multiply-add, so the results equal the
 * TypeScript loops (and the composite ops) bit for bit. Null pointers stand for zeros.
 */
#if defined(__clang__)
#pragma clang fp contract(off)
#define NO_FMA
#else
#define NO_FMA __attribute__((optimize("fp-contract=off")))
#endif

/* zs[b][col] = zh + xp (or xp), doubled on the g columns [2H, 3H). */
NO_FMA void hrl_lstm_gates_in(int batch, int H, const float *xp, const float *zh, float *zs) {
  int fourH = 4 * H;
  for (int b = 0; b < batch; b++) {
    for (int col = 0; col < fourH; col++) {
      size_t k = (size_t)b * fourH + col;
      float z = zh == NULL ? xp[k] : zh[k] + xp[k];
      zs[k] = col >= 2 * H && col < 3 * H ? 2 * z : z;
    }
  }
}

/* From the gates' sigmoids s: activations a (g = 2s - 1), c' = f c + i g, and 2 c'. */
NO_FMA void hrl_lstm_combine(int batch, int H, const float *s, const float *c_prev, float *a,
                             float *c, float *c2) {
  int fourH = 4 * H;
  for (int b = 0; b < batch; b++) {
    for (int j = 0; j < H; j++) {
      size_t k = (size_t)b * fourH + j, u = (size_t)b * H + j;
      float i = s[k], f = s[k + H], g = 2 * s[k + 2 * H] - 1, o = s[k + 3 * H];
      a[k] = i;
      a[k + H] = f;
      a[k + 2 * H] = g;
      a[k + 3 * H] = o;
      float ig = i * g;
      float c_next;
      if (c_prev == NULL) {
        c_next = ig;
      } else {
        float fc = f * c_prev[u];
        c_next = fc + ig;
      }
      c[u] = c_next;
      c2[u] = 2 * c_next;
    }
  }
}

/* From the sigmoid s of 2 c': tc = tanh c' = 2 s - 1 and h = o tc. */
NO_FMA void hrl_lstm_output(int batch, int H, const float *s, const float *a, float *h,
                            float *tc) {
  for (int b = 0; b < batch; b++) {
    for (int j = 0; j < H; j++) {
      size_t u = (size_t)b * H + j;
      float t = 2 * s[u] - 1;
      tc[u] = t;
      h[u] = a[(size_t)b * 4 * H + 3 * H + j] * t;
    }
  }
}

/* R of one gate: x (1 - act)(act + m). */
static inline NO_FMA float gate_r(float x, float act, float m) {
  float one_minus = 1 - act;
  float plus = act + m;
  float both = one_minus * plus;
  return x * both;
}

/*
 * The backward step t: dy, c and tc [T][B][H] and a [T][B][4H] are every step's; dh_rec and
 * dc_next [B][H] (null at the last step). Writes dz [B][4H] and dc [B][H] (for step t - 1).
 */
NO_FMA void hrl_lstm_backward(int batch, int H, int t, const float *dy, const float *a,
                              const float *c, const float *tcs, const float *dh_rec,
                              const float *dc_next, float *dz, float *dc_out) {
  int fourH = 4 * H;
  size_t state = (size_t)t * batch * H, previous = (size_t)(t - 1) * batch * H;
  size_t gates = (size_t)t * batch * fourH;
  for (int b = 0; b < batch; b++) {
    for (int j = 0; j < H; j++) {
      size_t u = (size_t)b * H + j, k = gates + (size_t)b * fourH + j;
      float i = a[k], f = a[k + H], g = a[k + 2 * H], o = a[k + 3 * H];
      float tc = tcs[state + u];
      float c_prev = t == 0 ? 0 : c[previous + u];
      float tc2 = tc * tc;
      float one_minus = 1 - tc2;
      float p = o * one_minus;
      float dh = dh_rec == NULL ? dy[state + u] : dy[state + u] + dh_rec[u];
      float dc_local = dh * p;
      float dcv = dc_next == NULL ? dc_local : dc_next[u] + dc_local;
      size_t row = (size_t)b * fourH + j;
      dz[row] = dcv * gate_r(g, i, 0);
      dz[row + H] = dcv * gate_r(c_prev, f, 0);
      dz[row + 2 * H] = dcv * gate_r(i, g, 1);
      dz[row + 3 * H] = dh * gate_r(tc, o, 0);
      dc_out[u] = dcv * f;
    }
  }
}

/* ---- GELU: y = x σ(1.702 x), with a vectorised exp. ---- */

typedef int vi __attribute__((vector_size(VL * 4)));

/*
 * e^x for each lane: x = n ln2 + r with |r| <= ln2/2, e^r by its degree-6 Taylor polynomial
 * (relative error below 2e-7), times 2^n built in the exponent bits. Lanes are clamped to
 * [-87.3, 88.7], where e^x stays a normal float.
 */
static inline vf exp_vf(vf x) {
  const vf hi = (vf){0} + 88.7f, lo = (vf){0} + -87.3f;
  vi above = x > hi, below = x < lo;
  x = (vf)(((vi)hi & above) | ((vi)x & ~above));
  x = (vf)(((vi)lo & below) | ((vi)x & ~below));
  const vf magic = (vf){0} + 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
  vf n = (x * 1.44269504088896341f + magic) - magic;
  vf r = x - n * 0.693359375f;  /* ln 2, split in two for accuracy */
  r = r - n * -2.12194440e-4f;
  vf p = (vf){0} + (1.0f / 720);
  p = p * r + (1.0f / 120);
  p = p * r + (1.0f / 24);
  p = p * r + (1.0f / 6);
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
  vf scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

static inline vf sigmoid_vf(vf x) { return 1.0f / (1.0f + exp_vf(-x)); }

static float sigmoid_scalar(float x) {
  vf v = (vf){0} + x;
  return sigmoid_vf(v)[0];
}

/* Part `part` of a GELU forward (q = x, y = y) or backward (q = x, k = dy, y = dx). */
static void gelu_part(const struct job *job, int part) {
  size_t n = (size_t)job->N;
  size_t first = n * part / job->parts / VL * VL;
  size_t last = part + 1 == job->parts ? n : n * (part + 1) / job->parts / VL * VL;
  const float *x = job->q, *dy = job->k;
  float *out = job->y;
  size_t i = first;
  for (; i + VL <= last; i += VL) {
    vf xv = load_vf(x + i);
    vf s = sigmoid_vf(xv * 1.702f);
    if (dy == NULL) {
      store_vf(out + i, xv * s);
    } else {
      vf d = s + 1.702f * xv * s * (1.0f - s);
      store_vf(out + i, load_vf(dy + i) * d);
    }
  }
  for (; i < last; i++) {
    float s = sigmoid_scalar(1.702f * x[i]);
    out[i] = dy == NULL ? x[i] * s : dy[i] * (s + 1.702f * x[i] * s * (1.0f - s));
  }
}

/* y = x σ(1.702 x) for n floats. */
void hrl_gelu(int n, const float *x, float *y) {
  if (n <= 0) return;
  struct job job = {.run = gelu_part, .N = n, .q = x, .k = NULL, .y = y};
  run_job(job, n >= 65536 ? MAX_THREADS : 1);
}

/* dx = dy (σ(1.702 x) + 1.702 x σ(1.702 x)(1 - σ(1.702 x))) for n floats. */
void hrl_gelu_grad(int n, const float *x, const float *dy, float *dx) {
  if (n <= 0) return;
  struct job job = {.run = gelu_part, .N = n, .q = x, .k = dy, .y = dx};
  run_job(job, n >= 65536 ? MAX_THREADS : 1);
}

/* ---- Causal softmax over rows of T scores; row r is position r % T. ---- */

static inline float exp_scalar(float x) {
  vf v = (vf){0} + x;
  return exp_vf(v)[0];
}

/* Part `part` of a causal softmax (k = NULL: q = scores, y = probabilities) or of its
 * gradient (q = probabilities, k = dy, y = dx). N rows of `len` = T floats. */
static void causal_softmax_part(const struct job *job, int part) {
  int T = job->len;
  size_t first = (size_t)job->N * part / job->parts;
  size_t last = (size_t)job->N * (part + 1) / job->parts;
  for (size_t r = first; r < last; r++) {
    int keep = (int)(r % T) + 1; /* positions 0..r%T */
    const float *in = job->q + r * T;
    float *out = job->y + r * T;
    int j;
    if (job->k == NULL) {
      float top = -INFINITY;
      for (j = 0; j < keep; j++) top = in[j] > top ? in[j] : top;
      float sum = 0;
      vf sums = (vf){0};
      for (j = 0; j + VL <= keep; j += VL) {
        vf e = exp_vf(load_vf(in + j) - top);
        store_vf(out + j, e);
        sums += e;
      }
      for (int lane = 0; lane < VL; lane++) sum += sums[lane];
      for (; j < keep; j++) {
        out[j] = exp_scalar(in[j] - top);
        sum += out[j];
      }
      float inv = 1.0f / sum;
      for (j = 0; j < keep; j++) out[j] *= inv;
    } else {
      const float *dy = job->k + r * T;
      float dot = 0;
      for (j = 0; j < keep; j++) dot += dy[j] * in[j];
      for (j = 0; j < keep; j++) out[j] = in[j] * (dy[j] - dot);
    }
    for (j = keep; j < T; j++) out[j] = 0;
  }
}

/* y = softmax of each row of `rows` x T scores over the positions up to the row's own. */
void hrl_causal_softmax(int rows, int T, const float *scores, float *y) {
  if (rows <= 0 || T <= 0) return;
  struct job job = {.run = causal_softmax_part, .N = rows, .len = T, .q = scores, .k = NULL,
                    .y = y};
  run_job(job, rows >= 256 ? MAX_THREADS : 1);
}

/* dx = y (dy - sum(dy y)) for each row (zero after the row's position). */
void hrl_causal_softmax_grad(int rows, int T, const float *y, const float *dy, float *dx) {
  if (rows <= 0 || T <= 0) return;
  struct job job = {.run = causal_softmax_part, .N = rows, .len = T, .q = y, .k = dy, .y = dx};
  run_job(job, rows >= 256 ? MAX_THREADS : 1);
}

/*
 * One AdamW step as optim.ts's tfjs ops compute it, operation for operation:
 *   m' = m b1 + g (1 - b1);  v' = v b2 + g² (1 - b2);
 *   w' = (keep ? w keep : w) - ((m' / c1) / (sqrt(v' / c2) + eps)) lr
 * s holds the float32 scalars b1, 1 - b1, b2, 1 - b2, c1, c2, eps, keep (the decay factor),
 * lr, and 1 when the weight decays (else 0: w is taken as it is).
 */
NO_FMA void hrl_adamw(int n, const float *s, const float *w, const float *m, const float *v,
                      const float *g, float *w_out, float *m_out, float *v_out) {
  const float b1 = s[0], ob1 = s[1], b2 = s[2], ob2 = s[3], c1 = s[4], c2 = s[5], eps = s[6];
  const float keep = s[7], lr = s[8];
  const int decays = s[9] != 0;
  for (int i = 0; i < n; i++) {
    float m_decayed = m[i] * b1;
    float g_part = g[i] * ob1;
    float m_next = m_decayed + g_part;
    float v_decayed = v[i] * b2;
    float g_square = g[i] * g[i];
    float g2_part = g_square * ob2;
    float v_next = v_decayed + g2_part;
    float m_hat = m_next / c1;
    float v_hat = v_next / c2;
    float root = sqrtf(v_hat);
    float denominator = root + eps;
    float update = m_hat / denominator;
    float weight = decays ? w[i] * keep : w[i];
    float step = update * lr;
    w_out[i] = weight - step;
    m_out[i] = m_next;
    v_out[i] = v_next;
  }
}

/* ---- Layer normalisation over rows of n floats. ---- */

static void layer_norm_part(const struct job *job, int part) {
  int n = job->K;
  size_t first = (size_t)job->M * part / job->parts;
  size_t last = (size_t)job->M * (part + 1) / job->parts;
  for (size_t r = first; r < last; r++) {
    const float *x = job->ln_x + r * n;
    float *y = job->ln_y + r * n, *xhat = job->ln_xhat + r * n;
    float sum = 0;
    for (int j = 0; j < n; j++) sum += x[j];
    float mean = sum / n;
    float squares = 0;
    for (int j = 0; j < n; j++) {
      float c = x[j] - mean;
      xhat[j] = c;
      squares += c * c;
    }
    float rstd = 1.0f / sqrtf(squares / n + 1e-5f);
    job->ln_rstd[r] = rstd;
    for (int j = 0; j < n; j++) {
      xhat[j] *= rstd;
      y[j] = xhat[j] * job->ln_gain[j] + job->ln_bias[j];
    }
  }
}

/* dx for rows [first, last): rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = dy gain. */
static void layer_norm_grad_part(const struct job *job, int part) {
  int n = job->K;
  size_t first = (size_t)job->M * part / job->parts;
  size_t last = (size_t)job->M * (part + 1) / job->parts;
  const float *gain = job->ln_gain;
  for (size_t r = first; r < last; r++) {
    const float *dy = job->ln_dy + r * n, *xhat = job->ln_xhat_saved + r * n;
    float *dx = job->ln_dx + r * n;
    float s1 = 0, s2 = 0;
    for (int j = 0; j < n; j++) {
      float d = dy[j] * gain[j];
      s1 += d;
      s2 += d * xhat[j];
    }
    float m1 = s1 / n, m2 = s2 / n, rstd = job->ln_rstd_saved[r];
    for (int j = 0; j < n; j++) dx[j] = rstd * (dy[j] * gain[j] - m1 - xhat[j] * m2);
  }
}

/* dgain = Σ dy xhat and dbias = Σ dy over the rows, in row order, for columns [first, last). */
static void layer_norm_sums_part(const struct job *job, int part) {
  int n = job->K;
  int first = n * part / job->parts, last = n * (part + 1) / job->parts;
  for (int j = first; j < last; j++) {
    job->ln_dgain[j] = 0;
    job->ln_dbias[j] = 0;
  }
  for (size_t r = 0; r < (size_t)job->M; r++) {
    const float *dy = job->ln_dy + r * n, *xhat = job->ln_xhat_saved + r * n;
    for (int j = first; j < last; j++) {
      job->ln_dgain[j] += dy[j] * xhat[j];
      job->ln_dbias[j] += dy[j];
    }
  }
}

/* y = (x - mean) rstd gain + bias per row of n; also writes xhat [rows][n] and rstd [rows]. */
void hrl_layer_norm(int rows, int n, const float *x, const float *gain, const float *bias,
                    float *y, float *xhat, float *rstd) {
  if (rows <= 0 || n <= 0) return;
  struct job job = {.run = layer_norm_part, .M = rows, .K = n, .ln_x = x, .ln_gain = gain,
                    .ln_bias = bias, .ln_y = y, .ln_xhat = xhat, .ln_rstd = rstd};
  run_job(job, rows >= 64 ? MAX_THREADS : 1);
}

/* dx [rows][n], dgain and dbias [n] of hrl_layer_norm from dy and its saved xhat and rstd. */
void hrl_layer_norm_grad(int rows, int n, const float *dy, const float *gain, const float *xhat,
                         const float *rstd, float *dx, float *dgain, float *dbias) {
  if (rows <= 0 || n <= 0) return;
  struct job job = {.run = layer_norm_grad_part, .M = rows, .K = n, .ln_dy = dy,
                    .ln_gain = gain, .ln_xhat_saved = xhat, .ln_rstd_saved = rstd, .ln_dx = dx};
  run_job(job, rows >= 64 ? MAX_THREADS : 1);
  struct job sums = {.run = layer_norm_sums_part, .M = rows, .K = n, .ln_dy = dy,
                     .ln_xhat_saved = xhat, .ln_dgain = dgain, .ln_dbias = dbias};
  run_job(sums, n >= 64 ? MAX_THREADS : 1);
}

/* ---- A batch of small products. ---- */

#include <stdlib.h>

/*
 * dst [cols][rows] = src [rows][cols] transposed, in 16 x 16 tiles so that both sides are read
 * and written a cache line at a time (element by element, each write of a 256 x 256 transpose
 * missed the cache).
 */
static void transpose(const float *src, int rows, int cols, float *dst) {
  enum { TILE = 16 };
  for (int r0 = 0; r0 < rows; r0 += TILE) {
    int r1 = r0 + TILE < rows ? r0 + TILE : rows;
    for (int c0 = 0; c0 < cols; c0 += TILE) {
      int c1 = c0 + TILE < cols ? c0 + TILE : cols;
      for (int c = c0; c < c1; c++) {
        for (int r = r0; r < r1; r++) dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
      }
    }
  }
}

/* A thread's scratch of at least n floats (kept for its next job; NULL when out of memory). */
static float *scratch(float **buffer, size_t *capacity, size_t n) {
  if (*capacity < n) {
    free(*buffer);
    *buffer = malloc(n * sizeof(float));
    *capacity = *buffer == NULL ? 0 : n;
  }
  return *buffer;
}

static atomic_int batched_failed; /* a thread found no scratch memory */

/* src [rows][cols] transposed into a thread's scratch; NULL (and batched_failed set) when
 * there is no memory for it. */
static const float *transposed(const float *src, int rows, int cols, float **buffer,
                               size_t *capacity) {
  float *t = scratch(buffer, capacity, (size_t)rows * cols);
  if (t == NULL) {
    atomic_store(&batched_failed, 1);
    return NULL;
  }
  transpose(src, rows, cols, t);
  return t;
}

static void batched_part(const struct job *job, int part) {
  static _Thread_local float *b_buffer;
  static _Thread_local size_t b_capacity;
  int M = job->M, N = job->N, K = job->K;
  int first = job->batch * part / job->parts, last = job->batch * (part + 1) / job->parts;
  for (int item = first; item < last; item++) {
    const float *a = job->A + (size_t)item * M * K;
    const float *b = job->B + (size_t)item * K * N;
    float *c = job->C + (size_t)item * M * N;
    if (job->trans_b && (b = transposed(b, N, K, &b_buffer, &b_capacity)) == NULL) return;
    // A transposed (stored [K][M]) is read in place.
    struct a_layout layout = job->trans_a ? (struct a_layout){.row = 1, .col = (size_t)M}
                                          : (struct a_layout){.row = (size_t)K, .col = 1};
    product_columns(M, 0, N, K, a, layout, b, N, c);
  }
}

/*
 * C[i] = op(A[i]) op(B[i]) for i < batch: op(A) [M][K] (A stored [K][M] when trans_a), op(B)
 * [K][N] (B stored [N][K] when trans_b), C [M][N]; all dense, row-major, one after another.
 * Returns 0, or -1 when scratch memory could not be had (C is then incomplete).
 */
int hrl_sgemm_batched(int batch, int M, int N, int K, int trans_a, int trans_b, const float *A,
                      const float *B, float *C) {
  if (batch <= 0 || M <= 0 || N <= 0) return 0;
  struct job job = {.run = batched_part, .batch = batch, .M = M, .N = N, .K = K,
                    .trans_a = trans_a, .trans_b = trans_b, .A = A, .B = B, .C = C};
  atomic_store(&batched_failed, 0);
  run_job(job, batch);
  return atomic_load(&batched_failed) ? -1 : 0;
}

/*
 * An attention's heads from its q, k, v projection. qkv is [B*T][3][NH][hd] (the fused
 * projection's rows); q, k and v are [B][NH][T][hd]. q and k are rotated by their position's
 * angles (rotary embedding: x cos + rotate_half(x) sin, rotate_half([x1, x2]) = [-x2, x1], with
 * cos and sin [T][hd]) and q is then multiplied by `scale`; v is copied. The same float32
 * operations as the tfjs ops they replace (a split, the rotation, the scaling and three
 * transposes), no fused multiply-adds: the same bits. The gradient runs the chain back.
 */
NO_FMA static void rotate_row(int hd, const float *x, const float *cs, const float *sn,
                              float scale, float *y) {
  int half = hd / 2;
  for (int j = 0; j < hd; j++) {
    float r = j < half ? -x[j + half] : x[j - half];
    float a = x[j] * cs[j];
    float b = r * sn[j];
    float z = a + b;
    y[j] = z * scale; /* k's scale is 1: z * 1 is z, bit for bit */
  }
}

/* dx of rotate_row from dy (then x cos + rotate_half(x) sin's gradient is dy cos +
 * rotate_half^T(dy sin), rotate_half^T([g1, g2]) = [g2, -g1]). */
NO_FMA static void rotate_row_grad(int hd, const float *dy, const float *cs, const float *sn,
                                   float scale, float *dx) {
  int half = hd / 2;
  float g[hd];
  for (int j = 0; j < hd; j++) g[j] = dy[j] * scale;
  for (int j = 0; j < hd; j++) {
    float a = g[j] * cs[j];
    float b = j < half ? g[j + half] * sn[j + half] : -(g[j - half] * sn[j - half]);
    dx[j] = a + b;
  }
}

/* Part `part` of the heads (forward) or their gradient: a share of the B*T rows. */
static void heads_part(const struct job *job, int part) {
  int T = job->len, NH = job->heads, hd = job->hd, D = NH * hd;
  int rows = job->batch * T;
  int first = rows * part / job->parts, last = rows * (part + 1) / job->parts;
  for (int row = first; row < last; row++) {
    int b = row / T, t = row % T;
    const float *cs = job->rope_cos + (size_t)t * hd, *sn = job->rope_sin + (size_t)t * hd;
    for (int h = 0; h < NH; h++) {
      size_t head = (((size_t)b * NH + h) * T + t) * hd; /* in [B][NH][T][hd] */
      size_t packed = (size_t)row * 3 * D + (size_t)h * hd; /* q's in [B*T][3][NH][hd] */
      if (job->heads_grad) {
        float *dqkv = job->y + packed;
        if (job->q) rotate_row_grad(hd, job->q + head, cs, sn, job->scale, dqkv);
        else memset(dqkv, 0, hd * sizeof(float));
        if (job->k) rotate_row_grad(hd, job->k + head, cs, sn, 1.0f, dqkv + D);
        else memset(dqkv + D, 0, hd * sizeof(float));
        if (job->v) memcpy(dqkv + 2 * D, job->v + head, hd * sizeof(float));
        else memset(dqkv + 2 * D, 0, hd * sizeof(float));
      } else {
        const float *src = job->A + packed;
        rotate_row(hd, src, cs, sn, job->scale, job->heads_q + head);
        rotate_row(hd, src + D, cs, sn, 1.0f, job->heads_k + head);
        memcpy(job->heads_v + head, src + 2 * D, hd * sizeof(float));
      }
    }
  }
}

void hrl_attention_heads(int batch, int time, int heads, int hd, float scale, const float *qkv,
                         const float *cos, const float *sin, float *q, float *k, float *v) {
  if (batch <= 0 || time <= 0) return;
  struct job job = {.run = heads_part, .batch = batch, .len = time, .heads = heads, .hd = hd,
                    .scale = scale, .A = qkv, .rope_cos = cos, .rope_sin = sin, .heads_q = q,
                    .heads_k = k, .heads_v = v, .heads_grad = 0};
  run_job(job, batch * time >= 64 ? batch * time : 1);
}

/* dqkv [B*T][3][NH][hd] from dq, dk, dv [B][NH][T][hd] (null: zero). */
void hrl_attention_heads_grad(int batch, int time, int heads, int hd, float scale,
                              const float *dq, const float *dk, const float *dv,
                              const float *cos, const float *sin, float *dqkv) {
  if (batch <= 0 || time <= 0) return;
  struct job job = {.run = heads_part, .batch = batch, .len = time, .heads = heads, .hd = hd,
                    .scale = scale, .q = dq, .k = dk, .v = dv, .rope_cos = cos,
                    .rope_sin = sin, .y = dqkv, .heads_grad = 1};
  run_job(job, batch * time >= 64 ? batch * time : 1);
}

/* Part `part` of hrl_add_rows: a share of the rows. */
static void add_rows_part(const struct job *job, int part) {
  int first = job->M * part / job->parts, last = job->M * (part + 1) / job->parts;
  int n = job->N;
  for (int r = first; r < last; r++) {
    float *row = job->C + (size_t)r * n;
    for (int j = 0; j < n; j++) row[j] += job->B[j];
  }
}

/* c[r][j] += bias[j] for c [rows][n], in place: a dense layer's bias after its product. */
void hrl_add_rows(int rows, int n, const float *bias, float *c) {
  if (rows <= 0 || n <= 0) return;
  struct job job = {.run = add_rows_part, .M = rows, .N = n, .B = bias, .C = c};
  run_job(job, (size_t)rows * n >= 65536 ? rows : 1);
}
