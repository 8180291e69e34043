// Browser helpers shared by the job and model pages (served as source, like plots.ts): the API key (the page's own
// field, or what Swagger UI's "Authorize" persisted), GET with it, a download that carries it (a link cannot send
// an Authorization header, so the file is fetched and handed to the browser as a blob), and small DOM builders.
// Self-contained functions only.

declare const document: any;
declare const localStorage: any;
declare const sessionStorage: any;
declare const URL: any;

/** document.getElementById. */
export function $(id: string): any {
  return document.getElementById(id);
}

export function storedKey(): string {
  const own = sessionStorage.getItem('onnx-compress-key');
  if (own) return own;
  try {
    // Swagger UI with persistAuthorization keeps {bearerAuth: {value}} under "authorized".
    const auth = JSON.parse(localStorage.getItem('authorized') ?? 'null');
    const v = auth && auth.bearerAuth && auth.bearerAuth.value;
    if (typeof v === 'string' && v) return v.replace(/^Bearer\s+/i, '');
  } catch {
    /* nothing stored */
  }
  return '';
}

/** GET with the key; a problem+json answer becomes an Error carrying its title and detail. */
export async function apiGet(key: string, path: string): Promise<any> {
  const res = await fetch(path, { headers: { authorization: 'Bearer ' + key } });
  if (!res.ok) {
    let detail = res.status + ' ' + res.statusText;
    try {
      const p: any = await res.json();
      detail = p.title + (p.detail ? ': ' + p.detail : '');
    } catch {
      /* not problem+json */
    }
    throw Object.assign(new Error(detail), { status: res.status });
  }
  return res;
}

/** Fetches `path` with the key and saves it as `name` (what a plain link would do if it could carry the key). */
export async function downloadWithKey(key: string, path: string, name: string): Promise<void> {
  const blob = await (await apiGet(key, path)).blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** An element with text content (never innerHTML: names and messages come from users). */
export function el(tag: string, text?: string, attrs?: Record<string, string>): any {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  for (const k of Object.keys(attrs ?? {})) e.setAttribute(k, attrs![k]);
  return e;
}

/** Fills a <table> with a header row and body rows of text cells. */
export function fillTable(table: any, head: string[], rows: string[][]): void {
  table.textContent = '';
  const tr = el('tr');
  for (const h of head) tr.appendChild(el('th', h));
  table.appendChild(tr);
  for (const r of rows) {
    const row = el('tr');
    for (const c of r) row.appendChild(el('td', c));
    table.appendChild(row);
  }
}

/**
 * Shows the "a key is needed" panel (no key, or the key was refused) and calls `onKey` with the key typed in.
 * `why` says which of the two.
 */
export function askForKey(why: string, onKey: (key: string) => void): void {
  const panel = document.getElementById('need-key');
  document.getElementById('need-key-why').textContent = why;
  panel.hidden = false;
  const form = document.getElementById('key-form');
  form.onsubmit = (ev: any) => {
    ev.preventDefault();
    const key = String(document.getElementById('key-input').value).trim();
    if (!key) return;
    sessionStorage.setItem('onnx-compress-key', key);
    panel.hidden = true;
    onKey(key);
  };
}
