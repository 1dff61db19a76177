// The Sandcat web chat: sign-in, contacts, groups and live chat over the WebSocket with
// bincode Msg frames, offline sync by sequence numbers, files through the file routes.
//
// State lives in memory; the session (tokens) in sessionStorage, so each browser tab can be
// a different user. After a sign-in or a reload the page pulls the whole inbox and outbox
// (POST /message) and rebuilds its conversations; after a reconnect it pulls only the gap.

import { Api, ApiError } from "./api.js";
import { botBadge, isBot, loadBots } from "./bots.js";
import {
  arrange,
  counts,
  flagMarks,
  loadConversations,
  messageArrived,
  onEvent,
  renderActions,
  resetConversations,
} from "./conversations.js";
import { initDevices, markRequestsRead, onDeviceEvent, resetDevices } from "./devices.js";
import { offerGithub, takeGithubLanding } from "./oauth.js";
import {
  ContentType,
  MsgType,
  decodeFriend,
  decodeFriendRequest,
  decodeGroupInfo,
  decodeGroupInvitation,
  decodeMsg,
  decodeStrings,
  encodeMsg,
  encodeRead,
  msgFromJson,
  newMsg,
} from "./bincode.js";

const api = new Api();
const $ = (id) => document.getElementById(id);
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();
const PLATFORM_DESKTOP = 0;
const SESSION_KEY = "sandcat.session";

/** Close codes of the gateway and what the page tells the user. */
const CLOSE_CODES = {
  4001: "You were signed out here because this account signed in on another page or device.",
  4002:
    "Your session has ended (signed out here or from another device, or password changed). " +
    "Please sign in again.",
  4008: "The connection fell behind and was reset. Reconnecting…",
  1008: "Too many connections from this address. Close other tabs; reconnecting…",
  1011: "The server could not open the session. Reconnecting…",
  1009: "A message was too big for the connection. Reconnecting…",
  1007: "The server closed the connection after malformed frames. Reconnecting…",
  1002: "The server closed the connection after a protocol error. Reconnecting…",
  1001: "The server is restarting. Reconnecting…",
};

const state = {
  user: null,
  wsAddr: "",
  pointerId: randomId(),
  ws: null,
  connected: false,
  reconnectAttempt: 0,
  reconnectTimer: null,
  stopped: true,
  seq: 0, // highest receive seq applied without a gap
  sendSeq: 0, // highest send seq applied without a gap
  syncing: null,
  syncAgain: false,
  seen: new Set(), // server_ids already shown
  friends: new Map(), // user id -> {id, name, avatar, signature}
  requests: new Map(), // fs_id -> friend request
  groups: new Map(), // group id -> {id, name, owner, members: Map(user id -> name)}
  conversations: new Map(), // conversation id -> conversation
  pending: new Map(), // local_id -> {message, frame} waiting for its ack (resent on reconnect)
  unsent: [], // other frames (reads) to send once connected
  renewed: false, // the access token was renewed after a 4002 and not used since
  current: null,
};

function randomId(size = 16) {
  const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  const bytes = crypto.getRandomValues(new Uint8Array(size));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
}

/** Build an element: h("div", {class: "x", onclick: f}, child, "text", ...). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

// ---------------------------------------------------------------- notices

let toastTimer = null;

function toast(text, kind = "error") {
  const el = $("toast");
  el.textContent = text;
  el.className = `toast ${kind}`;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), 6000);
}

function setBanner(text, action = null) {
  const el = $("banner");
  el.replaceChildren();
  el.hidden = !text;
  if (!text) return;
  el.append(h("span", { text }));
  if (action) el.append(h("button", { type: "button", onclick: action.run, text: action.label }));
}

function setConnection(text, ok) {
  $("connection").textContent = text;
  $("connection").classList.toggle("online", ok);
}

/** Run an async action from the UI; its error becomes a toast (or the given element). */
async function attempt(action, errorEl = null) {
  try {
    if (errorEl) errorEl.textContent = "";
    return await action();
  } catch (error) {
    const text = error instanceof ApiError ? error.message : `Something went wrong: ${error}`;
    if (errorEl) errorEl.textContent = text;
    else toast(text);
    return undefined;
  }
}

// ---------------------------------------------------------------- sign-in and registration

function showTab(register) {
  $("tab-login").classList.toggle("active", !register);
  $("tab-register").classList.toggle("active", register);
  $("login-form").hidden = register;
  $("register-form").hidden = !register;
  $("auth-error").textContent = "";
}

