/* RESP request parser and reply scanner fed every split point of a set of
 * pipelines: the result must not depend on how TCP cut the bytes. */
#include "../../c/core/resp.h"
#include "tap.h"
#include <stdlib.h>
#include <string.h>

/* Parse a whole stream fed in two pieces cut at `cut`; render every command
 * as "arg|arg|...;" into out. Returns 0, or -1 on protocol error (err set). */
static int parse_stream(const char *src, size_t len, size_t cut, char *out, size_t outcap,
                        const char **err)
{
    kv_req_parser p;
    kv_req_parser_init(&p);
    char *buf = malloc(len + 1);
    size_t have = 0, start = 0, o = 0;
    int rc = 0;
    out[0] = 0;
    for (int piece = 0; piece < 2; piece++) {
        size_t add = piece == 0 ? cut : len - cut;
        memcpy(buf + have, src + (piece == 0 ? 0 : cut), add);
        have += add;
        for (;;) {
            size_t consumed = 0;
            int r = kv_req_parse(&p, buf + start, have - start, &consumed);
            if (r == KV_AGAIN)
                break;
            if (r == KV_ERR) {
                *err = p.err;
                rc = -1;
                goto done;
            }
            for (int i = 0; i < p.argc; i++) {
                o += snprintf(out + o, outcap - o, "%s%.*s", i ? "|" : "", (int)p.argv[i].len,
                              p.argv[i].p);
            }
            o += snprintf(out + o, outcap - o, ";");
            start += consumed;
        }
    }
done:
    kv_req_parser_deinit(&p);
    free(buf);
    return rc;
}

static void every_split(const char *name, const char *src, size_t len, const char *want)
{
    char out[4096];
    int bad = -1;
    for (size_t cut = 0; cut <= len; cut++) {
        const char *err = NULL;
        if (parse_stream(src, len, cut, out, sizeof(out), &err) != 0 || strcmp(out, want) != 0) {
            bad = (int)cut;
            break;
        }
    }
    TAP_CHECK(bad < 0, "%s: same commands at all %zu split points (first bad cut %d, got '%s')",
              name, len + 1, bad, bad < 0 ? "" : out);
}

static void every_split_err(const char *name, const char *src, const char *want_prefix,
                            const char *want_err)
{
    size_t len = strlen(src);
    int bad = -1;
    char out[4096];
    for (size_t cut = 0; cut <= len; cut++) {
        const char *err = NULL;
        int rc = parse_stream(src, len, cut, out, sizeof(out), &err);
        if (rc != -1 || strcmp(err, want_err) != 0 || strcmp(out, want_prefix) != 0) {
            bad = (int)cut;
            break;
        }
    }
    TAP_CHECK(bad < 0, "%s: '%s' after '%s' at every split (first bad cut %d)", name, want_err,
              want_prefix, bad);
}

static int scan_all(const char *src, size_t len, size_t cut, size_t *ends, int max)
{
    kv_reply_scanner s;
    kv_reply_scanner_reset(&s);
    size_t start = 0;
    int n = 0;
    size_t have = cut;
    for (int piece = 0; piece < 2; piece++) {
        if (piece == 1)
            have = len;
        for (;;) {
            size_t rl;
            int r = kv_reply_scan(&s, src + start, have - start, &rl);
            if (r == KV_AGAIN)
                break;
            if (r == KV_ERR)
                return -1;
            start += rl;
            if (n < max)
                ends[n] = start;
            n++;
        }
    }
    return n;
}

