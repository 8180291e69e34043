// Scores against labels, accumulated batch by batch. Classification: argmax of the output vs a class id per sample.
// Next-token LM: labels [samples, T] hold the target of each position (the inputs shifted by one; −100 or any
// negative id = ignored, as in Hugging Face); the loss is the mean negative log-likelihood of the targets, from
// logits (log-softmax) or from probabilities when the output is already a softmax. Perplexity = e^NLL, bits per
// token = NLL / ln 2.
import { argmax } from './fidelity.js';
import { logSumExpRows } from './lse-simd.js';

export class AccuracyAccumulator {
  private correct = 0;
  private total = 0;

  add(out: Float32Array, dims: readonly number[], labels: ArrayLike<number | bigint>): void {
    const classes = dims[dims.length - 1];
    const batch = dims[0];
    if (out.length !== batch * classes) {
      throw new Error(`classification needs outputs [samples, classes]; got [${dims.join(', ')}]`);
    }
    for (let s = 0; s < batch; s++) {
      const label = Number(labels[s]);
      if (label < 0) continue;
      if (argmax(out, s * classes, classes) === label) this.correct++;
      this.total++;
    }
  }

  result(): { accuracy: number; samples: number } {
    return { accuracy: this.total ? this.correct / this.total : NaN, samples: this.total };
  }
}

export class LmAccumulator {
  private nll = 0;
  private tokens = 0;

  /**
   * out [B, T, V] (logits or probabilities); targets [B, T]. `probabilities`: the output is a softmax already.
   */
  add(out: Float32Array, dims: readonly number[], targets: ArrayLike<number | bigint>, probabilities: boolean): void {
    const V = dims[dims.length - 1];
    const positions = out.length / V;
    if (targets.length !== positions) {
      throw new Error(`LM scoring: ${targets.length} targets for ${positions} output positions`);
    }
    // The scored positions and their targets first, then log Σ e^logit over those rows (metrics/lse-simd.ts).
    const rows = new Int32Array(positions);
    const ts = new Int32Array(positions);
    let n = 0;
    for (let p = 0; p < positions; p++) {
      const t = Number(targets[p]);
      if (t < 0) continue;
      if (t >= V) throw new Error(`LM scoring: target id ${t} is outside the vocabulary (${V})`);
      rows[n] = p;
      ts[n++] = t;
    }
    if (probabilities) {
      for (let i = 0; i < n; i++) this.nll -= Math.log(Math.max(out[rows[i] * V + ts[i]], 1e-30));
    } else {
      const lse = new Float64Array(n);
      logSumExpRows(out, V, rows, n, lse);
      for (let i = 0; i < n; i++) this.nll += lse[i] - out[rows[i] * V + ts[i]];
    }
    this.tokens += n;
  }

  result(): { nll: number; perplexity: number; bitsPerToken: number; tokens: number } {
    const nll = this.tokens ? this.nll / this.tokens : NaN;
    return { nll, perplexity: Math.exp(nll), bitsPerToken: nll / Math.LN2, tokens: this.tokens };
  }
}

/** True when every row along the last axis is non-negative and sums to 1 (± 1e-3): a softmax output. */
export function looksLikeProbabilities(out: Float32Array, V: number): boolean {
  const rows = Math.min(out.length / V, 64);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let v = 0; v < V; v++) {
      const x = out[r * V + v];
      if (x < 0) return false;
      s += x;
    }
    if (Math.abs(s - 1) > 1e-3) return false;
  }
  return rows > 0;
}

/** Next-token targets from the inputs: position t predicts ids[t+1]; the last position is ignored (−1). */
export function shiftedTargets(ids: ArrayLike<number | bigint>, batch: number, T: number): Int32Array {
  const out = new Int32Array(batch * T);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < T; t++) out[b * T + t] = t + 1 < T ? Number(ids[b * T + t + 1]) : -1;
  }
  return out;
}
