# cython: language_level=3, cdivision=True, autotestdict=False
"""Compiled framing twin (``sandcat._native._framing``) of ``sandcat.protocol.bincode``.

Same results, same errors: every malformed input raises ``DecodeError`` with the reference's
message. Encoding takes a fast path for exact ``str``/``bytes``/``int`` fields; anything else
(subclasses, out-of-range integers, wrong types) is handed to the reference encoder, which
either encodes it or raises the reference's error.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_Check
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from sandcat.errors import DecodeError
from sandcat.protocol import bincode as _ref
from sandcat.protocol import payloads as _ref_payloads
from sandcat.protocol.msg import Msg
from sandcat.protocol.payloads import ReadPayload

from sandcat._native import framing as _twin


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL


cdef uint64_t MAX_LEN = _ref.MAX_LEN
#: Failures of the fast encoding path; the reference encoder then decides.
_UNFIT = (TypeError, ValueError, OverflowError, AttributeError)


# ---------------------------------------------------------------- encoding

cdef inline char* _put_u64(char* p, uint64_t v) noexcept:
    cdef int i
    for i in range(8):
        p[i] = <char>((v >> (8 * i)) & 0xFF)
    return p + 8


cdef inline char* _put_i32(char* p, int32_t v) noexcept:
    cdef uint64_t u = <uint64_t><uint32_t>v
    cdef int i
    for i in range(4):
        p[i] = <char>((u >> (8 * i)) & 0xFF)
    return p + 4



cdef inline char* _put_raw(char* p, const char* src, Py_ssize_t n) noexcept:
    p = _put_u64(p, <uint64_t>n)
    if n:
        memcpy(p, src, n)
    return p + n


cdef inline const char* _utf8(object text, Py_ssize_t* size) except NULL:
    if type(text) is not str:
        raise TypeError("not an exact str")
    return PyUnicode_AsUTF8AndSize(text, size)


cdef inline object _int(object value):
    """An ``int`` (or subclass) as it is; anything else is left to the reference encoder."""
    if not PyLong_Check(value):
        raise TypeError("not an int")
    return value


cdef bytes _encode(object msg, Py_ssize_t* seq_at):
    """bincode(Msg); ``seq_at`` receives the offset of ``seq``. Raises one of ``_UNFIT``."""
    cdef object send_id = msg.send_id, receiver_id = msg.receiver_id
    cdef object local_id = msg.local_id, server_id = msg.server_id
    cdef object content = msg.content, group_id = msg.group_id
    cdef object avatar = msg.avatar, nickname = msg.nickname, related = msg.related_msg_id
    cdef int64_t create_time = _int(msg.create_time), send_time = _int(msg.send_time)
    cdef int64_t seq = _int(msg.seq), send_seq = _int(msg.send_seq)
    cdef int32_t msg_type = _int(msg.msg_type), content_type = _int(msg.content_type)
    cdef int32_t platform = _int(msg.platform)
    cdef bint is_read = bool(msg.is_read)
    cdef Py_ssize_t n_send, n_recv, n_local, n_server, n_group, n_avatar, n_nick, n_rel = 0
    cdef const char* s_send = _utf8(send_id, &n_send)
    cdef const char* s_recv = _utf8(receiver_id, &n_recv)
    cdef const char* s_local = _utf8(local_id, &n_local)
    cdef const char* s_server = _utf8(server_id, &n_server)
    cdef const char* s_group = _utf8(group_id, &n_group)
    cdef const char* s_avatar = _utf8(avatar, &n_avatar)
    cdef const char* s_nick = _utf8(nickname, &n_nick)
    cdef const char* s_rel = NULL
    if related is not None:
        s_rel = _utf8(related, &n_rel)
    if type(content) is not bytes:
        raise TypeError("content is not exact bytes")
    cdef Py_ssize_t n_content = PyBytes_GET_SIZE(content)
    cdef Py_ssize_t total = (
        8 * 8 + n_send + n_recv + n_local + n_server + n_content + n_group + n_avatar + n_nick
        + 8 * 4 + 4 * 3 + 1 + 1 + (8 + n_rel if s_rel != NULL else 0)
    )
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef char* start = PyBytes_AS_STRING(out)
    cdef char* p = start
    p = _put_raw(p, s_send, n_send)
    p = _put_raw(p, s_recv, n_recv)
    p = _put_raw(p, s_local, n_local)
    p = _put_raw(p, s_server, n_server)
    p = _put_u64(p, <uint64_t>create_time)
    p = _put_u64(p, <uint64_t>send_time)
    seq_at[0] = p - start
    p = _put_u64(p, <uint64_t>seq)
    p = _put_i32(p, msg_type)
    p = _put_i32(p, content_type)
    p = _put_raw(p, PyBytes_AS_STRING(content), n_content)
    p[0] = 1 if is_read else 0
    p += 1
    p = _put_raw(p, s_group, n_group)
    p = _put_i32(p, platform)
    p = _put_raw(p, s_avatar, n_avatar)
    p = _put_raw(p, s_nick, n_nick)
    if s_rel == NULL:
        p[0] = 0
        p += 1
    else:
        p[0] = 1
        p = _put_raw(p + 1, s_rel, n_rel)
    _put_u64(p, <uint64_t>send_seq)
    return out


def encode_msg(msg):
    """bincode(``Msg``): the 17 fields in declaration order."""
    cdef Py_ssize_t seq_at
    try:
        return _encode(msg, &seq_at)
    except _UNFIT:
        return _ref.encode_msg(msg)


def encode_fanout(msg, seqs):
    """One frame per seq, each ``encode_msg(msg.copy(seq=seq))``; equal seqs share one frame.

    The message is encoded once; each other seq patches 8 bytes of a copy.
    """
    cdef Py_ssize_t seq_at
    cdef bytes template, frame
    cdef int64_t value
    cdef dict frames = {}
    cdef list out = []
    if type(seqs) is not list and type(seqs) is not tuple:
        seqs = list(seqs)
    try:
        template = _encode(msg, &seq_at)
        for seq in seqs:
            frame = frames.get(seq)
            if frame is None:
                if type(seq) is not int:
                    raise TypeError("not an exact int")
                value = seq
                frame = PyBytes_FromStringAndSize(
                    PyBytes_AS_STRING(template), PyBytes_GET_SIZE(template)
                )
                _put_u64(PyBytes_AS_STRING(frame) + seq_at, <uint64_t>value)
                frames[seq] = frame
            out.append(frame)
    except _UNFIT:
        return _twin.encode_fanout(msg, seqs)
    return out


def encode_strings(values):
    """bincode ``Vec<String>``."""
    cdef Py_ssize_t total = 8, n, i = 0
    cdef list items
    cdef bytes out
    cdef char* p
    if type(values) is not list:
        return _ref_payloads.encode_strings(values)
    items = values
    try:
        for value in items:
            _utf8(value, &n)
            total += 8 + n
    except _UNFIT:
        return _ref_payloads.encode_strings(values)
    out = PyBytes_FromStringAndSize(NULL, total)
    p = _put_u64(PyBytes_AS_STRING(out), <uint64_t>len(items))
    for value in items:
        p = _put_raw(p, PyUnicode_AsUTF8AndSize(value, &n), n)
    return out


# ---------------------------------------------------------------- decoding

cdef struct Buf:
    const uint8_t* data
    Py_ssize_t size
    Py_ssize_t pos


cdef inline int _need(Buf* b, Py_ssize_t k) except -1:
    if k > b.size - b.pos:
        raise DecodeError("truncated bincode input")
    return 0


cdef inline uint64_t _get_u64(Buf* b) noexcept:
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v |= (<uint64_t>b.data[b.pos + i]) << (8 * i)
    b.pos += 8
    return v


cdef inline int64_t _i64(Buf* b) except? -1:
    _need(b, 8)
    return <int64_t>_get_u64(b)


cdef inline int32_t _i32(Buf* b) except? -1:
    cdef uint64_t v = 0
    cdef int i
    _need(b, 4)
    for i in range(4):
        v |= (<uint64_t>b.data[b.pos + i]) << (8 * i)
    b.pos += 4
    return <int32_t><uint32_t>v


cdef inline bint _flag(Buf* b, str what) except -1:
    _need(b, 1)
    cdef uint8_t byte = b.data[b.pos]
    b.pos += 1
    if byte > 1:
        raise DecodeError(what)
    return byte == 1


cdef inline Py_ssize_t _length(Buf* b) except -1:
    _need(b, 8)
    cdef uint64_t size = _get_u64(b)
    if size > MAX_LEN or size > <uint64_t>(b.size - b.pos):
        raise DecodeError("bincode length prefix exceeds the input")
    return <Py_ssize_t>size


cdef inline Py_ssize_t _count(Buf* b, Py_ssize_t min_item_size) except -1:
    _need(b, 8)
    cdef uint64_t size = _get_u64(b)
    if size > <uint64_t>((b.size - b.pos) // min_item_size):
        raise DecodeError("bincode sequence length exceeds the input")
    return <Py_ssize_t>size


cdef inline bytes _raw(Buf* b):
    cdef Py_ssize_t n = _length(b)
    cdef bytes out = PyBytes_FromStringAndSize(<const char*>(b.data + b.pos), n)
    b.pos += n
    return out


cdef inline str _str(Buf* b):
    cdef Py_ssize_t n = _length(b)
    cdef Py_ssize_t at = b.pos
    b.pos += n
    try:
        return PyUnicode_DecodeUTF8(<const char*>(b.data + at), n, NULL)
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid UTF-8 in bincode string") from exc


cdef inline int _finish(Buf* b) except -1:
    if b.pos != b.size:
        raise DecodeError("trailing bytes after bincode value")
    return 0


cdef inline Buf _buf(bytes data) noexcept:
    cdef Buf b
    b.data = <const uint8_t*>PyBytes_AS_STRING(data)
    b.size = PyBytes_GET_SIZE(data)
    b.pos = 0
    return b


def decode_msg(data):
    """Parse one bincode ``Msg``; the frame must hold exactly one."""
    cdef bytes frame = data if type(data) is bytes else bytes(data)
    cdef Buf b = _buf(frame)
    msg = Msg.__new__(Msg)
    msg.send_id = _str(&b)
    msg.receiver_id = _str(&b)
    msg.local_id = _str(&b)
    msg.server_id = _str(&b)
    msg.create_time = _i64(&b)
    msg.send_time = _i64(&b)
    msg.seq = _i64(&b)
    msg.msg_type = _i32(&b)
    msg.content_type = _i32(&b)
    msg.content = _raw(&b)
    msg.is_read = _flag(&b, "invalid bincode bool")
    msg.group_id = _str(&b)
    msg.platform = _i32(&b)
    msg.avatar = _str(&b)
    msg.nickname = _str(&b)
    msg.related_msg_id = _str(&b) if _flag(&b, "invalid bincode Option tag") else None
    msg.send_seq = _i64(&b)
    _finish(&b)
    return msg


def decode_read(data):
    """bincode ``{msg_seq: Vec<i64>, user_id: String}`` (type 23 Read)."""
    cdef bytes frame = data if type(data) is bytes else bytes(data)
    cdef Buf b = _buf(frame)
    cdef Py_ssize_t count = _count(&b, 8), i
    cdef list seqs = [_i64(&b) for i in range(count)]
    user_id = _str(&b)
    _finish(&b)
    return ReadPayload(msg_seq=seqs, user_id=user_id)
