/*-------------------------------------------------------------------------
 *
 * setstream.c
 *	  Module entry: _PG_init defines the setstream.* GUCs, sets up the
 *	  allocators of the JSON and JOSE libraries, registers the commit
 *	  callback that wakes the listeners, and, under
 *	  shared_preload_libraries, requests shared memory and registers the
 *	  listener background workers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "setstream.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "store/emitbuf.h"
#include "jose/jose.h"
#include "server/auth/auth.h"
#include "server/handoff.h"
#include "server/listener.h"
#include "outbound/outbound.h"
#include "outbound/pollclient.h"
#include "outbound/pushpullclient.h"
#include "shmem/stats.h"
#include "store/streamcache.h"
#include "shmem/wakeup.h"
#include "shmem/jwksreq.h"
#include "shmem/walflush.h"
#include "worker/worker.h"
#include "server/metrics.h"

PG_MODULE_MAGIC;

char	   *setstream_role = NULL;
char	   *setstream_database = NULL;
char	   *setstream_listen_addresses = NULL;
int			setstream_port = 8417;
int			setstream_workers = 1;
char	   *setstream_tls_cert_file = NULL;
char	   *setstream_tls_key_file = NULL;
char	   *setstream_tls_ca_file = NULL;
int			setstream_max_request_bytes = 1024 * 1024;
int			setstream_max_connections = 1024;
int			setstream_poll_timeout_ms = 30000;
int			setstream_generation_check_ms = 250;
int			setstream_idle_timeout_ms = 60000;
int			setstream_redelivery_interval_ms = 60000;
int			setstream_max_poll_events = 1000;
int			setstream_auth_failure_limit = 30;
int			setstream_max_buffered_bytes = 64 * 1024 * 1024;
int			setstream_jwks_max_age_s = 60;
int			setstream_ssf_min_verification_interval_s = 5;
int			setstream_ssf_inactivity_timeout_s = 0;

int			setstream_senders = 1;
char	   *setstream_outbound_ca_file = NULL;
char	   *setstream_outbound_client_cert_file = NULL;
char	   *setstream_outbound_client_key_file = NULL;
char	   *setstream_outbound_allowed_networks = NULL;
int			setstream_max_delivery_age_s = 3 * 24 * 3600;
int			setstream_outbound_connect_timeout_ms = 10000;
int			setstream_outbound_timeout_ms = 30000;
int			setstream_max_backoff_ms = 300000;
int			setstream_invalid_key_retry_s = 600;
int			setstream_auth_retries = 3;
char	   *setstream_public_url = NULL;
char	   *setstream_issuer = NULL;
int			setstream_default_subjects = SSF_DEFAULT_SUBJECTS_ALL;

/*
 * setstream.ssf_signing_alg: the algorithm of the signing key made for a
 * stream created through the SSF management API (read by
 * setstream._ssf_create_stream with current_setting; the number is not
 * used)
 */
static int	ssf_signing_alg = 0;

static const struct config_enum_entry ssf_signing_alg_options[] = {
	{"RS256", 0, false},
	{"RS384", 1, false},
	{"RS512", 2, false},
	{"PS256", 3, false},
	{"PS384", 4, false},
	{"PS512", 5, false},
	{"ES256", 6, false},
	{"ES384", 7, false},
	{"ES512", 8, false},
	{"EdDSA", 9, false},
	{NULL, 0, false}
};

static const struct config_enum_entry default_subjects_options[] = {
	{"ALL", SSF_DEFAULT_SUBJECTS_ALL, false},
	{"NONE", SSF_DEFAULT_SUBJECTS_NONE, false},
	{"all", SSF_DEFAULT_SUBJECTS_ALL, true},
	{"none", SSF_DEFAULT_SUBJECTS_NONE, true},
	{NULL, 0, false}
};

void		_PG_init(void);

