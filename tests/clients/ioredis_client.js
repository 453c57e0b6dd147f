#!/usr/bin/env node
'use strict';
// ioredis_client.js -- drives a Redis server (or kvp) with ioredis, as an
// application would, one group of checks at a time.
//
//   node ioredis_client.js [-h HOST] [-p PORT] [-a PASSWORD] [-P PEER_PORT] GROUP...
//
// One line per check (`ok - WHAT`, `not ok - WHAT: DETAIL`); exit status 1
// when a check failed. Clients use ioredis's defaults: ioredis 6 opens with
// HELLO 3 and falls back to RESP2 when the server answers NOPROTO, so every
// group runs over whatever the server accepts, as in an application; the
// resp3 group checks that RESP3 was what it got. Keys start with `io:`.
// Groups: see tests/clients/README.

const Redis = require('ioredis');
const { WAKE_AFTER_MS, assert, sleep, run } = require('./harness');

const P = 'io:';

run('ioredis_client.js', process.argv.slice(2), async (o, checks) => {
    const { version } = require('ioredis/package.json');
    console.log(`# ioredis ${version} against ${o.host}:${o.port}`);
    const open = [];
    // client(port): a connection with the library's default options
    const client = (port = o.port) => {
        const c = new Redis({ host: o.host, port, password: o.password || undefined });
        c.on('error', () => {}); // reported through the commands that fail
        open.push(c);
        return c;
    };
    const r = client();
    const ck = (what, fn) => checks.check(what, fn);
    const groups = {};

    groups.basic = async () => {
        await ck('GET/SET', async () => {
            assert.equal(await r.set(P + 'k', 'v1'), 'OK');
            assert.equal(await r.get(P + 'k'), 'v1');
            assert.equal(await r.get(P + 'missing'), null);
        });
        await ck('MSET/MGET over many buckets', async () => {
            const keys = Array.from({ length: 20 }, (_, i) => `${P}m${i}`);
            await r.mset(Object.fromEntries(keys.map((k) => [k, 'val-' + k])));
            assert.deepEqual(await r.mget(...keys, P + 'missing'), [...keys.map((k) => 'val-' + k), null]);
        });
        await ck('DEL of several keys counts them', async () => {
            await r.mset(P + 'd1', 1, P + 'd2', 2, P + 'd3', 3);
            assert.equal(await r.del(P + 'd1', P + 'd2', P + 'd3', P + 'missing'), 3);
        });
        await ck('INCR/INCRBY/DECR', async () => {
            await r.del(P + 'n');
            assert.equal(await r.incr(P + 'n'), 1);
            assert.equal(await r.incrby(P + 'n', 41), 42);
            assert.equal(await r.decr(P + 'n'), 41);
        });
        await ck('pipeline()', async () => {
            const res = await r.pipeline().set(P + 'p', 'a').append(P + 'p', 'b').get(P + 'p')
                .incr(P + 'pn').del(P + 'pn').exec();
            assert.deepEqual(res, [[null, 'OK'], [null, 2], [null, 'ab'], [null, 1], [null, 1]]);
        });
        await ck('binary-safe keys and values (Buffer)', async () => {
            const val = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.from('\r\n\0end')]);
            const key = Buffer.from(P + 'bin:\0\r\n\u00e9');
            await r.set(key, val);
            assert.ok(val.equals(await r.getBuffer(key)));
            assert.equal(await r.strlen(key), val.length);
        });
        await ck('SET PX, EXPIRE, TTL, PERSIST, expiry', async () => {
            await r.set(P + 'e', 'x', 'PX', 150);
            const pttl = await r.pttl(P + 'e');
            assert.ok(pttl > 0 && pttl <= 150, `pttl ${pttl}`);
            await r.set(P + 'e2', 'x');
            assert.equal(await r.expire(P + 'e2', 100), 1);
            assert.equal(await r.persist(P + 'e2'), 1);
            assert.equal(await r.ttl(P + 'e2'), -1);
            await sleep(300);
            assert.equal(await r.get(P + 'e'), null);
        });
    };

    groups.tx = async () => {
        const other = client();
        await ck('multi().exec()', async () => {
            await r.del(P + 'tx');
            const res = await r.multi().set(P + 'tx', 1).incr(P + 'tx').get(P + 'tx').exec();
            assert.deepEqual(res, [[null, 'OK'], [null, 2], [null, '2']]);
        });
        await ck('WATCH retry loop with a concurrent writer', async () => {
            // exec() answers null when a watched key changed: try again
            const w = client(); // WATCH belongs to a connection: its own
            await w.set(P + 'seq', 10);
            let attempts = 0;
            for (;;) {
                await w.watch(P + 'seq');
                const value = Number(await w.get(P + 'seq'));
                if (++attempts === 1) await other.incrby(P + 'seq', 100);
                const res = await w.multi().set(P + 'seq', value + 1).exec();
                if (res !== null) break;
            }
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
                    .call('SET', P + '{txfail}:old').exec();
            } catch (e) {
                err = e;
            }
            assert.equal(await r.get(P + '{txfail}:old'), 'orig', `{txfail}:old is ${await r.get(P + '{txfail}:old')}, not orig`);
            assert.equal(await r.exists(P + '{txfail}:new'), 0, '{txfail}:new was written');
            assert.ok(err, 'exec() did not fail');
            assert.match(err.message, /EXECABORT/);
        });
        await ck('MULTI, queued commands, DISCARD', async () => {
            await r.set(P + 'disc', 'orig');
            const m = r.multi({ pipeline: false });
            await m; // MULTI answered
            assert.equal(await r.set(P + 'disc', 'changed'), 'QUEUED');
            assert.equal(await r.discard(), 'OK');
            assert.equal(await r.get(P + 'disc'), 'orig');
        });
    };

    groups.blocking = async () => {
        const pusher = client();
        await ck(`BLPOP timeout 0 woken by another client after ${WAKE_AFTER_MS} ms`, async () => {
            const b = client(); // a blocking pop holds its connection
            await r.del(P + 'jobs');
            const t0 = Date.now();
            setTimeout(() => pusher.rpush(P + 'jobs', 'job1'), WAKE_AFTER_MS);
            assert.deepEqual(await b.blpop(P + 'jobs', 0), [P + 'jobs', 'job1']);
            assert.ok(Date.now() - t0 >= WAKE_AFTER_MS - 100, 'returned before the push');
        });
        await ck('BLPOP with a 1 s timeout returns null', async () => {
            const t0 = Date.now();
            assert.equal(await r.blpop(P + 'empty', 1), null);
            const dt = Date.now() - t0;
            assert.ok(dt >= 900 && dt < 3000, `waited ${dt} ms`);
        });
        await ck('BLMOVE to a processing list', async () => {
            await r.del(P + '{q}src', P + '{q}dst');
            setTimeout(() => pusher.rpush(P + '{q}src', 'job'), 300);
            assert.equal(await r.blmove(P + '{q}src', P + '{q}dst', 'LEFT', 'RIGHT', 0), 'job');
            assert.deepEqual(await r.lrange(P + '{q}dst', 0, -1), ['job']);
        });
    };

    groups.pubsub = async () => {
        const sub = client();
        const pub = client(o.peer); // the other proxy
        const where = o.peer !== o.port ? 'through a second proxy' : 'on one server';
        const inbox = [];
        let wake = null;
        sub.on('message', (channel, message) => { inbox.push({ channel, message }); if (wake) wake(); });
        sub.on('pmessage', (pattern, channel, message) => { inbox.push({ pattern, channel, message }); if (wake) wake(); });
        const next = async () => {
            const end = Date.now() + 5000;
            while (!inbox.length && Date.now() < end) {
                await new Promise((resolve) => { wake = resolve; setTimeout(resolve, 100); });
            }
            assert.ok(inbox.length, 'no message within 5 s');
            return inbox.shift();
        };
        await ck('subscribe and psubscribe', async () => {
            assert.equal(await sub.subscribe(P + 'news'), 1);
            assert.equal(await sub.psubscribe(P + 'ev.*'), 2);
        });
        await ck(`message published ${where}`, async () => {
            assert.ok(await pub.publish(P + 'news', 'hello') >= 1, 'no receiver counted');
            assert.deepEqual(await next(), { channel: P + 'news', message: 'hello' });
        });
        await ck(`pattern message published ${where}`, async () => {
            await pub.publish(P + 'ev.login', 'bob');
            assert.deepEqual(await next(), { pattern: P + 'ev.*', channel: P + 'ev.login', message: 'bob' });
        });
        await ck('unsubscribe, then the connection runs commands again', async () => {
            // by name: ioredis resolves a bare unsubscribe() only once the
            // connection has no subscription at all, patterns included
            assert.equal(await sub.unsubscribe(P + 'news'), 1);
            assert.equal(await sub.punsubscribe(P + 'ev.*'), 0);
            await pub.publish(P + 'news', 'late');
            await sleep(200);
            assert.deepEqual(inbox, []);
            assert.equal(await sub.set(P + 'after', 'x'), 'OK');
        });
    };

    groups.scan = async () => {
        const n = 10000;
        const want = Array.from({ length: n }, (_, i) => `${P}scan:${i}`);
        const collect = (opts) => new Promise((resolve, reject) => {
            const keys = [];
            r.scanStream(opts).on('data', (batch) => keys.push(...batch))
                .on('end', () => resolve(keys)).on('error', reject);
        });
        await ck(`${n} keys written with a pipeline`, async () => {
            for (let i = 0; i < n; i += 1000) {
                const p = r.pipeline();
                for (let j = i; j < i + 1000; j++) p.set(want[j], j);
                await p.exec();
            }
            for (let i = 0; i < 5; i++) await r.hset(`${P}scanh:${i}`, 'f', 'v');
        });
        await ck(`scanStream returns each of ${n} keys exactly once`, async () => {
            const got = (await collect({ count: 1000 })).filter((k) => k.startsWith(P + 'scan:'));
            assert.equal(got.length, n, 'keys returned');
            assert.deepEqual(got.sort(), [...want].sort());
        });
        await ck('scanStream({ match })', async () => {
            const got = await collect({ match: P + 'scan:12*', count: 1000 });
            assert.deepEqual(got.sort(), want.filter((k) => k.startsWith(P + 'scan:12')).sort());
        });
        await ck("scanStream({ type: 'hash' })", async () => {
            const got = await collect({ match: P + 'scan*', type: 'hash', count: 1000 });
            assert.deepEqual(got.sort(), [0, 1, 2, 3, 4].map((i) => `${P}scanh:${i}`));
        });
        await ck('KEYS pattern', async () => {
            const got = await r.keys(P + 'scan:99*');
            assert.deepEqual(got.sort(), want.filter((k) => k.startsWith(P + 'scan:99')).sort());
        });
    };

    groups.scripts = async () => {
        const src = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
        await ck('defineCommand: EVALSHA, NOSCRIPT, EVAL fallback', async () => {
            await r.script('FLUSH');
            r.defineCommand('ioIncrBy', { numberOfKeys: 1, lua: src });
            await r.del(P + 'sc');
            assert.equal(await r.ioIncrBy(P + 'sc', 5), 5);
            assert.equal(await r.ioIncrBy(P + 'sc', 5), 10);
        });
        await ck('SCRIPT LOAD / SCRIPT EXISTS / EVALSHA', async () => {
            const sha = await r.script('LOAD', 'return ARGV[1]');
            assert.deepEqual(await r.script('EXISTS', sha, '0'.repeat(40)), [1, 0]);
            assert.equal(await r.evalsha(sha, 0, 'x'), 'x');
        });
        await ck('EVAL with no keys', async () => {
            assert.equal(await r.eval('return tonumber(ARGV[1]) * 2', 0, 21), 42);
        });
    };

    groups.resp3 = async () => {
        // the defaults: HELLO 3 first
        const c = client();
        await ck('default options negotiate RESP3 (HELLO answers proto 3)', async () => {
            const hello = await c.hello();
            const proto = hello[hello.indexOf('proto') + 1];
            assert.equal(proto, 3);
        });
        await ck('RESP3: GET/SET/HGETALL/multi', async () => {
            await c.set(P + 'r3', 'v');
            assert.equal(await c.get(P + 'r3'), 'v');
            await c.hset(P + 'r3h', 'a', '1');
            assert.deepEqual(await c.hgetall(P + 'r3h'), { a: '1' });
            assert.deepEqual(await c.multi().set(P + 'r3t', 1).incr(P + 'r3t').exec(), [[null, 'OK'], [null, 2]]);
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
            assert.equal(await r.client('SETNAME', 'io-app'), 'OK');
            assert.equal(await r.client('GETNAME'), 'io-app');
            assert.match(await r.client('LIST'), / name=io-app /);
        });
        await ck('CONFIG GET maxmemory', async () => {
            const got = await r.config('GET', 'maxmemory');
            assert.equal(got[0], 'maxmemory');
        });
    };

    return {
        groups,
        close: async () => { open.forEach((c) => c.disconnect()); },
    };
});
