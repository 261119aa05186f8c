/* chatctl client helpers shared by every page script (ES module).
 * Untrusted text (messages, names) only ever reaches the DOM through
 * textContent or text nodes: nothing here builds HTML from strings. */

export const me = document.body.dataset.username || '';

// PROTOCOL.md "Names".
export const ROOM_RE = /^[A-Za-z0-9_]{1,64}$/;
export const USER_RE = /^[A-Za-z0-9_.@+-]{1,150}$/;

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The `room` field of a direct conversation: `dm:` and both names in byte order. */
export function directRoom(a, b) {
  return a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`;
}

/** {kind, name} of a frame's `room` as seen by the signed-in user. */
export function describeRoom(room) {
  if (typeof room !== 'string') return null;
  if (!room.startsWith('dm:')) return { kind: 'room', name: room };
  const [, a, b] = room.split(':');
  if (a === undefined || b === undefined) return null;
  return { kind: 'direct', name: a === me ? b : a };
}

export function conversationUrl(kind, name) {
  return (kind === 'room' ? '/chat/' : '/direct/') + encodeURIComponent(name);
}

export function conversationLabel(kind, name) {
  return (kind === 'room' ? '#' : '@') + name;
}

/** Ids sort in a conversation's order as strings (PROTOCOL.md). */
export function idAbove(a, b) {
  return b === null || b === undefined || (typeof a === 'string' && a > b);
}

export function isChatFrame(m) {
  return !!m && typeof m === 'object' && (m.type === undefined || m.type === 'chat_handler')
    && typeof m.id === 'string' && typeof m.author === 'string' && typeof m.message === 'string';
}

// Today: the time only. Other days need the date too, or "09:12" misleads.
export function shortTime(d) {
  const hm = d.toLocaleTimeString([], { hour: 'numeric', minute: '2-digit' });
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return hm;
  const opts = { month: 'short', day: 'numeric' };
  if (d.getFullYear() !== now.getFullYear()) opts.year = 'numeric';
  return d.toLocaleDateString([], opts) + ' ' + hm;
}

/** Today: the time ("7:52 PM"); this year: "Nov 24"; older: with the year. */
export function shortWhen(d) {
  const now = new Date();
  if (d.toDateString() === now.toDateString()) {
    return d.toLocaleTimeString([], { hour: 'numeric', minute: '2-digit' });
  }
  const opts = { month: 'short', day: 'numeric' };
  if (d.getFullYear() !== now.getFullYear()) opts.year = 'numeric';
  return d.toLocaleDateString([], opts);
}

export function longTime(d) {
  return d.toLocaleString([], { dateStyle: 'full', timeStyle: 'medium' });
}

/** "Today", "Yesterday" or the full local date: the label of a day separator. */
export function dayLabel(d) {
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (d.toDateString() === today.toDateString()) return 'Today';
  if (d.toDateString() === yesterday.toDateString()) return 'Yesterday';
  const opts = { weekday: 'long', month: 'long', day: 'numeric' };
  if (d.getFullYear() !== today.getFullYear()) opts.year = 'numeric';
  return d.toLocaleDateString([], opts);
}

const URL_RE = /\bhttps?:\/\/[^\s<>"]+/gi;

/** The text as nodes, with http(s) addresses as links that open in a new tab. */
export function linkify(text) {
  const frag = document.createDocumentFragment();
  let at = 0;
  for (const match of text.matchAll(URL_RE)) {
    let href = match[0];
    // Trailing punctuation usually ends the sentence, not the address; a
    // closing bracket stays when the address opened one.
    const count = (c) => href.split(c).length - 1;
    while (/[.,;:!?'"\]}]$/.test(href) || (href.endsWith(')') && count('(') < count(')'))) {
      href = href.slice(0, -1);
    }
    let url;
    try {
      url = new URL(href);
    } catch {
      continue;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') continue;
    if (match.index > at) frag.append(document.createTextNode(text.slice(at, match.index)));
    const a = el('a', 'msg-link', href);
    a.href = url.href;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    frag.append(a);
    at = match.index + href.length;
  }
  if (at < text.length) frag.append(document.createTextNode(text.slice(at)));
  return frag;
}

/** A presence dot: green when online; the state is in its label too. */
export function presenceDot(online, name) {
  const dot = el('span', online ? 'dot online' : 'dot');
  dot.setAttribute('role', 'img');
  dot.setAttribute('aria-label', `${name} is ${online ? 'online' : 'offline'}`);
  dot.title = online ? 'Online' : 'Offline';
  return dot;
}

/** Why a socket closed, when it means the session is over (PROTOCOL.md
 *  "Passwords"): {text, code}, `code` for the sign-in page's own notice. */
export function sessionEnded(event) {
  if (!event || event.code !== 1008) return null;
  if (event.reason === 'signed out') {
    return { text: 'You were signed out (your password changed or your session ended).', code: 'signed_out' };
  }
  if (event.reason === 'account deactivated') {
    return { text: 'Your account was deactivated. Ask an administrator for help.', code: null };
  }
  return null;
}

let leavingForLogin = false;

/** Says why (`ended` from sessionEnded), then goes to the sign-in page,
 *  coming back here afterwards. */
export function toLogin(ended) {
  if (leavingForLogin) return;
  leavingForLogin = true;
  let next = '/login?next=' + encodeURIComponent(location.pathname);
  if (!ended) {
    location.assign(next);
    return;
  }
  if (ended.code) next += '&reason=' + ended.code;
  const reason = ended.text;
  const banner = el('div', 'signed-out-banner');
  banner.setAttribute('role', 'alert');
  banner.append(el('strong', '', reason), el('span', '', ' Taking you to the sign-in page…'));
  document.body.append(banner);
  window.dispatchEvent(new CustomEvent('chatctl:signed-out'));
  setTimeout(() => location.assign(next), 2500);
}

export function isLeavingForLogin() {
  return leavingForLogin;
}

/** GET an /api/ route as JSON; a 401 sends the user to sign in. */
export async function getJson(path) {
  const res = await fetch(path, {
    credentials: 'same-origin',
    cache: 'no-store',
    headers: { Accept: 'application/json' },
  });
  if (res.status === 401) {
    toLogin();
    throw new Error('signed out');
  }
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return res.json();
}

export function wsUrl(path) {
  return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path;
}

/** Exponential backoff with full jitter, so a restarted server is not hit by every client at once. */
export function backoffDelay(attempt, base = 500, cap = 30000) {
  return Math.random() * Math.min(cap, base * 2 ** attempt);
}

/** A random `client_id`: crypto.randomUUID needs a secure context; getRandomValues works on plain http too. */
export function randomId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
