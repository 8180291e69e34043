// Seeded random numbers and small float64 helpers for the math tests.
export function rng(seed: number) {
  let s = seed | 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

export function randomF32(n: number, r: () => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r();
  return a;
}

/** Activations [tokens][K] shaped like an LLM layer's input: a few channels ~20× larger than the rest. */
export function llmLikeActivations(tokens: number, K: number, seed: number): Float32Array {
  const { normal, uniform } = rng(seed);
  const scale = Float64Array.from({ length: K }, (_, k) => (k % 13 === 5 ? 20 : 0.3 + uniform()));
  // A shared low-rank component makes channels correlated, as real activations are.
  const mix = Float64Array.from({ length: 4 * K }, normal);
  const x = new Float32Array(tokens * K);
  for (let t = 0; t < tokens; t++) {
    const z = [normal(), normal(), normal(), normal()];
    for (let k = 0; k < K; k++) {
      const shared = z[0] * mix[k] + z[1] * mix[K + k] + z[2] * mix[2 * K + k] + z[3] * mix[3 * K + k];
      x[t * K + k] = scale[k] * (normal() + 0.7 * shared);
    }
  }
  return x;
}

/** H = (2/n)·XᵀX in plain float64. */
export function hessianF64(x: Float32Array, tokens: number, K: number): Float64Array {
  const h = new Float64Array(K * K);
  for (let t = 0; t < tokens; t++)
    for (let i = 0; i < K; i++) {
      const xi = x[t * K + i];
      for (let j = 0; j < K; j++) h[i * K + j] += xi * x[t * K + j];
    }
  for (let i = 0; i < h.length; i++) h[i] *= 2 / tokens;
  return h;
}

/** ‖X·(W−Ŵ)ᵀ‖_F / ‖X·Wᵀ‖_F computed from the activations directly, float64. */
export function outputErrorF64(
  x: Float32Array,
  tokens: number,
  w: ArrayLike<number>,
  wHat: ArrayLike<number>,
  N: number,
  K: number,
): number {
  let num = 0;
  let den = 0;
  for (let t = 0; t < tokens; t++)
    for (let r = 0; r < N; r++) {
      let y = 0;
      let d = 0;
      for (let k = 0; k < K; k++) {
        y += x[t * K + k] * w[r * K + k];
        d += x[t * K + k] * (w[r * K + k] - wHat[r * K + k]);
      }
      num += d * d;
      den += y * y;
    }
  return Math.sqrt(num / den);
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** C = op(A)·op(B) in float64, the obvious triple loop. */
export function matmulRef(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  m: number,
  k: number,
  n: number,
  transA = false,
  transB = false,
): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += (transA ? a[p * m + i] : a[i * k + p]) * (transB ? b[j * k + p] : b[p * n + j]);
      c[i * n + j] = s;
    }
  return c;
}

/** A random symmetric positive definite n×n matrix: X·Xᵀ + ridge·n·I. */
export function randomSpd(n: number, seed: number, ridge = 0.1): Float64Array {
  const { normal } = rng(seed);
  const x = Float64Array.from({ length: n * n }, normal);
  const a = matmulRef(x, x, n, n, n, false, true);
  for (let i = 0; i < n; i++) a[i * n + i] += ridge * n;
  return a;
}
