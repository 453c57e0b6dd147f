/* errors.h -- every error the proxy itself sends to clients, worded as in
 * SPEC §4, in one place. */
#ifndef KVP_ERRORS_H
#define KVP_ERRORS_H

#define KVP_ERR_UNKNOWN_FMT       "-ERR unknown command '%.*s'\r\n"
#define KVP_ERR_UNSUPPORTED_FMT   "-ERR command '%s' is not supported by the proxy\r\n"
#define KVP_ERR_ARITY_FMT         "-ERR wrong number of arguments for '%s' command\r\n"
#define KVP_ERR_UNKNOWN_SUB_FMT   "-ERR unknown subcommand '%.*s'. Try %s HELP.\r\n"
#define KVP_ERR_CROSSSLOT         "-CROSSSLOT Keys in request don't hash to the same bucket\r\n"
#define KVP_ERR_NOAUTH            "-NOAUTH Authentication required.\r\n"
#define KVP_ERR_WRONGPASS         "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
#define KVP_ERR_AUTH_NOPASS       "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"
#define KVP_ERR_BACKEND_UNAVAILABLE_FMT "-ERR backend %s unavailable\r\n"
#define KVP_ERR_TIMEOUT           "-ERR request timeout\r\n"
#define KVP_ERR_TIMEOUT_BLOCKED   "-ERR request timeout (bucket blocked for a migration)\r\n"
#define KVP_ERR_TIMEOUT_TABLE_SWAP "-ERR request timeout (waiting for a table change)\r\n"
#define KVP_ERR_NO_TABLE          "-ERR proxy has no bucket table yet (config server not reached)\r\n"
#define KVP_ERR_QPS               "-ERR reach qps limit\r\n"
/* the routing policy's rules (lua/policy.lua): command name, the rule's glob */
#define KVP_ERR_POLICY_DENIED_FMT "-NOPERM the routing policy denies '%s' on keys matching '%s'\r\n"
#define KVP_ERR_POLICY_READ_ONLY_FMT "-READONLY keys matching '%s' are read-only (routing policy)\r\n"
#define KVP_ERR_POLICY_QPS_FMT    "-ERR reach qps limit of keys matching '%s'\r\n"
#define KVP_ERR_POLICY_ROUTE_FMT  "-ERR routing policy: route of '%s' failed: %s\r\n"
#define KVP_ERR_NO_REPLICA_FMT    "-ERR no replica of %s is up and within max_replica_lag_ms of keys matching '%s'\r\n"
#define KVP_ERR_PROTECTED         "-DENIED kvp is running in protected mode: no client_password is set, so only loopback clients are served. Set client_password, or protected_mode = false in kvp.conf to serve every client without one.\r\n"
#define KVP_ERR_MAX_CLIENTS       "-ERR max number of clients reached\r\n"
#define KVP_ERR_DB_RANGE          "-ERR DB index is out of range\r\n"
#define KVP_ERR_NOT_INT           "-ERR value is not an integer or out of range\r\n"
#define KVP_ERR_HELLO_NOAUTH      "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n"
#define KVP_ERR_NOPROTO           "-NOPROTO unsupported protocol version\r\n"
#define KVP_ERR_OOM               "-ERR proxy out of memory\r\n"
#define KVP_ERR_BAD_REPLY         "-ERR unexpected reply from backend\r\n"
#define KVP_ERR_SYNTAX            "-ERR syntax error\r\n"
/* transactions (Redis's own wording where Redis has one) */
#define KVP_ERR_MULTI_NESTED      "-ERR MULTI calls can not be nested\r\n"
#define KVP_ERR_EXEC_NO_MULTI     "-ERR EXEC without MULTI\r\n"
#define KVP_ERR_DISCARD_NO_MULTI  "-ERR DISCARD without MULTI\r\n"
#define KVP_ERR_WATCH_IN_MULTI    "-ERR WATCH inside MULTI is not allowed\r\n"
#define KVP_ERR_EXECABORT         "-EXECABORT Transaction discarded because of previous errors.\r\n"
#define KVP_ERR_IN_MULTI_FMT      "-ERR command '%s' is not supported by the proxy inside MULTI (a transaction runs on one master)\r\n"
#define KVP_ERR_CROSSSLOT_WATCH   "-CROSSSLOT Keys in request don't hash to the master of the WATCHed keys\r\n"
#define KVP_ERR_NO_OWNED          "-ERR proxy has no free backend connection of the client's own (owned_connections_max per master reached)\r\n"
#define KVP_ERR_HELLO_OWNED       "-ERR proxy: HELLO cannot switch the protocol while this connection WATCHes keys or waits in a blocking command (UNWATCH, or wait for its reply, first)\r\n"
#define KVP_ERR_OWNED_BUSY        "-ERR proxy: this connection still waits on another master (a blocking command or a WATCH there)\r\n"
#define KVP_ERR_TX_TOO_BIG        "-ERR transaction too big for the proxy (queued commands over the limit)\r\n"
/* SORT BY / GET: "BY" or "GET"; Redis Cluster's refusal, for buckets */
#define KVP_ERR_SORT_PATTERN_FMT  "-ERR %s option of SORT denied by the proxy: keys formed by the pattern may be in another bucket (the pattern needs the sorted key's {hash tag} before its first '*')\r\n"
#define KVP_ERR_SORT_MIGRATING    "-TRYAGAIN SORT with BY or GET patterns while the key's bucket migrates\r\n"
#define KVP_ERR_INVALID_CURSOR    "-ERR invalid cursor\r\n"
#define KVP_ERR_SCAN_CURSOR       "-ERR a master's SCAN cursor does not fit the proxy's cursor\r\n"
/* pub/sub: Redis's words for a command in subscribed mode */
#define KVP_ERR_PUBSUB_CONTEXT_FMT "-ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
#define KVP_ERR_MASTERS_DIFFER    "-ERR the masters answered differently\r\n"

#endif
