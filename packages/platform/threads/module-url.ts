// Modules handed to a worker thread are named by URL. The sources run as .ts (through tsx) and the compiled build as
// .js under dist/, so a module names its sibling with its own extension: whichever layout is running is the one the
// thread loads.

/** The URL of `name` (no extension) beside the module whose import.meta.url is `from`, with `from`'s extension. */
export function siblingModule(from: string, name: string): string {
  const ext = from.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./${name}${ext}`, from).href;
}
