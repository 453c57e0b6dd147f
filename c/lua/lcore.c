/* lcore.c -- kv.core: the control thread's event loop, sockets, timers and
 * file helpers, exposed to Lua as plain functions over integer ids.
 *
 * C knows nothing of coroutines: every event is one call of the single Lua
 * handler set with core.set_handler(fn):
 *
 *   fn("accept",    listener_id, conn_id, "ip:port")
 *   fn("connected", conn_id)
 *   fn("data",      conn_id, bytes)
 *   fn("closed",    conn_id, reason)      -- peer closed, error or refused
 *   fn("timer",     timer_id)
 *   fn("signal",    signo)
 *   fn("notify",    what)                 -- wake-ups posted by other threads
 *
 * Pure helpers the config server shares with the proxy's C (issue 13:
 * /kvstore/cs/locate must find a key's bucket exactly as kvp does):
 * core.key_bucket(hash, tags, key, n), core.glob_match(glob, s),
 * core.sha1_hex(s).
 *
 * lua/kv/loop.lua turns this into coroutine-style sockets. An id closed by
 * Lua itself gets no "closed" event. Every call into Lua is protected. */
#include "runtime.h"
#include "../core/log.h"
#include "../core/kv.h"
#include "../core/glob.h"
#include "../core/hash.h"
#include "../core/sha1.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { OBJ_FREE = 0, OBJ_LISTENER, OBJ_STREAM, OBJ_TIMER };

typedef struct kv_obj {
    int kind;
    int id;
    struct bufferevent *bev;
    struct evconnlistener *lev;
    struct event *ev;
    int close_after_flush;
} kv_obj;

static kv_obj **objs;
static int nobjs;
static int next_free = 1;
static int handler_ref = LUA_NOREF;

static kv_obj *obj_new(int kind)
{
    int id = -1;
    for (int i = next_free; i < nobjs; i++)
        if (objs[i] == NULL) {
            id = i;
            break;
        }
    if (id < 0) {
        int n = nobjs ? nobjs * 2 : 64;
        kv_obj **o = realloc(objs, n * sizeof(*o));
        if (o == NULL)
            return NULL;
        memset(o + nobjs, 0, (n - nobjs) * sizeof(*o));
        id = nobjs ? nobjs : 1;
        objs = o;
        nobjs = n;
    }
    kv_obj *ob = calloc(1, sizeof(*ob));
    if (ob == NULL)
        return NULL;
    ob->kind = kind;
    ob->id = id;
    objs[id] = ob;
    next_free = id + 1;
    return ob;
}

static kv_obj *obj_get(int id, int kind)
{
    if (id <= 0 || id >= nobjs || objs[id] == NULL || objs[id]->kind != kind)
        return NULL;
    return objs[id];
}

static void obj_free(kv_obj *ob)
{
    if (ob->bev)
        bufferevent_free(ob->bev);
    if (ob->lev)
        evconnlistener_free(ob->lev);
    if (ob->ev)
        event_free(ob->ev);
    objs[ob->id] = NULL;
    if (ob->id < next_free)
        next_free = ob->id;
    free(ob);
}

/* Push the handler and the event name; the caller pushes the rest. */
static lua_State *begin_event(const char *name)
{
    lua_State *L = kv_runtime_L();
    lua_rawgeti(L, LUA_REGISTRYINDEX, handler_ref);
    lua_pushstring(L, name);
    return L;
}

static void end_event(lua_State *L, int nargs)
{
    kv_runtime_pcall(L, nargs + 1, 0);
}

/* ------------------------------------------------------------ addresses */

static int make_addr(const char *host, int port, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (host[0] == '\0' || strcmp(host, "*") == 0)
        host = "0.0.0.0";
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? KV_OK : KV_ERR;
}

static void format_peer(struct sockaddr *sa, char *out, size_t n)
{
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)sa;
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(out, n, "%s:%d", ip, ntohs(in->sin_port));
    } else {
        snprintf(out, n, "?");
    }
}

/* -------------------------------------------------------------- streams */

