/* chatctl conversation list: every conversation of the user with its unread
 * count and, for direct chats, the other person's presence dot. Rendered
 * from the inbox (inbox.js) into the chat pages' sidebar (a drawer on a
 * phone) and into the lobby's list; both update live. */
import { el, me, presenceDot, shortWhen, conversationUrl, conversationLabel } from './util.js';
import { Notifier, unreadText } from './inbox.js';

const PHONE = window.matchMedia('(max-width: 700px)');

/** Renders `inbox` into the <ul> `list` on every change; `status` and `empty` are optional. */
export function renderConversations(inbox, { list, status, empty, preview = true }) {
  const draw = () => {
    if (!inbox.loaded) return;
    const rows = inbox.conversations().map((c) => row(inbox, c, preview));
    list.replaceChildren(...rows);
    if (empty) empty.hidden = rows.length > 0;
    if (status) status.textContent = '';
  };
  inbox.addEventListener('change', draw);
  draw();
}

function row(inbox, c, withPreview) {
  const isRoom = c.kind === 'room';
  const li = el('li');
  const a = el('a', 'conv');
  a.href = conversationUrl(c.kind, c.name);
  a.dataset.room = c.room;
  // Where the user's read marker and the conversation stand (for tests and tools).
  if (c.readUpTo) a.dataset.readUpTo = c.readUpTo;
  if (c.latest) a.dataset.latest = c.latest.id;
  if (inbox.current === c.room) {
    a.setAttribute('aria-current', 'page');
    li.classList.add('current');
  }
  if (c.unread) a.classList.add('has-unread');

  const icon = el('span', isRoom ? 'conv-icon' : 'conv-icon direct', isRoom ? '#' : initial(c.name));
  icon.setAttribute('aria-hidden', 'true');
  const iconWrap = el('span', 'conv-avatar');
  iconWrap.append(icon);
  if (!isRoom) iconWrap.append(presenceDot(inbox.online.has(c.name), c.name));

  const main = el('span', 'conv-main');
  const top = el('span', 'conv-top');
  top.append(el('span', 'conv-name', conversationLabel(c.kind, c.name)));
  const m = c.latest;
  if (m && typeof m.ts === 'string') {
    const when = new Date(m.ts);
    if (!Number.isNaN(when.getTime())) {
      const time = el('time', 'conv-time', shortWhen(when));
      time.dateTime = m.ts;
      time.title = when.toLocaleString();
      top.append(time);
    }
  }
  main.append(top);

  const bottom = el('span', 'conv-bottom');
  if (withPreview) {
    const preview = el('span', 'conv-preview');
    if (m && m.deleted) {
      preview.textContent = 'Message deleted';
    } else if (m) {
      // Newlines would break the one-line ellipsis preview.
      preview.append(el('span', 'conv-author', m.author === me ? 'You' : m.author),
        document.createTextNode(': ' + m.message.replace(/\s+/g, ' ')));
    } else {
      preview.textContent = 'No messages yet';
    }
    bottom.append(preview);
  }
  if (c.unread) {
    const n = unreadText(c.unread);
    const badge = el('span', 'unread', n);
    badge.setAttribute('aria-label', `${n} unread`);
    badge.dataset.count = String(c.unread);
    bottom.append(badge);
  }
  main.append(bottom);
  a.append(iconWrap, main);
  li.append(a);
  return li;
}

function initial(name) {
  return ([...name][0] || '?').toUpperCase();
}

/** The chat pages' sidebar: the list, the phone drawer and the notifications button. */
export function setUpSidebar(inbox) {
  const sidebar = document.getElementById('sidebar');
  const toggle = document.getElementById('sidebar-toggle');
  const backdrop = document.getElementById('sidebar-backdrop');
  const closeBtn = document.getElementById('sidebar-close');
  const toggleCount = document.getElementById('sidebar-toggle-count');
  if (!sidebar) return;

  renderConversations(inbox, {
    list: document.getElementById('sidebar-list'),
    status: document.getElementById('sidebar-status'),
    empty: document.getElementById('sidebar-empty'),
    preview: true,
  });

  // Unread elsewhere shows on the drawer button, so a phone user knows to look.
  inbox.addEventListener('change', () => {
    let n = 0;
    for (const c of inbox.conversations()) if (c.room !== inbox.current) n += c.unread;
    toggleCount.textContent = n ? unreadText(n) : '';
    toggleCount.hidden = !n;
    toggle.setAttribute('aria-label', n ? `Conversations, ${unreadText(n)} unread` : 'Conversations');
  });

  const isOpen = () => document.body.classList.contains('drawer-open');
  let animTimer = null;
  const setOpen = (open) => {
    document.body.classList.add('drawer-anim');
    clearTimeout(animTimer);
    animTimer = setTimeout(() => document.body.classList.remove('drawer-anim'), 300);
    document.body.classList.toggle('drawer-open', open);
    toggle.setAttribute('aria-expanded', String(open));
    backdrop.hidden = !open;
    // Off screen, the drawer's links must not take keyboard focus.
    sidebar.inert = PHONE.matches && !open;
    if (open) {
      const target = sidebar.querySelector('[aria-current="page"]') || sidebar.querySelector('a, button');
      if (target) target.focus();
    } else if (PHONE.matches) {
      toggle.focus();
    }
  };
  const sync = () => {
    if (!PHONE.matches) document.body.classList.remove('drawer-open');
    backdrop.hidden = !PHONE.matches || !isOpen();
    sidebar.inert = PHONE.matches && !isOpen();
    toggle.setAttribute('aria-expanded', String(isOpen()));
  };
  toggle.addEventListener('click', () => setOpen(!isOpen()));
  closeBtn.addEventListener('click', () => setOpen(false));
  backdrop.addEventListener('click', () => setOpen(false));
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && isOpen()) setOpen(false);
  });
  PHONE.addEventListener('change', sync);
  sync();

  setUpNotificationsButton(document.getElementById('notify-button'), document.getElementById('notify-state'));
}

/** "Enable notifications": permission is asked only from this click, never on load. */
export function setUpNotificationsButton(button, state) {
  if (!button) return;
  const show = () => {
    const p = Notifier.permission();
    button.hidden = p !== 'default';
    if (state) {
      state.textContent = p === 'granted' ? 'Notifications are on for direct messages and @mentions.'
        : p === 'denied' ? 'Notifications are blocked in this browser’s site settings.' : '';
    }
  };
  button.addEventListener('click', async () => {
    await Notifier.request();
    show();
  });
  show();
}
