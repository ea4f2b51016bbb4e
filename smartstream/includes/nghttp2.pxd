# Declarations of libnghttp2 (the subset smartstream._h2 uses). The API is the
# one of nghttp2 1.52 (Debian 12): mem_send/mem_recv and nghttp2_data_provider,
# not their *2 successors, so the build works on every supported distribution.
from libc.stdint cimport int32_t, uint8_t, uint32_t


cdef extern from "nghttp2/nghttp2.h" nogil:
    ctypedef struct nghttp2_session:
        pass
    ctypedef struct nghttp2_session_callbacks:
        pass
    ctypedef struct nghttp2_option:
        pass

    enum:
        NGHTTP2_DATA, NGHTTP2_HEADERS, NGHTTP2_RST_STREAM, NGHTTP2_SETTINGS, NGHTTP2_PING
        NGHTTP2_GOAWAY
    enum:
        NGHTTP2_FLAG_NONE, NGHTTP2_FLAG_END_STREAM, NGHTTP2_FLAG_ACK
    enum:
        NGHTTP2_NV_FLAG_NONE, NGHTTP2_NV_FLAG_NO_COPY_NAME, NGHTTP2_NV_FLAG_NO_COPY_VALUE
    enum:
        NGHTTP2_HCAT_REQUEST, NGHTTP2_HCAT_RESPONSE, NGHTTP2_HCAT_HEADERS
    enum:
        NGHTTP2_DATA_FLAG_EOF, NGHTTP2_DATA_FLAG_NO_COPY
    enum:
        NGHTTP2_SETTINGS_ENABLE_PUSH, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS
        NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE
    # HTTP/2 error codes (RFC 9113 section 7)
    enum:
        NGHTTP2_NO_ERROR, NGHTTP2_PROTOCOL_ERROR, NGHTTP2_INTERNAL_ERROR
        NGHTTP2_REFUSED_STREAM, NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM
        NGHTTP2_INADEQUATE_SECURITY
    # library error codes
    enum:
        NGHTTP2_ERR_DEFERRED, NGHTTP2_ERR_CALLBACK_FAILURE, NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE

    ctypedef struct nghttp2_nv:
        uint8_t *name
        uint8_t *value
        size_t namelen
        size_t valuelen
        uint8_t flags

    ctypedef struct nghttp2_settings_entry:
        int32_t settings_id
        uint32_t value

    ctypedef struct nghttp2_frame_hd:
        size_t length
        int32_t stream_id
        uint8_t type
        uint8_t flags

    ctypedef struct nghttp2_headers:
        nghttp2_frame_hd hd
        int cat

    ctypedef struct nghttp2_rst_stream:
        nghttp2_frame_hd hd
        uint32_t error_code

    ctypedef struct nghttp2_goaway:
        nghttp2_frame_hd hd
        int32_t last_stream_id
        uint32_t error_code
        uint8_t *opaque_data
        size_t opaque_data_len

    ctypedef struct nghttp2_data:
        nghttp2_frame_hd hd
        size_t padlen

    ctypedef union nghttp2_frame:
        nghttp2_frame_hd hd
        nghttp2_data data
        nghttp2_headers headers
        nghttp2_rst_stream rst_stream
        nghttp2_goaway goaway

    ctypedef union nghttp2_data_source:
        int fd
        void *ptr

    ctypedef ssize_t (*nghttp2_data_source_read_callback)(
        nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
        uint32_t *data_flags, nghttp2_data_source *source, void *user_data) noexcept

    ctypedef struct nghttp2_data_provider:
        nghttp2_data_source source
        nghttp2_data_source_read_callback read_callback

    const char *nghttp2_strerror(int lib_error_code)
    const char *nghttp2_http2_strerror(uint32_t error_code)

    int nghttp2_option_new(nghttp2_option **option_ptr)
    void nghttp2_option_del(nghttp2_option *option)
    void nghttp2_option_set_peer_max_concurrent_streams(nghttp2_option *option, uint32_t val)
    void nghttp2_option_set_max_settings(nghttp2_option *option, size_t val)
    void nghttp2_option_set_max_continuations(nghttp2_option *option, size_t val)
    void nghttp2_option_set_max_outbound_ack(nghttp2_option *option, size_t val)

    int nghttp2_session_callbacks_new(nghttp2_session_callbacks **callbacks_ptr)
    void nghttp2_session_callbacks_del(nghttp2_session_callbacks *callbacks)

    int nghttp2_session_client_new2(nghttp2_session **session_ptr,
                                    const nghttp2_session_callbacks *callbacks,
                                    void *user_data, const nghttp2_option *option)
    void nghttp2_session_del(nghttp2_session *session)
    ssize_t nghttp2_session_mem_send(nghttp2_session *session, const uint8_t **data_ptr)
    ssize_t nghttp2_session_mem_recv(nghttp2_session *session, const uint8_t *data,
                                     size_t inlen)
    int nghttp2_session_want_read(nghttp2_session *session)
    int nghttp2_session_want_write(nghttp2_session *session)
    int nghttp2_session_resume_data(nghttp2_session *session, int32_t stream_id)
    int nghttp2_session_get_stream_local_close(nghttp2_session *session, int32_t stream_id)
    uint32_t nghttp2_session_get_remote_settings(nghttp2_session *session, int id)
    int nghttp2_session_set_local_window_size(nghttp2_session *session, uint8_t flags,
                                              int32_t stream_id, int32_t window_size)
    int nghttp2_session_terminate_session(nghttp2_session *session, uint32_t error_code)

    int32_t nghttp2_submit_request(nghttp2_session *session, const void *pri_spec,
                                   const nghttp2_nv *nva, size_t nvlen,
                                   const nghttp2_data_provider *data_prd,
                                   void *stream_user_data)
    int nghttp2_submit_settings(nghttp2_session *session, uint8_t flags,
                                const nghttp2_settings_entry *iv, size_t niv)
    int nghttp2_submit_rst_stream(nghttp2_session *session, uint8_t flags,
                                  int32_t stream_id, uint32_t error_code)
    int nghttp2_submit_ping(nghttp2_session *session, uint8_t flags,
                            const uint8_t *opaque_data)


