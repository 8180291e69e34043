// Methods are resolved by name: methods/<name>.ts exports `method: CompressionMethod` for each recipe `method` value
// (sparsity, quantize, slim, soup). The import is by convention so that a new method is one new file; names come
// only from the recipe schema's METHOD_NAMES, never from user strings directly.
import { InputError } from '../job.js';
import { METHOD_NAMES, type MethodName, type Recipe } from '../recipe.js';
import type { CompressionMethod } from './types.js';

const cache = new Map<MethodName, Promise<CompressionMethod>>();

/** Loads the method registered under `name`. Throws InputError('method-unavailable') when its file is missing. */
export function getMethod(name: string): Promise<CompressionMethod> {
  if (!(METHOD_NAMES as string[]).includes(name)) {
    return Promise.reject(
      new InputError('unknown-method', `unknown method "${name}"; expected one of ${METHOD_NAMES.join(', ')}`),
    );
  }
  const key = name as MethodName;
  let p = cache.get(key);
  if (!p) {
    p = load(key);
    p.catch(() => cache.delete(key));
    cache.set(key, p);
  }
  return p;
}

async function load(name: MethodName): Promise<CompressionMethod> {
  let mod: { method?: CompressionMethod };
  try {
    mod = (await import(`./${name}.js`)) as { method?: CompressionMethod };
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' && String((e as Error).message).includes(`${name}.`)) {
      throw new InputError('method-unavailable', `method "${name}" is not available in this build`);
    }
    throw e;
  }
  const m = mod.method;
  if (!m || m.name !== name || typeof m.run !== 'function') {
    throw new Error(`methods/${name}.ts must export \`method\` with name "${name}" and a run() function`);
  }
  return m;
}

/**
 * Registers a method module imported ahead of time: for bundled builds (bench/gpu.sh's dist-bench/), where the file-name
 * convention of load() has no files to find at run time.
 */
export function registerMethod(m: CompressionMethod): void {
  if (!(METHOD_NAMES as string[]).includes(m.name)) throw new Error(`unknown method "${m.name}"`);
  cache.set(m.name as MethodName, Promise.resolve(m));
}

/** Every method whose file is present (for `--help`, the API docs and tests). */
export async function listMethods(): Promise<CompressionMethod[]> {
  const out: CompressionMethod[] = [];
  for (const name of METHOD_NAMES) {
    try {
      out.push(await getMethod(name));
    } catch (e) {
      if ((e as { code?: string }).code !== 'method-unavailable') throw e;
    }
  }
  return out;
}

/** Typed lookup when the recipe is already parsed. */
export function methodFor<R extends Recipe>(recipe: R): Promise<CompressionMethod<R>> {
  return getMethod(recipe.method) as unknown as Promise<CompressionMethod<R>>;
}
