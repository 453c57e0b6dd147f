/* policy.c -- see policy.h. Built on the control thread (lkvp.c) from what
 * kv.policy compiled and checked; C checks again every bound that would
 * corrupt memory if wrong. */
#include "policy.h"
#include "conf.h"
#include "../core/kv.h"

#include <stdlib.h>
#include <string.h>

kvp_policy *kvp_policy_new(void)
{
    kvp_policy *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    int n = kvp_cmd_count();
    p->cls = malloc((size_t)n);
    p->rules = calloc(KVP_POLICY_MAX_RULES, sizeof(*p->rules));
    if (p->cls == NULL || p->rules == NULL) {
        free(p->cls);
        free(p->rules);
        free(p);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        p->cls[i] = kvp_cmd_at(i)->cls;
    atomic_init(&p->refs, 1);
    p->hash_kind = KVP_HASH_MURMUR2_KVSTORE;
    p->hash_tags = 1;
    return p;
}

void kvp_policy_ref(kvp_policy *p)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

void kvp_policy_unref(kvp_policy *p)
{
    if (p == NULL || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (int i = 0; i < p->nrules; i++)
        free(p->rules[i].refuse);
    free(p->rules);
    free(p->cls);
    free(p->source);
    free(p);
}

int kvp_policy_set_source(kvp_policy *p, const char *text, size_t len)
{
    char *s = malloc(len + 1);
    if (s == NULL)
        return KV_ENOMEM;
    memcpy(s, text, len);
    s[len] = 0;
    free(p->source);
    p->source = s;
    p->source_len = len;
    return KV_OK;
}

static const kvp_cmd *find(const char *name, const char **err)
{
    const kvp_cmd *e = name ? kvp_cmd_find(name, strlen(name)) : NULL;
    if (e == NULL && err)
        *err = "unknown command";
    return e;
}

/* Sets v at e's id and, for a container, at each subcommand's. */
static void set_entry(uint8_t *per_cmd, const kvp_cmd *e, uint8_t v)
{
    per_cmd[e->id] = v;
    for (int i = 0; i < e->sub_count; i++)
        per_cmd[e->sub_first + i] = v;
}

int kvp_policy_deny(kvp_policy *p, const char *name, const char **err)
{
    const kvp_cmd *e = find(name, err);
    if (e == NULL)
        return KV_ERR;
    set_entry(p->cls, e, KVP_CLASS_UNSUPPORTED);
    return KV_OK;
}

int kvp_policy_allow(kvp_policy *p, const char *name, const char **err)
{
    const kvp_cmd *e = find(name, err);
    if (e == NULL)
        return KV_ERR;
    if (e->sub_count > 0) {
        /* a container: undo a deny of it or of its subcommands */
        for (int i = 0; i < e->sub_count; i++)
            p->cls[e->sub_first + i] = kvp_cmd_at(e->sub_first + i)->cls;
        return KV_OK;
    }
    if (e->cls != KVP_CLASS_UNSUPPORTED) {
        p->cls[e->id] = e->cls;
        return KV_OK;
    }
    const char *why = kvp_cmd_not_allowable(e);
    if (why != NULL) {
        if (err)
            *err = why;
        return KV_ERR;
    }
    p->cls[e->id] = KVP_CLASS_KEYED;
    return KV_OK;
}

/* The length of glob's plain prefix when glob is exactly "<prefix>*" (no
 * other special byte), else 0: such a rule is matched by memcmp. */
static size_t plain_prefix(const char *g, size_t len)
{
    if (len < 2 || g[len - 1] != '*')
        return 0;
    for (size_t i = 0; i + 1 < len; i++)
        if (g[i] == '*' || g[i] == '?' || g[i] == '[' || g[i] == '\\')
            return 0;
    return len - 1;
}

int kvp_policy_add_rule(kvp_policy *p, const char *glob, size_t len, const char **err)
{
    if (p->nrules >= KVP_POLICY_MAX_RULES) {
        *err = "too many rules (at most 64)";
        return KV_ERR;
    }
    if (len == 0 || len > KVP_POLICY_MAX_GLOB) {
        *err = "a rule's glob is empty or longer than 256 bytes";
        return KV_ERR;
    }
    kvp_rule *r = &p->rules[p->nrules];
    memset(r, 0, sizeof(*r));
    if (kv_glob_compile(glob, len, &r->glob) != KV_OK) {
        *err = "a rule's glob has more than 63 elements besides '*'";
        return KV_ERR;
    }
    r->refuse = calloc((size_t)kvp_cmd_count(), 1);
    if (r->refuse == NULL)
        return KV_ENOMEM;
    memcpy(r->match, glob, len);
    r->match[len] = 0;
    r->match_len = len;
    r->prefix_len = plain_prefix(glob, len);
    r->max_replica_lag_ms = -1;
    p->nrules++;
    return KV_OK;
}

int kvp_rule_deny(kvp_policy *p, const char *name, const char **err)
{
    const kvp_cmd *e = find(name, err);
    if (e == NULL)
        return KV_ERR;
    set_entry(p->rules[p->nrules - 1].refuse, e, KVP_RULE_DENIED);
    return KV_OK;
}

int kvp_rule_allow(kvp_policy *p, const char *name, const char **err)
{
    const kvp_cmd *e = find(name, err);
    if (e == NULL)
        return KV_ERR;
    kvp_rule *r = &p->rules[p->nrules - 1];
    if (!r->allow_list) {
        /* the first name of the list: everything else is refused */
        memset(r->refuse, KVP_RULE_DENIED, (size_t)kvp_cmd_count());
        r->allow_list = 1;
    }
    set_entry(r->refuse, e, KVP_RULE_OK);
    return KV_OK;
}

void kvp_rule_read_only(kvp_policy *p)
{
    kvp_rule *r = &p->rules[p->nrules - 1];
    for (int i = 0; i < kvp_cmd_count(); i++)
        if ((kvp_cmd_at(i)->flags & KVP_CF_WRITE) && r->refuse[i] == KVP_RULE_OK)
            r->refuse[i] = KVP_RULE_READ_ONLY;
}

const kvp_rule *kvp_policy_match(const kvp_policy *p, const char *key, size_t len)
{
    for (int i = 0; i < p->nrules; i++) {
        const kvp_rule *r = &p->rules[i];
        if (r->prefix_len ? (len >= r->prefix_len && memcmp(key, r->match, r->prefix_len) == 0)
                          : kv_glob_exec(&r->glob, key, len))
            return r;
    }
    return NULL;
}
