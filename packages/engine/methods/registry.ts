// The methods, by name. Each methods/<name>.ts exports `schema` (its recipe, TypeBox) and `method:
// CompressionMethod` (defaults and rules, what it needs from the runner, and its run), and this list is the only
// other place a method is named: the recipe union (recipe.ts), the runner, the CLI and the API ask the registry.
// Adding a method is one file plus its line here. The order is the order of the recipe union (and of OpenAPI).
import type { Static } from 'typebox';
import { InputError } from '../job-parts.js';
import * as quantize from './quantize.js';
import * as search from './search.js';
import * as slim from './slim.js';
import * as soup from './soup.js';
import * as sparsity from './sparsity.js';
import type { CompressionMethod } from './types.js';

const MODULES = { sparsity, quantize, slim, soup, search };

export type MethodName = keyof typeof MODULES;
export const METHOD_NAMES = Object.keys(MODULES) as MethodName[];

/** The recipe of each method, as the union of the methods' schemas (recipe.ts's `Recipe`). */
export type MethodRecipe = { [K in MethodName]: Static<(typeof MODULES)[K]['schema']> }[MethodName];

/** A method of the registry, typed over the union of the registered recipes. */
type Registered = CompressionMethod<MethodRecipe>;

// Every method module has finished loading by now: no method imports the registry (a method that runs others, as
// search does, gets it through MethodContext.methods), so the list can be built at import.
const ALL: readonly Registered[] = METHOD_NAMES.map((name) => MODULES[name].method as unknown as Registered);

/** Every method, in registry order. */
export function allMethods(): readonly Registered[] {
  return ALL;
}

/** The method registered under `name`, or undefined. */
export function findMethod(name: string): Registered | undefined {
  return Object.hasOwn(MODULES, name) ? allMethods()[METHOD_NAMES.indexOf(name as MethodName)] : undefined;
}

/** Loads the method registered under `name`. Rejects with InputError('unknown-method') for any other name. */
export function getMethod(name: string): Promise<Registered> {
  const m = findMethod(name);
  if (!m) {
    return Promise.reject(
      new InputError('unknown-method', `unknown method "${name}"; expected one of ${METHOD_NAMES.join(', ')}`),
    );
  }
  return Promise.resolve(m);
}

/** Every method (for `--help`, the API docs and tests). */
export async function listMethods(): Promise<Registered[]> {
  return [...allMethods()];
}

/** Typed lookup when the recipe is already parsed. */
export function methodFor<R extends { method: string }>(recipe: R): Promise<CompressionMethod<R & MethodRecipe>> {
  return getMethod(recipe.method) as unknown as Promise<CompressionMethod<R & MethodRecipe>>;
}

/** Models a job with this recipe method reads at least, the input model included (soups: 2). */
export function minModels(method: string): number {
  return findMethod(method)?.minModels ?? 1;
}
