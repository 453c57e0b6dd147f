/* resp.c -- see resp.h for the contracts. */
#include "resp.h"

#include <stdlib.h>
#include <stdio.h>
#include <limits.h>
#include <string.h>

enum { ST_START = 0, ST_BULK_LEN, ST_BULK_DATA };

int kv_parse_ll(const char *p, size_t len, long long *out)
{
    if (len == 0 || len > 20)
        return KV_ERR;
    size_t i = 0;
    int neg = 0;
    if (p[0] == '-') {
        neg = 1;
        i = 1;
        if (len == 1)
            return KV_ERR;
    }
    if (p[i] == '0' && len > i + 1)
        return KV_ERR;
    unsigned long long v = 0;
    if (len - i <= 18) {
        /* cannot overflow: no per-digit check (lengths and counts are short) */
        for (; i < len; i++) {
            unsigned c = (unsigned char)p[i] - '0';
            if (c > 9)
                return KV_ERR;
            v = v * 10 + c;
        }
        *out = neg ? -(long long)v : (long long)v;
        return KV_OK;
    }
    for (; i < len; i++) {
        unsigned c = (unsigned char)p[i] - '0';
        if (c > 9)
            return KV_ERR;
        if (v > (18446744073709551615ULL - c) / 10)
            return KV_ERR;
        v = v * 10 + c;
    }
    if (neg) {
        if (v > 9223372036854775808ULL)
            return KV_ERR;
        *out = (long long)(0 - v);
    } else {
        if (v > 9223372036854775807ULL)
            return KV_ERR;
        *out = (long long)v;
    }
    return KV_OK;
}

void kv_req_parser_init(kv_req_parser *p)
{
    memset(p, 0, sizeof(*p));
}

void kv_req_parser_release(kv_req_parser *p)
{
    if (p->state != ST_START || p->pos != 0)
        return; /* in the middle of a command: its offsets are needed */
    free(p->arg_off);
    free(p->arg_len);
    free(p->argv);
    p->arg_off = p->arg_len = NULL;
    p->argv = NULL;
    p->argv_cap = 0;
    p->argc = 0;
}

void kv_req_parser_deinit(kv_req_parser *p)
{
    free(p->arg_off);
    free(p->arg_len);
    free(p->argv);
    memset(p, 0, sizeof(*p));
}

static int ensure_args(kv_req_parser *p, long long n)
{
    if (n <= p->argv_cap)
        return KV_OK;
    /* Grow geometrically, but never trust a huge count up front: a client
     * announcing *1000000 gets room as its arguments actually arrive. */
    long long cap = p->argv_cap ? p->argv_cap : 4; /* GET k, SET k v: what most connections send */
    while (cap < n)
        cap *= 2;
    size_t *o = realloc(p->arg_off, cap * sizeof(size_t));
    if (o == NULL)
        return KV_ENOMEM;
    p->arg_off = o;
    size_t *l = realloc(p->arg_len, cap * sizeof(size_t));
    if (l == NULL)
        return KV_ENOMEM;
    p->arg_len = l;
    kv_str *a = realloc(p->argv, cap * sizeof(kv_str));
    if (a == NULL)
        return KV_ENOMEM;
    p->argv = a;
    p->argv_cap = (int)cap;
    return KV_OK;
}

static int push_arg(kv_req_parser *p, size_t off, size_t len)
{
    if (p->argc >= p->argv_cap && ensure_args(p, p->argc + 1) != KV_OK)
        return KV_ENOMEM;
    p->arg_off[p->argc] = off;
    p->arg_len[p->argc] = len;
    p->argc++;
    return KV_OK;
}

static void finish(kv_req_parser *p, char *buf)
{
    for (int i = 0; i < p->argc; i++) {
        p->argv[i].p = buf + p->arg_off[i];
        p->argv[i].len = p->arg_len[i];
    }
}