static void stream_read_cb(struct bufferevent *bev, void *arg)
{
    kv_obj *ob = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in);
    if (n == 0)
        return;
    lua_State *L = begin_event("data");
    lua_pushinteger(L, ob->id);
    lua_pushlstring(L, (const char *)evbuffer_pullup(in, n), n);
    evbuffer_drain(in, n);
    end_event(L, 2);
}

static void stream_write_cb(struct bufferevent *bev, void *arg)
{
    kv_obj *ob = arg;
    if (ob->close_after_flush && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        obj_free(ob);
}

static void stream_event_cb(struct bufferevent *bev, short what, void *arg)
{
    kv_obj *ob = arg;
    KV_UNUSED(bev);
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        lua_State *L = begin_event("connected");
        lua_pushinteger(L, ob->id);
        end_event(L, 1);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        char reason[128];
        if (what & BEV_EVENT_EOF)
            snprintf(reason, sizeof(reason), "closed by peer");
        else if (what & BEV_EVENT_TIMEOUT)
            snprintf(reason, sizeof(reason), "timeout");
        else
            snprintf(reason, sizeof(reason), "%s", strerror(errno ? errno : EIO));
        int id = ob->id;
        int was_closing = ob->close_after_flush;
        obj_free(ob);
        if (was_closing)
            return;
        lua_State *L = begin_event("closed");
        lua_pushinteger(L, id);
        lua_pushstring(L, reason);
        end_event(L, 2);
    }
}

static kv_obj *stream_new(evutil_socket_t fd)
{
    kv_obj *ob = obj_new(OBJ_STREAM);
    if (ob == NULL)
        return NULL;
    ob->bev = bufferevent_socket_new(kv_runtime_base(), fd, BEV_OPT_CLOSE_ON_FREE);
    if (ob->bev == NULL) {
        obj_free(ob);
        return NULL;
    }
    bufferevent_setcb(ob->bev, stream_read_cb, stream_write_cb, stream_event_cb, ob);
    bufferevent_enable(ob->bev, EV_READ | EV_WRITE);
    return ob;
}

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    kv_obj *lob = arg;
    KV_UNUSED(lev);
    KV_UNUSED(salen);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    kv_obj *ob = stream_new(fd);
    if (ob == NULL) {
        close(fd);
        return;
    }
    char peer[64];
    format_peer(sa, peer, sizeof(peer));
    lua_State *L = begin_event("accept");
    lua_pushinteger(L, lob->id);
    lua_pushinteger(L, ob->id);
    lua_pushstring(L, peer);
    end_event(L, 3);
}

static int l_listen(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    int port = luaL_checkint(L, 2);
    struct sockaddr_in sa;
    if (make_addr(host, port, &sa) != KV_OK) {
        lua_pushnil(L);
        lua_pushfstring(L, "invalid listen address %s:%d", host, port);
        return 2;
    }
    kv_obj *ob = obj_new(OBJ_LISTENER);
    if (ob == NULL)
        return luaL_error(L, "out of memory");
    ob->lev = evconnlistener_new_bind(kv_runtime_base(), accept_cb, ob,
                                      LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                      1024, (struct sockaddr *)&sa, sizeof(sa));
    if (ob->lev == NULL) {
        int e = errno;
        obj_free(ob);
        lua_pushnil(L);
        lua_pushfstring(L, "cannot listen on %s:%d: %s", host, port, strerror(e));
        return 2;
    }
    lua_pushinteger(L, ob->id);
    return 1;
}

