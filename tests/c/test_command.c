/* test_command.c -- the command table and its lookups (c/proxy/command.c).
 *
 * Why: every request goes through kvp_cmd_lookup, arity and key extraction
 * first; a wrong key position routes data to the wrong master silently. These
 * cases pin the lookups (case, length, subcommands), the classes the policy
 * lists give, the key positions Redis's key specs yield (checked against
 * `COMMAND GETKEYS` on redis-server 7.0) and the deny/allow overrides.
 *
 * Build: gcc -O2 -Wall -Wextra -std=gnu11 -Ic tests/c/test_command.c c/proxy/command.c
 */
#include "../../c/proxy/command.h"
#include "../../c/proxy/policy.h"
#include "tap.h"

#include <stdarg.h>
#include <string.h>

#define MAXARGS 32

/* Splits a space-separated command line into argv (no quoting needed here). */
static int mkargv(const char *line, char *buf, size_t bufsz, kv_str *argv)
{
    int argc = 0;
    snprintf(buf, bufsz, "%s", line);
    for (char *p = buf; *p && argc < MAXARGS;) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        char *start = p;
        while (*p && *p != ' ')
            p++;
        argv[argc].p = start;
        argv[argc].len = (size_t)(p - start);
        argc++;
    }
    return argc;
}

/* The entry a client line selects: the command, or its subcommand. */
static const kvp_cmd *resolve(int argc, const kv_str *argv)
{
    const kvp_cmd *c = kvp_cmd_lookup(argv[0].p, argv[0].len);
    if (c && kvp_cmd_is_container(c) && argc > 1)
        c = kvp_cmd_lookup_sub(c, argv[1].p, argv[1].len);
    return c;
}

/* Checks the key positions of line: want is nwant indexes, or nwant = -1. */
static void keys_are(const char *line, int nwant, ...)
{
    char buf[256];
    kv_str argv[MAXARGS];
    int argc = mkargv(line, buf, sizeof buf, argv);
    const kvp_cmd *c = resolve(argc, argv);
    int keys[MAXARGS], want[MAXARGS];
    va_list ap;
    va_start(ap, nwant);
    for (int i = 0; i < nwant; i++)
        want[i] = va_arg(ap, int);
    va_end(ap);

    int n = c ? kvp_cmd_keys(c, argc, argv, keys, MAXARGS) : -2;
    int ok = n == nwant;
    for (int i = 0; ok && i < n; i++)
        ok = keys[i] == want[i];
    char got[128] = "";
    for (int i = 0; i < n && i < 8; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), " %d", keys[i]);
    TAP_CHECK(ok, "keys of '%s': %d key(s), got %d:%s", line, nwant, n, got);
}

/* Checks kvp_cmd_patterns of line: want is nwant positions. */
static void pats_are(const char *line, int nwant, ...)
{
    char buf[256];
    kv_str argv[MAXARGS];
    int argc = mkargv(line, buf, sizeof buf, argv);
    const kvp_cmd *c = resolve(argc, argv);
    int pos[MAXARGS], want[MAXARGS];
    va_list ap;
    va_start(ap, nwant);
    for (int i = 0; i < nwant; i++)
        want[i] = va_arg(ap, int);
    va_end(ap);
    int n = c ? kvp_cmd_patterns(c, argc, argv, pos, MAXARGS) : -2;
    int ok = n == nwant;
    for (int i = 0; ok && i < n; i++)
        ok = pos[i] == want[i];
    TAP_CHECK(ok, "patterns of '%s': %d, got %d", line, nwant, n);
}

static void tag_is(const char *pat, size_t want)
{
    size_t got = kvp_cmd_pattern_tag(pat, strlen(pat));
    TAP_CHECK(got == want, "pattern tag of '%s' ends at %zu, got %zu", pat, want, got);
}

static const kvp_cmd *L(const char *name)
{
    return kvp_cmd_lookup(name, strlen(name));
}

static void class_is(const char *name, int cls, int merge)
{
    const kvp_cmd *c = L(name);
    TAP_CHECK(c && c->cls == cls && c->merge == merge, "%s is %s (merge %d)", name,
              kvp_cmd_class_name(cls), merge);
}

