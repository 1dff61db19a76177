// bincode 1.x as Sandcat speaks it (sandcat/protocol/bincode.py is the specification):
// little-endian fixed-width integers, strings and byte arrays prefixed by a u64 length,
// bool and Option tags as one byte. i64 values travel as JavaScript numbers (timestamps and
// sequence numbers stay far below 2^53).

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export const MsgType = Object.freeze({
  SINGLE_MSG: 0,
  GROUP_MSG: 1,
  GROUP_INVITATION: 2,
  GROUP_INVITE_NEW: 3,
  GROUP_MEMBER_EXIT: 4,
  GROUP_REMOVE_MEMBER: 5,
  GROUP_DISMISS: 6,
  GROUP_UPDATE: 9,
  FRIEND_APPLY_REQ: 10,
  FRIEND_APPLY_RESP: 11,
  FRIEND_DELETE: 13,
  READ: 23,
  MSG_REC_RESP: 24,
});

export const ContentType = Object.freeze({
  TEXT: 1,
  IMAGE: 2,
  VIDEO: 3,
  AUDIO: 4,
  FILE: 5,
  ERROR: 9,
});

export class Writer {
  constructor() {
    this.bytes = new Uint8Array(256);
    this.view = new DataView(this.bytes.buffer);
    this.length = 0;
  }

  room(size) {
    if (this.length + size <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(this.bytes.length * 2, this.length + size));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
    this.view = new DataView(grown.buffer);
  }

  u8(value) {
    this.room(1);
    this.bytes[this.length++] = value;
  }

  i32(value) {
    this.room(4);
    this.view.setInt32(this.length, value, true);
    this.length += 4;
  }

  i64(value) {
    this.room(8);
    this.view.setBigInt64(this.length, BigInt(value), true);
    this.length += 8;
  }

  u64(value) {
    this.room(8);
    this.view.setBigUint64(this.length, BigInt(value), true);
    this.length += 8;
  }

  bool(value) {
    this.u8(value ? 1 : 0);
  }

  raw(value) {
    this.u64(value.length);
    this.room(value.length);
    this.bytes.set(value, this.length);
    this.length += value.length;
  }

  string(value) {
    this.raw(encoder.encode(value));
  }

  optString(value) {
    if (value === null || value === undefined) {
      this.u8(0);
    } else {
      this.u8(1);
      this.string(value);
    }
  }

  i64s(values) {
    this.u64(values.length);
    for (const value of values) this.i64(value);
  }

  finish() {
    return this.bytes.slice(0, this.length);
  }
}

export class Reader {
  constructor(bytes) {
    this.bytes = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    this.view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    this.pos = 0;
  }

  take(size) {
    if (this.pos + size > this.bytes.length) throw new Error("truncated bincode input");
    const start = this.pos;
    this.pos += size;
    return start;
  }

  u8() {
    return this.bytes[this.take(1)];
  }

  i32() {
    return this.view.getInt32(this.take(4), true);
  }

  i64() {
    return Number(this.view.getBigInt64(this.take(8), true));
  }

  length() {
    const size = this.view.getBigUint64(this.take(8), true);
    if (size > BigInt(this.bytes.length - this.pos)) {
      throw new Error("bincode length prefix exceeds the input");
    }
    return Number(size);
  }

  bool() {
    const byte = this.u8();
    if (byte > 1) throw new Error("invalid bincode bool");
    return byte === 1;
  }

  raw() {
    const size = this.length();
    const start = this.take(size);
    return this.bytes.slice(start, start + size);
  }

  string() {
    return decoder.decode(this.raw());
  }

  optString() {
    return this.bool() ? this.string() : null;
  }

  strings() {
    const count = this.length();
    return Array.from({ length: count }, () => this.string());
  }

  finish() {
    if (this.pos !== this.bytes.length) throw new Error("trailing bytes after bincode value");
  }
}

/** A Msg with every field at its default. */
export function newMsg(fields = {}) {
  return {
    send_id: "",
    receiver_id: "",
    local_id: "",
    server_id: "",
    create_time: 0,
    send_time: 0,
    seq: 0,
    msg_type: 0,
    content_type: 0,
    content: new Uint8Array(0),
    is_read: false,
    group_id: "",
    platform: 0,
    avatar: "",
    nickname: "",
    related_msg_id: null,
    send_seq: 0,
    ...fields,
  };
}