static int l_connect(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    int port = luaL_checkint(L, 2);
    struct sockaddr_in sa;
    if (make_addr(host, port, &sa) != KV_OK) {
        lua_pushnil(L);
        lua_pushfstring(L, "invalid address %s:%d", host, port);
        return 2;
    }
    kv_obj *ob = stream_new(-1);
    if (ob == NULL)
        return luaL_error(L, "out of memory");
    if (bufferevent_socket_connect(ob->bev, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        obj_free(ob);
        lua_pushnil(L);
        lua_pushfstring(L, "cannot connect to %s:%d: %s", host, port, strerror(e));
        return 2;
    }
    lua_pushinteger(L, ob->id);
    return 1;
}

static int l_send(lua_State *L)
{
    kv_obj *ob = obj_get(luaL_checkint(L, 1), OBJ_STREAM);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (ob == NULL || ob->close_after_flush) {
        lua_pushnil(L);
        lua_pushstring(L, "closed");
        return 2;
    }
    if (bufferevent_write(ob->bev, p, n) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, "write failed");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* Bytes waiting in the output buffer (lets Lua apply back-pressure). */
static int l_pending(lua_State *L)
{
    kv_obj *ob = obj_get(luaL_checkint(L, 1), OBJ_STREAM);
    lua_pushinteger(L, ob ? (lua_Integer)evbuffer_get_length(bufferevent_get_output(ob->bev)) : 0);
    return 1;
}

static int l_close(lua_State *L)
{
    int id = luaL_checkint(L, 1);
    int flush = lua_toboolean(L, 2);
    if (id <= 0 || id >= nobjs || objs[id] == NULL)
        return 0;
    kv_obj *ob = objs[id];
    if (ob->kind == OBJ_STREAM && flush &&
        evbuffer_get_length(bufferevent_get_output(ob->bev)) > 0) {
        ob->close_after_flush = 1;
        bufferevent_disable(ob->bev, EV_READ);
        return 0;
    }
    obj_free(ob);
    return 0;
}

/* --------------------------------------------------------------- timers */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    kv_obj *ob = arg;
    KV_UNUSED(fd);
    KV_UNUSED(what);
    int id = ob->id;
    obj_free(ob);
    lua_State *L = begin_event("timer");
    lua_pushinteger(L, id);
    end_event(L, 1);
}

static int l_timer(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    kv_obj *ob = obj_new(OBJ_TIMER);
    if (ob == NULL)
        return luaL_error(L, "out of memory");
    ob->ev = evtimer_new(kv_runtime_base(), timer_cb, ob);
    struct timeval tv = {(time_t)s, (suseconds_t)((s - (time_t)s) * 1e6)};
    if (s < 0)
        tv.tv_sec = tv.tv_usec = 0;
    evtimer_add(ob->ev, &tv);
    lua_pushinteger(L, ob->id);
    return 1;
}

static int l_cancel(lua_State *L)
{
    kv_obj *ob = obj_get(luaL_checkint(L, 1), OBJ_TIMER);
    if (ob)
        obj_free(ob);
    return 0;
}

/* -------------------------------------------------------- loop, signals */

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    KV_UNUSED(what);
    KV_UNUSED(arg);
    lua_State *L = begin_event("signal");
    lua_pushinteger(L, (lua_Integer)sig);
    end_event(L, 1);
}

static int l_set_handler(lua_State *L)
{
    kv_runtime_set_ref(L, 1, &handler_ref);
    return 0;
}

static int l_run(lua_State *L)
{
    static struct event *sigs[3];
    int signos[3] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++) {
        if (sigs[i] == NULL) {
            sigs[i] = evsignal_new(kv_runtime_base(), signos[i], signal_cb, NULL);
            evsignal_add(sigs[i], NULL);
        }
    }
    event_base_dispatch(kv_runtime_base());
    KV_UNUSED(L);
    return 0;
}

static int l_stop(lua_State *L)
{
    KV_UNUSED(L);
    event_base_loopbreak(kv_runtime_base());
    return 0;
}

/* ----------------------------------------------------------- utilities */

static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec / 1e9);
    return 1;
}

static int l_wall(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec / 1e9);
    return 1;
}

