/* conf.c -- see conf.h. */
#include "conf.h"

#include <time.h>

kvp_conf kvp_g;

void kvp_clock_read(kvp_clock *clk)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    clk->now_us = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
    clk->now_ms = clk->now_us / 1000;
}
