// Conv geometry and im2col patches in the canonical column order of readWeightMatrix: column = s·cg + ci, where s is
// the kernel position (ky·kw + kx) and ci the input channel within the group. A patch row is what one output pixel's
// filter multiplies, zero padding included, so XᵀX over patch rows is the Hessian of the Conv as a matrix product.
import type { NodeProto } from '../onnx/gen/onnx_pb.js';
import { InputError } from '../job-parts.js';

export interface ConvGeometry {
  /** Spatial rank: 1 (Conv1d) or 2 (Conv2d). Treated as 2-D with height 1 for rank 1. */
  spatial: 1 | 2;
  group: number;
  /** Input channels per group. */
  cg: number;
  kh: number;
  kw: number;
  strideH: number;
  strideW: number;
  dilH: number;
  dilW: number;
  /** Explicit pads (top, left, bottom, right); auto_pad SAME_* resolved per input size in `outputSize`. */
  pads: [number, number, number, number];
  autoPad: 'NOTSET' | 'VALID' | 'SAME_UPPER' | 'SAME_LOWER';
}

function ints(n: NodeProto, name: string): number[] | undefined {
  const a = n.attribute.find((x) => x.name === name);
  return a ? a.ints.map(Number) : undefined;
}

/** Reads Conv attributes. `weightShape` is [O, cg, kh(, kw)]. Throws InputError for Conv3d and wider. */
export function convGeometry(node: NodeProto, weightShape: number[]): ConvGeometry {
  const spatialRank = weightShape.length - 2;
  if (spatialRank !== 1 && spatialRank !== 2) {
    throw new InputError(
      'unsupported-conv',
      `Conv with ${spatialRank} spatial dims: calibration statistics support Conv1d and Conv2d only`,
    );
  }
  const spatial = spatialRank as 1 | 2;
  const groupAttr = node.attribute.find((x) => x.name === 'group');
  const group = groupAttr ? Number(groupAttr.i) : 1;
  const strides = ints(node, 'strides') ?? new Array(spatial).fill(1);
  const dil = ints(node, 'dilations') ?? new Array(spatial).fill(1);
  const p = ints(node, 'pads') ?? new Array(2 * spatial).fill(0);
  const ap = node.attribute.find((x) => x.name === 'auto_pad');
  const autoPad = (ap ? new TextDecoder().decode(ap.s) : 'NOTSET') as ConvGeometry['autoPad'];
  const [kh, kw] = spatial === 2 ? [weightShape[2], weightShape[3]] : [1, weightShape[2]];
  return {
    spatial,
    group,
    cg: weightShape[1],
    kh,
    kw,
    strideH: spatial === 2 ? strides[0] : 1,
    strideW: spatial === 2 ? strides[1] : strides[0],
    dilH: spatial === 2 ? dil[0] : 1,
    dilW: spatial === 2 ? dil[1] : dil[0],
    pads: spatial === 2 ? [p[0], p[1], p[2], p[3]] : [0, p[0], 0, p[1]],
    autoPad: autoPad || 'NOTSET',
  };
}

export function geometryKey(g: ConvGeometry): string {
  return [g.group, g.cg, g.kh, g.kw, g.strideH, g.strideW, g.dilH, g.dilW, ...g.pads, g.autoPad].join(',');
}

function samePads(inSize: number, k: number, stride: number, dil: number, upper: boolean): [number, number, number] {
  const out = Math.ceil(inSize / stride);
  const total = Math.max(0, (out - 1) * stride + (k - 1) * dil + 1 - inSize);
  const small = Math.floor(total / 2);
  return upper ? [small, total - small, out] : [total - small, small, out];
}

/** Output size and effective pads (top, left) for an input of height h, width w. */
export function outputSize(
  g: ConvGeometry,
  h: number,
  w: number,
): { oh: number; ow: number; padT: number; padL: number } {
  if (g.autoPad === 'SAME_UPPER' || g.autoPad === 'SAME_LOWER') {
    const upper = g.autoPad === 'SAME_UPPER';
    const [pt, , oh] = g.spatial === 2 ? samePads(h, g.kh, g.strideH, g.dilH, upper) : [0, 0, 1];
    const [pl, , ow] = samePads(w, g.kw, g.strideW, g.dilW, upper);
    return { oh, ow, padT: pt, padL: pl };
  }
  const [pt, pl, pb, pr] = g.autoPad === 'VALID' ? [0, 0, 0, 0] : g.pads;
  const oh = Math.floor((h + pt + pb - (g.dilH * (g.kh - 1) + 1)) / g.strideH) + 1;
  const ow = Math.floor((w + pl + pr - (g.dilW * (g.kw - 1) + 1)) / g.strideW) + 1;
  return { oh, ow, padT: pt, padL: pl };
}

/**
 * Fills `out` ([rows][K], K = kh·kw·cg) with patch rows [rowStart, rowStart+rows) of group `group` for input x
 * [B][C][H][W] (row index = (b·oh + oy)·ow + ox). Out-of-bounds taps are 0 (zero padding).
 */
export function im2colRows(
  x: Float32Array,
  dims: { b: number; c: number; h: number; w: number },
  g: ConvGeometry,
  o: { oh: number; ow: number; padT: number; padL: number },
  group: number,
  rowStart: number,
  rows: number,
  out: Float32Array,
): void {
  const { c, h, w } = dims;
  const { cg, kh, kw } = g;
  const K = kh * kw * cg;
  const plane = h * w;
  const c0 = group * cg;
  for (let r = 0; r < rows; r++) {
    const row = rowStart + r;
    const ox = row % o.ow;
    const t = (row - ox) / o.ow;
    const oy = t % o.oh;
    const b = (t - oy) / o.oh;
    const base = r * K;
    const xb = (b * c + c0) * plane;
    for (let ky = 0; ky < kh; ky++) {
      const iy = oy * g.strideH - o.padT + ky * g.dilH;
      for (let kx = 0; kx < kw; kx++) {
        const ix = ox * g.strideW - o.padL + kx * g.dilW;
        const col = base + (ky * kw + kx) * cg;
        if (iy < 0 || iy >= h || ix < 0 || ix >= w) {
          out.fill(0, col, col + cg);
          continue;
        }
        let src = xb + iy * w + ix;
        for (let ci = 0; ci < cg; ci++, src += plane) out[col + ci] = x[src];
      }
    }
  }
}
