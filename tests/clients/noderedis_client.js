#!/usr/bin/env node
'use strict';
// noderedis_client.js -- drives a Redis server (or kvp) with node-redis, as
// an application would, one group of checks at a time.
//
//   node noderedis_client.js --lib redis4|redis [-h HOST] [-p PORT] [-a PASSWORD] [-P PEER_PORT] GROUP...
//
// --lib picks the package in node_modules: `redis4` (node-redis 4.7, the npm
// alias of tests/clients/package.json) or `redis` (the newest node-redis).
// One line per check (`ok - WHAT`, `not ok - WHAT: DETAIL`); exit status 1
// when a check failed.
//
// Protocol: the newest node-redis opens every connection with HELLO 3 and
// does not fall back to RESP2. The resp3 group uses the default options (so
// it is the test of RESP3); the other groups pass RESP: 2, so that each
// group tests its own feature whether or not the server speaks RESP3.
// node-redis 4 speaks RESP2 only. Keys start with `nr4:` or `nr6:` (the
// major version). Groups: see tests/clients/README.

const path = require('node:path');
const { WAKE_AFTER_MS, Skip, assert, sleep, within, run } = require('./harness');

function load(lib) {
    if (!['redis', 'redis4'].includes(lib)) {
        console.error('--lib must be redis4 or redis');
        process.exit(2);
    }
    const mod = require(lib);
    const version = require(path.join(lib, 'package.json')).version;
    return { mod, version, major: Number(version.split('.')[0]) };
}

