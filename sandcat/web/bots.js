// Bots (docs/protocol.md, "Bots"): which contacts are bot accounts, and the badge that says
// so. The list comes from GET /bot/directory (any signed-in user may read it); a v1 client
// simply shows bots as ordinary friends.

const bots = new Set();

/** Refresh the set of bot ids; the page works on without it if the call fails. */
export async function loadBots(api) {
  try {
    const listed = await api.request("GET", "/bot/directory");
    bots.clear();
    for (const bot of listed) bots.add(bot.id);
  } catch {
    // Best effort: no badges until the next refresh.
  }
}

export function isBot(userId) {
  return bots.has(userId);
}

/** The "bot" badge for a contact, or null when the contact is not a bot. */
export function botBadge(userId) {
  if (!bots.has(userId)) return null;
  const badge = document.createElement("span");
  badge.className = "bot-badge";
  badge.textContent = "bot";
  badge.title = "An automated account: its messages are sent by a program";
  return badge;
}