int main(void)
{
    static const char pipeline[] =
        "*3\r\n$3\r\nSET\r\n$3\r\nfoo\r\n$3\r\nbar\r\n"
        "*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n"
        "PING\r\n"
        "*1\r\n$4\r\nPING\r\n"
        "\r\n"
        "*0\r\n"
        "set 'a b' \"c\\x41\\n\"\n"
        "*3\r\n$3\r\nSET\r\n$5\r\nb\r\n\001x\r\n$0\r\n\r\n"
        "*-1\r\n"
        "get   k1  \r\n";
    every_split("pipeline of multibulk, inline, quoted, binary and empty commands", pipeline,
                sizeof(pipeline) - 1,
                "SET|foo|bar;GET|foo;PING;PING;;;set|a b|cA\n;SET|b\r\n\001x|;;get|k1;");

    /* The binary argument above contains a NUL; strcmp stops there, so check
     * the bytes of that command on their own too. */
    {
        const char bin[] = "*2\r\n$3\r\nGET\r\n$4\r\n\0\r\n\xff\r\n";
        kv_req_parser p;
        kv_req_parser_init(&p);
        char b[64];
        memcpy(b, bin, sizeof(bin) - 1);
        size_t c;
        int r = kv_req_parse(&p, b, sizeof(bin) - 1, &c);
        TAP_CHECK(r == KV_OK && p.argc == 2 && p.argv[1].len == 4 &&
                      memcmp(p.argv[1].p, "\0\r\n\xff", 4) == 0 && c == sizeof(bin) - 1,
                  "binary-safe bulk with NUL and CRLF inside");
        kv_req_parser_deinit(&p);
    }

    every_split_err("bad bulk prefix", "*1\r\n$4\r\nPING\r\n*1\r\n12\r\n", "PING;",
                    "Protocol error: expected '$', got '1'");
    every_split_err("huge bulk length", "*1\r\n$1234567891011121314\r\nxx\r\n", "",
                    "Protocol error: invalid bulk length");
    every_split_err("negative bulk length", "*1\r\n$-3\r\n", "", "Protocol error: invalid bulk length");
    every_split_err("bad multibulk count", "*x\r\n", "", "Protocol error: invalid multibulk length");
    every_split_err("too many args", "*2000000\r\n", "", "Protocol error: invalid multibulk length");
    every_split_err("leading zero count", "*01\r\n", "", "Protocol error: invalid multibulk length");
    every_split_err("unbalanced quotes", "GET k\r\nset \"a b\r\n", "GET|k;",
                    "Protocol error: unbalanced quotes in request");
    every_split_err("bulk without CRLF", "*1\r\n$2\r\nabXY", "",
                    "Protocol error: bulk string not followed by CRLF");

    {
        size_t n = KV_RESP_MAX_INLINE + 10;
        char *big = malloc(n);
        memset(big, 'a', n);
        kv_req_parser p;
        kv_req_parser_init(&p);
        size_t c;
        int r = kv_req_parse(&p, big, n, &c);
        TAP_CHECK(r == KV_ERR && strcmp(p.err, "Protocol error: too big inline request") == 0,
                  "inline request over 64 KiB without newline is refused");
        kv_req_parser_deinit(&p);
        free(big);
    }
    {
        /* a large pipeline: 1000 commands, fed one byte at a time */
        size_t cap = 64 * 1000, len = 0;
        char *s = malloc(cap);
        for (int i = 0; i < 1000; i++)
            len += sprintf(s + len, "*2\r\n$3\r\nGET\r\n$%d\r\nk%d\r\n", (int)snprintf(NULL, 0, "k%d", i), i);
        kv_req_parser p;
        kv_req_parser_init(&p);
        size_t start = 0, have = 0;
        int cmds = 0, ok = 1;
        while (have < len) {
            have++;
            size_t c;
            int r;
            while ((r = kv_req_parse(&p, s + start, have - start, &c)) == KV_OK) {
                char want[16];
                snprintf(want, sizeof(want), "k%d", cmds);
                if (p.argc != 2 || p.argv[1].len != strlen(want) || memcmp(p.argv[1].p, want, strlen(want)))
                    ok = 0;
                cmds++;
                start += c;
            }
            if (r == KV_ERR)
                ok = 0;
        }
        TAP_CHECK(ok && cmds == 1000, "1000-command pipeline fed byte by byte (%d commands)", cmds);
        kv_req_parser_deinit(&p);
        free(s);
    }

    /* reply scanner */
    static const char replies[] = "+OK\r\n-ERR x\r\n:42\r\n$3\r\nfoo\r\n$-1\r\n*-1\r\n*0\r\n"
                                  "*3\r\n$1\r\na\r\n*2\r\n:1\r\n$2\r\n\r\n\r\n+x\r\n"
                                  "$0\r\n\r\n*2\r\n*1\r\n*1\r\n:1\r\n$-1\r\n";
    size_t rl = sizeof(replies) - 1;
    size_t want[16];
    int wn = scan_all(replies, rl, rl, want, 16);
    TAP_CHECK(wn == 10, "reply scanner finds 10 replies in the sample (got %d)", wn);
    int bad = -1;
    for (size_t cut = 0; cut <= rl; cut++) {
        size_t ends[16];
        int n = scan_all(replies, rl, cut, ends, 16);
        if (n != wn || memcmp(ends, want, sizeof(size_t) * wn) != 0) {
            bad = (int)cut;
            break;
        }
    }
    TAP_CHECK(bad < 0, "reply scanner gives the same boundaries at every split (bad cut %d)", bad);
    TAP_CHECK(want[7] == strlen("+OK\r\n-ERR x\r\n:42\r\n$3\r\nfoo\r\n$-1\r\n*-1\r\n*0\r\n*3\r\n$1\r\na\r\n*2\r\n:1\r\n$2\r\n\r\n\r\n+x\r\n"),
              "nested array boundary is right");
    {
        size_t e[2];
        TAP_CHECK(scan_all("&3\r\n", 5, 5, e, 2) == -1, "an unknown type byte is an error");
        TAP_CHECK(scan_all("%-1\r\n", 6, 6, e, 2) == -1, "a map has no null form");
        TAP_CHECK(scan_all("$abc\r\n", 6, 6, e, 2) == -1, "bad bulk length is an error");
    }
    {
        /* RESP3 (HELLO 3 backend connections): every type, nested, framed
         * the same at every split */
        static const char r3[] = "_\r\n#t\r\n,3.14\r\n(12345678901234567890\r\n!5\r\nERR x\r\n"
                                 "=8\r\ntxt:abcd\r\n%2\r\n+a\r\n:1\r\n$1\r\nb\r\n*2\r\n_\r\n#f\r\n"
                                 "~2\r\n:1\r\n:2\r\n>3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n"
                                 "|1\r\n+key\r\n:1\r\n$2\r\nhi\r\n%0\r\n";
        size_t n3 = sizeof(r3) - 1, w3[16];
        int k = scan_all(r3, n3, n3, w3, 16);
        TAP_CHECK(k == 11, "RESP3: 11 replies in the sample (got %d)", k);
        TAP_CHECK(k >= 10 && w3[9] == n3 - strlen("%0\r\n"),
                  "an attribute and the reply it describes are one reply");
        int bad3 = -1;
        for (size_t cut = 0; cut <= n3; cut++) {
            size_t e3[16];
            if (scan_all(r3, n3, cut, e3, 16) != k || memcmp(e3, w3, sizeof(size_t) * (size_t)k) != 0) {
                bad3 = (int)cut;
                break;
            }
        }
        TAP_CHECK(bad3 < 0, "RESP3: the same boundaries at every split (bad cut %d)", bad3);
    }
    {
        long long v;
        TAP_CHECK(kv_parse_ll("9223372036854775807", 19, &v) == KV_OK && v == 9223372036854775807LL, "max ll");
        TAP_CHECK(kv_parse_ll("9223372036854775808", 19, &v) == KV_ERR, "ll overflow");
        TAP_CHECK(kv_parse_ll("-9223372036854775808", 20, &v) == KV_OK, "min ll");
        TAP_CHECK(kv_parse_ll("+1", 2, &v) == KV_ERR && kv_parse_ll("-", 1, &v) == KV_ERR &&
                      kv_parse_ll("", 0, &v) == KV_ERR && kv_parse_ll("-0", 2, &v) == KV_OK,
                  "strict forms");
    }
    return tap_done();
}