static int l_log(lua_State *L)
{
    int level = luaL_checkint(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    kv_log(level, "%s", msg);
    return 0;
}

/* Lets kv.log skip formatting (and the rate limiter) for lines below the level. */
static int l_log_enabled(lua_State *L)
{
    lua_pushboolean(L, kv_log_enabled(luaL_checkint(L, 1)));
    return 1;
}

static int l_log_setup(lua_State *L)
{
    const char *level = luaL_checkstring(L, 1);
    const char *file = luaL_optstring(L, 2, "");
    int lv = kv_log_level_from_name(level);
    if (lv < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "unknown log level '%s'", level);
        return 2;
    }
    if (kv_log_open(file) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot open log file %s: %s", file, strerror(errno));
        return 2;
    }
    kv_log_set_level(lv);
    lua_pushboolean(L, 1);
    return 1;
}

static int push_errno(lua_State *L, const char *what, const char *path)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s %s: %s", what, path, strerror(errno));
    return 2;
}

/* Write a file so a crash leaves either the old or the new content: temp
 * file in the same directory, fsync, rename, fsync of the directory. */
static int l_write_file_atomic(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return push_errno(L, "cannot create", tmp);
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, data + off, n - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            errno = e;
            return push_errno(L, "cannot write", tmp);
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        return push_errno(L, "cannot fsync", tmp);
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return push_errno(L, "cannot rename to", path);
    }
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_list_dir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR *d = opendir(path);
    if (d == NULL)
        return push_errno(L, "cannot open directory", path);
    lua_newtable(L);
    int i = 1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || (e->d_name[1] == '.' && e->d_name[2] == '\0')))
            continue;
        lua_pushstring(L, e->d_name);
        lua_rawseti(L, -2, i++);
    }
    closedir(d);
    return 1;
}

static int l_mkdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return push_errno(L, "cannot create directory", path);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_is_file(lua_State *L)
{
    struct stat st;
    lua_pushboolean(L, stat(luaL_checkstring(L, 1), &st) == 0 && S_ISREG(st.st_mode));
    return 1;
}

static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, getpid());
    return 1;
}

static int ready_fd = -1; /* write end of the daemon readiness pipe */
static int l_daemon_ready(lua_State *L);

static int l_exit(lua_State *L)
{
    int code = luaL_optint(L, 1, 0);
    if (ready_fd >= 0) {
        /* exiting before ready: tell the waiting parent */
        lua_settop(L, 0);
        lua_pushboolean(L, code == 0);
        lua_pushfstring(L, "exited with status %d before it was ready (see its log)", code);
        l_daemon_ready(L);
    }
    fflush(stdout);
    fflush(stderr);
    _exit(code);
    return 0;
}

/* Detach from the terminal; the child writes pidfile. Must run before any
 * thread is started. The parent stays until the child reports readiness
 * (core.daemon_ready) so that `kvp -d` exits non-zero, with the reason on
 * stderr, when the daemon cannot start. */
static int l_daemonize(lua_State *L)
{
    const char *pidfile = luaL_optstring(L, 1, NULL);
    int p[2];
    if (pipe(p) != 0)
        return push_errno(L, "cannot create pipe", "");
    pid_t pid = fork();
    if (pid < 0)
        return push_errno(L, "cannot fork", "");
    if (pid > 0) {
        close(p[1]);
        char msg[1024];
        size_t n = 0;
        ssize_t r;
        while (n < sizeof(msg) - 1 && (r = read(p[0], msg + n, sizeof(msg) - 1 - n)) != 0) {
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                break;
            }
            n += (size_t)r;
        }
        msg[n] = 0;
        if (n >= 2 && memcmp(msg, "ok", 2) == 0)
            _exit(0);
        fprintf(stderr, "%s\n", n ? msg : "the daemon exited during start (see its log)");
        _exit(1);
    }
    close(p[0]);
    ready_fd = p[1];
    fcntl(ready_fd, F_SETFD, FD_CLOEXEC);
    setsid();
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2)
            close(fd);
    }
    event_reinit(kv_runtime_base());
    if (pidfile) {
        FILE *f = fopen(pidfile, "w");
        if (f == NULL)
            return push_errno(L, "cannot write pid file", pidfile);
        fprintf(f, "%d\n", (int)getpid());
        fclose(f);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* core.daemon_ready(true) or core.daemon_ready(false, "why"): releases the
 * waiting parent of a daemon (no-op when not daemonized or already done). */
static int l_daemon_ready(lua_State *L)
{
    if (ready_fd < 0)
        return 0;
    const char *msg = lua_toboolean(L, 1) ? "ok" : luaL_optstring(L, 2, "failed to start");
    ssize_t w = write(ready_fd, msg, strlen(msg));
    (void)w;
    close(ready_fd);
    ready_fd = -1;
    return 0;
}

static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty(luaL_optint(L, 1, 1)));
    return 1;
}

