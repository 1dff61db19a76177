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

/** Msg's fields in declaration order, each with its Writer and Reader method. */
const MSG = [
  ["send_id", "string"],
  ["receiver_id", "string"],
  ["local_id", "string"],
  ["server_id", "string"],
  ["create_time", "i64"],
  ["send_time", "i64"],
  ["seq", "i64"],
  ["msg_type", "i32"],
  ["content_type", "i32"],
  ["content", "raw"],
  ["is_read", "bool"],
  ["group_id", "string"],
  ["platform", "i32"],
  ["avatar", "string"],
  ["nickname", "string"],
  ["related_msg_id", "optString"],
  ["send_seq", "i64"],
];

const FRIEND_REQUEST = [
  ["fs_id", "string"],
  ["user_id", "string"],
  ["name", "string"],
  ["avatar", "string"],
  ["gender", "string"],
  ["age", "i32"],
  ["region", "optString"],
  ["status", "i32"],
  ["apply_msg", "optString"],
  ["source", "string"],
  ["create_time", "i64"],
  ["account", "string"],
  ["remark", "optString"],
  ["email", "optString"],
];

const FRIEND = [
  ["fs_id", "string"],
  ["friend_id", "string"],
  ["account", "string"],
  ["name", "string"],
  ["avatar", "string"],
  ["gender", "string"],
  ["age", "i32"],
  ["region", "optString"],
  ["status", "i32"],
  ["remark", "optString"],
  ["email", "optString"],
  ["source", "string"],
  ["signature", "string"],
  ["create_time", "i64"],
  ["update_time", "i64"],
];

const GROUP_INFO = [
  ["id", "string"],
  ["owner", "string"],
  ["name", "string"],
  ["avatar", "string"],
  ["description", "string"],
  ["announcement", "string"],
  ["create_time", "i64"],
  ["update_time", "i64"],
];

const GROUP_MEMBER = [
  ["age", "i32"],
  ["group_id", "string"],
  ["user_id", "string"],
  ["group_name", "string"],
  ["avatar", "string"],
  ["joined_at", "i64"],
  ["region", "optString"],
  ["gender", "string"],
  ["remark", "optString"],
  ["signature", "string"],
  ["role", "i32"],
];

/** A record of `fields` read in order. */
function readRecord(r, fields) {
  return Object.fromEntries(fields.map(([name, kind]) => [name, r[kind]()]));
}

/** `read` over the whole of `bytes`; throws on malformed or trailing bytes. */
function decodeWhole(bytes, read) {
  const r = new Reader(bytes);
  const value = read(r);
  r.finish();
  return value;
}

/** Each field kind's default value. */
const DEFAULTS = {
  string: () => "",
  optString: () => null,
  i32: () => 0,
  i64: () => 0,
  bool: () => false,
  raw: () => new Uint8Array(0),
};

/** A Msg with every field at its default. */
export function newMsg(fields = {}) {
  return { ...Object.fromEntries(MSG.map(([name, kind]) => [name, DEFAULTS[kind]()])), ...fields };
}

/** bincode(Msg): the 17 fields in declaration order. */
export function encodeMsg(msg) {
  const w = new Writer();
  for (const [name, kind] of MSG) w[kind](msg[name]);
  return w.finish();
}

/** One Msg from one frame; throws on malformed or trailing bytes. */
export function decodeMsg(bytes) {
  return decodeWhole(bytes, (r) => readRecord(r, MSG));
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
  return decodeWhole(bytes, (r) => readRecord(r, FRIEND_REQUEST));
}

/** Type 11 body: the new friend. */
export function decodeFriend(bytes) {
  return decodeWhole(bytes, (r) => readRecord(r, FRIEND));
}

/** Type 9 body: a group's new info. */
export function decodeGroupInfo(bytes) {
  return decodeWhole(bytes, (r) => readRecord(r, GROUP_INFO));
}

/** Type 2 body: Option<GroupInfo> then Vec<GroupMember>. */
export function decodeGroupInvitation(bytes) {
  return decodeWhole(bytes, (r) => {
    const info = r.bool() ? readRecord(r, GROUP_INFO) : null;
    const count = r.length();
    return { info, members: Array.from({ length: count }, () => readRecord(r, GROUP_MEMBER)) };
  });
}

/** Types 3 and 5 body: Vec<String> of user ids. */
export function decodeStrings(bytes) {
  return decodeWhole(bytes, (r) => r.strings());
}
