// Helpers shared by the demo room page and the viewer page: URL
// parameters, dev tokens, the server URL, small DOM helpers and icons.

/** A token and the server URL to use it with. */
export interface Credentials {
  token: string;
  url: string;
}

/** The page's query parameters. */
export const params = new URLSearchParams(location.search);

/**
 * credentials returns the pasted token, or else a dev token; when the
 * server has none it opens the token section and rethrows.
 */
export async function credentials(
  room: string,
  identity: string,
  name: string,
  viewer: boolean,
  tokenInput: HTMLTextAreaElement,
  urlInput: HTMLInputElement,
): Promise<Credentials> {
  const token = tokenInput.value.trim();
  if (token) return { token, url: urlInput.value.trim() || defaultServerURL() };
  try {
    return await fetchDevToken(room, identity, name, viewer);
  } catch (err) {
    if (err instanceof NotDevModeError) {
      (document.getElementById('token-details') as HTMLDetailsElement | null)?.setAttribute('open', '');
      tokenInput.focus();
    }
    throw err;
  }
}

/** defaultServerURL is this page's own server as a WebSocket URL. */
export function defaultServerURL(): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`;
}

/** NotDevModeError means the server mints no dev tokens: a token must be pasted. */
export class NotDevModeError extends Error {
  constructor() {
    super('This server is not in dev mode: paste an access token under "Access token".');
  }
}

/**
 * fetchDevToken gets a join token from a server in dev mode (a server
 * outside dev mode has no /api/dev-token: NotDevModeError).
 */
export async function fetchDevToken(room: string, identity: string, name: string, viewer = false): Promise<Credentials> {
  const q = new URLSearchParams({ room, identity, name });
  if (viewer) q.set('viewer', '1');
  const res = await fetch(`/api/dev-token?${q}`, { cache: 'no-store' });
  if (res.status === 404) throw new NotDevModeError();
  if (!res.ok) throw new Error(`dev token: ${res.status} ${(await res.text()).trim()}`);
  const body = (await res.json()) as { token?: string; url?: string };
  if (!body.token) throw new Error('dev token: empty answer');
  return { token: body.token, url: body.url || defaultServerURL() };
}

/** identityFor derives a unique identity from a display name (unless the URL gives one). */
export function identityFor(name: string): string {
  const fixed = params.get('identity');
  if (fixed) return fixed;
  const slug = name
    .toLowerCase()
    .normalize('NFKD')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 24);
  return `${slug || 'guest'}-${Math.random().toString(36).slice(2, 6)}`;
}

/** $ finds an element by id, failing loudly when the page lacks it. */
export function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing`);
  return el as T;
}

/** el creates an element with attributes and children. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

/** initials of a display name, for avatars. */
export function initials(name: string): string {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  const s = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] ?? '?').slice(0, 2);
  return s.toUpperCase();
}

/** hue derives a stable avatar colour from an identity. */
export function hue(identity: string): number {
  let h = 0;
  for (const c of identity) h = (h * 31 + c.charCodeAt(0)) % 360;
  return h;
}

const svg = (path: string) =>
  `<svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">${path}</svg>`;

/** Icons of the control bar and tiles (inline SVG). */
export const icons = {
  mic: svg('<rect x="9" y="2" width="6" height="12" rx="3"/><path d="M5 10a7 7 0 0 0 14 0M12 17v4"/>'),
  micOff: svg('<path d="M3 3l18 18M9 9v2a3 3 0 0 0 5.1 2.1M15 9.3V5a3 3 0 0 0-5.9-.8M5 10a7 7 0 0 0 11.7 5.2M19 10a7 7 0 0 1-.6 2.8M12 17v4"/>'),
  cam: svg('<rect x="2" y="6" width="14" height="12" rx="2"/><path d="M16 10l6-3v10l-6-3z"/>'),
  camOff: svg('<path d="M3 3l18 18M16 16H4a2 2 0 0 1-2-2V8a2 2 0 0 1 2-2h2m4 0h4a2 2 0 0 1 2 2v4l6-3v10"/>'),
  screen: svg('<rect x="2" y="4" width="20" height="13" rx="2"/><path d="M8 21h8M12 17v4"/>'),
  people: svg('<circle cx="9" cy="8" r="3.5"/><path d="M2 20a7 7 0 0 1 14 0M16 4.5a3.5 3.5 0 0 1 0 7M22 20a7 7 0 0 0-4-6.3"/>'),
  leave: svg('<path d="M10 17l-5-5 5-5M5 12h11M14 4h4a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2h-4"/>'),
};
