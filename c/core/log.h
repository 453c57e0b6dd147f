/* log.h -- levelled, thread-safe log lines for every long-running process.
 *
 * One line per event: "2026-11-25 03:22:31.123 [12345] INFO  message".
 * A line is formatted into a stack buffer and written with one write(2), so
 * lines from several threads never interleave. Nothing here allocates. */
#ifndef KV_LOG_H
#define KV_LOG_H

enum kv_log_level { KV_LOG_DEBUG = 0, KV_LOG_INFO, KV_LOG_WARN, KV_LOG_ERROR };

int kv_log_open(const char *path);            /* NULL or "" -> stderr */
void kv_log_set_level(int level);
int kv_log_level_from_name(const char *name); /* -1 if unknown */
int kv_log_enabled(int level);
void kv_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Monotonic milliseconds, for kv_log_every. */
unsigned long long kv_log_now_ms(void);

/* A line a remote peer can trigger (a refused client, an accept failing):
 * at most one per interval_ms from this place in the code, per thread; the
 * next line says how many were held back, so a flood of peers cannot flood
 * the log. */
#define kv_log_every(interval_ms, level, fmt, ...)                                                  \
    do {                                                                                         \
        static __thread unsigned long long kv_le_last_;                                          \
        static __thread unsigned kv_le_held_;                                                    \
        unsigned long long kv_le_now_ = kv_log_now_ms();                                         \
        if (kv_le_last_ == 0 || kv_le_now_ - kv_le_last_ >= (unsigned long long)(interval_ms)) { \
            if (kv_le_held_)                                                                     \
                kv_log(level, fmt " (and %u more like it)", ##__VA_ARGS__, kv_le_held_);         \
            else                                                                                 \
                kv_log(level, fmt, ##__VA_ARGS__);                                               \
            kv_le_last_ = kv_le_now_;                                                            \
            kv_le_held_ = 0;                                                                     \
        } else {                                                                                 \
            kv_le_held_++;                                                                       \
        }                                                                                        \
    } while (0)

#define kv_log_debug(...) do { if (kv_log_enabled(KV_LOG_DEBUG)) kv_log(KV_LOG_DEBUG, __VA_ARGS__); } while (0)
#define kv_log_info(...)  kv_log(KV_LOG_INFO, __VA_ARGS__)
#define kv_log_warn(...)  kv_log(KV_LOG_WARN, __VA_ARGS__)
#define kv_log_error(...) kv_log(KV_LOG_ERROR, __VA_ARGS__)

#endif
