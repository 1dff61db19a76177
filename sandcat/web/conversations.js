// Server-side conversations (docs/protocol.md, "Conversations"): the pinned, muted and
// hidden flags the server keeps per user, and reads made on the user's other devices. The
// page connects with ?v=2, so a change made elsewhere arrives as a `conversation.updated`
// event; after a reconnect GET /conversation?since=... catches up on what was missed.

/** id -> the server's Conversation (flags, seq, read_seq, unread). */
const known = new Map();
let syncTime = 0;

export function resetConversations() {
  known.clear();
  syncTime = 0;
}

/** Load the conversations changed since the last load (all of them the first time). */
export async function loadConversations(api) {
  try {
    const body = await api.request("GET", `/conversation?since=${syncTime}`);
    for (const conv of body.conversations) known.set(conv.id, conv);
    syncTime = body.sync_time;
  } catch {
    // Best effort: the page works on with its own unread counts and no flags.
  }
}

/**
 * A v2 text frame. Returns the conversation it updated, or null for other events.
 * `readElsewhere(id)` is called when the conversation is now read to its end (another
 * device read it), so the page can clear its own unread marks.
 */
export function onEvent(text, readElsewhere) {
  let event;
  try {
    event = JSON.parse(text);
  } catch {
    return null;
  }
  if (event?.event !== "conversation.updated") return null;
  const conv = event.data;
  known.set(conv.id, conv);
  if (conv.unread === 0) readElsewhere(conv.id);
  return conv;
}

/**
 * A chat message of conversation `id` came in live or was sent from this page: the server
 * lists a hidden conversation again once a message follows the hiding, and so does the page
 * (no event tells it: the message itself is the news).
 */
export function messageArrived(id) {
  const conv = known.get(id);
  if (conv?.hidden) known.set(id, { ...conv, hidden: false });
}

export function flagsOf(id) {
  const conv = known.get(id);
  return { pinned: Boolean(conv?.pinned), muted: Boolean(conv?.muted), hidden: Boolean(conv?.hidden) };
}

/**
 * The conversations to list: pinned first, then newest first; hidden ones (until their next
 * message) left out unless open.
 */
export function arrange(convs, { lastTime, current }) {
  return convs
    .filter((conv) => !flagsOf(conv.id).hidden || conv.id === current)
    .sort(
      (a, b) =>
        Number(flagsOf(b.id).pinned) - Number(flagsOf(a.id).pinned) || lastTime(b) - lastTime(a),
    );
}

/** Marks beside a conversation's title: a pin and a muted bell. */
export function flagMarks(id) {
  const { pinned, muted } = flagsOf(id);
  const marks = [];
  if (pinned) marks.push(mark("pin-mark", "📌", "Pinned"));
  if (muted) marks.push(mark("mute-mark", "🔕", "Muted"));
  return marks;
}

function mark(className, glyph, title) {
  const span = document.createElement("span");
  span.className = className;
  span.textContent = glyph;
  span.title = title;
  span.setAttribute("aria-label", title);
  return span;
}

/** Whether the conversation's unread messages count towards the page title. */
export function counts(id) {
  return !flagsOf(id).muted;
}

/** Fill `box` with the Pin / Mute / Hide toggles of conversation `id`. */
export function renderActions(box, id, api, changed) {
  box.replaceChildren();
  const flags = flagsOf(id);
  const toggles = [
    ["pinned", flags.pinned ? "Unpin" : "Pin"],
    ["muted", flags.muted ? "Unmute" : "Mute"],
    ["hidden", flags.hidden ? "Unhide" : "Hide"],
  ];
  for (const [flag, label] of toggles) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = `conv-action ${flag}`;
    button.textContent = label;
    button.setAttribute("aria-pressed", String(flags[flag]));
    button.onclick = async () => {
      button.disabled = true;
      try {
        const conv = await api.request("PUT", `/conversation/${encodeURIComponent(id)}`, {
          json: { [flag]: !flags[flag] },
        });
        known.set(conv.id, conv);
      } catch (error) {
        console.warn("conversation flag not changed", error);
      }
      changed();
    };
    box.append(button);
  }
}