# The receive-side callbacks build Python objects, so they run with the GIL:
# their types are declared outside the nogil block.
cdef extern from "nghttp2/nghttp2.h":
    ctypedef int (*nghttp2_on_frame_recv_callback)(
        nghttp2_session *session, const nghttp2_frame *frame, void *user_data) noexcept
    ctypedef int (*nghttp2_on_frame_send_callback)(
        nghttp2_session *session, const nghttp2_frame *frame, void *user_data) noexcept
    ctypedef int (*nghttp2_on_frame_not_send_callback)(
        nghttp2_session *session, const nghttp2_frame *frame, int lib_error_code,
        void *user_data) noexcept
    ctypedef int (*nghttp2_on_data_chunk_recv_callback)(
        nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
        size_t len, void *user_data) noexcept
    ctypedef int (*nghttp2_on_stream_close_callback)(
        nghttp2_session *session, int32_t stream_id, uint32_t error_code,
        void *user_data) noexcept
    ctypedef int (*nghttp2_send_data_callback)(
        nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd, size_t length,
        nghttp2_data_source *source, void *user_data) noexcept
    ctypedef int (*nghttp2_on_header_callback)(
        nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
        void *user_data) noexcept

    void nghttp2_session_callbacks_set_on_frame_recv_callback(
        nghttp2_session_callbacks *cbs, nghttp2_on_frame_recv_callback cb)
    void nghttp2_session_callbacks_set_on_frame_send_callback(
        nghttp2_session_callbacks *cbs, nghttp2_on_frame_send_callback cb)
    void nghttp2_session_callbacks_set_on_frame_not_send_callback(
        nghttp2_session_callbacks *cbs, nghttp2_on_frame_not_send_callback cb)
    void nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        nghttp2_session_callbacks *cbs, nghttp2_on_data_chunk_recv_callback cb)
    void nghttp2_session_callbacks_set_on_stream_close_callback(
        nghttp2_session_callbacks *cbs, nghttp2_on_stream_close_callback cb)
    void nghttp2_session_callbacks_set_send_data_callback(
        nghttp2_session_callbacks *cbs, nghttp2_send_data_callback cb)
    void nghttp2_session_callbacks_set_on_header_callback(
        nghttp2_session_callbacks *cbs, nghttp2_on_header_callback cb)
