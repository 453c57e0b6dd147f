/* conf.c -- see conf.h. */
#include "conf.h"

#include <string.h>
#include <time.h>

kvp_conf kvp_g;

void kvp_clock_read(kvp_clock *clk)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    clk->now_us = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
    clk->now_ms = clk->now_us / 1000;
}

/* ---------------------------------------------------------------- stats */

static uint64_t rate(uint64_t now, uint64_t before, uint64_t dt_ms)
{
    return now >= before && dt_ms > 0 ? (now - before) * 1000 / dt_ms : 0;
}

static uint64_t ring_mean(const uint64_t *ring)
{
    uint64_t s = 0;
    for (int i = 0; i < KVP_STATS_SAMPLES; i++)
        s += ring[i];
    return s / KVP_STATS_SAMPLES;
}

static uint64_t load(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

void kvp_wstats_sample(kvp_wstats *st, uint64_t now_ms)
{
    uint64_t ops = load(&st->total), in = load(&st->net_in), out = load(&st->net_out);
    if (st->samp_ms != 0 && now_ms > st->samp_ms) {
        uint64_t dt = now_ms - st->samp_ms;
        int i = st->ring_idx;
        st->ring_ops[i] = rate(ops, st->samp_ops, dt);
        st->ring_in[i] = rate(in, st->samp_in, dt);
        st->ring_out[i] = rate(out, st->samp_out, dt);
        st->ring_idx = (i + 1) % KVP_STATS_SAMPLES;
        atomic_store_explicit(&st->inst_ops, ring_mean(st->ring_ops), memory_order_relaxed);
        atomic_store_explicit(&st->inst_in, ring_mean(st->ring_in), memory_order_relaxed);
        atomic_store_explicit(&st->inst_out, ring_mean(st->ring_out), memory_order_relaxed);
    }
    st->samp_ms = now_ms;
    st->samp_ops = ops;
    st->samp_in = in;
    st->samp_out = out;
}

static kvp_wstats **_Atomic published;
static atomic_int npublished;

void kvp_wstats_publish(kvp_wstats **all, int n)
{
    atomic_store(&npublished, 0);
    atomic_store(&published, all);
    atomic_store(&npublished, all ? n : 0);
}

void kvp_wstats_sum(kvp_stats_sum *o)
{
    memset(o, 0, sizeof(*o));
    int n = atomic_load(&npublished);
    kvp_wstats **all = atomic_load(&published);
    for (int i = 0; i < n && all; i++) {
        kvp_wstats *st = all[i];
        o->total += load(&st->total);
        o->slow += load(&st->slow);
        o->conns += load(&st->conns);
        o->rejected += load(&st->rejected);
        o->net_in += load(&st->net_in);
        o->net_out += load(&st->net_out);
        o->inst_ops += load(&st->inst_ops);
        o->inst_in += load(&st->inst_in);
        o->inst_out += load(&st->inst_out);
        o->blocked += atomic_load_explicit(&st->blocked, memory_order_relaxed);
    }
    o->workers = n;
}

uint64_t kvp_wstats_cmd_calls(int id)
{
    int n = atomic_load(&npublished);
    kvp_wstats **all = atomic_load(&published);
    uint64_t calls = 0;
    for (int i = 0; i < n && all; i++)
        if (all[i]->cmd)
            calls += load(&all[i]->cmd[id]);
    return calls;
}