static void arity(const char *line, int want)
{
    char buf[256];
    kv_str argv[MAXARGS];
    int argc = mkargv(line, buf, sizeof buf, argv);
    const kvp_cmd *c = resolve(argc, argv);
    TAP_CHECK(c && kvp_cmd_arity_ok(c, argc) == want, "arity of '%s' is %s", line,
              want ? "ok" : "wrong");
}

int main(void)
{
    /* Before init nothing is found (and nothing crashes). */
    TAP_CHECK(L("get") == NULL, "lookup before init finds nothing");

    TAP_CHECK(kvp_cmd_init() == KV_OK, "init");
    TAP_CHECK(kvp_cmd_init() == KV_OK, "second init is harmless");

    /* Lookups */
    const kvp_cmd *get = L("get");
    TAP_CHECK(get && strcmp(get->name, "get") == 0, "lookup get");
    TAP_CHECK(L("GET") == get && L("GeT") == get, "lookup is case-insensitive");
    TAP_CHECK(kvp_cmd_lookup("GETx", 3) == get, "lookup uses len, not NUL");
    TAP_CHECK(L("ge") == NULL && L("gett") == NULL, "length mismatch is unknown");
    TAP_CHECK(L("nosuchcommand") == NULL && L("") == NULL, "unknown names");
    TAP_CHECK(L("a-much-longer-name-than-any-redis-command") == NULL, "over-long name");
    TAP_CHECK(L("restore-asking") != NULL && L("RESTORE-ASKING") != NULL, "name with '-'");
    TAP_CHECK(L("eval_ro") != NULL && L("EVAL_RO") != NULL && L("eval\x7fro") == NULL,
              "name with '_' (not folded to 0x7f)");
    TAP_CHECK(L("object|encoding") == NULL, "a subcommand is not a command name");

    /* Containers */
    const kvp_cmd *obj = L("OBJECT");
    TAP_CHECK(obj && kvp_cmd_is_container(obj), "object is a container");
    const kvp_cmd *enc = kvp_cmd_lookup_sub(obj, "ENCODING", 8);
    TAP_CHECK(enc && strcmp(enc->name, "object|encoding") == 0 && enc->parent == obj,
              "OBJECT ENCODING");
    TAP_CHECK(kvp_cmd_lookup_sub(obj, "encodin", 7) == NULL &&
                  kvp_cmd_lookup_sub(obj, "encodingx", 9) == NULL,
              "sub length mismatch");
    TAP_CHECK(kvp_cmd_lookup_sub(obj, "nosuch", 6) == NULL, "unknown sub");
    TAP_CHECK(kvp_cmd_lookup_sub(get, "encoding", 8) == NULL, "get has no subs");
    TAP_CHECK(kvp_cmd_lookup_sub(L("memory"), "encoding", 8) == NULL, "sub of another container");
    const kvp_cmd *xc = kvp_cmd_lookup_sub(L("xinfo"), "Consumers", 9);
    TAP_CHECK(xc && xc->cls == KVP_CLASS_KEYED, "XINFO CONSUMERS is KEYED");
    TAP_CHECK(!kvp_cmd_is_container(get), "get is not a container");
    TAP_CHECK(L("client") && !kvp_cmd_is_container(L("client")), "client is kept whole");
    TAP_CHECK(L("command") && !kvp_cmd_is_container(L("command")), "command is kept whole");

    /* Every entry is found by its own name, in upper case too. */
    int all = 1;
    for (int i = 0; i < kvp_cmd_count(); i++) {
        const kvp_cmd *e = kvp_cmd_at(i);
        char up[64];
        size_t n = e->len < sizeof up ? e->len : sizeof up - 1;
        for (size_t j = 0; j < n; j++)
            up[j] = (e->name[j] >= 'a' && e->name[j] <= 'z') ? (char)(e->name[j] - 32) : e->name[j];
        const kvp_cmd *f;
        if (e->parent) {
            size_t pl = e->parent->len + 1;
            f = kvp_cmd_lookup_sub(e->parent, up + pl, n - pl);
        } else {
            f = kvp_cmd_lookup(up, n);
        }
        if (f != e || e->id != i) {
            all = 0;
            printf("# not found: %s\n", e->name);
        }
    }
    TAP_CHECK(all, "all %d entries round-trip", kvp_cmd_count());
    TAP_CHECK(kvp_cmd_at(-1) == NULL && kvp_cmd_at(kvp_cmd_count()) == NULL, "at out of range");

    /* Arity */
    arity("get k", 1);
    arity("get", 0);
    arity("get k x", 0);
    arity("set k", 0);
    arity("set k v", 1);
    arity("set k v ex 10", 1);
    arity("object encoding k", 1);
    arity("object encoding", 0);
    arity("mset k1 v1 k2 v2", 1);
    arity("mset k1 v1 k2", 0);
    arity("mset k1", 0);

    /* Classes */
    class_is("get", KVP_CLASS_KEYED, KVP_MERGE_NONE);
    class_is("del", KVP_CLASS_SPLIT, KVP_MERGE_SUM);
    class_is("exists", KVP_CLASS_SPLIT, KVP_MERGE_SUM);
    class_is("mget", KVP_CLASS_SPLIT, KVP_MERGE_MGET);
    class_is("mset", KVP_CLASS_SPLIT, KVP_MERGE_OK_ALL);
    const kvp_keyspec *ms = &L("mset")->ks[0];
    TAP_CHECK(ms->type == KVP_KS_RANGE && ms->keystep == 2, "mset step 2");
    class_is("ping", KVP_CLASS_LOCAL, KVP_MERGE_NONE);
    TAP_CHECK(L("ping")->local == KVP_LOCAL_PING && L("hello")->local == KVP_LOCAL_HELLO &&
                  L("client")->local == KVP_LOCAL_CLIENT,
              "local ids");
    class_is("flushall", KVP_CLASS_FANOUT, KVP_MERGE_OK_ALL);
    class_is("dbsize", KVP_CLASS_FANOUT, KVP_MERGE_SUM);
    class_is("randomkey", KVP_CLASS_KEYSPACE, KVP_MERGE_RANDOMKEY);
    class_is("time", KVP_CLASS_ANY, KVP_MERGE_NONE);
    class_is("keys", KVP_CLASS_KEYSPACE, KVP_MERGE_KEYS);
    class_is("scan", KVP_CLASS_KEYSPACE, KVP_MERGE_SCAN);
    {
        /* scripts and functions: subcommands with classes of their own */
        const kvp_cmd *script = L("script"), *fn = L("function");
        const kvp_cmd *load = kvp_cmd_lookup_sub(script, "LOAD", 4);
        const kvp_cmd *ex = kvp_cmd_lookup_sub(script, "exists", 6);
        const kvp_cmd *fl = kvp_cmd_lookup_sub(fn, "load", 4);
        const kvp_cmd *flist = kvp_cmd_lookup_sub(fn, "list", 4);
        const kvp_cmd *kill = kvp_cmd_lookup_sub(script, "kill", 4);
        TAP_CHECK(load && load->cls == KVP_CLASS_FANOUT && load->merge == KVP_MERGE_SAME,
                  "script|load is FANOUT SAME");
        TAP_CHECK(ex && ex->cls == KVP_CLASS_FANOUT && ex->merge == KVP_MERGE_ALL_ONES,
                  "script|exists is FANOUT ALL_ONES");
        TAP_CHECK(fl && fl->cls == KVP_CLASS_FANOUT && fl->merge == KVP_MERGE_SAME,
                  "function|load is FANOUT SAME");
        TAP_CHECK(flist && flist->cls == KVP_CLASS_ANY, "function|list is ANY");
        TAP_CHECK(kill && kill->cls == KVP_CLASS_UNSUPPORTED, "script|kill is refused");
    }
    class_is("blpop", KVP_CLASS_KEYED, KVP_MERGE_NONE);
    class_is("wait", KVP_CLASS_UNSUPPORTED, KVP_MERGE_NONE);
    {
        /* which invocations block: the blocking commands always, XREAD only with BLOCK */
        static const struct { const char *line; int blocks; } b[] = {
            {"blpop q 0", 1}, {"bzmpop 1 1 z min", 1}, {"brpoplpush a b 5", 1}, {"lpop q", 0},
            {"xread streams a 0", 0}, {"xread block 0 streams a 0", 1},
            {"xreadgroup group g c block 10 streams a >", 1}, {"xreadgroup group g c streams a >", 0},
        };
        for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++) {
            char buf[256];
            kv_str argv[MAXARGS];
            int argc = mkargv(b[i].line, buf, sizeof buf, argv);
            const kvp_cmd *c = resolve(argc, argv);
            TAP_CHECK(c && kvp_cmd_blocks(c, argc, argv) == b[i].blocks, "'%s' %s", b[i].line,
                      b[i].blocks ? "blocks" : "does not block");
        }
    }
    class_is("xread", KVP_CLASS_KEYED, KVP_MERGE_NONE);
    class_is("xreadgroup", KVP_CLASS_KEYED, KVP_MERGE_NONE);
    class_is("sort", KVP_CLASS_KEYED, KVP_MERGE_NONE);
    class_is("sort_ro", KVP_CLASS_KEYED, KVP_MERGE_NONE);
    class_is("georadius", KVP_CLASS_KEYED, KVP_MERGE_NONE);
    class_is("georadiusbymember", KVP_CLASS_KEYED, KVP_MERGE_NONE);
    class_is("migrate", KVP_CLASS_UNSUPPORTED, KVP_MERGE_NONE);
    TAP_CHECK((L("xread")->flags & KVP_CF_REPLY_STREAMS) && (L("xreadgroup")->flags & KVP_CF_REPLY_STREAMS) &&
                  !(L("xread")->flags & KVP_CF_REPLY_KEY),
              "xread and xreadgroup replies name stream keys");
    TAP_CHECK(kvp_cmd_has_patterns(L("sort")) && kvp_cmd_has_patterns(L("sort_ro")) &&
                  !kvp_cmd_has_patterns(L("georadius")) && !kvp_cmd_has_patterns(L("get")),
              "only sort and sort_ro have patterns");
    class_is("watch", KVP_CLASS_SESSION, KVP_MERGE_NONE);
    class_is("multi", KVP_CLASS_SESSION, KVP_MERGE_NONE);
    class_is("exec", KVP_CLASS_SESSION, KVP_MERGE_NONE);
    class_is("reset", KVP_CLASS_SESSION, KVP_MERGE_NONE);
    {
        /* pub/sub: the layer's commands, and PUBSUB's introspection merged */
        static const struct { const char *name; int local; } ps[] = {
            {"subscribe", KVP_LOCAL_SUB},     {"unsubscribe", KVP_LOCAL_UNSUB},
            {"psubscribe", KVP_LOCAL_PSUB},   {"punsubscribe", KVP_LOCAL_PUNSUB},
            {"ssubscribe", KVP_LOCAL_SSUB},   {"sunsubscribe", KVP_LOCAL_SUNSUB},
            {"publish", KVP_LOCAL_PUB},       {"spublish", KVP_LOCAL_SPUB},
        };
        int ok = 1;
        for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
            ok &= L(ps[i].name)->cls == KVP_CLASS_PUBSUB && L(ps[i].name)->local == ps[i].local;
        TAP_CHECK(ok, "pub/sub commands are class PUBSUB with their local ids");
        const kvp_cmd *pubsub = L("pubsub");
        const kvp_cmd *ch = kvp_cmd_lookup_sub(pubsub, "channels", 8);
        const kvp_cmd *ns = kvp_cmd_lookup_sub(pubsub, "NUMSUB", 6);
        const kvp_cmd *np = kvp_cmd_lookup_sub(pubsub, "numpat", 6);
        const kvp_cmd *sns = kvp_cmd_lookup_sub(pubsub, "shardnumsub", 11);
        const kvp_cmd *sch = kvp_cmd_lookup_sub(pubsub, "shardchannels", 13);
        TAP_CHECK(ch && ch->cls == KVP_CLASS_FANOUT && ch->merge == KVP_MERGE_CONCAT &&
                      sch && sch->merge == KVP_MERGE_CONCAT && ns && ns->merge == KVP_MERGE_NUMSUB &&
                      sns && sns->merge == KVP_MERGE_NUMSUB && np && np->merge == KVP_MERGE_MAX,
                  "pubsub subcommands fan out with their merges");
    }
    class_is("eval", KVP_CLASS_KEYED, KVP_MERGE_NONE);
    class_is("zunionstore", KVP_CLASS_KEYED, KVP_MERGE_NONE);
    TAP_CHECK(L("blpop")->flags & KVP_CF_BLOCKING, "blpop has the blocking flag");
    uint32_t rf = KVP_CF_READONLY | KVP_CF_FAST;
    TAP_CHECK((L("get")->flags & rf) == rf, "get is readonly fast");
    TAP_CHECK(L("eval")->flags & KVP_CF_NO_MANDATORY_KEYS, "eval may have no keys");

    /* Key positions */
    keys_are("get k", 1, 1);
    keys_are("mset k1 v1 k2 v2", 2, 1, 3);
    keys_are("del a b c", 3, 1, 2, 3);
    keys_are("zunionstore d 2 a b weights 1 2", 3, 1, 3, 4);
    keys_are("eval s 2 a b x", 2, 3, 4);
    keys_are("eval s 0", 0);
    keys_are("eval s 0 x y", 0);
    keys_are("eval s 5 a", -1);
    keys_are("eval s 01 a", -1);
    keys_are("eval s -1 a", -1);
    keys_are("eval s +1 a", -1);
    keys_are("eval s x a", -1);
    keys_are("eval s 99999999999999999999 a", -1);
    keys_are("lmove a b left right", 2, 1, 2);
    keys_are("bitop and d a b c", 4, 2, 3, 4, 5);
    keys_are("object encoding k", 1, 2);
    keys_are("lcs a b", 2, 1, 2);
    keys_are("lmpop 2 a b left", 2, 2, 3);
    keys_are("sinterstore d a b", 3, 1, 2, 3);
    keys_are("sort k", 1, 1);
    keys_are("lmpop 5 a left", KVP_KEYS_MALFORMED);
    keys_are("lmpop 0 a left", 0);
    keys_are("zmpop 1 z min count 2", 1, 2);
    keys_are("zmpop 2 a b max", 2, 2, 3);
    keys_are("sintercard 2 a b limit 5", 2, 2, 3);
    keys_are("sintercard 3 a b", KVP_KEYS_MALFORMED);
    keys_are("sintercard x a", KVP_KEYS_MALFORMED);

    /* Keys named by keyword (the finders), each as Redis 7.0 parses it */
    keys_are("georadius g 0 0 1 km", 1, 1);
    keys_are("georadius g 0 0 1 km store d", 2, 1, 7);
    keys_are("georadius g 0 0 1 km STOREDIST d", 2, 1, 7);
    keys_are("georadius g 0 0 1 km store a storedist b", 2, 1, 9);
    keys_are("georadius g 0 0 1 km withdist count 5 any asc store d", 2, 1, 12);
    keys_are("georadius g 0 0 1 km count store d", 1, 1);
    keys_are("georadius g 0 0 1 km badopt store d", 1, 1);
    keys_are("georadius g 0 0 1 km store", 1, 1);
    keys_are("georadius store 0 0 1 km", 1, 1);
    keys_are("georadiusbymember g m 1 km store d", 2, 1, 6);
    keys_are("georadiusbymember g store 1 km", 1, 1);
    keys_are("georadius_ro g 0 0 1 km store d", 1, 1);
    keys_are("sort k store d", 2, 1, 3);
    keys_are("sort k limit 0 10 store d alpha desc", 2, 1, 6);
    keys_are("sort k limit store d x", 1, 1);
    keys_are("sort k by w_* get # get h_*->f store d", 2, 1, 9);
    keys_are("sort k store a store b", 2, 1, 5);
    keys_are("sort k bad store d", 1, 1);
    keys_are("sort k store", 1, 1);
    keys_are("sort_ro k store d", 1, 1);
    keys_are("xread streams a b 0 0", 2, 2, 3);
    keys_are("xread count 5 streams a 0", 1, 4);
    keys_are("xread count -5 streams a 0", 1, 4);
    keys_are("xread streams block count 0 0", 2, 2, 3);
    keys_are("xread streams a 0 0", KVP_KEYS_MALFORMED);
    keys_are("xread block 0 streams a 0", 1, 4);
    keys_are("xread count 2 BLOCK 100 streams a b 0 0", 2, 6, 7);
    keys_are("xread block -1 streams a 0", KVP_KEYS_MALFORMED);
    keys_are("xread block x streams a 0", KVP_KEYS_MALFORMED);
    keys_are("xread count x streams a 0", KVP_KEYS_MALFORMED);
    keys_are("xread count 01 streams a 0", KVP_KEYS_MALFORMED);
    keys_are("xread group g c streams a 0", KVP_KEYS_MALFORMED);
    keys_are("xread noack streams a 0", KVP_KEYS_MALFORMED);
    keys_are("xread foo streams a 0", KVP_KEYS_MALFORMED);
    keys_are("xread count 1 a b", KVP_KEYS_MALFORMED);
    keys_are("xread count 1 block", KVP_KEYS_MALFORMED);
    keys_are("xreadgroup group g c streams a >", 1, 5);
    keys_are("xreadgroup GROUP g c count 1 noack streams a b > >", 2, 8, 9);
    keys_are("xreadgroup count 1 noack streams a 0", KVP_KEYS_MALFORMED);
    keys_are("xreadgroup group g streams a >", KVP_KEYS_MALFORMED);
    keys_are("xreadgroup group g c block 10 streams a >", 1, 7);
    keys_are("xreadgroup group g c streams a b >", KVP_KEYS_MALFORMED);

    /* SORT's patterns that name keys, and the hash tag they must carry */
    pats_are("sort k by w_* get # get h_*->f get nostar", 2, 3, 7);
    pats_are("sort k by nosort get #", 0);
    pats_are("sort k get a_* by w_* get b_*", 3, 3, 5, 7);
    pats_are("sort k get a_* get b_* by w_*", 3, 3, 5, 7);
    pats_are("sort k by w_* by nosort", 0);
    pats_are("sort k by nosort by w_*", 1, 5);
    pats_are("sort k get a_* bad get b_*", 1, 3);
    pats_are("sort k limit get a_* x", 0);
    pats_are("sort_ro k get a_* store d", 1, 3);
    pats_are("get k", 0);
    tag_is("w_{t}_*", 5);
    tag_is("{t}*->f", 3);
    tag_is("{a}{b}*", 3);
    tag_is("w_*_{t}", 0);
    tag_is("w_{}_*", 0);
    tag_is("w_{t*}", 0);
    tag_is("w_{t", 0);
    tag_is("*", 0);

    /* Key count beyond max: count returned, only max written. */
    {
        char buf[64];
        kv_str argv[MAXARGS];
        int argc = mkargv("del a b c d", buf, sizeof buf, argv);
        int keys[2] = {0, 0};
        int n = kvp_cmd_keys(L("del"), argc, argv, keys, 2);
        TAP_CHECK(n == 4 && keys[0] == 1 && keys[1] == 2,
                  "keys beyond max are counted, not written");
    }

    /* Policy overrides (policy.h): a policy's own class per command; the
     * table's entries keep their generated class */
    kvp_policy *p = kvp_policy_new();
    TAP_CHECK(p != NULL, "a policy");
