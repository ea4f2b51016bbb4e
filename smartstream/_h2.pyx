# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""One HTTP/2 client connection carrying many gRPC streams, on libnghttp2.

An asyncio Protocol: the caller makes it with loop.create_connection(lambda:
conn, host, port, ssl=ctx) (for TLS, ctx offers ALPN "h2"). During a tick the
caller queues every stream's messages (send_audio from Cython, send_message);
flush() at the end of the tick has nghttp2 frame them all, and they leave in one
transport.write. nghttp2 does HTTP/2 (framing, HPACK, flow control, SETTINGS,
PING, GOAWAY, RST_STREAM); the gRPC framing is done here, in C. Python is
called once per received message and once per closed stream, never per frame:
nghttp2's callbacks only record events, which are delivered to the handler
after nghttp2 returns (so the handler may call back into the connection).

The handler has on_message(stream_id, data), on_stream_closed(stream_id,
status, message) (exactly once per stream, status a gRPC code) and
on_connection_lost(reason) (exactly once, after every stream's close).

Received bytes are read in place: under uvloop the socket reads straight into
the connection's buffer (get_buffer/buffer_updated), and on_message's data is
a memoryview of the message there, released when on_message returns, so the
handler copies what it keeps. A message split across DATA frames or reads
is gathered in its stream's buffer first, and handed over as a view of that.
"""
import asyncio
import logging
import time
from urllib.parse import unquote

from .logs import peer_text

from cpython.buffer cimport PyBuffer_FillInfo
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memcmp, memcpy, memmove

from .includes.nghttp2 cimport *

log = logging.getLogger("smartstream.h2")

cdef enum:
    SEND_MAX = 4 << 20        # bytes a stream may have queued: past it the server is not reading
    MESSAGE_MAX = 4 << 20     # largest message accepted, grpc's default limit
    BUF_KEEP = 64 << 10       # an emptied buffer larger than this is freed, not kept
    INBUF = 64 << 10          # one socket read: libuv's own suggestion
    PEER_MAX_STREAMS = 100    # assumed until the server's SETTINGS say otherwise
    # Received TTS may come faster than real time: large windows let it
    # flow without waiting a round trip per 64 KiB.
    STREAM_WINDOW = 1 << 20
    CONN_WINDOW = 16 << 20
    # What one AI server may cost the event loop: a response's header list
    # (an HPACK bomb decodes to megabytes), frames nghttp2 queues or keeps,
    # and bytes read per tick (past it reading pauses until the next tick).
    HEADER_LIST_MAX = 16 << 10
    MAX_SETTINGS = 16
    MAX_CONTINUATIONS = 8
    MAX_OUTBOUND_ACK = 1000
    RX_PER_TICK = 256 << 10   # 12.5 MiB/s: 100 streams of 16 kHz TTS at 4x real time are 13 MB/s
RX_WINDOW_S = 0.02   # a tick

# gRPC status codes
cdef enum:
    CANCELLED = 1
    UNKNOWN = 2
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16

# Why we reset a stream: h2_stream.local
cdef enum:
    L_CANCEL = 1
    L_SEND_FULL
    L_COMPRESSED
    L_TOO_BIG
    L_HANDLER
    L_HEADERS_BIG

cdef enum:
    EV_MESSAGE, EV_CLOSED, EV_LOST

SEND_BUFFER_MAX = SEND_MAX
MESSAGE_SIZE_MAX = MESSAGE_MAX

LOCAL_CLOSE = {
    L_CANCEL: (CANCELLED, "cancelled by the client"),
    L_SEND_FULL: (RESOURCE_EXHAUSTED,
                  f"over {SEND_MAX >> 20} MiB queued to send: the server is not reading"),
    L_COMPRESSED: (INTERNAL, "server sent a compressed message; no compression was offered"),
    L_TOO_BIG: (RESOURCE_EXHAUSTED,
                f"server sent a message over the {MESSAGE_MAX >> 20} MiB limit"),
    L_HANDLER: (INTERNAL, "the on_message handler raised (logged)"),
    L_HEADERS_BIG: (RESOURCE_EXHAUSTED,
                    f"server sent a header list over {HEADER_LIST_MAX >> 10} KiB"),
}
# gRPC's doc/http-grpc-status-mapping.md
HTTP_TO_GRPC = {400: INTERNAL, 401: UNAUTHENTICATED, 403: PERMISSION_DENIED,
                404: UNIMPLEMENTED, 429: UNAVAILABLE, 502: UNAVAILABLE, 503: UNAVAILABLE,
                504: UNAVAILABLE}
RST_TO_GRPC = {NGHTTP2_REFUSED_STREAM: UNAVAILABLE, NGHTTP2_CANCEL: CANCELLED,
               NGHTTP2_ENHANCE_YOUR_CALM: RESOURCE_EXHAUSTED,
               NGHTTP2_INADEQUATE_SECURITY: PERMISSION_DENIED}

USER_AGENT = b"smartstream/0.1"


class H2Error(Exception):
    """The connection cannot take a new stream or a PING."""


# ---- byte queues ----

cdef uint8_t *buf_reserve(h2_buf *b, size_t n, size_t limit) noexcept nogil:
    """Room for n more bytes at b.p + b.len; NULL if more than limit bytes
    would be pending, or on no memory."""
    cdef size_t pending = b.len - b.off
    cdef size_t cap
    cdef uint8_t *p
    if n > limit - pending:
        return NULL
    if b.len + n > b.cap and b.off:
        memmove(b.p, b.p + b.off, pending)
        b.off, b.len = 0, pending
    if b.len + n > b.cap:
        cap = b.cap if b.cap else 4096
        while cap < b.len + n:
            cap *= 2
        p = <uint8_t *>realloc(b.p, cap)
        if p == NULL:
            return NULL
        b.p, b.cap = p, cap
    return b.p + b.len


cdef void buf_consume(h2_buf *b, size_t n) noexcept nogil:
    b.off += n
    if b.off == b.len:
        b.off = b.len = 0
        if b.cap > BUF_KEEP:   # after a backlog drained
            buf_free(b)


cdef void buf_free(h2_buf *b) noexcept nogil:
    free(b.p)
    b.p = NULL
    b.off = b.len = b.cap = 0


cdef void stream_free(h2_stream *st) noexcept nogil:
    buf_free(&st.out)
    buf_free(&st.inb)
    free(st.grpc_message)
    free(st)


# ---- protobuf and gRPC framing ----

cdef inline size_t grpc_length(const uint8_t *m) noexcept nogil:
    """The length in a gRPC message's 5-byte prefix (after its flag byte)."""
    return (<size_t>m[1] << 24) | (<size_t>m[2] << 16) | (<size_t>m[3] << 8) | m[4]

cdef inline size_t varint_len(uint64_t v) noexcept nogil:
    cdef size_t n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


cdef inline uint8_t *put_varint(uint8_t *p, uint64_t v) noexcept nogil:
    while v >= 0x80:
        p[0] = <uint8_t>(v | 0x80)
        p += 1
        v >>= 7
    p[0] = <uint8_t>v
    return p + 1


# A one-byte tag and a varint (a value, or the length of bytes that follow).
# proto3 leaves out zero scalars and empty bytes: v == 0 is not encoded.

cdef inline size_t field_len(uint64_t v) noexcept nogil:
    return 1 + varint_len(v) if v else 0


cdef inline uint8_t *put_field(uint8_t *p, uint8_t tag, uint64_t v) noexcept nogil:
    if v == 0:
        return p
    p[0] = tag
    return put_varint(p + 1, v)


cdef inline uint8_t *put_prefix(uint8_t *p, size_t n) noexcept nogil:
    """gRPC's message prefix: not compressed, big-endian length."""
    p[0] = 0
    p[1] = <uint8_t>(n >> 24)
    p[2] = <uint8_t>(n >> 16)
    p[3] = <uint8_t>(n >> 8)
    p[4] = <uint8_t>n
    return p + 5


cdef int parse_status(const uint8_t *v, size_t n) noexcept nogil:
    """A decimal status header value; -2 if it is not one."""
    cdef int x = 0
    cdef size_t i
    if n == 0 or n > 9:
        return -2
    for i in range(n):
        if v[i] < 48 or v[i] > 57:
            return -2
        x = x * 10 + (v[i] - 48)
    return x


# ---- nghttp2 callbacks: record, never call the handler ----

cdef ssize_t read_data(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                       size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                       void *user_data) noexcept nogil:
    """How much of the stream's buffer the next DATA frame carries; send_data
    then copies it, once, into the connection's output (NO_COPY: nghttp2
    never holds the bytes itself)."""
    cdef h2_stream *st = <h2_stream *>source.ptr
    cdef size_t n = st.out.len - st.out.off
    if n > length:
        n = length
    if n:
        data_flags[0] |= NGHTTP2_DATA_FLAG_NO_COPY
    if n == st.out.len - st.out.off:
        if st.eof:
            data_flags[0] |= NGHTTP2_DATA_FLAG_EOF
        elif n == 0:
            st.deferred = True
            return NGHTTP2_ERR_DEFERRED
    return n


cdef int send_data(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd,
                   size_t length, nghttp2_data_source *source, void *user_data) noexcept:
    """A DATA frame read_data sized, called in the same nghttp2_session_mem_send:
    header and payload appended to the output, in order with the other frames
    (no padding: no select_padding callback is set)."""
    cdef H2Connection c = <H2Connection>user_data
    cdef h2_stream *st = <h2_stream *>source.ptr
    cdef uint8_t *p = buf_reserve(&c.out.b, 9 + length, <size_t>-1)
    if p == NULL:
        return NGHTTP2_ERR_CALLBACK_FAILURE
    memcpy(p, framehd, 9)
    memcpy(p + 9, st.out.p + st.out.off, length)
    c.out.b.len += 9 + length
    buf_consume(&st.out, length)
    return 0


cdef int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                   size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                   void *user_data) noexcept:
    cdef H2Connection c = <H2Connection>user_data
    cdef h2_stream *st = c.find(frame.hd.stream_id)
    cdef char *m
    if st == NULL or st.local:
        return 0
    st.header_bytes += namelen + valuelen + 32   # RFC 9113's size of a header
    if st.header_bytes > HEADER_LIST_MAX:
        st.local = L_HEADERS_BIG                 # nghttp2 resets the stream, skips the rest
        buf_free(&st.out)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
    if namelen == 7 and memcmp(name, b":status", 7) == 0:
        st.http_status = parse_status(value, valuelen)
    elif namelen == 11 and memcmp(name, b"grpc-status", 11) == 0:
        st.grpc_status = parse_status(value, valuelen)
    elif namelen == 12 and memcmp(name, b"grpc-message", 12) == 0:
        m = <char *>realloc(st.grpc_message, valuelen + 1)
        if m == NULL:
            return NGHTTP2_ERR_CALLBACK_FAILURE
        memcpy(m, value, valuelen)
        st.grpc_message, st.grpc_message_len = m, valuelen
    return 0