/* Outbound delivery (issue 17): the sender's requests (senders: below) */
static void
define_sender_gucs(void)
{
	DefineCustomStringVariable("setstream.outbound_ca_file",
							   "CA certificates (PEM) that verify the peers setstream pushes to; empty: the system bundle.",
							   NULL, &setstream_outbound_ca_file, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("setstream.outbound_client_cert_file",
							   "Client certificate (PEM, with its chain) that setstream presents to the peers it reaches over TLS (mutual TLS); empty: none.",
							   NULL, &setstream_outbound_client_cert_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("setstream.outbound_client_key_file",
							   "Private key (PEM) of setstream.outbound_client_cert_file.",
							   NULL, &setstream_outbound_client_key_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("setstream.outbound_allowed_networks",
							   "Networks (CIDR, comma-separated) that outbound requests may reach although loopback, private, link-local or unique-local; plain http is allowed only to them.",
							   NULL, &setstream_outbound_allowed_networks, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.max_delivery_age",
							"An emitted SET that setstream delivers itself (push, pushpull it initiates) and its receiver has not acknowledged this long after it was emitted fails as undeliverable.",
							NULL, &setstream_max_delivery_age_s, 3 * 24 * 3600, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.outbound_connect_timeout",
							"Longest wait for an outbound connection.",
							NULL, &setstream_outbound_connect_timeout_ms, 10000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.outbound_timeout",
							"Longest time one outbound request (a push) may take in all.",
							NULL, &setstream_outbound_timeout_ms, 30000, 100, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.max_backoff",
							"Longest wait between pushes to a failing receiver.",
							NULL, &setstream_max_backoff_ms, 300000, 1000, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.invalid_key_retry",
							"How long after its emit a SET answered invalid_key is still retried.",
							NULL, &setstream_invalid_key_retry_s, 600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.source_poll_timeout",
							"Longest time one poll of a source (set_source) may take in all; it must outlast the peer's long-poll wait.",
							NULL, &setstream_source_poll_timeout_ms, 90000, 100, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.source_max_events",
							"maxEvents of each poll of a source (set_source).",
							NULL, &setstream_source_max_events, 100, 1, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	/* pushpull as initiator (issue 17, outbound/pushpullclient.c) */
	DefineCustomIntVariable("setstream.pushpull_poll_interval",
							"Time between two requests of a pushpull stream we initiate when it has nothing to send and nothing to acknowledge (the peer's SETs come in responses only).",
							NULL, &setstream_pushpull_poll_interval_ms, 1000, 10, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.pushpull_batch",
							"Most SETs in one pushpull request we initiate, and its maxResponseEvents.",
							NULL, &setstream_pushpull_batch, 100, 1, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.auth_retries",
							"Consecutive 401 / authentication_failed answers after which a stream's push delivery is suspended.",
							NULL, &setstream_auth_retries, 3, 1, 100,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	/* peer keys from a jwks_uri (issue 17) */
	DefineCustomIntVariable("setstream.jwks_refetch_interval",
							"Least time between two refetches of a stream's peer_jwks_uri asked for by SETs with an unknown kid.",
							NULL, &setstream_jwks_refetch_interval_s, 300, 1, 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.jwks_min_cache_time",
							"Least time a fetched peer JWK Set is kept before it is fetched again, whatever its max-age says.",
							NULL, &setstream_jwks_min_cache_s, 60, 1, 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	/* key rotation (issue 13) */
	DefineCustomIntVariable("setstream.jwks_max_age",
							"max-age of the /jwks.json answer; a signing key replaced by rotate_key stays published at least this long.",
							NULL, &setstream_jwks_max_age_s, 60, 0, 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	/* SSF status semantics (issue 13) */
	DefineCustomIntVariable("setstream.ssf_min_verification_interval",
							"Least time between two verifications a receiver asks for on one stream (POST /ssf/verify); sooner is answered 429.",
							NULL, &setstream_ssf_min_verification_interval_s, 5, 0, 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.ssf_inactivity_timeout",
							"An SSF stream whose receiver made no management call and no poll this long is paused, and disabled after twice this; 0: never.",
							NULL, &setstream_ssf_inactivity_timeout_s, 0, 0, INT_MAX / 2,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
}

/*
 * The listener's own settings.  Those fixed at server start (database,
 * addresses, port, workers, senders) exist only when setstream is loaded by
 * shared_preload_libraries: PostgreSQL refuses (FATAL) to create a
 * PGC_POSTMASTER variable later, and without the preload there is no
 * listener for them to configure.  The SQL API works either way.
 */
static void
define_postmaster_gucs(void)
{
	DefineCustomStringVariable("setstream.database",
							   "Database the setstream listener connects to.",
							   NULL, &setstream_database, "postgres",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("setstream.role",
							   "Role the setstream workers connect as; it must not be a superuser.",
							   "CREATE EXTENSION setstream creates setstream_worker with the rights the listener needs.",
							   &setstream_role, "setstream_worker",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("setstream.listen_addresses",
							   "Addresses the setstream listener binds; empty disables it.",
							   NULL, &setstream_listen_addresses, "localhost",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.port",
							"TCP port of the setstream listener.",
							NULL, &setstream_port, 8417, 1, 65535,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.workers",
							"Number of setstream listener processes sharing the port.",
							NULL, &setstream_workers, 1, 1, 64,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.senders",
							"Number of setstream sender processes (RFC 8935 push); 0 disables them.",
							NULL, &setstream_senders, 1, 0, 16,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
}

static void
define_listener_gucs(void)
{
	if (process_shared_preload_libraries_in_progress)
		define_postmaster_gucs();
	DefineCustomStringVariable("setstream.tls_cert_file",
							   "TLS certificate (PEM) of the listener; TLS is on when both cert and key are set.",
							   NULL, &setstream_tls_cert_file, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("setstream.tls_key_file",
							   "TLS private key (PEM) of the listener.",
							   NULL, &setstream_tls_key_file, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("setstream.tls_ca_file",
							   "CA certificates (PEM) trusted for client certificates; when set, the listener asks for one.",
							   NULL, &setstream_tls_ca_file, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.max_connections",
							"Most client connections a listener process holds.",
							NULL, &setstream_max_connections, 1024, 1, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.poll_timeout",
							"Longest wait of an RFC 8936 long poll.",
							NULL, &setstream_poll_timeout_ms, 30000, 0, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.generation_check_interval",
							"How often each listener reads setstream.generations and the newest due SET of the streams its long polls and WebSocket sessions wait on (changes committed on another node, or by any path, are seen within it); 0 disables.",
							NULL, &setstream_generation_check_ms, 250, 0, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomBoolVariable("setstream.pipelined_flush",
							 "Listeners go on serving while the WAL of their last commit is flushed, and answer once it is (off: each commit waits for its flush).",
							 NULL, &setstream_pipelined_flush, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.idle_timeout",
							"Idle or slow client connections are closed after this long.",
							NULL, &setstream_idle_timeout_ms, 60000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.auth_failure_limit",
							"Failed authentications per minute allowed from one address; 0 disables the limit.",
							NULL, &setstream_auth_failure_limit, 30, 0, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.max_buffered_bytes",
							"Most request and WebSocket message bytes a listener process buffers across all its connections.",
							NULL, &setstream_max_buffered_bytes, 64 * 1024 * 1024,
							64 * 1024, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
}

/*
 * setstream.public_url and setstream.issuer (SSF): empty, an https:// URL,
 * or an http:// URL of a loopback host (127.0.0.1, localhost, [::1]: tests
 * and a TLS-terminating proxy on the same machine); no query, fragment or
 * white space.
 */
static bool
check_ssf_url(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;
	const char *host;
	size_t		hostlen;

	if (v == NULL || *v == '\0')
		return true;
	if (strpbrk(v, "?# \t\r\n") != NULL)
	{
		GUC_check_errdetail("The URL must have no query, fragment or white space.");
		return false;
	}
	if (pg_strncasecmp(v, "https://", 8) == 0)
		host = v + 8;
	else if (pg_strncasecmp(v, "http://", 7) == 0)
		host = v + 7;
	else
	{
		GUC_check_errdetail("The URL must start with https:// (http:// only for a loopback host).");
		return false;
	}
	hostlen = strcspn(host, "/");
	if (hostlen == 0)
	{
		GUC_check_errdetail("The URL has no host.");
		return false;
	}
	if (host == v + 7)
	{
		/* the host without its port */
		size_t		name = host[0] == '[' ? strcspn(host, "]") + 1 :
		strcspn(host, ":/");

		if (!((name == 9 && pg_strncasecmp(host, "localhost", 9) == 0) ||
			  (name == 9 && strncmp(host, "127.0.0.1", 9) == 0) ||
			  (name == 5 && strncmp(host, "[::1]", 5) == 0)) ||
			(host[name] != '\0' && host[name] != ':' && host[name] != '/'))
		{
			GUC_check_errdetail("http:// is allowed only for 127.0.0.1, localhost or [::1]; use https://.");
			return false;
		}
	}
	return true;
}

/* SSF transmitter (issue 13): where receivers reach it, who it is */
static void
define_ssf_gucs(void)
{
	DefineCustomStringVariable("setstream.public_url",
							   "Base URL at which receivers reach the listener (SSF endpoints and discovery are built from it).",
							   NULL, &setstream_public_url, "",
							   PGC_SIGHUP, 0, check_ssf_url, NULL, NULL);
	DefineCustomStringVariable("setstream.issuer",
							   "The SSF transmitter's issuer, exactly as the discovery document states it; empty: setstream.public_url without a trailing slash.",
							   NULL, &setstream_issuer, "",
							   PGC_SIGHUP, 0, check_ssf_url, NULL, NULL);
	DefineCustomEnumVariable("setstream.default_subjects",
							 "SSF default_subjects: ALL (a receiver's stream delivers every subject not removed) or NONE (only the subjects added).",
							 NULL, &setstream_default_subjects,
							 SSF_DEFAULT_SUBJECTS_ALL, default_subjects_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("setstream.ssf_signing_alg",
							 "Algorithm of the signing key made for a stream created through the SSF management API (RS256: what the CAEP interoperability profile requires).",
							 NULL, &ssf_signing_alg, 0, ssf_signing_alg_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
}

void
_PG_init(void)
{
	jose_init_allocators();
	define_listener_gucs();
	define_sender_gucs();
	define_ssf_gucs();
	metrics_init();

	DefineCustomIntVariable("setstream.max_request_bytes",
							"Largest request body (and largest single SET) accepted.",
							NULL, &setstream_max_request_bytes, 1024 * 1024,
							1024, 256 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.redelivery_interval",
							"A delivered, unacknowledged SET is due again after this long.",
							NULL, &setstream_redelivery_interval_ms, 60000,
							0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.max_poll_events",
							"Most SETs one poll or Communication Object returns.",
							NULL, &setstream_max_poll_events, 1000, 1, 100000,
							PGC_SUSET, 0, NULL, NULL, NULL);

	MarkGUCPrefixReserved("setstream");

	wakeup_register_callbacks();
	streamcache_register_callbacks();
	emitbuf_init();
	stats_register_callbacks();
	if (process_shared_preload_libraries_in_progress)
	{
		wakeup_request_shmem();
		stats_request_shmem();
		authlimit_request_shmem();
		jwksreq_request_shmem();
		walflush_request_shmem();
		handoff_request_shmem();
		worker_register_all();
		listensock_hold_ports();
		handoff_create_channels();
	}
}