async function sendCode() {
  const email = $("reg-email").value.trim();
  if (!email) {
    $("auth-error").textContent = "Enter your e-mail address first.";
    return;
  }
  await attempt(async () => {
    await api.sendCode(email);
    const info = await fetch("/web/info.json").then((r) => r.json());
    const hint = $("code-hint");
    hint.hidden = false;
    hint.textContent = info.codes_in_log
      ? "This server has no mail server configured, so the code is written to the server log: " +
        `look for the line with "register_code email=${email} code=…" in the terminal ` +
        "where Sandcat runs."
      : `A 6-digit code is on its way to ${email}. It is valid for 5 minutes.`;
  }, $("auth-error"));
}

async function register(event) {
  event.preventDefault();
  const email = $("reg-email").value.trim();
  const password = $("reg-password").value;
  await attempt(async () => {
    await api.register({
      name: $("reg-name").value.trim(),
      email,
      password,
      code: $("reg-code").value.trim(),
      avatar: `avatar${1 + Math.floor(Math.random() * 3)}.png`,
    });
    await signIn(email, password);
  }, $("auth-error"));
}

async function login(event) {
  event.preventDefault();
  await attempt(
    () => signIn($("login-email").value.trim(), $("login-password").value),
    $("auth-error"),
  );
}

async function signIn(account, password) {
  const result = await api.login(account, password);
  const session = {
    user: result.user,
    wsAddr: result.ws_addr,
    token: api.token,
    refreshToken: api.refreshToken,
  };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  await start(session);
}