cdef int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                       const uint8_t *data, size_t n, void *user_data) noexcept:
    cdef H2Connection c = <H2Connection>user_data
    cdef h2_stream *st = c.find(stream_id)
    if st == NULL or st.local or st.deaf:
        return 0
    try:
        c.received(st, data, n)
    except BaseException as e:
        c.error = f"receiving: {e!r}"
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                       void *user_data) noexcept:
    cdef H2Connection c = <H2Connection>user_data
    cdef h2_stream *st
    if frame.hd.type == NGHTTP2_GOAWAY:
        c.goaway = describe_goaway(frame)
        c.goaway_last_id = frame.goaway.last_stream_id
    elif frame.hd.type == NGHTTP2_PING and frame.hd.flags & NGHTTP2_FLAG_ACK:
        if c.unacked_pings:
            c.unacked_pings -= 1
    elif frame.hd.type == NGHTTP2_RST_STREAM:
        st = c.find(frame.hd.stream_id)
        if st != NULL:
            st.peer_reset = True
    elif frame.hd.flags & NGHTTP2_FLAG_END_STREAM and (frame.hd.type == NGHTTP2_HEADERS
                                                      or frame.hd.type == NGHTTP2_DATA):
        # The server ended the call (trailers) while we may still be sending:
        # the call is over, so end the stream rather than leave it half-open.
        st = c.find(frame.hd.stream_id)
        if st != NULL and nghttp2_session_get_stream_local_close(session, st.id) == 0:
            st.eof = True
            buf_free(&st.out)
            nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, st.id, NGHTTP2_NO_ERROR)
    return 0


