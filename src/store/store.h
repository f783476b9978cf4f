/*-------------------------------------------------------------------------
 *
 * store.h
 *	  Every table access of setstream (SPI with prepared, parameterised
 *	  plans; peer input never reaches SQL text).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_STORE_H
#define SETSTREAM_STORE_H

#include "datatype/timestamp.h"

#include "codec/commobj.h"
#include "set/set.h"
#include "store/streamcache.h"

/* An outbound SET handed to a receiver */
typedef struct OutSet
{
	int64		seq;
	char	   *jti;
	char	   *token;
} OutSet;

/* The stream's active signing key */
struct SignKey
{
	char	   *kid;
	char	   *alg;
	char	   *private_jwk;
	struct JoseKey *imported;	/* jose_key_get_cached() */
	uint64		imported_generation;
};
typedef struct SignKey SignKey;

extern bool store_schema_is_0_3(void);
extern bool store_schema_is_0_4(void);
extern StreamInfo *store_get_stream(const char *name);
extern StreamInfo *store_find_stream(const char *name);
extern List *store_verify_keys(const char *stream, const char *kid);
extern bool store_insert_event(const StreamInfo *stream, const ParsedSet *ps);
extern void store_insert_events(StreamInfo **streams, ParsedSet **sets, int n);

extern bool store_insert_key(const char *stream, const char *kid,
							 const char *purpose, const char *kty,
							 const char *alg, const char *public_jwk,
							 const char *secret_jwk);
extern SignKey *store_sign_key(const char *stream);
extern void store_insert_token(const char *stream, const uint8 *hash);
extern List *store_token_hashes(const char *stream);
extern bool store_insert_client_cert(const char *stream, const uint8 *sha256,
									 const char *subject, TimestampTz not_after);
extern List *store_cert_hashes(const char *stream);

extern void store_insert_outbox(const char *stream, const char *jti,
								const char *event_type, const char *claims,
								const char *token);
extern void store_insert_outbox_as_owner(const char *stream, const char *jti,
										 const char *event_type,
										 const char *claims,
										 const char *token);

/* One outbound SET, signed, for store_insert_outbox_rows */
typedef struct EmitRow
{
	char	   *stream;
	char	   *jti;
	char	   *event_type;
	char	   *claims;
	char	   *token;
} EmitRow;

extern void store_insert_outbox_rows(const EmitRow *rows, int n);
extern void store_apply_acks(const char *stream, List *jtis);
extern void store_apply_errs(const char *stream, List *errs);
/* The err and description of a SET past setstream.max_delivery_age */
#define UNDELIVERABLE_ERR "undeliverable"
#define UNDELIVERABLE_DESCRIPTION "not acknowledged within setstream.max_delivery_age"

extern List *store_take_due(const char *stream, int limit,
							 TimestampTz expire_before, bool *more);
extern char *store_jwks(void);
extern int	store_retire_keys(int max_age_s);

/* One right on a stream: its owner (privilege "owner") or a grant */
typedef struct StreamRight
{
	char	   *stream;
	Oid			role;
	char	   *privilege;
} StreamRight;

extern List *store_stream_rights(const char *stream);
extern void store_change_grants(const char *stream, Oid role, List *privileges,
								bool grant);
extern void store_grant_as_owner(const char *sql);
extern bool store_any_due(const char *stream);
extern bool store_generation_sum(int64 *sum);
extern uint64 store_recent_due(const char *stream, int64 since, int64 *count);

/* Outbound push (issue 17): a stream delivered by push, as the sender sees it */
typedef struct PushStream
{
	char	   *stream;
	char	   *endpoint_url;
	char	   *authorization;	/* the stored header, or NULL */
	int			concurrency;
	char	   *state;			/* active, backoff, suspended */
	TimestampTz backoff_until;	/* 0: none */
	char	   *suspended_reason;
	int			failures;
	int			auth_failures;
} PushStream;

/* One SET due for a push */
typedef struct PushRow
{
	int64		seq;
	char	   *jti;
	char	   *token;
	char	   *state;
	int			attempts;
	bool		expired;		/* older than setstream.max_delivery_age */
	TimestampTz created_at;
} PushRow;

/* What one push changes on its outbox row (times 0: NULL) */
typedef struct PushOutcomeRow
{
	const char *jti;
	const char *state;
	int			attempts_add;
	TimestampTz delivered_at;	/* 0: unchanged */
	TimestampTz acked_at;
	TimestampTz failed_at;
	const char *err;
	const char *description;
	TimestampTz next_attempt_at;
	int			last_status;	/* -1: unchanged */
	const char *last_error;
} PushOutcomeRow;

extern void store_set_delivery_secret(const char *stream, const char *header);
extern List *store_push_streams(void);
extern List *store_push_due(const char *stream, TimestampTz now,
							TimestampTz expire_before, const int64 *exclude,
							int nexclude, int limit);
extern List *store_pushpull_streams(void);
extern List *store_pushpull_ws_streams(void);
extern void store_untake(const char *stream, List *jtis);
extern void store_push_outcome(const char *stream, const PushOutcomeRow *o);
extern void store_push_outcomes(const char *stream, const PushOutcomeRow *rows,
							   int n);
