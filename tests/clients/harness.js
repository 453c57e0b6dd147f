'use strict';
// harness.js -- what the Node drivers (ioredis_client.js, noderedis_client.js)
// share: the command line, one `ok - WHAT` / `not ok - WHAT: DETAIL` line per
// check (as py_client.py prints them), a time limit per check, the exit status.
//
//   DRIVER [-h HOST] [-p PORT] [-a PASSWORD] [-P PEER_PORT] [--lib NAME] GROUP...

const assert = require('node:assert/strict');

const GROUPS = ['basic', 'tx', 'blocking', 'pubsub', 'scan', 'scripts', 'resp3', 'info'];
// Longer than the proxy's request_timeout in tests/it (1 s): a blocking pop
// with timeout 0 must wait for as long as it takes.
const WAKE_AFTER_MS = 1300;

class Skip extends Error {}

function usage(name) {
    console.error(`usage: ${name} [-h HOST] [-p PORT] [-a PASSWORD] [-P PEER_PORT] [--lib NAME] GROUP...\n` +
        `groups: ${GROUPS.join(' ')}`);
    process.exit(2);
}

function parseArgs(name, argv) {
    const o = { host: '127.0.0.1', port: 6379, password: '', peer: 0, lib: '', groups: [] };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const flag = { '-h': 'host', '-p': 'port', '-a': 'password', '-P': 'peer', '--lib': 'lib' }[a];
        if (flag && i + 1 < argv.length) o[flag] = argv[++i];
        else if (GROUPS.includes(a)) o.groups.push(a);
        else usage(name);
    }
    o.port = Number(o.port);
    o.peer = Number(o.peer) || o.port;
    return o;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// within(ms, promise, what): the promise, or a rejection after ms.
function within(ms, promise, what) {
    let timer;
    const limit = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    });
    return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

class Checks {
    constructor() {
        this.failed = 0;
    }

    // check(what, fn): run the async fn; an exception (assert's included) is
    // a failed check, Skip a skipped one. No check runs longer than 15 s.
    async check(what, fn) {
        try {
            await within(15000, Promise.resolve().then(fn), 'check');
            console.log(`ok - ${what}`);
        } catch (e) {
            if (e instanceof Skip) {
                console.log(`ok - ${what} # SKIP ${e.message}`);
                return;
            }
            this.failed++;
            const msg = String(e && e.message !== undefined ? e.message : e).replace(/\s*\n\s*/g, ' ');
            console.log(`not ok - ${what}: ${e && e.name ? e.name + ': ' : ''}${msg}`);
        }
    }
}

// run(name, argv, driver): driver(opts, checks) returns { group: async fn };
// runs the groups named on the command line, then exits (clients that keep
// reconnecting to a proxy that refused them would keep the process alive).
async function run(name, argv, makeDriver) {
    const opts = parseArgs(name, argv);
    const checks = new Checks();
    let driver;
    try {
        driver = await makeDriver(opts, checks);
    } catch (e) {
        console.log(`not ok - connect: ${e && e.name ? e.name + ': ' : ''}${e && e.message}`);
        process.exit(1);
    }
    for (const g of opts.groups) {
        console.log(`# group ${g}`);
        try {
            await driver.groups[g]();
        } catch (e) {
            checks.failed++;
            console.log(`not ok - group ${g}: ${e && e.message}`);
        }
    }
    if (driver.close) {
        await within(3000, driver.close(), 'close').catch(() => {});
    }
    process.exit(checks.failed ? 1 : 0);
}

module.exports = { GROUPS, WAKE_AFTER_MS, Skip, assert, sleep, within, run };
