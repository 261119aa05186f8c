/* chatctl lobby: open a room or a direct chat (with username completion from
 * GET /api/users), the user's conversations live from the user socket, and
 * the directory of every room from GET /api/rooms.
 * Every server-supplied string goes into the DOM through textContent only. */
import { el, me, ROOM_RE, USER_RE, getJson, presenceDot, shortWhen, directRoom } from './util.js';
import { Inbox } from './inbox.js';
import { renderConversations, setUpNotificationsButton } from './sidebar.js';

const $ = (id) => document.getElementById(id);
const COMPLETE_DEBOUNCE_MS = 150;

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
  // "@bob" is how people write a name; the @ is not part of it.
  clean: (v) => v.trim().replace(/^@/, ''),
  help: 'Usernames use only letters, digits and _ . @ + - (up to 150 characters).',
  check: userProblem,
});

// A name nobody has gets a sentence here instead of a 404 page; when the
// directory cannot be asked, the direct-chat page answers instead.
async function userProblem(name) {
  let users;
  try {
    const body = await getJson('/api/users?prefix=' + encodeURIComponent(name));
    users = body && Array.isArray(body.users) ? body.users : null;
  } catch {
    return null;
  }
  if (!users || users.some((u) => u && u.username === name)) return null;
  const other = users.find((u) => u && typeof u.username === 'string' && u.username.toLowerCase() === name.toLowerCase());
  if (other) return `There is no user named “${name}”. Did you mean “${other.username}”? Case matters.`;
  return `There is no user named “${name}”.`;
}

function wireForm({ form, input, error, re, prefix, clean, help, check }) {
  if (!form || !input || !error) return;
  const complain = (text) => {
    error.textContent = text;
    input.setAttribute('aria-invalid', 'true');
    input.focus();
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = clean(input.value);
    if (!re.test(name)) {
      complain(name ? help : 'Type a name first.');
      return;
    }
    const problem = check ? await check(name) : null;
    if (problem) {
      complain(problem);
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

// ---------- Username completion (an ARIA combobox) ----------

function setUpCompletion() {
  const input = $('direct-name');
  const listbox = $('direct-options');
  let options = [];
  let active = -1;
  let timer = null;
  let asked = '';

  const close = () => {
    listbox.hidden = true;
    input.setAttribute('aria-expanded', 'false');
    input.removeAttribute('aria-activedescendant');
    active = -1;
  };
  const highlight = (i) => {
    active = i;
    [...listbox.children].forEach((li, j) => li.setAttribute('aria-selected', String(j === i)));
    if (i >= 0) input.setAttribute('aria-activedescendant', listbox.children[i].id);
    else input.removeAttribute('aria-activedescendant');
  };
  const choose = (name) => {
    input.value = name;
    close();
    location.assign('/direct/' + encodeURIComponent(name));
  };
  const show = (users) => {
    options = users.filter((u) => u && typeof u.username === 'string' && u.username !== me);
    if (!options.length || document.activeElement !== input) {
      close();
      return;
    }
    listbox.replaceChildren(...options.map((u, i) => {
      const li = el('li', 'combo-option');
      li.id = `direct-option-${i}`;
      li.setAttribute('role', 'option');
      li.setAttribute('aria-selected', 'false');
      li.append(presenceDot(u.online === true, u.username), el('span', 'combo-name', u.username));
      if (u.online === true) li.append(el('span', 'combo-state', 'online'));
      li.addEventListener('pointerdown', (e) => {
        e.preventDefault(); // keep focus in the input
        choose(u.username);
      });
      return li;
    }));
    listbox.hidden = false;
    input.setAttribute('aria-expanded', 'true');
    highlight(-1);
  };
  const lookUp = async () => {
    const prefix = input.value.trim().replace(/^@/, '');
    if (!prefix || !USER_RE.test(prefix)) {
      close();
      return;
    }
    asked = prefix;
    try {
      const body = await getJson('/api/users?prefix=' + encodeURIComponent(prefix));
      if (asked !== prefix) return; // a newer question is on its way
      show(body && Array.isArray(body.users) ? body.users : []);
    } catch {
      close(); // completion is a help, not a requirement: the form still works
    }
  };

  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(lookUp, COMPLETE_DEBOUNCE_MS);
  });
  input.addEventListener('keydown', (event) => {
    if (listbox.hidden) {
      if (event.key === 'ArrowDown' && input.value.trim()) lookUp();
      return;
    }
    if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
      event.preventDefault();
      const n = options.length;
      const step = event.key === 'ArrowDown' ? 1 : -1;
      highlight(active < 0 ? (step > 0 ? 0 : n - 1) : (active + step + n) % n);
    } else if (event.key === 'Enter' && active >= 0) {
      event.preventDefault();
      choose(options[active].username);
    } else if (event.key === 'Escape') {
      event.preventDefault();
      close();
    }
  });
  input.addEventListener('blur', close);
}