static int l_hostname(lua_State *L)
{
    char h[256];
    if (gethostname(h, sizeof(h)) != 0)
        snprintf(h, sizeof(h), "localhost");
    h[sizeof(h) - 1] = 0;
    lua_pushstring(L, h);
    return 1;
}

/* core.key_bucket(hash_name, hash_tags, key, bucket_count) -> bucket: the
 * proxy's own computation (kv_hash_bucket), for /kvstore/cs/locate. */
static int l_key_bucket(lua_State *L)
{
    const char *hash = luaL_checkstring(L, 1);
    int tags = lua_toboolean(L, 2);
    size_t len;
    const char *key = luaL_checklstring(L, 3, &len);
    lua_Integer n = luaL_checkinteger(L, 4);
    int kind;
    if (strcmp(hash, "murmur2_kvstore") == 0)
        kind = KV_HASH_MURMUR2_KVSTORE;
    else if (strcmp(hash, "crc16") == 0)
        kind = KV_HASH_CRC16;
    else
        return luaL_argerror(L, 1, "murmur2_kvstore or crc16");
    luaL_argcheck(L, n >= 1 && n <= 65535, 4, "bucket_count out of range");
    lua_pushinteger(L, (lua_Integer)kv_hash_bucket(kind, tags, key, len, (uint32_t)n));
    return 1;
}

/* core.glob_match(glob, s) -> boolean, Redis glob rules (c/core/glob.c) */
static int l_glob_match(lua_State *L)
{
    size_t pl, sl;
    const char *p = luaL_checklstring(L, 1, &pl);
    const char *s = luaL_checklstring(L, 2, &sl);
    lua_pushboolean(L, kv_glob_match(p, pl, s, sl));
    return 1;
}

/* core.sha1_hex(s) -> 40 hex digits: the name a key-rewrite pattern gives a key */
static int l_sha1_hex(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    char hex[40];
    kv_sha1_hex(s, len, hex);
    lua_pushlstring(L, hex, 40);
    return 1;
}

int luaopen_kv_core(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"listen", l_listen},       {"connect", l_connect},
        {"send", l_send},           {"pending", l_pending},
        {"close", l_close},         {"timer", l_timer},
        {"cancel", l_cancel},       {"set_handler", l_set_handler},
        {"run", l_run},             {"stop", l_stop},
        {"now", l_now},             {"wall", l_wall},
        {"log", l_log},             {"log_setup", l_log_setup},
        {"log_enabled", l_log_enabled},
        {"write_file_atomic", l_write_file_atomic},
        {"list_dir", l_list_dir},   {"mkdir", l_mkdir},
        {"is_file", l_is_file},     {"getpid", l_getpid},
        {"exit", l_exit},           {"daemonize", l_daemonize},
        {"daemon_ready", l_daemon_ready},
        {"isatty", l_isatty},       {"hostname", l_hostname},
        {"key_bucket", l_key_bucket}, {"glob_match", l_glob_match},
        {"sha1_hex", l_sha1_hex},
        {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    lua_pushinteger(L, KV_LOG_DEBUG);
    lua_setfield(L, -2, "DEBUG");
    lua_pushinteger(L, KV_LOG_INFO);
    lua_setfield(L, -2, "INFO");
    lua_pushinteger(L, KV_LOG_WARN);
    lua_setfield(L, -2, "WARN");
    lua_pushinteger(L, KV_LOG_ERROR);
    lua_setfield(L, -2, "ERROR");
    lua_pushstring(L, KV_VERSION);
    lua_setfield(L, -2, "VERSION");
    return 1;
}
