/* chatctl room and direct-chat page: the conversation view (conversation.js)
 * beside the sidebar of every conversation (sidebar.js), both fed by one
 * user socket (inbox.js). */
import { Inbox } from './inbox.js';
import { setUpSidebar } from './sidebar.js';
import { ConversationView, conversationFromPath } from './conversation.js';

const conv = conversationFromPath(location.pathname);
const inbox = new Inbox();
if (conv) {
  const view = new ConversationView(conv, inbox);
  inbox.current = conv.room;
  setUpSidebar(inbox);
  view.start();
} else {
  const notice = document.getElementById('notice');
  if (notice) notice.textContent = 'This address does not name a room or a person.';
  setUpSidebar(inbox);
}
inbox.connect();
