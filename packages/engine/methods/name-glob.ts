// The include/exclude patterns of a recipe. ONNX names are not paths — `/model/layers.0/mlp/down_proj/MatMul`,
// `onnx::MatMul_123`, `lm_head.weight`, PaddleOCR's `p2o.Conv.12` — so path globs (picomatch: `*` stops at `/`,
// dot rules) silently miss what users write, e.g. `*head*` against `/head/MatMul`. Here:
//   `*`  any run of characters, including none and including `/ . :`
//   `?`  exactly one character
//   anything else matches itself (no character classes, braces or escapes; matching is case-sensitive)
// and a pattern must match the whole name. The match is the classic two-pointer wildcard scan with backtracking to
// the last `*`: O(|pattern|·|name|) at worst, no regular expression built from user input.

/** Whether `name` matches the glob `pattern` (see the file comment for the syntax). */
export function nameGlobMatch(pattern: string, name: string): boolean {
  let p = 0;
  let n = 0;
  let star = -1; // index in pattern of the last '*' seen
  let resume = 0; // position in name where that '*' would next absorb one more character
  while (n < name.length) {
    const c = pattern[p];
    if (p < pattern.length && (c === '?' || (c !== '*' && c === name[n]))) {
      p++;
      n++;
    } else if (p < pattern.length && c === '*') {
      star = p++;
      resume = n;
    } else if (star >= 0) {
      p = star + 1;
      n = ++resume;
    } else return false;
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}