cdef int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame,
                       void *user_data) noexcept:
    cdef H2Connection c = <H2Connection>user_data
    # nghttp2 ends the session on a connection error with a GOAWAY saying why.
    if frame.hd.type == NGHTTP2_GOAWAY and frame.goaway.error_code != NGHTTP2_NO_ERROR:
        c.error = f"bad HTTP/2 from the server, client sent {describe_goaway(frame)}"
    return 0


cdef int on_frame_not_send(nghttp2_session *session, const nghttp2_frame *frame,
                           int lib_error_code, void *user_data) noexcept:
    cdef H2Connection c = <H2Connection>user_data
    cdef h2_stream *st
    # A request that never left opened no stream: nghttp2 may not report its close.
    if frame.hd.type != NGHTTP2_HEADERS or frame.headers.cat != NGHTTP2_HCAT_REQUEST:
        return 0
    st = c.find(frame.hd.stream_id)
    if st == NULL:
        return 0
    try:
        status, msg = LOCAL_CLOSE[st.local] if st.local else (
            UNAVAILABLE, f"request not sent: {nghttp2_strerror(lib_error_code).decode()}")
        c.finish(st, status, msg)
    except BaseException as e:
        c.error = f"closing stream {frame.hd.stream_id}: {e!r}"
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                         void *user_data) noexcept:
    cdef H2Connection c = <H2Connection>user_data
    cdef h2_stream *st = c.find(stream_id)
    if st == NULL:
        return 0
    try:
        status, msg = c.close_status(st, error_code)
        c.finish(st, status, msg)
    except BaseException as e:
        c.error = f"closing stream {stream_id}: {e!r}"
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef str describe_goaway(const nghttp2_frame *frame):
    cdef const nghttp2_goaway *g = &frame.goaway
    debug = peer_text((<char *>g.opaque_data)[:min(g.opaque_data_len, <size_t>400)].decode("utf-8", "replace"), 100)
    code = nghttp2_http2_strerror(g.error_code).decode()
    return f"GOAWAY {code}" + (f" '{debug}'" if debug else "")