run('noderedis_client.js', process.argv.slice(2), async (o, checks) => {
    const { mod, version, major } = load(o.lib || 'redis');
    const { createClient, defineScript, WatchError } = mod;
    const v4 = major < 5;
    const P = `nr${major}:`;
    console.log(`# node-redis ${version} (${o.lib || 'redis'}) against ${o.host}:${o.port}`);
    const open = [];

    // client(extra, port): connected; RESP2 unless extra says otherwise
    const client = async (extra = {}, port = o.port) => {
        const c = createClient({
            socket: { host: o.host, port },
            password: o.password || undefined,
            ...(v4 ? {} : { RESP: 2 }),
            ...extra,
        });
        let lastError = null; // what a connect that never ends ran into
        c.on('error', (e) => { lastError = e; });
        open.push(c);
        try {
            await within(5000, c.connect(), 'connect');
        } catch (e) {
            if (lastError) e.message += ` (last error: ${lastError.message})`;
            throw e;
        }
        return c;
    };
    // dup(c): a second connection with c's options (blocking, pub/sub, WATCH)
    const dup = async (c) => {
        const d = c.duplicate();
        d.on('error', () => {});
        open.push(d);
        await within(5000, d.connect(), 'connect');
        return d;
    };

    const r = await client();
    const ck = (what, fn) => checks.check(what, fn);
    const groups = {};

    groups.basic = async () => {
        await ck('GET/SET', async () => {
            assert.equal(await r.set(P + 'k', 'v1'), 'OK');
            assert.equal(await r.get(P + 'k'), 'v1');
            assert.equal(await r.get(P + 'missing'), null);
        });
        await ck('mSet/mGet over many buckets', async () => {
            const keys = Array.from({ length: 20 }, (_, i) => `${P}m${i}`);
            await r.mSet(Object.fromEntries(keys.map((k) => [k, 'val-' + k])));
            assert.deepEqual(await r.mGet([...keys, P + 'missing']), [...keys.map((k) => 'val-' + k), null]);
        });
        await ck('DEL of several keys counts them', async () => {
            await r.mSet([[P + 'd1', '1'], [P + 'd2', '2'], [P + 'd3', '3']]);
            assert.equal(await r.del([P + 'd1', P + 'd2', P + 'd3', P + 'missing']), 3);
        });
        await ck('INCR/INCRBY/DECR', async () => {
            await r.del(P + 'n');
            assert.equal(await r.incr(P + 'n'), 1);
            assert.equal(await r.incrBy(P + 'n', 41), 42);
            assert.equal(await r.decr(P + 'n'), 41);
        });
        await ck('multi().execAsPipeline() and concurrent commands (auto-pipelined)', async () => {
            const res = await r.multi().set(P + 'p', 'a').append(P + 'p', 'b').get(P + 'p')
                .incr(P + 'pn').del(P + 'pn').execAsPipeline();
            assert.deepEqual(res, ['OK', 2, 'ab', 1, 1]);
            const many = await Promise.all(Array.from({ length: 50 }, (_, i) => r.set(`${P}ap${i}`, String(i))));
            assert.equal(many.filter((x) => x === 'OK').length, 50);
        });
        await ck('binary-safe keys and values (Buffer)', async () => {
            const val = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.from('\r\n\0end')]);
            const key = Buffer.from(P + 'bin:\0\r\n\u00e9');
            await r.set(key, val);
            const got = v4
                ? await r.get(mod.commandOptions({ returnBuffers: true }), key)
                : await r.withTypeMapping({ [mod.RESP_TYPES.BLOB_STRING]: Buffer }).get(key);
            assert.ok(Buffer.isBuffer(got) && val.equals(got), 'value differs');
            assert.equal(await r.strLen(key), val.length);
        });
        await ck('SET PX, EXPIRE, TTL, PERSIST, expiry', async () => {
            await r.set(P + 'e', 'x', { PX: 150 });
            const pttl = await r.pTTL(P + 'e');
            assert.ok(pttl > 0 && pttl <= 150, `pttl ${pttl}`);
            await r.set(P + 'e2', 'x');
            assert.ok(await r.expire(P + 'e2', 100));
            assert.ok(await r.persist(P + 'e2'));
            assert.equal(await r.ttl(P + 'e2'), -1);
            await sleep(300);
            assert.equal(await r.get(P + 'e'), null);
        });
    };

    groups.tx = async () => {
        const other = await dup(r);
        await ck('multi().exec()', async () => {
            await r.del(P + 'tx');
            assert.deepEqual(await r.multi().set(P + 'tx', '1').incr(P + 'tx').get(P + 'tx').exec(), ['OK', 2, '2']);
        });
        await ck('WATCH retry loop with a concurrent writer', async () => {
            // WATCH holds state on its connection: node-redis 4 runs it on an
            // isolated connection (executeIsolated), 5+ on a dedicated one
            await r.set(P + 'seq', '10');
            let attempts = 0;
            const loop = async (w) => {
                for (;;) {
                    await w.watch(P + 'seq');
                    const value = Number(await w.get(P + 'seq'));
                    if (++attempts === 1) await other.incrBy(P + 'seq', 100);
                    try {
                        await w.multi().set(P + 'seq', String(value + 1)).exec();
                        return;
                    } catch (e) {
                        if (!(e instanceof WatchError)) throw e;
                    }
                }
            };
            if (v4) await r.executeIsolated(loop);
            else await loop(await dup(r));
            assert.equal(attempts, 2);
            assert.equal(await r.get(P + 'seq'), '111');
        });
        await ck('a transaction that fails to queue changes nothing', async () => {
            await r.set(P + '{txfail}:old', 'orig');
            await r.del(P + '{txfail}:new');
            let err = null;
            try {
                // SET with one argument is refused while queuing: EXECABORT
                await r.multi().set(P + '{txfail}:old', 'changed').set(P + '{txfail}:new', 'x')
                    .addCommand(['SET', P + '{txfail}:old']).exec();
            } catch (e) {
                err = e;
            }
            assert.equal(await r.get(P + '{txfail}:old'), 'orig', `{txfail}:old is ${await r.get(P + '{txfail}:old')}, not orig`);
            assert.equal(await r.exists(P + '{txfail}:new'), 0, '{txfail}:new was written');
            assert.ok(err, 'exec() did not fail');
            // node-redis 4 reports the EXECABORT, 5+ the queuing error itself
            assert.match(String(err.message), /EXECABORT|wrong number of arguments for 'set'/);
        });
    };

    groups.blocking = async () => {
        const pusher = await dup(r);
        // a blocking pop holds its connection: node-redis 4 docs use an
        // isolated connection, 5+ a dedicated client
        const blocker = v4 ? null : await dup(r);
        const blPop = (key, timeout) => (v4
            ? r.blPop(mod.commandOptions({ isolated: true }), key, timeout)
            : blocker.blPop(key, timeout));
        await ck(`blPop timeout 0 woken by another client after ${WAKE_AFTER_MS} ms`, async () => {
            await r.del(P + 'jobs');
            const t0 = Date.now();
            setTimeout(() => pusher.rPush(P + 'jobs', 'job1'), WAKE_AFTER_MS);
            assert.deepEqual(await blPop(P + 'jobs', 0), { key: P + 'jobs', element: 'job1' });
            assert.ok(Date.now() - t0 >= WAKE_AFTER_MS - 100, 'returned before the push');
        });
        await ck('blPop with a 1 s timeout returns null', async () => {
            const t0 = Date.now();
            assert.equal(await blPop(P + 'empty', 1), null);
            const dt = Date.now() - t0;
            assert.ok(dt >= 900 && dt < 3000, `waited ${dt} ms`);
        });
        await ck('blMove to a processing list', async () => {
            await r.del([P + '{q}src', P + '{q}dst']);
            setTimeout(() => pusher.rPush(P + '{q}src', 'job'), 300);
            const b = v4 ? r : blocker;
            const got = await b.blMove(...(v4 ? [mod.commandOptions({ isolated: true })] : []),
                P + '{q}src', P + '{q}dst', 'LEFT', 'RIGHT', 0);
            assert.equal(got, 'job');
            assert.deepEqual(await r.lRange(P + '{q}dst', 0, -1), ['job']);
        });
    };

    groups.pubsub = async () => {
        const sub = await dup(r);
        const pub = await client({}, o.peer); // the other proxy
        const where = o.peer !== o.port ? 'through a second proxy' : 'on one server';
        const inbox = [];
        const next = async () => {
            for (let i = 0; i < 50 && !inbox.length; i++) await sleep(100);
            assert.ok(inbox.length, 'no message within 5 s');
            return inbox.shift();
        };
        await ck('subscribe and pSubscribe', async () => {
            await sub.subscribe(P + 'news', (message, channel) => inbox.push({ channel, message }));
            await sub.pSubscribe(P + 'ev.*', (message, channel) => inbox.push({ pattern: P + 'ev.*', channel, message }));
        });
        await ck(`message published ${where}`, async () => {
            assert.ok(await pub.publish(P + 'news', 'hello') >= 1, 'no receiver counted');
            assert.deepEqual(await next(), { channel: P + 'news', message: 'hello' });
        });
        await ck(`pattern message published ${where}`, async () => {
            await pub.publish(P + 'ev.login', 'bob');
            assert.deepEqual(await next(), { pattern: P + 'ev.*', channel: P + 'ev.login', message: 'bob' });
        });
        await ck('unsubscribe and pUnsubscribe, then no more messages', async () => {
            // by name: node-redis 4 resolves a bare unsubscribe() only once the
            // connection has no subscription at all, patterns included
            await sub.unsubscribe(P + 'news');
            await sub.pUnsubscribe(P + 'ev.*');
            await pub.publish(P + 'news', 'late');
            await pub.publish(P + 'ev.x', 'late');
            await sleep(200);
            assert.deepEqual(inbox, []);
        });
    };

    groups.scan = async () => {
        const n = 10000;
        const want = Array.from({ length: n }, (_, i) => `${P}scan:${i}`);
        // node-redis 4 yields keys one by one, 5+ yields each SCAN reply's batch
        const collect = async (opts) => {
            const keys = [];
            for await (const item of r.scanIterator(opts)) {
                if (Array.isArray(item)) keys.push(...item);
                else keys.push(item);
            }
            return keys;
        };
        await ck(`${n} keys written`, async () => {
            for (let i = 0; i < n; i += 1000) {
                await Promise.all(want.slice(i, i + 1000).map((k, j) => r.set(k, String(i + j))));
            }
            for (let i = 0; i < 5; i++) await r.hSet(`${P}scanh:${i}`, 'f', 'v');
        });
        await ck(`scanIterator returns each of ${n} keys exactly once`, async () => {
            const got = (await collect({ COUNT: 1000 })).filter((k) => k.startsWith(P + 'scan:'));
            assert.equal(got.length, n, 'keys returned');
            assert.deepEqual(got.sort(), [...want].sort());
        });
        await ck('scanIterator({ MATCH })', async () => {
            const got = await collect({ MATCH: P + 'scan:12*', COUNT: 1000 });
            assert.deepEqual(got.sort(), want.filter((k) => k.startsWith(P + 'scan:12')).sort());
        });
        await ck("scanIterator({ TYPE: 'hash' })", async () => {
            const got = await collect({ MATCH: P + 'scan*', TYPE: 'hash', COUNT: 1000 });
            assert.deepEqual(got.sort(), [0, 1, 2, 3, 4].map((i) => `${P}scanh:${i}`));
        });
        await ck('KEYS pattern', async () => {
            const got = await r.keys(P + 'scan:99*');
            assert.deepEqual(got.sort(), want.filter((k) => k.startsWith(P + 'scan:99')).sort());
        });
    };

    groups.scripts = async () => {
        const src = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
        // the defineScript shape changed in node-redis 5
        const incrBy = v4
            ? defineScript({
                NUMBER_OF_KEYS: 1,
                SCRIPT: src,
                transformArguments: (key, n) => [key, String(n)],
                transformReply: (reply) => reply,
            })
            : defineScript({
                NUMBER_OF_KEYS: 1,
                SCRIPT: src,
                parseCommand(parser, key, n) {
                    parser.pushKey(key);
                    parser.push(String(n));
                },
                transformReply: undefined,
            });
        await ck('defineScript: EVALSHA, NOSCRIPT, EVAL fallback', async () => {
            const s = await client({ scripts: { incrBy } });
            await s.scriptFlush();
            await s.del(P + 'sc');
            assert.equal(await s.incrBy(P + 'sc', 5), 5);
            assert.equal(await s.incrBy(P + 'sc', 5), 10);
        });
        await ck('scriptLoad / scriptExists / evalSha', async () => {
            const sha = await r.scriptLoad('return ARGV[1]');
            const exists = await r.scriptExists([sha, '0'.repeat(40)]);
            assert.deepEqual(exists.map(Boolean), [true, false]);
            assert.equal(await r.evalSha(sha, { arguments: ['x'] }), 'x');
        });
        await ck('EVAL with no keys', async () => {
            assert.equal(await r.eval('return tonumber(ARGV[1]) * 2', { arguments: ['21'] }), 42);
        });
    };

    groups.resp3 = async () => {
        if (v4) {
            await ck('default options connect over RESP3', () => {
                throw new Skip(`node-redis ${version} speaks RESP2 only`);
            });
            return;
        }
        let c = null;
        await ck('default options connect (HELLO 3) and answer PING', async () => {
            c = await client({ RESP: undefined });
            assert.equal(await c.ping(), 'PONG');
        });
        if (!c) return;
        await ck('RESP3: GET/SET, hGetAll map', async () => {
            await c.set(P + 'r3', 'v');
            assert.equal(await c.get(P + 'r3'), 'v');
            await c.hSet(P + 'r3h', 'a', '1');
            assert.deepEqual({ ...await c.hGetAll(P + 'r3h') }, { a: '1' });
        });
        await ck('RESP3: multi().exec()', async () => {
            await c.del(P + 'r3t');
            assert.deepEqual(await c.multi().set(P + 'r3t', '1').incr(P + 'r3t').exec(), ['OK', 2]);
        });
        await ck('RESP3: scanIterator', async () => {
            await c.set(P + 'r3s:1', '1');
            const got = [];
            for await (const keys of c.scanIterator({ MATCH: P + 'r3s:*', COUNT: 1000 })) got.push(...keys);
            assert.deepEqual(got, [P + 'r3s:1']);
        });
        await ck('RESP3: subscribe, and commands on the same connection', async () => {
            // RESP3 delivers messages as pushes: one connection does both
            const pub = await client({ RESP: undefined }, o.peer);
            const inbox = [];
            await c.subscribe(P + 'r3ch', (message, channel) => inbox.push([channel, message]));
            await pub.publish(P + 'r3ch', 'hi');
            assert.equal(await c.get(P + 'r3'), 'v');
            for (let i = 0; i < 50 && !inbox.length; i++) await sleep(100);
            assert.deepEqual(inbox, [[P + 'r3ch', 'hi']]);
            await c.unsubscribe(P + 'r3ch');
        });
        await ck('RESP3: blPop woken by another client', async () => {
            const b = await dup(c);
            await c.del(P + 'r3q');
            setTimeout(() => c.rPush(P + 'r3q', 'job'), 300);
            assert.deepEqual(await b.blPop(P + 'r3q', 0), { key: P + 'r3q', element: 'job' });
        });
    };

    groups.info = async () => {
        await ck('INFO: server, clients, memory, stats, keyspace fields', async () => {
            const info = await r.info();
            for (const f of ['redis_version', 'connected_clients', 'used_memory', 'total_commands_processed',
                'instantaneous_ops_per_sec', 'total_connections_received']) {
                assert.match(info, new RegExp(`^${f}:`, 'm'), `INFO has no ${f}`);
            }
            assert.match(info, /^db0:keys=[1-9]/m, 'keyspace');
        });
        await ck('CLIENT SETNAME / GETNAME / LIST', async () => {
            assert.equal(await r.clientSetName(P + 'app'), 'OK');
            assert.equal(await r.clientGetName(), P + 'app');
            const names = (await r.clientList()).map((c) => c.name);
            assert.ok(names.includes(P + 'app'), `CLIENT LIST names ${names}`);
        });
        await ck('CONFIG GET maxmemory', async () => {
            const got = await r.configGet('maxmemory');
            assert.ok('maxmemory' in got, `CONFIG GET ${JSON.stringify(got)}`);
        });
    };

    return {
        groups,
        close: async () => {
            for (const c of open) {
                try { c.destroy ? c.destroy() : c.disconnect(); } catch (e) { /* closing anyway */ }
            }
        },
    };
});
