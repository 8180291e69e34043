// The next SMS phase: prune the soup further and hand it back as the parent of the next round of retraining
// (retraining itself happens elsewhere). Magnitude phases remove a fraction p_phase of the weights still non-zero —
// over all prunable weights at once (global, as SMS does) or per layer — so T phases of
// p_phase = 1 − (1 − p_goal)^(1/T) reach the goal sparsity p_goal. N:M phases prune to the pattern along K.
import type { TensorProto } from '../onnx/gen/onnx_pb.js';
import { InputError } from '../job-parts.js';
import type { LoadedModel } from '../onnx/loaded.js';
import type { WeightRef } from '../onnx/weights.js';
import { Type, type Static } from 'typebox';
import { PatternSchema, strict } from '../recipe-parts.js';
import { pruneRemaining } from './magnitude.js';
import { applyMask, countZeros } from './masks.js';
import { magnitudeMaskFor, specSkipReason, verifyNM } from './reprune.js';
import { readValues, writeValues } from './tensors.js';

/** The soup recipe's `nextPhase` block (methods/soup.ts puts it in SoupRecipeSchema). */
export const NextPhaseSchema = Type.Object(
  {
    sparsity: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Target sparsity of this phase.' })),
    goal: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Final sparsity goal p_goal.' })),
    phases: Type.Optional(
      Type.Integer({ minimum: 1, description: 'T: phase sparsity = 1 − (1 − goal)^(1/T) when goal is given.' }),
    ),
    pattern: Type.Optional(PatternSchema),
    scope: Type.Optional(Type.Union([Type.Literal('global'), Type.Literal('layer')])),
  },
  strict,
);
export type NextPhaseSpec = Static<typeof NextPhaseSchema>;

/** Sparsity of one SMS phase: p_phase = 1 − (1 − p_goal)^(1/T). */
export function phaseSparsity(goal: number, phases: number): number {
  return 1 - Math.pow(1 - goal, 1 / phases);
}

export type NextPhasePlan =
  | { kind: 'magnitude'; fraction: number; scope: 'global' | 'layer'; goal?: number; phases?: number }
  | { kind: 'nm'; n: number; m: number };

export interface NextPhaseReport {
  /** e.g. "global magnitude, p_phase = 0.2063 of the remaining weights" or "2:4 along K". */
  plan: string;
  /** p_phase, for magnitude phases. */
  phaseSparsity?: number;
  goal?: number;
  phases?: number;
  /** Zeros over the pruned weights before and after this phase. */
  sparsityBefore: number;
  sparsityAfter: number;
  /** Held-out metric of the pruned soup (the model handed back). */
  metric: number | null;
  weights: { name: string; before: number; after: number; skipped?: string }[];
  nmVerified?: boolean;
}

/** Turns the recipe's nextPhase block into a plan (parseRecipe has already validated the combination). */
export function planNextPhase(np: NextPhaseSpec): NextPhasePlan {
  const fraction =
    np.sparsity ?? (np.goal !== undefined && np.phases !== undefined ? phaseSparsity(np.goal, np.phases) : undefined);
  if (np.pattern !== undefined) {
    if (fraction !== undefined) {
      throw new InputError(
        'soup-bad-recipe',
        'nextPhase: give a pattern (N:M) or a sparsity / goal + phases, not both',
      );
    }
    if (np.scope !== undefined)
      throw new InputError('soup-bad-recipe', 'nextPhase: scope applies to magnitude phases, not N:M');
    const [n, m] = np.pattern.split(':').map(Number);
    return { kind: 'nm', n, m };
  }
  if (fraction === undefined)
    throw new InputError('soup-bad-recipe', 'nextPhase: give sparsity, goal + phases, or pattern');
  if (!(fraction >= 0 && fraction < 1)) {
    throw new InputError(
      'soup-bad-recipe',
      `nextPhase: a phase cannot prune ${fraction} of the remaining weights (need < 1)`,
    );
  }
  return {
    kind: 'magnitude',
    fraction,
    scope: np.scope ?? 'global',
    ...(np.goal !== undefined ? { goal: np.goal, phases: np.phases } : {}),
  };
}

export interface PhaseTarget {
  weight: WeightRef;
  tensor: TensorProto;
  label: string;
}

export async function runNextPhase(
  base: LoadedModel,
  targets: PhaseTarget[],
  plan: NextPhasePlan,
  score: () => Promise<number | null>,
): Promise<NextPhaseReport> {
  const values = targets.map((t) => readValues(base, t.tensor));
  const before = values.map((v) => countZeros(v));
  const rows: NextPhaseReport['weights'] = [];
  let nmVerified: boolean | undefined;
  if (plan.kind === 'magnitude') {
    const masks = pruneRemaining(values, plan.fraction, plan.scope);
    values.forEach((v, i) => {
      applyMask(v, masks[i]);
      writeValues(targets[i].tensor, v);
    });
  } else {
    nmVerified = true;
    targets.forEach((t, i) => {
      const reason = specSkipReason(t.weight, { kind: 'nm', n: plan.n, m: plan.m });
      if (reason) {
        rows[i] = { name: t.label, before: 0, after: 0, skipped: reason };
        return;
      }
      magnitudeMaskFor(base, t.weight, t.tensor, values[i], { kind: 'nm', n: plan.n, m: plan.m });
      values[i] = readValues(base, t.tensor);
      if (!verifyNM(base, t.weight, plan.n, plan.m)) nmVerified = false;
    });
  }
  let total = 0;
  let zerosBefore = 0;
  let zerosAfter = 0;
  targets.forEach((t, i) => {
    const after = countZeros(values[i]);
    total += values[i].length;
    zerosBefore += before[i];
    zerosAfter += after;
    rows[i] = { ...rows[i], name: t.label, before: before[i] / values[i].length, after: after / values[i].length };
  });
  return {
    plan:
      plan.kind === 'nm'
        ? `${plan.n}:${plan.m} along K (magnitude)`
        : `${plan.scope} magnitude, p_phase = ${plan.fraction.toFixed(4)} of the remaining weights`,
    ...(plan.kind === 'magnitude' ? { phaseSparsity: plan.fraction } : {}),
    ...(plan.kind === 'magnitude' && plan.goal !== undefined ? { goal: plan.goal, phases: plan.phases } : {}),
    sparsityBefore: total ? zerosBefore / total : 0,
    sparsityAfter: total ? zerosAfter / total : 0,
    metric: await score(),
    weights: rows,
    ...(nmVerified !== undefined ? { nmVerified } : {}),
  };
}
