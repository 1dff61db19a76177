// Devices and multi-device consistency (docs/protocol.md, "Devices"). Each sign-in is a
// device; the Devices dialog lists them (GET /user/devices) and logs one out, or every
// other one, remotely. The page connects with ?v=2, so what this user does on another
// device arrives as an event: `friend.updated` and `group.updated` bring the contacts and
// groups here up to date, `device.added` / `device.removed` refresh the open dialog.

let api = null;
let model = null;
/** Friend requests this page already marked read (PUT /friend/{fs_id}/read). */
const marked = new Set();

/**
 * `model`: what the page keeps and how it changes it: `friends` and `requests` (Maps),
 * `conversations` (Map), `addFriend(friend)`, `loadGroup(id)`, `sync()`, `render()`,
 * `toast(text, kind)`.
 */
export function initDevices(theApi, theModel) {
  api = theApi;
  model = theModel;
  document.getElementById("open-devices").addEventListener("click", openDevices);
  document.getElementById("logout-others").addEventListener("click", logoutOthers);
}

export function resetDevices() {
  marked.clear();
}

function dialog() {
  return document.getElementById("devices-dialog");
}

async function openDevices() {
  document.getElementById("device-list").replaceChildren();
  dialog().showModal();
  await loadDevices();
}

function describe(device) {
  const name = device.client || device.platform || "A browser or app";
  const where = device.address ? ` · ${device.address}` : "";
  const seen = new Date(device.last_seen).toLocaleString();
  return { name, detail: `${device.user_agent || "unknown client"}${where} · last seen ${seen}` };
}

async function loadDevices() {
  const list = document.getElementById("device-list");
  let devices;
  try {
    devices = await api.request("GET", "/user/devices");
  } catch (error) {
    model.toast(`The devices could not be loaded: ${error.message || error}`);
    return;
  }
  list.replaceChildren(
    ...devices.map((device) => {
      const { name, detail } = describe(device);
      const item = document.createElement("li");
      item.className = "device";
      item.dataset.id = device.id;
      const text = document.createElement("div");
      const title = document.createElement("strong");
      title.textContent = name;
      const sub = document.createElement("span");
      sub.textContent = detail;
      text.append(title, sub);
      item.append(text);
      if (device.current) {
        const here = document.createElement("span");
        here.className = "device-here";
        here.textContent = "This device";
        item.append(here);
      } else {
        const out = document.createElement("button");
        out.type = "button";
        out.className = "device-logout";
        out.textContent = "Log out";
        out.addEventListener("click", () => logoutDevice(device.id));
        item.append(out);
      }
      return item;
    }),
  );
  document.getElementById("logout-others").disabled = devices.length < 2;
}

async function logoutDevice(id) {
  try {
    await api.request("DELETE", `/user/devices/${encodeURIComponent(id)}`);
    model.toast("The device was logged out.", "info");
  } catch (error) {
    model.toast(`The device was not logged out: ${error.message || error}`);
  }
  await loadDevices();
}

async function logoutOthers() {
  try {
    const { removed } = await api.request("POST", "/user/devices/logout-others");
    const count = removed.length === 1 ? "1 other device" : `${removed.length} other devices`;
    model.toast(`Logged out ${count}.`, "info");
  } catch (error) {
    model.toast(`The other devices were not logged out: ${error.message || error}`);
  }
  await loadDevices();
}

/** Mark the shown friend requests read, once each, so the friend sync stops repeating them. */
export function markRequestsRead(requests) {
  for (const fsId of requests.keys()) {
    if (marked.has(fsId)) continue;
    marked.add(fsId);
    api.request("PUT", `/friend/${encodeURIComponent(fsId)}/read`).catch(() => marked.delete(fsId));
  }
}

function followFriend(data) {
  if (data.action === "agreed") model.addFriend(data.friend);
  if (data.action === "agreed" || data.action === "denied") model.requests.delete(data.fs_id);
  if (data.action === "deleted") model.friends.delete(data.friend_id);
  if (data.action === "remark") {
    const friend = model.friends.get(data.friend_id);
    if (friend) friend.name = data.remark;
    const conv = model.conversations.get(data.friend_id);
    if (conv) conv.title = data.remark;
  }
}

function followGroup(data) {
  if (data.action === "left" || data.action === "dismissed") {
    const conv = model.conversations.get(data.group_id);
    if (conv) conv.closed = true;
  } else {
    model.loadGroup(data.group_id);
  }
  model.sync(); // this user's own copy of the notice, as the device that acted got it
}

/** A v2 text frame: true when it was one of these events (the page re-renders). */
export function onDeviceEvent(text) {
  let event;
  try {
    event = JSON.parse(text);
  } catch {
    return false;
  }
  switch (event?.event) {
    case "friend.updated":
      followFriend(event.data);
      return true;
    case "group.updated":
      followGroup(event.data);
      return true;
    case "device.added":
    case "device.removed":
      if (dialog().open) loadDevices();
      return true;
    default:
      return false;
  }
}