cdef class HeldBuf:
    def __cinit__(self, size_t cap=0):
        if cap and buf_reserve(&self.b, cap, cap) == NULL:
            raise MemoryError()

    def __dealloc__(self):
        buf_free(&self.b)

    def __getbuffer__(self, Py_buffer *view, int flags):
        PyBuffer_FillInfo(view, self, self.b.p, self.b.len, 1, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        self.exports -= 1


cdef class H2Connection:
    def __cinit__(self, str authority, str scheme, handler):
        cdef nghttp2_session_callbacks *cbs
        cdef nghttp2_option *opt
        cdef nghttp2_settings_entry iv[3]
        self.authority, self.scheme, self.handler = authority, scheme, handler
        self.events = []
        self.muted = set()
        self.out = HeldBuf()
        self.inview = memoryview(bytearray(INBUF))
        if nghttp2_session_callbacks_new(&cbs):
            raise MemoryError()
        nghttp2_session_callbacks_set_on_header_callback(cbs, on_header)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk)
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv)
        nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send)
        nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send)
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close)
        nghttp2_session_callbacks_set_send_data_callback(cbs, send_data)
        if nghttp2_option_new(&opt):
            nghttp2_session_callbacks_del(cbs)
            raise MemoryError()
        nghttp2_option_set_peer_max_concurrent_streams(opt, PEER_MAX_STREAMS)
        nghttp2_option_set_max_settings(opt, MAX_SETTINGS)
        nghttp2_option_set_max_continuations(opt, MAX_CONTINUATIONS)
        nghttp2_option_set_max_outbound_ack(opt, MAX_OUTBOUND_ACK)
        rv = nghttp2_session_client_new2(&self.session, cbs, <void *>self, opt)
        nghttp2_option_del(opt)
        nghttp2_session_callbacks_del(cbs)
        if rv:
            raise MemoryError()
        iv[0].settings_id, iv[0].value = NGHTTP2_SETTINGS_ENABLE_PUSH, 0
        iv[1].settings_id, iv[1].value = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW
        iv[2].settings_id, iv[2].value = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HEADER_LIST_MAX
        if (nghttp2_submit_settings(self.session, NGHTTP2_FLAG_NONE, iv, 3)
                or nghttp2_session_set_local_window_size(self.session, NGHTTP2_FLAG_NONE, 0,
                                                         CONN_WINDOW)):
            raise MemoryError()

    def __dealloc__(self):
        cdef h2_stream *st
        cdef int b
        if self.session != NULL:
            nghttp2_session_del(self.session)
        for b in range(H2_BUCKETS):
            while self.table[b] != NULL:
                st = self.table[b]
                self.table[b] = st.next
                stream_free(st)

    # ---- the stream table ----

    cdef h2_stream *find(self, int32_t stream_id) noexcept nogil:
        cdef h2_stream *st = self.table[(stream_id >> 1) % H2_BUCKETS]
        while st != NULL and st.id != stream_id:
            st = st.next
        return st

    cdef int finish(self, h2_stream *st, int status, str message) except -1:
        """The stream is over: tell the handler (later) and free it."""
        cdef h2_stream **pp = &self.table[(st.id >> 1) % H2_BUCKETS]
        self.events.append((EV_CLOSED, st.id, status, message))
        while pp[0] != st:
            pp = &pp[0].next
        pp[0] = st.next
        self.nstreams -= 1
        stream_free(st)
        return 0

    cdef tuple close_status(self, h2_stream *st, uint32_t error_code):
        """The gRPC status of a stream nghttp2 closed, from what it carried."""
        if st.local:
            return LOCAL_CLOSE[st.local]
        msg = (peer_text(unquote(st.grpc_message[:st.grpc_message_len].decode("utf-8", "replace")))
               if st.grpc_message != NULL else "")
        if st.http_status > 0 and st.http_status != 200:
            return (HTTP_TO_GRPC.get(st.http_status, UNKNOWN),
                    f"HTTP status {st.http_status} from the server" + (f": {msg}" if msg else ""))
        if st.grpc_status == -2:
            return UNKNOWN, "malformed grpc-status from the server"
        if st.grpc_status >= 0:
            if st.grpc_status == 0 and st.inb.len > st.inb.off:
                return INTERNAL, "server ended the stream inside a message"
            return st.grpc_status, msg
        if self.goaway is not None and st.id > self.goaway_last_id:
            return UNAVAILABLE, f"server sent {self.goaway} before handling the stream"
        if error_code != NGHTTP2_NO_ERROR:
            code = nghttp2_http2_strerror(error_code).decode()
            return (RST_TO_GRPC.get(error_code, INTERNAL),
                    f"server reset the stream: {code}" if st.peer_reset
                    else f"stream reset on a malformed response: {code}")
        return INTERNAL, "stream ended without grpc-status"

    # ---- sending ----

    cdef uint8_t *reserve_out(self, h2_stream *st, size_t n) noexcept nogil:
        cdef uint8_t *p = buf_reserve(&st.out, n, SEND_MAX)
        if p == NULL:
            self.reset(st, L_SEND_FULL, NGHTTP2_CANCEL)
        return p

    cdef void queued(self, h2_stream *st) noexcept nogil:
        if st.deferred:
            st.deferred = False
            nghttp2_session_resume_data(self.session, st.id)

    cdef void reset(self, h2_stream *st, int local, uint32_t code) noexcept nogil:
        """Abort: nothing more is sent or delivered; the close is reported
        when nghttp2 has sent the RST_STREAM."""
        if st.local or self.session == NULL:
            return
        st.local = local
        buf_free(&st.out)
        buf_free(&st.inb)
        nghttp2_submit_rst_stream(self.session, NGHTTP2_FLAG_NONE, st.id, code)

    cdef int send_audio(self, int32_t stream_id, uint32_t track, uint64_t seq,
                        uint64_t capture_ns, const uint8_t *pcm, size_t n,
                        bint synthesized) noexcept nogil:
        cdef h2_stream *st = self.find(stream_id)
        cdef size_t frame = 0, msg
        cdef uint8_t *p
        if st == NULL or st.eof or st.local:
            return H2_ENOSTREAM
        frame = field_len(track) + field_len(seq) + field_len(capture_ns) + field_len(n) + n + (
            2 if synthesized else 0)
        msg = 1 + varint_len(frame) + frame   # the oneof field is there even if empty
        p = self.reserve_out(st, 5 + msg)
        if p == NULL:
            return H2_EFULL
        p = put_prefix(p, msg)
        p[0] = 0x12                     # GatewayMessage.audio, length-delimited
        p = put_varint(p + 1, frame)
        p = put_field(p, 0x08, track)
        p = put_field(p, 0x10, seq)
        p = put_field(p, 0x18, capture_ns)
        p = put_field(p, 0x22, n)       # AudioFrame.pcm: its length, then the bytes
        if n:
            memcpy(p, pcm, n)
        if synthesized:                 # AudioFrame.synthesized = true
            p[n], p[n + 1] = 0x28, 1
        st.out.len += 5 + msg
        self.queued(st)
        return H2_OK

    def send_audio_py(self, int32_t stream_id, uint32_t track, uint64_t seq,
                      uint64_t capture_ns, const uint8_t[::1] pcm, bint synthesized=False):
        """send_audio for Python: True if queued, False if the stream no longer
        takes data (its on_stream_closed tells why)."""
        return self.send_audio(stream_id, track, seq, capture_ns, &pcm[0] if pcm.shape[0] else NULL,
                               pcm.shape[0], synthesized) == H2_OK

    def send_message(self, int32_t stream_id, const uint8_t[::1] data):
        """Queue one serialized message; True if queued, False if the stream no
        longer takes data (its on_stream_closed tells why)."""
        cdef h2_stream *st = self.find(stream_id)
        cdef size_t n = data.shape[0]
        cdef uint8_t *p
        if st == NULL or st.eof or st.local:
            return False
        p = self.reserve_out(st, 5 + n)
        if p == NULL:
            return False
        p = put_prefix(p, n)
        if n:
            memcpy(p, &data[0], n)
        st.out.len += 5 + n
        self.queued(st)
        return True

    def end_stream(self, int32_t stream_id):
        """Half-close: END_STREAM goes after everything queued."""
        cdef h2_stream *st = self.find(stream_id)
        if st != NULL and not st.local:
            st.eof = True
            self.queued(st)

    def reset_stream(self, int32_t stream_id, uint32_t code=NGHTTP2_CANCEL):
        """Abort the stream with RST_STREAM(code); it closes as CANCELLED."""
        cdef h2_stream *st = self.find(stream_id)
        if st != NULL:
            self.reset(st, L_CANCEL, code)

    def mute_stream(self, int32_t stream_id):
        """Deliver nothing more of the stream: its DATA is dropped as it
        arrives (what is queued to send still goes)."""
        cdef h2_stream *st = self.find(stream_id)
        if st != NULL:
            st.deaf = True
            buf_free(&st.inb)

    def stream_buffered(self, int32_t stream_id):
        """Bytes queued on the stream that nghttp2 has not taken (the peer's
        flow-control window is shut, or flush() is due); 0 for no such stream."""
        cdef h2_stream *st = self.find(stream_id)
        return st.out.len - st.out.off if st != NULL else 0

    def open_stream(self, str path, metadata=()):
        """Start a gRPC call (HEADERS go out with the next flush); its stream id."""
        cdef h2_stream *st
        cdef nghttp2_data_provider prd
        cdef nghttp2_nv nva[64]
        cdef int32_t sid
        cdef int b
        if self.closed:
            raise H2Error(f"connection is closed: {self.reason}")
        if self.goaway is not None:
            raise H2Error(f"server sent {self.goaway}: open a new connection")
        if self.available_streams <= 0:
            raise H2Error(f"all {self.open_streams} streams the server allows are open")
        headers = [(b":method", b"POST"), (b":scheme", self.scheme.encode()),
                   (b":path", path.encode()), (b":authority", self.authority.encode()),
                   (b"content-type", b"application/grpc"), (b"te", b"trailers"),
                   (b"user-agent", USER_AGENT), (b"grpc-accept-encoding", b"identity")]
        headers += [(k.lower().encode(), v.encode()) for k, v in metadata]
        if len(headers) > 64:
            raise ValueError(f"{len(metadata)} metadata entries: at most {64 - 8}")
        for i, (k, v) in enumerate(headers):
            nva[i].name, nva[i].namelen = <uint8_t *><char *>k, len(k)
            nva[i].value, nva[i].valuelen = <uint8_t *><char *>v, len(v)
            nva[i].flags = NGHTTP2_NV_FLAG_NONE
        st = <h2_stream *>calloc(1, sizeof(h2_stream))
        if st == NULL:
            raise MemoryError()
        st.grpc_status = -1
        prd.source.ptr = st
        prd.read_callback = read_data
        sid = nghttp2_submit_request(self.session, NULL, nva, len(headers), &prd, NULL)
        if sid < 0:
            free(st)
            raise H2Error(f"cannot open a stream: {nghttp2_strerror(sid).decode()}")
        st.id = sid
        b = (sid >> 1) % H2_BUCKETS
        st.next = self.table[b]
        self.table[b] = st
        self.nstreams += 1
        return sid

    cdef budget_input(self, size_t n):
        """At most RX_PER_TICK bytes per RX_WINDOW_S: past it reading pauses
        for the rest of the window, so a flood costs this connection its
        reads, never the loop its ticks."""
        now = time.monotonic()
        if now - self.rx_since >= RX_WINDOW_S:
            self.rx_since, self.rx_bytes = now, 0
        self.rx_bytes += n
        if self.rx_bytes > RX_PER_TICK and not self.rx_paused and self.transport is not None:
            self.rx_paused = True
            self.rx_pauses += 1
            self.transport.pause_reading()
            asyncio.get_running_loop().call_later(self.rx_since + RX_WINDOW_S - now,
                                                  self.resume_input)

    def resume_input(self):
        if self.rx_paused and not self.closed and self.transport is not None:
            self.rx_paused = False
            self.transport.resume_reading()

    @property
    def read_pauses(self):
        """Times this connection went over its input budget."""
        return self.rx_pauses

    cpdef flush(self):
        """Everything nghttp2 has to send, in one transport.write (none if nothing)."""
        if self.closed or self.paused or self.transport is None:
            return
        self.produce()
        self.dispatch()
        self.check_done()

    cdef int produce(self) except -1:
        cdef const uint8_t *data
        cdef ssize_t n
        cdef uint8_t *p
        if self.out.exports:   # the transport still holds the last write's bytes
            self.out = HeldBuf(self.out.b.cap)
        self.out.b.len = 0
        while True:   # DATA frames go into out by send_data, the rest here
            n = nghttp2_session_mem_send(self.session, &data)
            if n == 0:
                break
            if n < 0:
                self.teardown(f"HTTP/2 error while sending: {nghttp2_strerror(n).decode()}"
                              + (f": {self.error}" if self.error else ""), UNAVAILABLE)
                return 0
            p = buf_reserve(&self.out.b, n, <size_t>-1)
            if p == NULL:
                raise MemoryError()
            memcpy(p, data, n)
            self.out.b.len += n
        if self.out.b.len:
            self.transport.write(memoryview(self.out))
        return 0

    def ping(self):
        """Send a PING now; unacked_pings counts those not answered yet."""
        if self.closed:
            raise H2Error(f"connection is closed: {self.reason}")
        nghttp2_submit_ping(self.session, NGHTTP2_FLAG_NONE, NULL)
        self.unacked_pings += 1
        self.flush()

    def close(self, str reason="closed by the client", int status=CANCELLED):
        """GOAWAY, close the socket; open streams end with status: CANCELLED
        when the client is done with them, UNAVAILABLE (14) when it gives up
        on the connection (connect failed, keepalive unanswered)."""
        if self.closed:
            return
        if self.transport is not None:
            nghttp2_session_terminate_session(self.session, NGHTTP2_NO_ERROR)
            self.produce()
        self.teardown(reason, status)

    @property
    def is_open(self):
        return not self.closed and self.transport is not None

    @property
    def goaway_received(self):
        return self.goaway is not None

    @property
    def open_streams(self):
        return self.nstreams

    @property
    def available_streams(self):
        """Streams that may still be opened here: the server's
        SETTINGS_MAX_CONCURRENT_STREAMS minus the open ones (0 once closing)."""
        if self.closed or self.goaway is not None:
            return 0
        m = nghttp2_session_get_remote_settings(self.session,
                                                NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
        return max(0, <Py_ssize_t>min(m, 1 << 30) - self.nstreams)

    # ---- receiving ----

    cdef int received(self, h2_stream *st, const uint8_t *data, size_t n) except -1:
        """DATA bytes of a stream: whole gRPC messages become events, views of
        the bytes being read; a message split across DATA frames is gathered
        in st.inb and, once whole, st.inb's memory itself is handed over."""
        cdef h2_buf *b = &st.inb
        cdef uint8_t *p
        cdef Py_ssize_t used
        cdef size_t have
        cdef HeldBuf held
        if b.len == b.off:
            if (<size_t>data >= <size_t>self.reading_p
                    and <size_t>data + n <= <size_t>self.reading_p + self.reading_n):
                used = self.messages(st, data, n, self.reading, self.reading_p)
            else:   # not what nghttp2 does with mem_recv, but then copies, never wrong views
                used = self.messages(st, data, n, None, NULL)
            if st.local or <size_t>used == n:
                return 0
            data, n = data + used, n - used
        p = buf_reserve(b, n, <size_t>-1)
        if p == NULL:
            raise MemoryError()
        memcpy(p, data, n)
        b.len += n
        have = b.len - b.off
        if have < 5 or have - 5 < grpc_length(b.p + b.off):
            self.messages(st, b.p + b.off, have, None, NULL)   # only checks the prefix
            return 0
        held = HeldBuf()   # takes st.inb's memory: the message is not copied again
        held.b = b[0]
        b.p, b.off, b.len, b.cap = NULL, 0, 0, 0
        used = self.messages(st, held.b.p + held.b.off, have, memoryview(held), held.b.p)
        if not st.local and <size_t>used < have:   # the start of the next message
            p = buf_reserve(b, have - used, <size_t>-1)
            if p == NULL:
                raise MemoryError()
            memcpy(p, held.b.p + held.b.off + used, have - used)
            b.len += have - used
        return 0

    cdef Py_ssize_t messages(self, h2_stream *st, const uint8_t *p, size_t n,
                             object view, const uint8_t *base) except -1:
        """An event for each whole message at p, a slice of view (whose bytes
        start at base), or a copy if view is None: the bytes they took (0
        once the stream is reset for a bad one)."""
        cdef size_t used = 0, mlen, at
        cdef const uint8_t *m
        while n - used >= 5:
            m = p + used
            if m[0] != 0:
                self.reset(st, L_COMPRESSED, NGHTTP2_INTERNAL_ERROR)
                return 0
            mlen = grpc_length(m)
            if mlen > MESSAGE_MAX:
                self.reset(st, L_TOO_BIG, NGHTTP2_CANCEL)
                return 0
            if n - used < 5 + mlen:
                break
            if view is None:
                msg = PyBytes_FromStringAndSize(<char *>m + 5, mlen)
            else:
                at = <size_t>(m + 5 - base)
                msg = view[at:at + mlen]
            self.events.append((EV_MESSAGE, st.id, msg))
            used += 5 + mlen
        return used

    cdef int dispatch(self) except -1:
        """Deliver recorded events in order. Not re-entered: events a handler
        causes are delivered by the loop already running."""
        cdef h2_stream *st
        if self.dispatching:
            return 0
        self.dispatching = True
        try:
            while self.events:
                events, self.events = self.events, []
                for ev in events:
                    kind = ev[0]
                    if kind == EV_MESSAGE:
                        sid = ev[1]
                        if sid in self.muted:
                            continue
                        try:
                            self.handler.on_message(sid, ev[2])
                        except Exception:
                            log.exception("on_message of stream %d raised: resetting it", sid)
                            self.muted.add(sid)
                            st = self.find(sid)
                            if st != NULL:
                                self.reset(st, L_HANDLER, NGHTTP2_CANCEL)
                        if type(ev[2]) is memoryview:
                            ev[2].release()   # its bytes are read over next: kept, it fails loudly
                    elif kind == EV_CLOSED:
                        self.muted.discard(ev[1])
                        try:
                            self.handler.on_stream_closed(ev[1], ev[2], ev[3])
                        except Exception:
                            log.exception("on_stream_closed of stream %d raised", ev[1])
                    else:
                        try:
                            self.handler.on_connection_lost(ev[1])
                        except Exception:
                            log.exception("on_connection_lost raised")
        finally:
            self.dispatching = False
        return 0

    cdef int check_done(self) except -1:
        """nghttp2 wants neither to read nor to write: the session is over
        (a GOAWAY and no streams left, or a connection error)."""
        if (not self.closed and not nghttp2_session_want_read(self.session)
                and not nghttp2_session_want_write(self.session)):
            self.teardown(self.error or (f"server sent {self.goaway}" if self.goaway
                                         else "HTTP/2 session ended"), UNAVAILABLE)
        return 0

    cdef int teardown(self, str reason, int status) except -1:
        """Close for good: every open stream ends with status, then the
        handler hears on_connection_lost once."""
        cdef h2_stream *st
        cdef int b
        if self.closed:
            return 0
        self.closed = True
        self.reason = reason
        nghttp2_session_del(self.session)
        self.session = NULL
        what = "connection closed by the client" if status == CANCELLED else "connection lost"
        for b in range(H2_BUCKETS):
            while self.table[b] != NULL:
                st = self.table[b]
                code, msg = LOCAL_CLOSE[st.local] if st.local else (status, f"{what}: {reason}")
                self.finish(st, code, msg)
        self.events.append((EV_LOST, reason))
        if self.transport is not None:
            self.transport.close()
        self.dispatch()
        return 0

    # ---- asyncio Protocol ----

    def connection_made(self, transport):
        self.transport = transport
        ssl = transport.get_extra_info("ssl_object")
        if ssl is not None and ssl.selected_alpn_protocol() != "h2":
            self.teardown(f"TLS server did not negotiate HTTP/2 (ALPN "
                          f"{ssl.selected_alpn_protocol()!r}, need 'h2')", UNAVAILABLE)
            return
        self.flush()

    def get_buffer(self, Py_ssize_t sizehint):
        return self.inview

    def buffer_updated(self, Py_ssize_t n):
        self.receive(self.inview, n)

    def data_received(self, data):
        """What a loop without buffered reads (stock asyncio) hands over."""
        self.receive(memoryview(data), len(data))

    cdef int receive(self, object data, Py_ssize_t n) except -1:
        """nghttp2 reads data[:n]; messages in it reach the handler as views of it."""
        cdef const uint8_t[::1] v = data
        cdef ssize_t rv
        if self.closed or n == 0:
            return 0
        self.budget_input(n)
        self.reading, self.reading_p, self.reading_n = data, &v[0], n
        try:
            rv = nghttp2_session_mem_recv(self.session, &v[0], n)
            if rv < 0:
                self.teardown(f"HTTP/2 error: {nghttp2_strerror(rv).decode()}"
                              + (f": {self.error}" if self.error else ""), UNAVAILABLE)
                return 0
            self.dispatch()
        finally:
            self.reading, self.reading_p, self.reading_n = None, NULL, 0
        if not self.closed:
            if nghttp2_session_want_write(self.session):
                self.flush()   # SETTINGS/PING ACK, WINDOW_UPDATE, RST_STREAM: now
            else:
                self.check_done()
        return 0

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        reason = str(exc) if exc else "server closed the connection"
        if self.goaway is not None:
            reason += f" after {self.goaway}"
        self.teardown(self.error or reason, UNAVAILABLE)
        self.transport = None

    def pause_writing(self):
        # The socket is not draining: keep frames in the streams' buffers,
        # where stream_buffered() shows them, not in the transport's.
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self.flush()