/** bincode(Msg): the 17 fields in declaration order. */
export function encodeMsg(msg) {
  const w = new Writer();
  w.string(msg.send_id);
  w.string(msg.receiver_id);
  w.string(msg.local_id);
  w.string(msg.server_id);
  w.i64(msg.create_time);
  w.i64(msg.send_time);
  w.i64(msg.seq);
  w.i32(msg.msg_type);
  w.i32(msg.content_type);
  w.raw(msg.content);
  w.bool(msg.is_read);
  w.string(msg.group_id);
  w.i32(msg.platform);
  w.string(msg.avatar);
  w.string(msg.nickname);
  w.optString(msg.related_msg_id);
  w.i64(msg.send_seq);
  return w.finish();
}

/** One Msg from one frame; throws on malformed or trailing bytes. */
export function decodeMsg(bytes) {
  const r = new Reader(bytes);
  const msg = {
    send_id: r.string(),
    receiver_id: r.string(),
    local_id: r.string(),
    server_id: r.string(),
    create_time: r.i64(),
    send_time: r.i64(),
    seq: r.i64(),
    msg_type: r.i32(),
    content_type: r.i32(),
    content: r.raw(),
    is_read: r.bool(),
    group_id: r.string(),
    platform: r.i32(),
    avatar: r.string(),
    nickname: r.string(),
    related_msg_id: r.optString(),
    send_seq: r.i64(),
  };
  r.finish();
  return msg;
}

/** The JSON form of POST /message (content as an array of numbers) to a Msg. */
export function msgFromJson(json) {
  return { ...json, content: Uint8Array.from(json.content) };
}

/** Type 23 Read: {msg_seq: Vec<i64>, user_id: String}. */
export function encodeRead(seqs, userId) {
  const w = new Writer();
  w.i64s(seqs);
  w.string(userId);
  return w.finish();
}

/** Type 10 body: the friend request with the requester's profile. */
export function decodeFriendRequest(bytes) {
  const r = new Reader(bytes);
  const value = {
    fs_id: r.string(),
    user_id: r.string(),
    name: r.string(),
    avatar: r.string(),
    gender: r.string(),
    age: r.i32(),
    region: r.optString(),
    status: r.i32(),
    apply_msg: r.optString(),
    source: r.string(),
    create_time: r.i64(),
    account: r.string(),
    remark: r.optString(),
    email: r.optString(),
  };
  r.finish();
  return value;
}

/** Type 11 body: the new friend. */
export function decodeFriend(bytes) {
  const r = new Reader(bytes);
  const value = {
    fs_id: r.string(),
    friend_id: r.string(),
    account: r.string(),
    name: r.string(),
    avatar: r.string(),
    gender: r.string(),
    age: r.i32(),
    region: r.optString(),
    status: r.i32(),
    remark: r.optString(),
    email: r.optString(),
    source: r.string(),
    signature: r.string(),
    create_time: r.i64(),
    update_time: r.i64(),
  };
  r.finish();
  return value;
}

function readGroupInfo(r) {
  return {
    id: r.string(),
    owner: r.string(),
    name: r.string(),
    avatar: r.string(),
    description: r.string(),
    announcement: r.string(),
    create_time: r.i64(),
    update_time: r.i64(),
  };
}

function readGroupMember(r) {
  return {
    age: r.i32(),
    group_id: r.string(),
    user_id: r.string(),
    group_name: r.string(),
    avatar: r.string(),
    joined_at: r.i64(),
    region: r.optString(),
    gender: r.string(),
    remark: r.optString(),
    signature: r.string(),
    role: r.i32(),
  };
}

/** Type 9 body: a group's new info. */
export function decodeGroupInfo(bytes) {
  const r = new Reader(bytes);
  const info = readGroupInfo(r);
  r.finish();
  return info;
}

/** Type 2 body: Option<GroupInfo> then Vec<GroupMember>. */
export function decodeGroupInvitation(bytes) {
  const r = new Reader(bytes);
  const info = r.bool() ? readGroupInfo(r) : null;
  const count = r.length();
  const members = Array.from({ length: count }, () => readGroupMember(r));
  r.finish();
  return { info, members };
}

/** Types 3 and 5 body: Vec<String> of user ids. */
export function decodeStrings(bytes) {
  const r = new Reader(bytes);
  const values = r.strings();
  r.finish();
  return values;
}