function saveTokens() {
  const raw = sessionStorage.getItem(SESSION_KEY);
  if (!raw) return;
  const session = JSON.parse(raw);
  session.token = api.token;
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

async function signOut() {
  const user = state.user;
  stop();
  if (user) await attempt(() => api.logout(user.id));
  endSession("");
}

/** Back to the sign-in form, with a reason when the session ended by itself. */
function endSession(reason) {
  stop();
  sessionStorage.removeItem(SESSION_KEY);
  api.token = "";
  api.refreshToken = "";
  state.user = null;
  $("chat").hidden = true;
  $("auth").hidden = false;
  document.title = "Sandcat";
  $("auth-error").textContent = reason;
}

// ---------------------------------------------------------------- start, connect, sync

async function start(session) {
  api.token = session.token;
  api.refreshToken = session.refreshToken;
  state.user = session.user;
  state.wsAddr = session.wsAddr;
  state.stopped = false;
  resetData();
  $("auth").hidden = true;
  $("chat").hidden = false;
  $("me-name").textContent = state.user.name;
  fillAvatar($("me-avatar"), state.user.name, state.user.avatar, state.user.id);
  await loadContacts();
  await loadConversations(api);
  renderAll();
  connect();
}

function resetData() {
  state.seq = 0;
  state.sendSeq = 0;
  state.seen.clear();
  state.friends.clear();
  state.requests.clear();
  state.groups.clear();
  state.conversations.clear();
  state.pending.clear();
  state.unsent = [];
  state.current = null;
  resetConversations();
  resetDevices();
}

function stop() {
  state.stopped = true;
  clearTimeout(state.reconnectTimer);
  if (state.ws) {
    state.ws.onclose = null;
    state.ws.close(1000, "bye");
    state.ws = null;
  }
  state.connected = false;
}

async function loadContacts() {
  const me = state.user.id;
  const { friends } = await api.friendsSince(me, 0);
  for (const friend of friends) addFriend(friend);
  for (const request of await api.pendingRequests(me)) state.requests.set(request.fs_id, request);
  await loadBots(api);
}

/** Login's ws_addr names the gateway; a loopback address is reached at this page's host. */
function wsUrl() {
  const url = new URL(state.wsAddr);
  const loopback = ["127.0.0.1", "localhost", "0.0.0.0", "[::1]"];
  if (loopback.includes(url.hostname) && !loopback.includes(location.hostname)) {
    url.hostname = location.hostname;
  }
  const path = url.pathname.replace(/\/$/, "");
  const parts = [state.user.id, "conn", state.pointerId, PLATFORM_DESKTOP, api.token];
  url.pathname = `${path}/${parts.map(encodeURIComponent).join("/")}`;
  url.search = "?v=2"; // events (docs/protocol.md, "Protocol v2")
  return url.toString();
}

function connect() {
  if (state.stopped || !navigator.onLine) return;
  setConnection("connecting…", false);
  const ws = new WebSocket(wsUrl());
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  ws.onopen = () => {
    state.connected = true;
    state.reconnectAttempt = 0;
    state.renewed = false;
    setConnection("online", true);
    setBanner("");
    for (const frame of state.unsent.splice(0)) ws.send(frame);
    // Unacked messages again: a resend with the same local_id is answered, not stored twice.
    for (const { message, frame } of state.pending.values()) {
      message.status = "sending";
      ws.send(frame);
    }
    renderAll();
    sync();
    loadConversations(api).then(renderAll);
  };
  ws.onmessage = (event) => {
    if (typeof event.data === "string") {
      if (onEvent(event.data, readElsewhere) || onDeviceEvent(event.data)) renderAll();
      return;
    }
    let msg;
    try {
      msg = decodeMsg(new Uint8Array(event.data));
    } catch (error) {
      console.warn("undecodable frame", error);
      return;
    }
    ingest(msg, true);
  };
  ws.onclose = (event) => onClose(ws, event.code);
}

async function onClose(ws, code) {
  if (state.ws !== ws) return;
  state.ws = null;
  state.connected = false;
  setConnection("offline", false);
  if (state.stopped) return;
  if (code === 4001) {
    state.stopped = true;
    setBanner(CLOSE_CODES[4001], { label: "Use here", run: resume });
    return;
  }
  if (code === 4002) {
    // An expired access token is renewed (once); a revoked session cannot be.
    if (!state.renewed && (await api.refresh())) {
      state.renewed = true;
      connect();
    } else {
      endSession(CLOSE_CODES[4002]);
    }
    return;
  }
  const attemptNo = Math.min(++state.reconnectAttempt, 5);
  setBanner(CLOSE_CODES[code] || `Connection lost (code ${code}). Reconnecting…`);
  state.reconnectTimer = setTimeout(connect, 1000 * attemptNo);
}

function resume() {
  state.stopped = false;
  setBanner("");
  connect();
}

function goOffline() {
  if (!state.user) return;
  setBanner("You are offline. New messages will arrive when you are back online.");
  if (state.ws) {
    const ws = state.ws;
    state.ws = null;
    ws.onclose = null;
    ws.close(1000, "offline");
  }
  state.connected = false;
  setConnection("offline", false);
}

function goOnline() {
  if (!state.user || state.stopped) return;
  clearTimeout(state.reconnectTimer);
  setBanner("");
  if (!state.ws) connect();
}

/** Pull what this page has not seen: (seq, server seq] and (send_seq, server send_seq]. */
function sync() {
  if (state.syncing) {
    state.syncAgain = true;
    return state.syncing;
  }
  state.syncing = (async () => {
    do {
      state.syncAgain = false;
      await attempt(pullGap);
    } while (state.syncAgain && !state.stopped);
    state.syncing = null;
    renderAll();
  })();
  return state.syncing;
}

async function pullGap() {
  const me = state.user.id;
  const counters = await api.counters(me);
  // A server may cap one pull (limits.pull_max_messages): pull again from the highest seqs
  // received until the range is covered or nothing more comes.
  let start = state.seq;
  let sendStart = state.sendSeq;
  while (start < counters.seq || sendStart < counters.send_seq) {
    const page = (await api.pull(me, start, counters.seq, sendStart, counters.send_seq)).map(
      msgFromJson,
    );
    if (!page.length) break;
    for (const msg of page) ingest(msg, false);
    const seqs = page.map((m) => m.seq).filter((s) => s > 0);
    const sendSeqs = page.filter((m) => m.seq === 0).map((m) => m.send_seq);
    start = seqs.length ? Math.max(start, ...seqs) : counters.seq;
    sendStart = sendSeqs.length ? Math.max(sendStart, ...sendSeqs) : counters.send_seq;
  }
  state.seq = Math.max(state.seq, counters.seq);
  state.sendSeq = Math.max(state.sendSeq, counters.send_seq);
}

/** A live copy whose seq skips one we have not seen means frames were missed: pull them. */
function noteSeq(field, value, live) {
  if (value <= state[field]) return;
  if (!live || value === state[field] + 1) state[field] = value;
  else sync();
}

// ---------------------------------------------------------------- incoming messages

function ingest(msg, live) {
  const me = state.user.id;
  if (msg.msg_type === MsgType.MSG_REC_RESP) {
    onAck(msg, live);
    return;
  }
  if (msg.seq > 0) noteSeq("seq", msg.seq, live);
  else if (msg.send_id === me && msg.send_seq > 0) noteSeq("sendSeq", msg.send_seq, live);
  if (msg.server_id) {
    if (state.seen.has(msg.server_id)) return;
    state.seen.add(msg.server_id);
  }
  try {
    handle(msg, live);
  } catch (error) {
    console.warn("unreadable message", msg, error);
  }
  if (live) renderAll();
}

function handle(msg, live) {
  const me = state.user.id;
  const mine = msg.send_id === me;
  switch (msg.msg_type) {
    case MsgType.SINGLE_MSG: {
      const peer = mine ? msg.receiver_id : msg.send_id;
      const conv = conversationFor(peer, false);
      if (!state.friends.has(peer) && !mine && msg.nickname) conv.title = msg.nickname;
      addMessage(conv, chatMessage(msg));
      if (live) messageArrived(peer);
      break;
    }
    case MsgType.GROUP_MSG: {
      const group = state.groups.get(msg.group_id);
      if (group && !mine) group.members.set(msg.send_id, msg.nickname || "member");
      addMessage(conversationFor(msg.group_id, true), chatMessage(msg));
      if (live) messageArrived(msg.group_id);
      break;
    }
    case MsgType.FRIEND_APPLY_REQ: {
      if (mine) break;
      const request = decodeFriendRequest(msg.content);
      if (!state.friends.has(request.user_id)) state.requests.set(request.fs_id, request);
      break;
    }
    case MsgType.FRIEND_APPLY_RESP: {
      if (mine) break;
      const friend = addFriend(decodeFriend(msg.content));
      for (const [fsId, request] of state.requests) {
        if (request.user_id === friend.id) state.requests.delete(fsId);
      }
      const text = `You and ${friend.name} are now friends.`;
      addMessage(conversationFor(friend.id, false), notice(msg, text));
      loadBots(api).then(renderAll);
      break;
    }
    case MsgType.FRIEND_DELETE: {
      const peer = mine ? msg.receiver_id : msg.send_id;
      const conv = state.conversations.get(peer);
      state.friends.delete(peer);
      if (conv) addMessage(conv, notice(msg, "This contact removed the friendship."));
      break;
    }
    case MsgType.GROUP_INVITATION: {
      const { info, members } = decodeGroupInvitation(msg.content);
      if (!info) break;
      const group = addGroup(info, members);
      const by = memberName(group, msg.send_id);
      const text = `${by} created the group “${group.name}”.`;
      addMessage(conversationFor(group.id, true), notice(msg, text));
      break;
    }
    case MsgType.GROUP_INVITE_NEW: {
      const ids = decodeStrings(msg.content);
      const group = state.groups.get(msg.group_id);
      const by = memberName(group, msg.send_id);
      const conv = conversationFor(msg.group_id, true);
      const count = ids.length > 1 ? `${ids.length} new members` : "a new member";
      addMessage(conv, notice(msg, `${by} invited ${count}.`));
      loadGroup(msg.group_id); // the new members' names, or the whole group for a new member
      break;
    }
    case MsgType.GROUP_MEMBER_EXIT:
    case MsgType.GROUP_REMOVE_MEMBER:
    case MsgType.GROUP_DISMISS: {
      const conv = conversationFor(msg.group_id, true);
      const group = state.groups.get(msg.group_id);
      const who = memberName(group, msg.send_id);
      let text = `${who} dismissed the group.`;
      let left = [];
      if (msg.msg_type === MsgType.GROUP_MEMBER_EXIT) {
        text = `${who} left the group.`;
        left = [msg.send_id];
      } else if (msg.msg_type === MsgType.GROUP_REMOVE_MEMBER) {
        left = decodeStrings(msg.content);
        const names = left.map((id) => (id === me ? "you" : memberName(group, id)));
        text = `${who} removed ${names.join(", ")} from the group.`;
      }
      for (const id of left) group?.members.delete(id);
      if (msg.msg_type === MsgType.GROUP_DISMISS || left.includes(me)) conv.closed = true;
      addMessage(conv, notice(msg, text));
      break;
    }
    case MsgType.GROUP_UPDATE: {
      const info = decodeGroupInfo(msg.content);
      const group = state.groups.get(info.id);
      if (group) group.name = info.name;
      const conv = state.conversations.get(info.id);
      if (conv) conv.title = info.name;
      break;
    }
    default:
      break;
  }
}

function onAck(ack, live) {
  const pending = state.pending.get(ack.local_id);
  if (ack.send_seq > 0) noteSeq("sendSeq", ack.send_seq, live);
  if (!pending) {
    if (ack.content_type === ContentType.ERROR) toast(explainRefusal(fromUtf8.decode(ack.content)));
    return;
  }
  state.pending.delete(ack.local_id);
  const { message } = pending;
  if (ack.content_type === ContentType.ERROR) {
    message.status = "failed";
    message.error = explainRefusal(fromUtf8.decode(ack.content));
    toast(message.error);
  } else {
    message.status = "sent";
    message.serverId = ack.server_id;
    message.time = ack.send_time || message.time;
    if (ack.server_id) state.seen.add(ack.server_id);
  }
  renderAll();
}

/** The gateway's refusal text, said for a person. */
function explainRefusal(reason) {
  if (reason.includes("not your friend")) {
    return (
      "Not delivered: you are not friends with this person (yet). " +
      "Send a friend request first."
    );
  }
  if (reason.includes("rate limited")) {
    return "Not delivered: you are sending too fast. Wait a moment and try again.";
  }
  if (reason.includes("larger than")) return `Not delivered: the message is too long (${reason}).`;
  return `Not delivered: ${reason}.`;
}

// ---------------------------------------------------------------- the model

function addFriend(friend) {
  const entry = {
    id: friend.friend_id,
    name: friend.remark || friend.name,
    avatar: friend.avatar,
    signature: friend.signature,
  };
  state.friends.set(entry.id, entry);
  const conv = conversationFor(entry.id, false);
  conv.title = entry.name;
  conv.avatar = entry.avatar;
  return entry;
}

function addGroup(info, members) {
  const group = state.groups.get(info.id) || { id: info.id, members: new Map() };
  group.name = info.name;
  group.owner = info.owner;
  for (const member of members) group.members.set(member.user_id, member.group_name);
  state.groups.set(group.id, group);
  const conv = conversationFor(group.id, true);
  conv.title = group.name;
  return group;
}

/** The group's info and members; quiet when it is gone (dismissed, or we were removed). */
async function loadGroup(groupId) {
  try {
    const { group, members } = await api.groupWithMembers(state.user.id, groupId);
    addGroup(group, members);
    renderAll();
  } catch (error) {
    console.warn("group not loaded", groupId, error);
  }
}

function memberName(group, userId) {
  if (userId === state.user.id) return "You";
  return group?.members.get(userId) || state.friends.get(userId)?.name || "a member";
}

function conversationFor(id, isGroup) {
  let conv = state.conversations.get(id);
  if (!conv) {
    const friend = state.friends.get(id);
    const group = state.groups.get(id);
    conv = {
      id,
      isGroup,
      title: (isGroup ? group?.name : friend?.name) || (isGroup ? "Group" : "Unknown user"),
      avatar: friend?.avatar || "",
      messages: [],
      closed: false,
    };
    state.conversations.set(id, conv);
  }
  return conv;
}

function chatMessage(msg) {
  const me = state.user.id;
  return {
    key: msg.server_id || msg.local_id,
    localId: msg.local_id,
    serverId: msg.server_id,
    from: msg.send_id,
    nickname: msg.nickname,
    mine: msg.send_id === me,
    contentType: msg.content_type,
    content:
      msg.content_type === ContentType.TEXT
        ? fromUtf8.decode(msg.content)
        : parseFile(msg.content),
    time: msg.send_time || msg.create_time,
    seq: msg.seq,
    isRead: msg.is_read,
    status: "sent",
    error: "",
  };
}

function notice(msg, text) {
  return {
    key: msg.server_id || randomId(),
    system: true,
    content: text.charAt(0).toUpperCase() + text.slice(1),
    time: msg.send_time || msg.create_time,
    seq: msg.seq,
    mine: msg.send_id === state.user.id,
    isRead: true,
  };
}

/** Image and file messages carry "server_name||original_name||size||ext". */
function parseFile(bytes) {
  const [key = "", name = "", size = "0", ext = ""] = fromUtf8.decode(bytes).split("||");
  return { key, name: name || key, size: Number(size) || 0, ext };
}

function addMessage(conv, message) {
  if (message.localId && conv.messages.some((m) => m.localId === message.localId && m.mine)) return;
  conv.messages.push(message);
  conv.messages.sort((a, b) => a.time - b.time);
}

/** Another device read the conversation to its end: so has this page. */
function readElsewhere(id) {
  const conv = state.conversations.get(id);
  if (conv) for (const message of unreadOf(conv)) message.isRead = true;
}

function unreadOf(conv) {
  return conv.messages.filter((m) => !m.mine && !m.system && !m.isRead && m.seq > 0);
}

function lastTime(conv) {
  return conv.messages.length ? conv.messages[conv.messages.length - 1].time : 0;
}

// ---------------------------------------------------------------- sending

/** Send now when connected; false when the frame has to wait for the connection. */
function transmit(frame) {
  if (!state.connected || !state.ws) return false;
  state.ws.send(frame);
  return true;
}

function sendChat(conv, contentType, content) {
  if (conv.closed) {
    toast("This group was dismissed: messages can no longer be sent.");
    return;
  }
  const me = state.user;
  const msg = newMsg({
    send_id: me.id,
    receiver_id: conv.id,
    local_id: randomId(),
    create_time: Date.now(),
    msg_type: conv.isGroup ? MsgType.GROUP_MSG : MsgType.SINGLE_MSG,
    content_type: contentType,
    content,
    group_id: conv.isGroup ? conv.id : "",
    platform: PLATFORM_DESKTOP,
    avatar: me.avatar,
    nickname: me.name,
  });
  const message = chatMessage(msg);
  message.status = state.connected ? "sending" : "queued";
  addMessage(conv, message);
  messageArrived(conv.id);
  const frame = encodeMsg(msg);
  state.pending.set(msg.local_id, { message, frame });
  transmit(frame);
  renderAll();
}

async function sendText(event) {
  event.preventDefault();
  const input = $("text-input");
  const text = input.value.trim();
  const conv = state.conversations.get(state.current);
  if (!text || !conv) return;
  input.value = "";
  sendChat(conv, ContentType.TEXT, utf8.encode(text));
}

async function sendFile() {
  const input = $("file-input");
  const file = input.files[0];
  input.value = "";
  const conv = state.conversations.get(state.current);
  if (!file || !conv) return;
  await attempt(async () => {
    setConnection(`uploading ${file.name}…`, state.connected);
    const key = await api.upload(file);
    setConnection(state.connected ? "online" : "offline", state.connected);
    const ext = file.name.includes(".") ? file.name.split(".").pop() : "";
    const kind = file.type.startsWith("image/") ? ContentType.IMAGE : ContentType.FILE;
    sendChat(conv, kind, utf8.encode([key, file.name, file.size, ext].join("||")));
  });
}

/** Tell the server the open conversation's received messages are read. */
function markRead(conv) {
  if (document.hidden) return;
  const unread = unreadOf(conv);
  if (!unread.length) return;
  for (const message of unread) message.isRead = true;
  const me = state.user.id;
  const frame = encodeMsg(
    newMsg({
      receiver_id: me,
      local_id: randomId(),
      create_time: Date.now(),
      msg_type: MsgType.READ,
      content: encodeRead(
        unread.map((m) => m.seq),
        me,
      ),
    }),
  );
  if (!transmit(frame)) state.unsent.push(frame);
}

// ---------------------------------------------------------------- contacts and groups

async function searchUser() {
  const pattern = $("search-input").value.trim();
  const out = $("search-result");
  out.replaceChildren();
  if (!pattern) return;
  await attempt(async () => {
    const user = await api.search(state.user.id, pattern);
    if (!user) {
      out.append(h("p", { class: "hint", text: `Nobody found for “${pattern}”.` }));
      return;
    }
    const known = user.is_friend || state.friends.has(user.id);
    const button = h("button", {
      type: "button",
      class: "primary",
      id: "apply-friend",
      text: known ? "Open chat" : "Send friend request",
      onclick: async () => {
        if (known) {
          $("add-friend-dialog").close();
          openConversation(user.id);
          return;
        }
        await attempt(async () => {
          await api.applyFriend(state.user.id, user.id, `Hi, I am ${state.user.name}`);
          button.disabled = true;
          button.textContent = "Request sent";
        });
      },
    });
    out.append(
      h(
        "div",
        { class: "person" },
        avatarEl(user.name, user.avatar, user.id),
        h(
          "div",
          { class: "person-text" },
          h("strong", { text: user.name }),
          h("span", { text: `found by ${user.match_type}` }),
        ),
        button,
      ),
    );
  }, out);
}

async function answerRequest(request, accept) {
  await attempt(async () => {
    if (accept) {
      const friend = addFriend(await api.agreeFriend(request.fs_id));
      addMessage(conversationFor(friend.id, false), {
        key: randomId(),
        system: true,
        content: `You and ${friend.name} are now friends.`,
        time: Date.now(),
        isRead: true,
      });
    } else {
      await api.denyFriend(request.fs_id);
    }
    state.requests.delete(request.fs_id);
    renderAll();
  });
}

function pickList(container, people) {
  container.replaceChildren();
  if (!people.length) container.append(h("p", { class: "hint", text: "No friends to add yet." }));
  for (const person of people) {
    container.append(
      h(
        "label",
        { class: "pick-item" },
        h("input", { type: "checkbox", value: person.id }),
        person.name,
      ),
    );
  }
}

function picked(container) {
  return Array.from(container.querySelectorAll("input:checked"), (el) => el.value);
}

function openGroupDialog() {
  pickList($("group-members"), [...state.friends.values()]);
  $("group-name").value = "";
  $("group-dialog").showModal();
}

async function createGroup() {
  const members = picked($("group-members"));
  const names = members.map((id) => state.friends.get(id)?.name).filter(Boolean);
  const name = $("group-name").value.trim() || [state.user.name, ...names].join(", ").slice(0, 64);
  if (!members.length) {
    toast("Pick at least one friend for the group.");
    return;
  }
  await attempt(async () => {
    const invitation = await api.createGroup(state.user.id, name, members);
    const group = addGroup(invitation.info, invitation.members);
    $("group-dialog").close();
    openConversation(group.id);
    sync(); // the outbox copy of the invitation: "You created the group"
  });
}

function openInviteDialog() {
  const group = state.groups.get(state.current);
  if (!group) return;
  pickList(
    $("invite-members"),
    [...state.friends.values()].filter((f) => !group.members.has(f.id)),
  );
  $("invite-dialog").showModal();
}

async function invite() {
  const members = picked($("invite-members"));
  const groupId = state.current;
  if (!members.length) return;
  await attempt(async () => {
    await api.inviteToGroup(state.user.id, groupId, members);
    $("invite-dialog").close();
    sync(); // the outbox copy of the invitation, then the members' names
  });
}

// ---------------------------------------------------------------- rendering

function hue(id) {
  let hash = 0;
  for (const ch of id) hash = (hash * 31 + ch.charCodeAt(0)) % 360;
  return hash;
}

function fillAvatar(el, name, avatar, id) {
  el.replaceChildren();
  el.style.setProperty("--hue", hue(id || name));
  if (avatar) {
    const img = h("img", { src: `/file/avatar/get/${encodeURIComponent(avatar)}`, alt: "" });
    img.addEventListener("error", () => img.remove());
    el.append(img);
  }
  el.append(h("span", { text: (name || "?").trim().charAt(0).toUpperCase() }));
}

function avatarEl(name, avatar, id, isGroup = false) {
  const el = h("span", { class: isGroup ? "avatar group" : "avatar" });
  fillAvatar(el, name, isGroup ? "" : avatar, id);
  return el;
}

function formatTime(ms, withDay = false) {
  if (!ms) return "";
  const date = new Date(ms);
  const now = new Date();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === now.toDateString()) return time;
  const day = date.toLocaleDateString([], { day: "numeric", month: "short" });
  return withDay ? `${day} ${time}` : day;
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function preview(conv) {
  const last = conv.messages[conv.messages.length - 1];
  if (!last) return conv.isGroup ? "Group created" : "Say hello";
  if (last.system) return last.content;
  const prefix = last.mine ? "You: " : conv.isGroup ? `${last.nickname || "member"}: ` : "";
  const body =
    last.contentType === ContentType.TEXT
      ? last.content
      : last.contentType === ContentType.IMAGE
        ? "Photo"
        : `File: ${last.content.name}`;
  return prefix + body;
}

function renderAll() {
  if (!state.user) return;
  renderRequests();
  const current = state.conversations.get(state.current);
  if (current) markRead(current);
  renderConversations();
  renderPane();
}

function renderRequests() {
  const list = $("request-list");
  list.replaceChildren();
  $("requests").hidden = state.requests.size === 0;
  for (const request of state.requests.values()) {
    list.append(
      h(
        "li",
        { class: "request" },
        avatarEl(request.name, request.avatar, request.user_id),
        h(
          "div",
          { class: "person-text" },
          h("strong", { text: request.name }),
          h("span", { text: request.apply_msg || "wants to be your friend" }),
        ),
        h("button", {
          type: "button",
          class: "primary accept",
          text: "Accept",
          onclick: () => answerRequest(request, true),
        }),
        h("button", {
          type: "button",
          class: "deny",
          text: "Decline",
          onclick: () => answerRequest(request, false),
        }),
      ),
    );
  }
  markRequestsRead(state.requests);
}

function renderConversations() {
  const list = $("conversations");
  list.replaceChildren();
  const convs = arrange([...state.conversations.values()], {
    lastTime,
    current: state.current,
  });
  $("no-conversations").hidden = convs.length > 0;
  const total = convs.reduce((sum, conv) => sum + (counts(conv.id) ? unreadOf(conv).length : 0), 0);
  document.title = total ? `(${total}) Sandcat` : "Sandcat";
  for (const conv of convs) {
    const unread = unreadOf(conv).length;
    list.append(
      h(
        "li",
        {
          class: `conversation${conv.id === state.current ? " active" : ""}`,
          "data-id": conv.id,
          onclick: () => openConversation(conv.id),
        },
        avatarEl(conv.title, conv.avatar, conv.id, conv.isGroup),
        h(
          "div",
          { class: "conv-text" },
          h(
            "div",
            { class: "conv-top" },
            h("strong", { class: "conv-title", text: conv.title }),
            conv.isGroup ? null : botBadge(conv.id),
            ...flagMarks(conv.id),
            h("time", { text: formatTime(lastTime(conv)) }),
          ),
          h(
            "div",
            { class: "conv-bottom" },
            h("span", { class: "conv-preview", text: preview(conv) }),
            unread ? h("span", { class: "badge", text: String(unread) }) : null,
          ),
        ),
      ),
    );
  }
}

function openConversation(id) {
  state.current = id;
  document.body.classList.add("conversation-open");
  renderAll();
  $("text-input").focus();
}

function renderPane() {
  const conv = state.conversations.get(state.current);
  $("pane-empty").hidden = Boolean(conv);
  $("pane-conversation").hidden = !conv;
  if (!conv) return;
  const group = state.groups.get(conv.id);
  $("pane-name").textContent = conv.title;
  $("pane-sub").textContent = conv.isGroup
    ? group
      ? `${group.members.size} members`
      : "group"
    : isBot(conv.id)
      ? "bot"
      : state.friends.get(conv.id)?.signature || "friend";
  fillAvatar($("pane-avatar"), conv.title, conv.isGroup ? "" : conv.avatar, conv.id);
  $("pane-avatar").classList.toggle("group", conv.isGroup);
  $("open-invite").hidden = !conv.isGroup || conv.closed;
  renderActions($("conv-actions"), conv.id, api, renderAll);
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.replaceChildren(...renderMessages(conv));
  if (atBottom || box.dataset.conv !== conv.id) box.scrollTop = box.scrollHeight;
  box.dataset.conv = conv.id;
}

/** What the page says under one of the user's own messages. */
const STATUS_TEXT = {
  sending: "sending…",
  queued: "waiting for connection",
  failed: "not delivered",
  sent: "✓",
};

function renderMessages(conv) {
  const out = [];
  let lastDay = "";
  for (const m of conv.messages) {
    const day = new Date(m.time || Date.now()).toDateString();
    if (day !== lastDay) {
      const label = new Date(m.time || Date.now()).toLocaleDateString([], {
        weekday: "long",
        day: "numeric",
        month: "long",
      });
      out.push(h("div", { class: "day", text: label }));
      lastDay = day;
    }
    if (m.system) {
      out.push(h("div", { class: "notice", text: m.content }));
      continue;
    }
    const group = state.groups.get(conv.id);
    const sender =
      conv.isGroup && !m.mine ? group?.members.get(m.from) || m.nickname || "member" : null;
    const status = m.mine ? STATUS_TEXT[m.status] : "";
    out.push(
      h(
        "div",
        { class: `bubble-row${m.mine ? " mine" : ""}` },
        h(
          "div",
          { class: `bubble${m.status === "failed" ? " failed" : ""}`, "data-key": m.key },
          sender ? h("div", { class: "sender", text: sender }) : null,
          renderBody(m),
          h(
            "div",
            { class: "meta" },
            h("time", { text: formatTime(m.time, true) }),
            status ? h("span", { class: "status", text: status }) : null,
          ),
          m.error ? h("div", { class: "bubble-error", text: m.error }) : null,
        ),
      ),
    );
  }
  return out;
}

function renderBody(m) {
  if (m.contentType === ContentType.TEXT) return h("div", { class: "text", text: m.content });
  const url = `/file/get/${encodeURIComponent(m.content.key)}`;
  if (m.contentType === ContentType.IMAGE) {
    return h(
      "a",
      { href: url, target: "_blank", rel: "noopener" },
      h("img", { class: "image", src: url, alt: m.content.name }),
    );
  }
  return h(
    "a",
    { class: "file", href: url, download: m.content.name },
    h("span", { class: "file-icon", text: (m.content.ext || "file").slice(0, 4) }),
    h(
      "span",
      { class: "file-text" },
      h("strong", { text: m.content.name }),
      h("span", { text: formatSize(m.content.size) }),
    ),
  );
}

// ---------------------------------------------------------------- wiring

function wire() {
  $("tab-login").addEventListener("click", () => showTab(false));
  $("tab-register").addEventListener("click", () => showTab(true));
  $("send-code").addEventListener("click", sendCode);
  $("register-form").addEventListener("submit", register);
  $("login-form").addEventListener("submit", login);
  $("sign-out").addEventListener("click", signOut);
  $("composer").addEventListener("submit", sendText);
  $("file-input").addEventListener("change", sendFile);
  $("back").addEventListener("click", () => {
    state.current = null;
    document.body.classList.remove("conversation-open");
    renderAll();
  });
  $("open-add-friend").addEventListener("click", () => {
    $("search-result").replaceChildren();
    $("search-input").value = "";
    $("add-friend-dialog").showModal();
  });
  $("search-button").addEventListener("click", searchUser);
  $("search-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      searchUser();
    }
  });
  $("open-new-group").addEventListener("click", openGroupDialog);
  $("create-group").addEventListener("click", createGroup);
  $("open-invite").addEventListener("click", openInviteDialog);
  $("invite-button").addEventListener("click", invite);
  window.addEventListener("offline", goOffline);
  window.addEventListener("online", goOnline);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) renderAll();
  });
  api.onSessionEnded = () => endSession(CLOSE_CODES[4002]);
  initDevices(api, {
    friends: state.friends,
    requests: state.requests,
    conversations: state.conversations,
    addFriend,
    loadGroup,
    sync,
    toast,
  });
  api.onRefreshed = saveTokens;
}

async function boot() {
  wire();
  const github = takeGithubLanding();
  if (github?.session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(github.session));
  if (github?.error) $("auth-error").textContent = github.error;
  offerGithub($("github-login"));
  const raw = sessionStorage.getItem(SESSION_KEY);
  if (!raw) return;
  await attempt(() => start(JSON.parse(raw)), $("auth-error"));
}

boot();
