// The HTTP API, same-origin: every call returns parsed JSON (or text) or throws an ApiError
// whose message is written for a person.

export class ApiError extends Error {
  constructor(status, kind, details, retryAfter) {
    super(explain(status, kind, details, retryAfter));
    this.status = status;
    this.kind = kind;
    this.details = details;
  }
}

function explain(status, kind, details, retryAfter) {
  if (status === 429) {
    const wait = retryAfter ? ` Try again in ${retryAfter} s.` : "";
    return `Too many attempts: ${details || "rate limited"}.${wait}`;
  }
  if (status === 413) return `Too large: ${details}`;
  switch (kind) {
    case "AccountOrPassword":
      return "Wrong e-mail or password.";
    case "CodeIsInvalid":
      return "That verification code is wrong.";
    case "CodeIsExpired":
      return "The verification code has expired (or was never sent): send a new one.";
    case "UnAuthorized":
      return "Your session has ended: please sign in again.";
    case "NotFound":
      return details || "Not found.";
    default:
      if (status === 0) return "The server cannot be reached. Is Sandcat running?";
      return details || `The server answered ${status} (${kind || "error"}).`;
  }
}

/** Standard base64 without padding, as login and password changes expect it. */
export function passwordForLogin(password) {
  const bytes = new TextEncoder().encode(password);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/=+$/, "");
}

export class Api {
  constructor() {
    this.token = "";
    this.refreshToken = "";
    this.onSessionEnded = () => {};
    this.onRefreshed = () => {};
  }

  async request(method, path, { json, form, text = false, retry = true } = {}) {
    const headers = {};
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = form;
    }
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let response;
    try {
      response = await fetch(path, { method, headers, body });
    } catch {
      throw new ApiError(0, "Network", "", null);
    }
    if (response.status === 401 && retry && this.refreshToken && (await this.refresh())) {
      return this.request(method, path, { json, form, text, retry: false });
    }
    if (!response.ok) {
      let kind = "";
      let details = "";
      try {
        const error = await response.json();
        kind = error.kind;
        details = error.details || "";
      } catch {
        details = response.statusText;
      }
      if (response.status === 401 && this.token) this.onSessionEnded();
      throw new ApiError(response.status, kind, details, response.headers.get("Retry-After"));
    }
    if (text) return response.text();
    const raw = await response.text();
    return raw ? JSON.parse(raw) : null;
  }

  /** A new access token from the refresh token; false when the session is over. */
  async refresh() {
    try {
      const response = await fetch(
        `/user/refresh_token/${encodeURIComponent(this.refreshToken)}/false`,
      );
      if (!response.ok) return false;
      this.token = await response.text();
      this.onRefreshed();
      return true;
    } catch {
      return false;
    }
  }

  sendCode(email) {
    return this.request("POST", "/user/mail/send", { json: { email } });
  }

  register({ name, email, password, code, avatar }) {
    return this.request("POST", "/user", { json: { name, email, password, code, avatar } });
  }

  async login(account, password) {
    const result = await this.request("POST", "/user/login", {
      // platform and client name the device in GET /user/devices (docs/protocol.md, "Devices")
      json: { account, password: passwordForLogin(password), platform: "web", client: "web page" },
    });
    this.token = result.token;
    this.refreshToken = result.refresh_token;
    return result;
  }

  logout(userId) {
    return this.request("DELETE", `/user/logout/${encodeURIComponent(userId)}`, { retry: false });
  }

  search(userId, pattern) {
    const path = `/user/${encodeURIComponent(userId)}/search/${encodeURIComponent(pattern)}`;
    return this.request("GET", path);
  }

  friendsSince(userId, since) {
    return this.request("GET", `/friend/${encodeURIComponent(userId)}/${since}`);
  }

  pendingRequests(userId) {
    return this.request("GET", `/friend/${encodeURIComponent(userId)}/apply`);
  }

  applyFriend(userId, friendId, applyMsg) {
    return this.request("POST", "/friend", {
      json: {
        user_id: userId,
        friend_id: friendId,
        apply_msg: applyMsg,
        req_remark: null,
        source: "search",
      },
    });
  }

  agreeFriend(fsId) {
    return this.request("PUT", "/friend/agree", {
      json: { fs_id: fsId, resp_msg: null, resp_remark: null },
    });
  }

  denyFriend(fsId) {
    return this.request("PUT", "/friend/deny", { json: { fs_id: fsId, resp_msg: null } });
  }

  createGroup(userId, name, memberIds) {
    return this.request("POST", `/group/${encodeURIComponent(userId)}`, {
      json: { owner: userId, group_name: name, avatar: "", members_id: memberIds },
    });
  }

  inviteToGroup(userId, groupId, memberIds) {
    return this.request("PUT", "/group/invite", {
      json: { user_id: userId, group_id: groupId, members: memberIds },
    });
  }

  groupWithMembers(userId, groupId) {
    const path = `/group/member/${encodeURIComponent(userId)}/${encodeURIComponent(groupId)}`;
    return this.request("GET", path);
  }

  counters(userId) {
    return this.request("GET", `/message/seq/${encodeURIComponent(userId)}`);
  }

  /** Received copies with seq in (start, end], sent ones with send_seq in (sendStart, sendEnd]. */
  pull(userId, start, end, sendStart, sendEnd) {
    return this.request("POST", "/message", {
      json: { user_id: userId, start, end, send_start: sendStart, send_end: sendEnd },
    });
  }

  upload(file) {
    const form = new FormData();
    form.append("file", file, file.name);
    return this.request("POST", "/file/upload", { form, text: true });
  }
}
