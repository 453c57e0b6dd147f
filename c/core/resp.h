/* resp.h -- RESP2 on the hot path: a resumable request parser and a reply
 * scanner. Neither copies or builds trees.
 *
 * Request parser. The caller hands it the unread input starting at the first
 * byte of the command being parsed; the parser keeps its state (and argument
 * offsets relative to that start) between calls, so a command split over any
 * number of reads resumes where it stopped. When the command is complete it
 * returns KV_OK with argv pointing into the caller's buffer (valid until the
 * buffer changes) and *consumed set; the caller then drops those bytes.
 *
 *   kv_req_parse(buf, len) -> KV_AGAIN  need more bytes (state kept)
 *                          -> KV_OK     one command (argc may be 0: empty line)
 *                          -> KV_ERR    p->err holds "Protocol error: ..."
 *
 * Inline commands are split as redis-cli does ("..." with \n \r \t \b \a \xHH
 * escapes, '...' with \'); escapes are decoded in place, which is why buf is
 * writable.
 *
 * Reply scanner. Finds where one complete reply (of any nesting) ends, resuming
 * from where the last call stopped, so a large reply arriving in many reads
 * costs O(total bytes). */
#ifndef KV_RESP_H
#define KV_RESP_H

#include "buf.h"
#include "kv.h"

#include <string.h>

#define KV_RESP_MAX_INLINE     (64 * 1024)
#define KV_RESP_MAX_ARGC       (1024 * 1024)
#define KV_RESP_MAX_BULK       (512LL * 1024 * 1024)
#define KV_RESP_MAX_DEPTH      64

typedef struct kv_req_parser {
    int state;
    size_t pos;           /* next byte to look at, relative to command start */
    long long want_argc;  /* multibulk count */
    long long bulk_len;   /* length of the bulk being read */
    int argc;
    int argv_cap;
    size_t *arg_off;      /* argument offsets relative to the command start */
    size_t *arg_len;
    kv_str *argv;         /* filled when a command completes */
    const char *err;
    int inline_cmd;       /* last command was inline */
} kv_req_parser;

void kv_req_parser_init(kv_req_parser *p);
void kv_req_parser_deinit(kv_req_parser *p);
/* Between commands, the argument arrays go back (an idle connection keeps
 * none; the next command allocates them again). Does nothing mid-command. */
void kv_req_parser_release(kv_req_parser *p);
int kv_req_parse(kv_req_parser *p, char *buf, size_t len, size_t *consumed);

typedef struct kv_reply_scanner {
    size_t pos;           /* relative to the reply start */
    size_t bulk_end;      /* when > 0: waiting until len >= bulk_end */
    int depth;
    long long remaining[KV_RESP_MAX_DEPTH];
} kv_reply_scanner;

void kv_reply_scanner_reset(kv_reply_scanner *s);
/* KV_OK: *reply_len bytes starting at buf form one reply (scanner reset);
 * KV_AGAIN: need more; KV_ERR: not RESP2 or RESP3 (every RESP3 type is
 * framed: null, boolean, double, big number, blob error, verbatim, map,
 * set, push, and an attribute counted with the reply it describes). */
int kv_reply_scan(kv_reply_scanner *s, const char *buf, size_t len, size_t *reply_len);

/* Writer: RESP headers and bulk strings straight into a buffer, one reserve
 * and plain stores each (no per-piece calls, no allocation once the buffer
 * has its working size). KV_ENOMEM when the buffer cannot grow; the buffer
 * then latches it (kv_buf.failed), so a group of writes is checked once
 * with kv_buf_settle. The proxy writes every command and reply with these;
 * the control plane's RESP is hiredis. */
/* The header "<type><n>\r\n" into buf (at least 24 bytes); its length.
 * One digit ("*2", "$3": most headers) inline, the rest in resp.c. */
size_t kv_resp_fmt_count_any(char *buf, char type, long long n);
static inline size_t kv_resp_fmt_count(char *buf, char type, long long n)
{
    if (n < 0 || n >= 10)
        return kv_resp_fmt_count_any(buf, type, n);
    buf[0] = type;
    buf[1] = (char)('0' + n);
    buf[2] = '\r';
    buf[3] = '\n';
    return 4;
}
/* Inline: they are on every command and reply of the hot path. */
static inline int kv_resp_write_count(kv_buf *out, char type, long long n)
{
    if (kv_buf_reserve(out, 32) != KV_OK)
        return KV_ENOMEM;
    out->wpos += kv_resp_fmt_count(out->data + out->wpos, type, n);
    return KV_OK;
}

static inline int kv_resp_write_bulk(kv_buf *out, const char *p, size_t n)
{
    if (kv_buf_reserve(out, n + 32) != KV_OK)
        return KV_ENOMEM;
    char *d = out->data + out->wpos;
    size_t o = kv_resp_fmt_count(d, '$', (long long)n);
    memcpy(d + o, p, n);
    o += n;
    d[o++] = '\r';
    d[o++] = '\n';
    out->wpos += o;
    return KV_OK;
}

static inline int kv_resp_write_bulk2(kv_buf *out, const char *pre, size_t prelen, const char *p, size_t n)
{
    if (kv_buf_reserve(out, n + prelen + 32) != KV_OK)
        return KV_ENOMEM;
    char *d = out->data + out->wpos;
    size_t o = kv_resp_fmt_count(d, '$', (long long)(n + prelen));
    memcpy(d + o, pre, prelen);
    o += prelen;
    memcpy(d + o, p, n);
    o += n;
    d[o++] = '\r';
    d[o++] = '\n';
    out->wpos += o;
    return KV_OK;
}

/* Strict integer parse of a whole span (no sign '+', no leading zeros, no
 * overflow), as Redis's string2ll. KV_OK or KV_ERR. */
int kv_parse_ll(const char *p, size_t len, long long *out);

#endif