static int fail(kv_req_parser *p, const char *msg)
{
    p->err = msg;
    return KV_ERR;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Split one inline line [0, end) in place, decoding quotes. */
static int split_inline(kv_req_parser *p, char *buf, size_t end)
{
    size_t i = 0;
    p->argc = 0;
    for (;;) {
        while (i < end && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n' ||
                           buf[i] == '\v' || buf[i] == '\f'))
            i++;
        if (i >= end)
            return KV_OK;
        size_t start = i, w = i; /* decoded bytes are written at w <= i */
        int inq = 0, insq = 0;
        for (;;) {
            if (inq) {
                if (i >= end)
                    return fail(p, "Protocol error: unbalanced quotes in request");
                if (buf[i] == '\\' && i + 3 < end && buf[i + 1] == 'x' && hexval(buf[i + 2]) >= 0 &&
                    hexval(buf[i + 3]) >= 0) {
                    buf[w++] = (char)(hexval(buf[i + 2]) * 16 + hexval(buf[i + 3]));
                    i += 4;
                } else if (buf[i] == '\\' && i + 1 < end) {
                    char c = buf[i + 1];
                    switch (c) {
                    case 'n': c = '\n'; break;
                    case 'r': c = '\r'; break;
                    case 't': c = '\t'; break;
                    case 'b': c = '\b'; break;
                    case 'a': c = '\a'; break;
                    default: break;
                    }
                    buf[w++] = c;
                    i += 2;
                } else if (buf[i] == '"') {
                    /* closing quote must be followed by a space or the end */
                    if (i + 1 < end && !(buf[i + 1] == ' ' || buf[i + 1] == '\t' || buf[i + 1] == '\r'))
                        return fail(p, "Protocol error: unbalanced quotes in request");
                    i++;
                    break;
                } else {
                    buf[w++] = buf[i++];
                }
            } else if (insq) {
                if (i >= end)
                    return fail(p, "Protocol error: unbalanced quotes in request");
                if (buf[i] == '\\' && i + 1 < end && buf[i + 1] == '\'') {
                    buf[w++] = '\'';
                    i += 2;
                } else if (buf[i] == '\'') {
                    if (i + 1 < end && !(buf[i + 1] == ' ' || buf[i + 1] == '\t' || buf[i + 1] == '\r'))
                        return fail(p, "Protocol error: unbalanced quotes in request");
                    i++;
                    break;
                } else {
                    buf[w++] = buf[i++];
                }
            } else {
                if (i >= end || buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n')
                    break;
                if (buf[i] == '"' && w == start) {
                    inq = 1;
                    i++;
                } else if (buf[i] == '\'' && w == start) {
                    insq = 1;
                    i++;
                } else {
                    buf[w++] = buf[i++];
                }
            }
        }
        if (push_arg(p, start, w - start) != KV_OK)
            return fail(p, "Protocol error: out of memory");
    }
}

static int parse_inline(kv_req_parser *p, char *buf, size_t len, size_t *consumed)
{
    char *nl = memchr(buf + p->pos, '\n', len - p->pos);
    if (nl == NULL) {
        if (len > KV_RESP_MAX_INLINE)
            return fail(p, "Protocol error: too big inline request");
        p->pos = len; /* everything so far has no newline: do not rescan it */
        return KV_AGAIN;
    }
    size_t end = nl - buf;
    if (end > KV_RESP_MAX_INLINE)
        return fail(p, "Protocol error: too big inline request");
    if (split_inline(p, buf, end) != KV_OK)
        return KV_ERR;
    p->inline_cmd = 1;
    finish(p, buf);
    *consumed = end + 1;
    p->pos = 0;
    return KV_OK;
}

/* Find "\r\n" at or after from; returns offset of '\r' or -1 (need more). */
static long find_crlf(const char *buf, size_t from, size_t len)
{
    const char *cr = memchr(buf + from, '\r', len - from);
    if (cr == NULL || (size_t)(cr - buf) + 1 >= len)
        return -1;
    return cr - buf;
}

int kv_req_parse(kv_req_parser *p, char *buf, size_t len, size_t *consumed)
{
    for (;;) {
        switch (p->state) {
        case ST_START: {
            if (p->pos >= len)
                return KV_AGAIN;
            if (buf[0] != '*')
                return parse_inline(p, buf, len, consumed);
            long cr = find_crlf(buf, 1, len);
            if (cr < 0) {
                if (len > KV_RESP_MAX_INLINE)
                    return fail(p, "Protocol error: too big mbulk count string");
                return KV_AGAIN;
            }
            long long n;
            if (kv_parse_ll(buf + 1, cr - 1, &n) != KV_OK || n > KV_RESP_MAX_ARGC)
                return fail(p, "Protocol error: invalid multibulk length");
            p->inline_cmd = 0;
            p->pos = cr + 2;
            if (n <= 0) {
                p->argc = 0;
                *consumed = p->pos;
                p->pos = 0;
                return KV_OK;
            }
            p->want_argc = n;
            p->argc = 0;
            p->state = ST_BULK_LEN;
            break;
        }
        case ST_BULK_LEN: {
            if (p->pos >= len)
                return KV_AGAIN;
            if (buf[p->pos] != '$') {
                /* The message names the offending byte, as Redis does. A static
                 * buffer per thread keeps this allocation-free. */
                static __thread char tmsg[64];
                unsigned char c = (unsigned char)buf[p->pos];
                if (c >= 32 && c < 127)
                    snprintf(tmsg, sizeof(tmsg), "Protocol error: expected '$', got '%c'", c);
                else
                    snprintf(tmsg, sizeof(tmsg), "Protocol error: expected '$', got '\\x%02x'", c);
                return fail(p, tmsg);
            }
            long cr = find_crlf(buf, p->pos + 1, len);
            if (cr < 0) {
                if (len - p->pos > KV_RESP_MAX_INLINE)
                    return fail(p, "Protocol error: too big bulk count string");
                return KV_AGAIN;
            }
            long long n;
            if (kv_parse_ll(buf + p->pos + 1, cr - p->pos - 1, &n) != KV_OK || n < 0 ||
                n > KV_RESP_MAX_BULK)
                return fail(p, "Protocol error: invalid bulk length");
            p->bulk_len = n;
            p->pos = cr + 2;
            p->state = ST_BULK_DATA;
            break;
        }
        case ST_BULK_DATA: {
            size_t need = p->pos + (size_t)p->bulk_len + 2;
            if (len < need)
                return KV_AGAIN;
            if (buf[need - 2] != '\r' || buf[need - 1] != '\n')
                return fail(p, "Protocol error: bulk string not followed by CRLF");
            if (push_arg(p, p->pos, (size_t)p->bulk_len) != KV_OK)
                return fail(p, "Protocol error: out of memory");
            p->pos = need;
            if (p->argc == p->want_argc) {
                finish(p, buf);
                *consumed = p->pos;
                p->pos = 0;
                p->state = ST_START;
                return KV_OK;
            }
            p->state = ST_BULK_LEN;
            break;
        }
        }
    }
}

/* ---------------------------------------------------------------- replies */

void kv_reply_scanner_reset(kv_reply_scanner *s)
{
    s->pos = 0;
    s->bulk_end = 0;
    s->depth = 0;
}

/* One item finished: walk up the array stack. Returns 1 when the whole reply
 * is complete. */
static int item_done(kv_reply_scanner *s)
{
    while (s->depth > 0) {
        if (--s->remaining[s->depth - 1] > 0)
            return 0;
        s->depth--;
    }
    return 1;
}

int kv_reply_scan(kv_reply_scanner *s, const char *buf, size_t len, size_t *reply_len)
{
    if (s->bulk_end) {
        if (len < s->bulk_end)
            return KV_AGAIN;
        if (buf[s->bulk_end - 2] != '\r' || buf[s->bulk_end - 1] != '\n')
            return KV_ERR;
        s->pos = s->bulk_end;
        s->bulk_end = 0;
        if (item_done(s))
            goto complete;
    }
    for (;;) {
        if (s->pos >= len)
            return KV_AGAIN;
        char type = buf[s->pos];
        long cr = find_crlf(buf, s->pos + 1, len);
        if (cr < 0)
            return KV_AGAIN;
        /* a line ends with CRLF, a bulk with CRLF after its bytes: a reply
         * is framed as hiredis frames it, or the stream is bad (the
         * request parser, like Redis's, takes a lone CR for CRLF) */
        if (buf[cr + 1] != '\n')
            return KV_ERR;
        size_t line_end = cr + 2;
        long long n;
        switch (type) {
        case '+':
        case '-':
        case ':':
        case '_': /* RESP3: null, boolean, double, big number */
        case '#':
        case ',':
        case '(':
            s->pos = line_end;
            if (item_done(s))
                goto complete;
            break;
        case '$':
        case '!': /* RESP3: blob error, verbatim string */
        case '=':
            if (kv_parse_ll(buf + s->pos + 1, cr - s->pos - 1, &n) != KV_OK || n < -1)
                return KV_ERR;
            if (n < 0) {
                s->pos = line_end;
            } else {
                size_t end = line_end + (size_t)n + 2;
                if (len < end) {
                    s->bulk_end = end;
                    s->pos = line_end;
                    return KV_AGAIN;
                }
                if (buf[end - 2] != '\r' || buf[end - 1] != '\n')
                    return KV_ERR;
                s->pos = end;
            }
            if (item_done(s))
                goto complete;
            break;
        case '*':
        case '~': /* RESP3: set, push: n items */
        case '>':
        case '%': /* RESP3: map: n pairs */
        case '|': /* RESP3: attribute: n pairs, then the reply they describe */
            if (kv_parse_ll(buf + s->pos + 1, cr - s->pos - 1, &n) != KV_OK || n < -1 ||
                (n < 0 && type != '*') || n > (LLONG_MAX - 1) / 2)
                return KV_ERR;
            if (type == '%')
                n *= 2;
            else if (type == '|')
                n = n * 2 + 1;
            s->pos = line_end;
            if (n <= 0) {
                if (item_done(s))
                    goto complete;
            } else {
                if (s->depth >= KV_RESP_MAX_DEPTH)
                    return KV_ERR;
                s->remaining[s->depth++] = n;
            }
            break;
        default:
            return KV_ERR;
        }
    }
complete:
    *reply_len = s->pos;
    kv_reply_scanner_reset(s);
    return KV_OK;
}

/* ------------------------------------------------------------- writer */

size_t kv_resp_fmt_count_any(char *buf, char type, long long n)
{
    char tmp[24];
    size_t i = 0, o = 0;
    unsigned long long v = n < 0 ? (unsigned long long)(-(n + 1)) + 1 : (unsigned long long)n;
    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf[o++] = type;
    if (n < 0)
        buf[o++] = '-';
    while (i)
        buf[o++] = tmp[--i];
    buf[o++] = '\r';
    buf[o++] = '\n';
    return o;
}