// ---------- The room directory ----------

async function loadDirectory() {
  const status = $('directory-status');
  const list = $('directory-list');
  try {
    const body = await getJson('/api/rooms');
    const rooms = body && Array.isArray(body.rooms)
      ? body.rooms.filter((r) => r && typeof r.room === 'string') : [];
    list.replaceChildren(...rooms.map(directoryRow));
    status.textContent = rooms.length ? '' : 'No rooms yet. Open one above to start it.';
  } catch {
    status.textContent = "Couldn't load the list of rooms. Reload the page to try again.";
  }
}

function directoryRow(r) {
  const li = el('li');
  const a = el('a', 'conv');
  a.href = '/chat/' + encodeURIComponent(r.room);
  const icon = el('span', 'conv-icon', '#');
  icon.setAttribute('aria-hidden', 'true');
  const main = el('span', 'conv-main');
  const top = el('span', 'conv-top');
  top.append(el('span', 'conv-name', '#' + r.room));
  const n = Number.isInteger(r.members) ? r.members : 0;
  const members = el('span', 'conv-time', `${n} ${n === 1 ? 'member' : 'members'}`);
  top.append(members);
  const preview = el('span', 'conv-preview');
  const m = r.latest;
  if (m && typeof m.author === 'string' && typeof m.message === 'string') {
    preview.append(el('span', 'conv-author', m.author), document.createTextNode(': ' + m.message.replace(/\s+/g, ' ')));
    const when = new Date(m.ts);
    if (!Number.isNaN(when.getTime())) preview.append(document.createTextNode(' · ' + shortWhen(when)));
  } else {
    preview.textContent = 'No messages yet';
  }
  main.append(top, preview);
  a.append(icon, main);
  li.append(a);
  return li;
}

// ---------- Your conversations ----------

const inbox = new Inbox();
renderConversations(inbox, {
  list: $('conversations'),
  status: $('conversations-status'),
  empty: $('conversations-empty'),
});
setUpNotificationsButton($('notify-button'), $('notify-state'));

// Show the list at once from HTTP; the user socket's `inbox` frame then
// replaces it and keeps it live. A server without /api/inbox has /api/lobby.
async function seed() {
  let body;
  try {
    body = await getJson('/api/inbox');
  } catch {
    try {
      const lobby = await getJson('/api/lobby');
      body = {
        conversations: (lobby.conversations || []).map((c) => ({
          ...c,
          room: c.kind === 'room' ? c.name : directRoom(me, c.name),
          unread: 0,
        })),
        online: [],
      };
    } catch {
      $('conversations-status').textContent =
        "Couldn't load your conversations. Check your connection and reload the page.";
      return;
    }
  }
  if (!inbox.loaded) inbox.onInbox(body);
}

setUpCompletion();
seed();
loadDirectory();
inbox.connect();
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) loadDirectory();
});
