from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t

from .includes.nghttp2 cimport nghttp2_session

cdef enum:
    H2_OK = 0
    H2_ENOSTREAM = -1   # no such stream, or it was closed, reset or half-closed
    H2_EFULL = -2       # the send buffer went over its cap: the stream is being reset
    H2_BUCKETS = 512    # stream table; ids are consecutive odd numbers, so chains stay short

# A byte queue: bytes p[off:len] are pending.
cdef struct h2_buf:
    uint8_t *p
    size_t off, len, cap

cdef struct h2_stream:
    int32_t id
    h2_stream *next          # hash chain in H2Connection.table
    h2_buf out               # gRPC bytes nghttp2 has not taken yet
    h2_buf inb               # inbound bytes not yet a whole gRPC message
    bint eof                 # end_stream() asked: END_STREAM once out is empty
    bint deferred            # the data provider said DEFERRED: resume it on new data
    int local                # why we reset it (L_*), 0 if we did not
    bint peer_reset          # the server sent RST_STREAM
    int http_status          # :status of the response, 0 before it
    int grpc_status          # from trailers, -1 before them
    char *grpc_message       # raw (percent-encoded) grpc-message, or NULL
    size_t grpc_message_len
    size_t header_bytes      # of the response's header lists so far (HEADER_LIST_MAX)
    bint deaf                # mute_stream(): what arrives is dropped unread


# An h2_buf lent to Python, not copied: one flush's frames (transport.write
# gets a memoryview of it; a buffer still exported, the transport not done
# with it, is never written again: the next flush takes a new one), or a
# stream's gathered message (on_message gets a view of it).
cdef class HeldBuf:
    cdef h2_buf b
    cdef Py_ssize_t exports


cdef class H2Connection:
    cdef nghttp2_session *session
    cdef object transport, handler
    cdef readonly str authority, scheme
    cdef h2_stream *table[H2_BUCKETS]
    cdef Py_ssize_t nstreams
    cdef HeldBuf out         # one flush's frames, written with one transport.write
    cdef list events         # what callbacks found, delivered to the handler afterwards
    cdef set muted           # streams whose handler raised: no more messages for them
    cdef bint closed, dispatching, paused
    cdef str goaway          # the server's last GOAWAY, described; None before one
    cdef int32_t goaway_last_id
    cdef str error           # a connection error met inside nghttp2, for the close reason
    cdef str reason          # why the connection closed
    cdef readonly uint64_t unacked_pings
    cdef size_t rx_bytes     # read since rx_since (RX_PER_TICK per RX_WINDOW_S)
    cdef double rx_since
    cdef bint rx_paused
    cdef uint64_t rx_pauses
    cdef object inview       # the socket reads into it (get_buffer): DATA is read in place
    cdef object reading      # memoryview of the bytes nghttp2 is reading now, else None
    cdef const uint8_t *reading_p
    cdef size_t reading_n

    # The per-frame path: encodes GatewayMessage{audio: AudioFrame{...}} with its
    # gRPC prefix straight into the stream's send buffer. Returns H2_OK or H2_E*.
    cdef int send_audio(self, int32_t stream_id, uint32_t track, uint64_t seq,
                        uint64_t capture_ns, const uint8_t *pcm, size_t n,
                        bint synthesized) noexcept nogil
    cpdef flush(self)
    cdef h2_stream *find(self, int32_t stream_id) noexcept nogil
    cdef uint8_t *reserve_out(self, h2_stream *st, size_t n) noexcept nogil
    cdef void queued(self, h2_stream *st) noexcept nogil
    cdef void reset(self, h2_stream *st, int local, uint32_t code) noexcept nogil
    cdef int receive(self, object data, Py_ssize_t n) except -1
    cdef int received(self, h2_stream *st, const uint8_t *data, size_t n) except -1
    cdef Py_ssize_t messages(self, h2_stream *st, const uint8_t *p, size_t n,
                             object view, const uint8_t *base) except -1
    cdef tuple close_status(self, h2_stream *st, uint32_t error_code)
    cdef int finish(self, h2_stream *st, int status, str message) except -1
    cdef int produce(self) except -1
    cdef int dispatch(self) except -1
    cdef int check_done(self) except -1
    cdef int teardown(self, str reason, int status) except -1
    cdef budget_input(self, size_t n)