#define PC(name) kvp_policy_cls(p, L(name))
    const char *err = NULL;
    TAP_CHECK(kvp_policy_deny(p, "GET", &err) == KV_OK && kvp_policy_cls(p, get) == KVP_CLASS_UNSUPPORTED &&
                  get->cls == KVP_CLASS_KEYED,
              "deny get (in the policy only)");
    TAP_CHECK(kvp_policy_allow(p, "get", &err) == KV_OK && kvp_policy_cls(p, get) == KVP_CLASS_KEYED,
              "allow get");
    TAP_CHECK(kvp_policy_deny(p, "del", NULL) == KV_OK && kvp_policy_allow(p, "del", NULL) == KV_OK &&
                  PC("del") == KVP_CLASS_SPLIT,
              "deny then allow keeps del SPLIT");
    TAP_CHECK(kvp_policy_allow(p, "move", &err) == KV_OK && PC("move") == KVP_CLASS_KEYED,
              "allow move (computable keys)");
    err = NULL;
    TAP_CHECK(kvp_policy_allow(p, "lastsave", &err) == KV_ERR && err, "allow lastsave refused: %s", err);
    err = NULL;
    TAP_CHECK(kvp_policy_allow(p, "migrate", &err) == KV_ERR && err, "allow migrate refused: %s", err);
    err = NULL;
    TAP_CHECK(kvp_policy_deny(p, "sort", NULL) == KV_OK && kvp_policy_allow(p, "sort", &err) == KV_OK &&
                  PC("sort") == KVP_CLASS_KEYED,
              "deny then allow keeps sort KEYED");
    err = NULL;
    TAP_CHECK(kvp_policy_deny(p, "blpop", NULL) == KV_OK && kvp_policy_allow(p, "blpop", &err) == KV_OK &&
                  PC("blpop") == KVP_CLASS_KEYED,
              "deny then allow keeps blpop KEYED (served on owned connections)");
    err = NULL;
    TAP_CHECK(kvp_policy_allow(p, "nosuch", &err) == KV_ERR && err, "allow unknown: %s", err);
    TAP_CHECK(kvp_policy_deny(p, "nosuch", &err) == KV_ERR, "deny unknown");
    TAP_CHECK(kvp_policy_deny(p, "object", NULL) == KV_OK && kvp_policy_cls(p, enc) == KVP_CLASS_UNSUPPORTED,
              "deny a container denies its subs");
    TAP_CHECK(kvp_policy_allow(p, "object", NULL) == KV_OK && kvp_policy_cls(p, enc) == KVP_CLASS_KEYED,
              "allow a container restores its subs");
    TAP_CHECK(kvp_policy_deny(p, "object|encoding", NULL) == KV_OK &&
                  kvp_policy_cls(p, enc) == KVP_CLASS_UNSUPPORTED &&
                  kvp_policy_cls(p, kvp_cmd_lookup_sub(obj, "freq", 4)) == KVP_CLASS_KEYED,
              "deny one subcommand");
    TAP_CHECK(enc->cls == KVP_CLASS_KEYED && L("move")->cls == KVP_CLASS_UNSUPPORTED,
              "the command table is untouched");

    /* Rules: first match wins, prefix fast path, lists, read_only */
    TAP_CHECK(kvp_policy_add_rule(p, "ro:*", 4, &err) == KV_OK, "rule ro:*");
    kvp_rule_read_only(p);
    TAP_CHECK(kvp_policy_add_rule(p, "t[0-9]:*", 8, &err) == KV_OK, "rule t[0-9]:*");
    TAP_CHECK(kvp_rule_allow(p, "get", &err) == KV_OK && kvp_rule_allow(p, "object", &err) == KV_OK,
              "allow list");
    TAP_CHECK(kvp_policy_add_rule(p, "*", 1, &err) == KV_OK && kvp_rule_deny(p, "flushall", &err) == KV_OK,
              "rule * denies flushall");
    const kvp_rule *r0 = kvp_policy_match(p, "ro:x", 4);
    const kvp_rule *r1 = kvp_policy_match(p, "t5:x", 4);
    const kvp_rule *r2 = kvp_policy_match(p, "other", 5);
    TAP_CHECK(r0 == &p->rules[0] && r0->prefix_len == 3 && r1 == &p->rules[1] && r1->prefix_len == 0 &&
                  r2 == &p->rules[2] && kvp_policy_match(p, "ro", 2) == r2,
              "first match wins");
    TAP_CHECK(r0->refuse[L("set")->id] == KVP_RULE_READ_ONLY && r0->refuse[get->id] == KVP_RULE_OK &&
                  r0->refuse[L("del")->id] == KVP_RULE_READ_ONLY,
              "read_only refuses writes only");
    TAP_CHECK(r1->refuse[get->id] == KVP_RULE_OK && r1->refuse[L("set")->id] == KVP_RULE_DENIED &&
                  r1->refuse[enc->id] == KVP_RULE_OK,
              "an allow list refuses everything else (a container allows its subs)");
    TAP_CHECK(r2->refuse[L("flushall")->id] == KVP_RULE_DENIED && r2->refuse[get->id] == KVP_RULE_OK, "deny");
    char big[80];
    memset(big, 'a', sizeof big);
    for (size_t i = 0; i < sizeof big; i += 2)
        big[i] = '?';
    TAP_CHECK(kvp_policy_add_rule(p, big, sizeof big, &err) == KV_ERR && err, "a glob over 63 elements: %s",
              err);
    kvp_policy_unref(p);

    /* Counts per class, for the record. */
    int count[KVP_CLASS_PUBSUB + 1] = {0};
    for (int i = 0; i < kvp_cmd_count(); i++)
        count[kvp_cmd_at(i)->cls]++;
    printf("# %d entries:", kvp_cmd_count());
    for (int k = 0; k <= KVP_CLASS_PUBSUB; k++)
        printf(" %s=%d", kvp_cmd_class_name(k), count[k]);
    printf("\n");

    return tap_done();
}