extern void store_delivery_state(const PushStream *p, int64 nonconformant,
								 TimestampTz now);

/* Peer keys from a jwks_uri (issue 17; outbound/jwksfetch.c) */
typedef struct JwksSource
{
	char	   *stream;
	char	   *uri;
	TimestampTz next_fetch_at;	/* 0: never fetched */
	int			failures;		/* in a row */
} JwksSource;

/* One key of a fetched JWK Set, checked as add_key checks */
typedef struct JwksKey
{
	char	   *kid;
	char	   *kty;
	char	   *alg;			/* NULL: none */
	char	   *jwk;			/* the public JWK, with its kid */
} JwksKey;

/* What one fetch came to, for setstream.peer_jwks */
typedef struct JwksOutcome
{
	bool		ok;
	TimestampTz now;
	TimestampTz expires_at;		/* ok */
	TimestampTz next_fetch_at;
	int			keys;			/* ok */
	int			status;			/* HTTP status; 0: no answer */
	const char *error;			/* not ok */
} JwksOutcome;

extern List *store_jwks_sources(void);
extern bool store_jwks_replace(const char *stream, List *keys);
extern void store_jwks_outcome(const char *stream, const char *uri,
							   const JwksOutcome *o);

/*
 * The poll client (issue 17, pollclient.c): a source is read into a
 * PushStream (its concurrency unused), so that outbound_apply changes its
 * state as it changes a push stream's.
 */
extern void store_set_source_secret(const char *stream, const char *header);

/* The SSF receiver's credentials (issue 13, subscribe) */
extern void store_set_subscription_secret(const char *stream,
										  const char *credentials);
extern char *store_subscription_credentials(const char *stream,
											char **access_token,
											TimestampTz *expires_at);
extern List *store_tokens_due(TimestampTz now);
extern void store_subscription_token(const char *stream, const char *token,
									 TimestampTz expires_at);
extern List *store_sources(void);
extern void store_source_state(const PushStream *p, int last_status,
							   const char *last_error, int64 received,
							   int64 rejected, TimestampTz now);

/* SSF receivers (issue 13): clients of the management API */
typedef struct ReceiverToken
{
	char	   *receiver;
	uint8		hash[32];		/* SHA-256 of the token */
	bool		read;			/* scope ssf.read */
	bool		manage;			/* scope ssf.manage */
} ReceiverToken;

extern bool store_insert_receiver(const char *name, List *audience,
								  int max_streams, Oid owner);
extern bool store_receiver_owner(const char *name, Oid *owner);
extern void store_insert_receiver_token(const char *receiver,
										const uint8 *hash, List *scopes);
extern List *store_receiver_tokens(void);
extern List *store_receiver_read_hashes(const char *stream);
extern void store_set_stream_receiver(const char *stream, const char *receiver);
extern char *store_receiver_stream_status(const char *stream,
										  const char *receiver);
extern void store_set_stream_status(const char *stream, const char *status);

/* SSF status semantics (issue 13; 0.4.0 schema only) */
extern void store_receiver_active(const char *receiver, const char *stream);
extern bool store_ssf_verify(const char *stream, const char *state,
							 bool receiver_asked, int min_interval,
							 int *retry_after);
extern int	store_ssf_inactivity(int timeout_s);

/* A stream made through /ssf/streams (setstream._ssf_create_stream) */
typedef struct SsfNewStream
{
	const char *receiver;
	const char *issuer;
	const char *public_url;
	const char *description;	/* NULL: none */
	bool		has_events_requested;
	List	   *events_requested;	/* of char * */
	const char *method;			/* poll, push */
	const char *endpoint_url;	/* push */
	const char *authorization_header;	/* push; NULL: none */
} SsfNewStream;

extern char *store_ssf_create_stream(const SsfNewStream *n);
extern char *store_ssf_stream_config(const char *stream, const char *receiver,
									 const char *public_url);
extern char *store_ssf_receiver_streams(const char *receiver,
										const char *public_url);
extern bool store_ssf_delete_stream(const char *stream, const char *receiver);

/* PATCH or PUT /ssf/streams (setstream._ssf_update_stream; 0.4.0) */
typedef struct SsfStreamUpdate
{
	const char *stream;
	const char *receiver;
	const char *public_url;
	bool		set_description;
	const char *description;	/* NULL: none */
	bool		set_events;
	bool		has_events_requested;	/* false: NULL */
	List	   *events_requested;	/* of char * */
	bool		set_delivery;
	const char *method;			/* poll, push */
	const char *endpoint_url;	/* push */
	const char *authorization_header;	/* push; NULL: none */
} SsfStreamUpdate;

extern char *store_ssf_update_stream(const SsfStreamUpdate *u);
extern void store_set_subject(const char *stream, const char *subject,
							  bool included, bool verified, bool keep_removed);
extern bool store_stream_filter(const char *stream, bool *has_events,
								List **events_delivered, bool *has_receiver,
								char **subjects);

#endif
