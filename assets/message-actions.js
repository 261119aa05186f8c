/* chatctl message actions: editing and deleting messages in the open
 * conversation (PROTOCOL.md "Edit and delete"). The `⋯` button of one's own
 * message (any message for a superuser), shown on hover or after a tap,
 * opens a menu; Up arrow in the empty box edits the last own message; a
 * deletion is confirmed in a dialog. The resulting `edit`/`delete` frames
 * come back through the view like everyone else's. */
import { me, getJson, randomId } from './util.js';

export class MessageActions {
  constructor(view) {
    this.view = view;
    const $ = (id) => document.getElementById(id);
    this.list = view.list;
    this.input = view.input;
    this.composer = view.composer;
    this.editBar = $('edit-bar');
    this.sendButton = $('send-button');
    this.menu = $('msg-menu');
    this.confirmDialog = $('confirm-delete');
    this.editing = null;        // {id, row, draft} while the composer edits a message
    this.menuRow = null;
    this.isSuperuser = false;
    getJson('/api/me').then((who) => {
      this.isSuperuser = !!(who && who.is_superuser === true);
      document.body.classList.toggle('superuser', this.isSuperuser);
    }).catch(() => {});
  }

  /** Sends the composer's text as the new text of the message being edited. */
  saveEdit(text, clientId) {
    const { id, row } = this.editing;
    if (text === row.querySelector('.text').textContent) {
      this.cancelEdit();
      return;
    }
    if (!this.view.conn.send({ type: 'edit', target: id, message: text, client_id: clientId })) {
      this.view.showNotice('Not connected — your edit was not saved');
      return;
    }
    this.cancelEdit();
  }

  canEdit(row) {
    return !!row && !!row.dataset.id && row.dataset.author === me;
  }

  canDelete(row) {
    return !!row && !!row.dataset.id && (row.dataset.author === me || this.isSuperuser);
  }

  startEdit(row) {
    if (!this.canEdit(row)) return;
    this.editing = { id: row.dataset.id, row, draft: this.editing ? this.editing.draft : this.input.value };
    for (const r of this.list.querySelectorAll('.msg.editing')) r.classList.remove('editing');
    row.classList.add('editing');
    this.editBar.hidden = false;
    this.composer.classList.add('is-editing');
    this.sendButton.textContent = 'Save';
    this.input.value = row.querySelector('.text').textContent;
    this.input.setAttribute('aria-describedby', 'edit-bar');
    this.view.onInputChanged();
    this.input.focus();
    this.input.setSelectionRange(this.input.value.length, this.input.value.length);
  }

  cancelEdit() {
    if (!this.editing) return;
    const { row, draft } = this.editing;
    this.editing = null;
    row.classList.remove('editing');
    this.editBar.hidden = true;
    this.composer.classList.remove('is-editing');
    this.sendButton.textContent = 'Send';
    this.input.removeAttribute('aria-describedby');
    this.input.value = draft || '';
    this.view.onInputChanged();
    this.input.focus();
  }

  lastOwnRow() {
    const rows = this.list.querySelectorAll('li.msg.mine[data-id]');
    return rows.length ? rows[rows.length - 1] : null;
  }

  askDelete(row) {
    if (!this.canDelete(row)) return;
    const dialog = this.confirmDialog;
    dialog.querySelector('.quote').textContent = row.querySelector('.text').textContent;
    dialog.returnValue = '';
    const id = row.dataset.id;
    const onClose = () => {
      dialog.removeEventListener('close', onClose);
      if (dialog.returnValue === 'delete') {
        if (!this.view.conn.send({ type: 'delete', target: id, client_id: randomId() })) {
          this.view.showNotice('Not connected — the message was not deleted');
        } else if (this.editing && this.editing.id === id) {
          this.cancelEdit();
        }
      }
      this.input.focus();
    };
    dialog.addEventListener('close', onClose);
    dialog.showModal();
    dialog.querySelector('button[value="cancel"]').focus();
  }

  openMenu(row, button) {
    this.closeMenu();
    const canEdit = this.canEdit(row);
    const canDelete = this.canDelete(row);
    if (!canEdit && !canDelete) return;
    this.menuRow = row;
    const editItem = this.menu.querySelector('[data-action="edit"]');
    editItem.hidden = !canEdit;
    this.menu.querySelector('[data-action="delete"]').hidden = !canDelete;
    row.classList.add('menu-open');
    button.setAttribute('aria-expanded', 'true');
    this.menu.hidden = false;
    // Place the menu under its button, inside the window.
    const b = button.getBoundingClientRect();
    const m = this.menu.getBoundingClientRect();
    const left = Math.max(8, Math.min(b.right - m.width, window.innerWidth - m.width - 8));
    const below = b.bottom + 4 + m.height < window.innerHeight;
    this.menu.style.left = `${left}px`;
    this.menu.style.top = `${below ? b.bottom + 4 : b.top - m.height - 4}px`;
    this.menu.querySelector('button:not([hidden])').focus();
  }

  closeMenu(refocus = false) {
    if (!this.menuRow) return;
    const row = this.menuRow;
    this.menuRow = null;
    this.menu.hidden = true;
    row.classList.remove('menu-open');
    const btn = row.querySelector('.msg-menu-btn');
    if (btn) {
      btn.setAttribute('aria-expanded', 'false');
      if (refocus) btn.focus();
    }
  }

  wire() {
    document.getElementById('edit-cancel').addEventListener('click', () => this.cancelEdit());

    // Tapping a message shows its menu button (touch has no hover); the
    // button opens the menu.
    this.list.addEventListener('click', (event) => {
      const btn = event.target.closest('.msg-menu-btn');
      if (btn) {
        const row = btn.closest('li.msg');
        if (this.menuRow === row) this.closeMenu();
        else this.openMenu(row, btn);
        return;
      }
      const row = event.target.closest('li.msg');
      if (row && !event.target.closest('a')) {
        for (const r of this.list.querySelectorAll('.msg.tapped')) if (r !== row) r.classList.remove('tapped');
        row.classList.toggle('tapped');
      }
    });
    this.menu.addEventListener('click', (event) => {
      const item = event.target.closest('button[data-action]');
      const row = this.menuRow;
      if (!item || !row) return;
      this.closeMenu();
      if (item.dataset.action === 'edit') this.startEdit(row);
      else this.askDelete(row);
    });
    this.menu.addEventListener('keydown', (event) => {
      const items = [...this.menu.querySelectorAll('button:not([hidden])')];
      const i = items.indexOf(document.activeElement);
      if (event.key === 'Escape' || event.key === 'Tab') {
        event.preventDefault();
        this.closeMenu(true);
      } else if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
        event.preventDefault();
        const step = event.key === 'ArrowDown' ? 1 : -1;
        items[(i + step + items.length) % items.length].focus();
      }
    });
    document.addEventListener('pointerdown', (event) => {
      if (this.menuRow && !this.menu.contains(event.target) && !event.target.closest('.msg-menu-btn')) this.closeMenu();
    });
    window.addEventListener('resize', () => this.closeMenu());

  }
}
