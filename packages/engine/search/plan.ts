// Per-layer mixing: every layer gets its own choice, chosen greedily by proxy damage per byte saved.
//
// Proxy: a layer's relative output error ε = ‖X(W−Ŵ)‖/‖XW‖ on the calibration data (from its Hessian); a plan's
// damage is Σ ε² over layers (a first-order model: small independent layer errors add up in energy). Per layer the
// options (dense, and each choice that applies) are cut to their Pareto set and then to the lower convex hull of
// (bytes, ε²); along a convex hull the damage paid per byte saved only grows, so taking all layers' hull moves in
// order of that price (the greedy of a fractional knapsack, exact at every step where a move completes) gives a
// path of plans from dense to smallest in which each plan has the least damage the proxy knows for its size.
// The path is then probed with full-model evaluations (search.ts) — the proxy orders plans, it never accepts one.

export interface LayerOption {
  /** Index into the search's choices; -1 = dense. */
  choice: number;
  bytes: number;
  /** Relative layer output error ε (0 for dense). */
  error: number;
}

export interface LayerTable {
  name: string;
  options: LayerOption[];
}

export interface PathMove {
  layer: number;
  /** The option taken (from the layer's hull). */
  option: LayerOption;
  /** Damage added per byte saved. */
  price: number;
  bytesSaved: number;
  damageAdded: number;
}

export interface MixingPath {
  /** Per layer, its hull from dense (largest) to smallest. */
  hulls: LayerOption[][];
  /** Moves in the order they are taken; plan s = the first s moves applied to all-dense. */
  moves: PathMove[];
  /** bytes[s], damage[s]: of plan s (s = 0 … moves.length). */
  bytes: number[];
  damage: number[];
}

const damageOf = (o: LayerOption) => o.error * o.error;

/** The layer's options on the lower convex hull of (bytes, ε²), from the largest (dense) to the smallest. */
export function layerHull(options: LayerOption[]): LayerOption[] {
  const usable = options.filter((o) => Number.isFinite(o.error) && Number.isFinite(o.bytes));
  // Pareto: walking from small to large bytes, keep an option only if its damage is below every smaller one's.
  const asc = [...usable].sort((a, b) => a.bytes - b.bytes || damageOf(a) - damageOf(b));
  const pareto: LayerOption[] = [];
  for (const o of asc) if (!pareto.length || damageOf(o) < damageOf(pareto[pareto.length - 1])) pareto.push(o);
  const desc = pareto.reverse();
  const hull: LayerOption[] = [];
  const slope = (a: LayerOption, b: LayerOption) => (damageOf(b) - damageOf(a)) / (a.bytes - b.bytes);
  for (const p of desc) {
    while (hull.length >= 2 && slope(hull[hull.length - 2], hull[hull.length - 1]) >= slope(hull[hull.length - 1], p))
      hull.pop();
    hull.push(p);
  }
  return hull;
}

/** The greedy path over all layers (see the file comment). Every table must hold a dense option. */
export function mixingPath(tables: LayerTable[]): MixingPath {
  const hulls = tables.map((t) => layerHull(t.options));
  const moves: PathMove[] = [];
  hulls.forEach((h, layer) => {
    for (let j = 0; j + 1 < h.length; j++) {
      const bytesSaved = h[j].bytes - h[j + 1].bytes;
      const damageAdded = damageOf(h[j + 1]) - damageOf(h[j]);
      moves.push({ layer, option: h[j + 1], price: damageAdded / bytesSaved, bytesSaved, damageAdded });
    }
  });
  // Stable: equal prices keep layer order, and a layer's own moves stay in hull order (its prices only grow).
  moves.sort((a, b) => a.price - b.price);
  const bytes = [hulls.reduce((s, h) => s + (h[0]?.bytes ?? 0), 0)];
  const damage = [hulls.reduce((s, h) => s + (h[0] ? damageOf(h[0]) : 0), 0)];
  for (const m of moves) {
    bytes.push(bytes[bytes.length - 1] - m.bytesSaved);
    damage.push(damage[damage.length - 1] + m.damageAdded);
  }
  return { hulls, moves, bytes, damage };
}

/** The choice of each layer in plan s of the path (-1 = dense). */
export function planAt(path: MixingPath, s: number): number[] {
  const plan = path.hulls.map((h) => h[0]?.choice ?? -1);
  for (let i = 0; i < s && i < path.moves.length; i++) plan[path.moves[i].layer] = path.moves[i].option.choice;
  return plan;
}

/** Index of the last plan whose damage is at most `damage` (0 when none is). */
export function lastPlanWithin(path: MixingPath, damage: number): number {
  let s = 0;
  for (let i = 0; i < path.damage.length; i++) if (path.damage[i] <= damage) s = i;
  return s;
}
