/* chatctl lobby: the "open a room" / "message someone" forms and the list of
 * the user's conversations from GET /api/lobby.
 * Every server-supplied string goes into the DOM through textContent only. */
(() => {
  'use strict';

  // Same rules as PROTOCOL.md "Names"; checked here so a typo gets an inline
  // explanation instead of a 404 page.
  const ROOM_RE = /^[A-Za-z0-9_]{1,64}$/;
  const USER_RE = /^[A-Za-z0-9_.@+-]{1,150}$/;

  const $ = (id) => document.getElementById(id);
  const listEl = $('conversations');
  const emptyEl = $('conversations-empty');
  const statusEl = $('conversations-status');

  wireForm({
    form: $('room-form'),
    input: $('room-name'),
    error: $('room-error'),
    re: ROOM_RE,
    prefix: '/chat/',
    // People often type the "#" they see in the list; it is not part of the name.
    clean: (v) => v.trim().replace(/^#/, ''),
    help: 'Room names use only letters, digits and _ (up to 64 characters).',
  });
  wireForm({
    form: $('direct-form'),
    input: $('direct-name'),
    error: $('direct-error'),
    re: USER_RE,
    prefix: '/direct/',
    clean: (v) => v.trim(),
    help: 'Usernames use only letters, digits and _ . @ + - (up to 150 characters).',
  });

  function wireForm({ form, input, error, re, prefix, clean, help }) {
    if (!form || !input || !error) return;
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const name = clean(input.value);
      if (!re.test(name)) {
        error.textContent = name ? help : 'Type a name first.';
        input.setAttribute('aria-invalid', 'true');
        input.focus();
        return;
      }
      location.assign(prefix + encodeURIComponent(name));
    });
    // Clear a stale complaint as soon as the user starts fixing it.
    input.addEventListener('input', () => {
      error.textContent = '';
      input.removeAttribute('aria-invalid');
    });
  }

  // ---------- Conversation list ----------

  let loading = false;

  async function load() {
    if (loading || !listEl) return;
    loading = true;
    try {
      const res = await fetch('/api/lobby', {
        credentials: 'same-origin',
        cache: 'no-store',
        headers: { Accept: 'application/json' },
      });
      if (res.status === 401) {
        location.assign('/login?next=/');
        return;
      }
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      render(await res.json());
    } catch (err) {
      // Keep whatever list we already show; only say something went wrong.
      statusEl.textContent = "Couldn't load your conversations. Check your connection and reload the page.";
    } finally {
      loading = false;
    }
  }

  function render(data) {
    const convs = data && Array.isArray(data.conversations) ? data.conversations : [];
    const rows = convs
      .filter((c) => c && typeof c.name === 'string' && (c.kind === 'room' || c.kind === 'direct'))
      .map(row);
    listEl.replaceChildren(...rows);
    emptyEl.hidden = rows.length > 0;
    statusEl.textContent = '';
  }

  function row(c) {
    const isRoom = c.kind === 'room';
    const li = document.createElement('li');
    const a = document.createElement('a');
    a.className = 'conv';
    a.href = localUrl(c);

    const icon = span(isRoom ? 'conv-icon' : 'conv-icon direct', isRoom ? '#' : initial(c.name));
    icon.setAttribute('aria-hidden', 'true');

    const main = span('conv-main');
    const top = span('conv-top');
    top.append(span('conv-name', (isRoom ? '#' : '@') + c.name));

    const preview = span('conv-preview');
    const m = c.latest;
    if (m && typeof m.author === 'string' && typeof m.message === 'string') {
      // Newlines would break the one-line ellipsis preview.
      preview.append(span('conv-author', m.author), document.createTextNode(': ' + m.message.replace(/\s+/g, ' ')));
      const when = new Date(m.ts);
      if (!Number.isNaN(when.getTime())) {
        const time = document.createElement('time');
        time.className = 'conv-time';
        time.dateTime = m.ts;
        time.textContent = shortWhen(when);
        time.title = when.toLocaleString();
        top.append(time);
      }
    } else {
      preview.textContent = 'No messages yet';
    }

    main.append(top, preview);
    a.append(icon, main);
    li.append(a);
    return li;
  }

  // The server gives a url; trust it only if it is a plain local path, and
  // otherwise build the same one from kind and name.
  function localUrl(c) {
    if (typeof c.url === 'string' && /^\/(?![/\\])/.test(c.url) && !c.url.includes('\\')) return c.url;
    return (c.kind === 'room' ? '/chat/' : '/direct/') + encodeURIComponent(c.name);
  }

  function initial(name) {
    const first = [...name][0] || '?';
    return first.toUpperCase();
  }

  // Today: the time (e.g. "7:52 PM"). This year: "Nov 24". Older: with the year.
  function shortWhen(d) {
    const now = new Date();
    if (d.toDateString() === now.toDateString()) {
      return d.toLocaleTimeString([], { hour: 'numeric', minute: '2-digit' });
    }
    const opts = { month: 'short', day: 'numeric' };
    if (d.getFullYear() !== now.getFullYear()) opts.year = 'numeric';
    return d.toLocaleDateString([], opts);
  }

  function span(className, text) {
    const el = document.createElement('span');
    el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  load();
  // Coming back to the tab is when a fresh list matters; no polling otherwise.
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) load();
  });
})();
