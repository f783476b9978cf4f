/*-------------------------------------------------------------------------
 *
 * jws.c
 *	  JWS (RFC 7515) for setstream: splitting and decoding compact
 *	  serializations, verifying and signing them; base64url, and the
 *	  allocators jansson and cjose share.
 *
 *	  Signatures are checked with OpenSSL's EVP: RSA (RS, PS), EC (ES) and
 *	  Ed25519 (EdDSA); cjose does HMAC and signs with the keys it imported.
 *	  Both cjose and jansson allocate with palloc (jose_init_allocators),
 *	  so that an error raised anywhere leaks nothing: memory goes with the
 *	  memory context.  OpenSSL itself keeps malloc.
 *
 *	  Nothing in this file raises an SQL error for bad peer input: checks
 *	  return false and describe the problem, and the caller decides.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <string.h>

#include <cjose/cjose.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "lib/stringinfo.h"
#include "utils/memutils.h"

#include "codec/jsonread.h"
#include "jose/jose.h"
#include "jose/jose_int.h"


/* ---------------------------------------------------------------------
 * Allocation: jansson and cjose allocate in CurrentMemoryContext
 * ---------------------------------------------------------------------
 */
static void *
jose_alloc(size_t size)
{
	return palloc(size > 0 ? size : 1);
}

static void *
jose_realloc(void *ptr, size_t size)
{
	if (ptr == NULL)
		return jose_alloc(size);
	return repalloc(ptr, size > 0 ? size : 1);
}

static void
jose_free(void *ptr)
{
	if (ptr != NULL)
		pfree(ptr);
}

/*
 * cjose_set_alloc_funcs also hands OpenSSL's allocator to us, which takes
 * effect only if OpenSSL has not allocated anything yet in this process
 * (which depends on what ran before _PG_init).  OpenSSL keeps global
 * caches (fetched algorithms, providers) that must outlive any memory
 * context, and must not longjmp out of an allocation: put its own
 * allocator back.  When cjose's call had no effect, neither has this one.
 */
void
jose_init_allocators(void)
{
	json_set_alloc_funcs(jose_alloc, jose_free);
	cjose_set_alloc_funcs(jose_alloc, jose_realloc, jose_free);
	CRYPTO_set_mem_functions(CRYPTO_malloc, CRYPTO_realloc, CRYPTO_free);
}

/* ---------------------------------------------------------------------
 * base64url and JSON
 * ---------------------------------------------------------------------
 */
/*
 * The standard-alphabet character of each base64url character, 0 for every
 * other byte: one table lookup a character checks and translates
 */
static char b64url_std[256];

static inline const char *
b64url_table(void)
{
	if (b64url_std['A'] == 0)
	{
		for (int c = 'A'; c <= 'Z'; c++)
			b64url_std[c] = (char) c;
		for (int c = 'a'; c <= 'z'; c++)
			b64url_std[c] = (char) c;
		for (int c = '0'; c <= '9'; c++)
			b64url_std[c] = (char) c;
		b64url_std['-'] = '+';
		b64url_std['_'] = '/';
	}
	return b64url_std;
}

static bool
is_b64url(const char *s, size_t len)
{
	const char *std = b64url_table();

	if (len % 4 == 1)
		return false;
	for (size_t i = 0; i < len; i++)
		if (std[(unsigned char) s[i]] == 0)
			return false;
	return true;
}

/*
 * Decode strict base64url (no padding); NUL-terminated, or NULL if invalid.
 * OpenSSL's table-driven base64 decoder, on a copy in the standard
 * alphabet with its padding (cjose's decoder costs several times more).
 */
char *
jose_b64url_decode(const char *s, size_t len, size_t *outlen)
{
	size_t		padded = (len + 3) / 4 * 4;
	const char *table = b64url_table();
	char	   *std;
	char	   *result;
	int			n;

	if (len % 4 == 1 || len > INT_MAX / 2)
		return NULL;
	if (len == 0)
	{
		*outlen = 0;
		return palloc0(1);
	}
	std = palloc(padded + 1);
	for (size_t i = 0; i < len; i++)
	{
		std[i] = table[(unsigned char) s[i]];
		if (std[i] == 0)
		{
			pfree(std);
			return NULL;
		}
	}
	for (size_t i = len; i < padded; i++)
		std[i] = '=';
	std[padded] = '\0';
	result = palloc(padded / 4 * 3 + 1);
	n = EVP_DecodeBlock((unsigned char *) result, (unsigned char *) std, (int) padded);
	pfree(std);
	if (n < 0)
	{
		pfree(result);
		return NULL;
	}
	n -= (int) (padded - len);	/* EVP_DecodeBlock counts the padding */
	result[n] = '\0';
	*outlen = n;
	return result;
}

char *
jose_b64url_encode(const unsigned char *data, size_t len)
{
	char	   *out = NULL;
	size_t		n = 0;
	cjose_err	err;

	if (!cjose_base64url_encode(data, len, &out, &n, &err))
		elog(ERROR, "base64url encoding failed: %s", err.message);
	return out;
}

/*
 * Parse JSON that must be an object.  Duplicate member names are refused
 * at every depth (RFC 7519 section 4, RFC 8417 section 2.2).  Read by
 * PostgreSQL's parser into a jansson tree (jsonread.c), three times faster
 * than json_loadb.  With jsonb, *jsonb is the value as jsonb too (in a
 * UTF-8 database; (Datum) 0 elsewhere), built in the same parse.
 */
json_t *
jose_parse_json_object(const char *text, size_t len, const char *what,
					   Datum *jsonb, SetFailure *f)
{
	const char *error;
	json_t	   *j = jsonread_load_jsonb(text, len, jsonb, &error);

	if (j == NULL)
	{
		set_fail(f, SETERR_INVALID_REQUEST, "%s is not valid JSON: %s",
				 what, error);
		return NULL;
	}
	if (!json_is_object(j))
	{
		set_fail(f, SETERR_INVALID_REQUEST, "%s is not a JSON object", what);
		return NULL;
	}
	return j;
}

/* ---------------------------------------------------------------------
 * JWS compact serialization
 * ---------------------------------------------------------------------
 */
bool
jose_split(const char *compact, size_t len, JwsParts *parts, SetFailure *f)
{
	const char *dot[4];
	int			ndots = 0;
	size_t		hlen,
				plen;

	memset(parts, 0, sizeof(*parts));
	for (size_t i = 0; i < len; i++)
	{
		if (compact[i] == '.')
		{
			if (ndots == 4)
				return set_fail(f, SETERR_INVALID_REQUEST,
								"the SET is not a JWS compact serialization");
			dot[ndots++] = compact + i;
		}
	}
	if (ndots == 4)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"encrypted (JWE) SETs are not supported; send a signed SET");
	if (ndots != 2)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"the SET is not a JWS compact serialization (header.payload.signature)");

	hlen = dot[0] - compact;
	plen = dot[1] - dot[0] - 1;
	if (hlen == 0 || plen == 0)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"the SET has an empty header or payload");
	if (!is_b64url(dot[1] + 1, len - (dot[1] + 1 - compact)))
		return set_fail(f, SETERR_INVALID_REQUEST,
						"the SET's signature is not base64url");

	parts->header_text = jose_b64url_decode(compact, hlen, &hlen);
	if (parts->header_text == NULL)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"the SET's header is not base64url");
	parts->payload = jose_b64url_decode(dot[0] + 1, plen, &parts->payload_len);
	if (parts->payload == NULL)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"the SET's payload is not base64url");
	parts->header = jose_parse_json_object(parts->header_text, hlen,
										   "the JOSE header",
										   &parts->header_jsonb, f);
	if (parts->header == NULL)
		return false;
	parts->signing_input_len = dot[1] - compact;
	return true;
}


/* ---------------------------------------------------------------------
 * Verify and sign
 * ---------------------------------------------------------------------
 */
/* The signature of a JWS (what follows the second dot), decoded */
static char *
jws_signature(const char *compact, size_t len, const JwsParts *parts,
			  size_t *siglen)
{
	const char *sig64 = compact + parts->signing_input_len + 1;

	return jose_b64url_decode(sig64, len - (sig64 - compact), siglen);
}

/*
 * The length of a signature alg makes with key (RFC 7518 fixes it for
 * HMAC and ECDSA).  It is checked before cjose sees the token: cjose
 * compares an HMAC over the length of the digest, whatever the length of
 * the signature, and so read past the end of a short one.
 */
static size_t
signature_length(const JoseKey *key, const char *alg)
{
	static const struct
	{
		const char *alg;
		size_t		len;
	}			fixed[] = {
		{"HS256", 32}, {"HS384", 48}, {"HS512", 64},
		{"ES256", 64}, {"ES384", 96}, {"ES512", 132},
		{"EdDSA", 64}, {"Ed25519", 64},
	};

	for (int i = 0; i < lengthof(fixed); i++)
		if (strcmp(alg, fixed[i].alg) == 0)
			return fixed[i].len;
	if (strcmp(key->kty, "RSA") == 0)
		return (key->bits + 7) / 8;
	return 0;
}

static bool
verify_ed25519(EVP_PKEY *pkey, const char *compact, const char *sig,
			   size_t siglen, const JwsParts *parts)
{
	EVP_MD_CTX *ctx;
	bool		ok;

	ctx = EVP_MD_CTX_new();
	ok = ctx != NULL &&
		EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
		EVP_DigestVerify(ctx, (unsigned char *) sig, siglen,
						 (const unsigned char *) compact,
						 parts->signing_input_len) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* ES256/384/512 signatures are R || S; EVP wants DER */
static unsigned char *
ecdsa_raw_to_der(const char *sig, size_t siglen, int *derlen)
{
	ECDSA_SIG  *es = ECDSA_SIG_new();
	BIGNUM	   *r = BN_bin2bn((const unsigned char *) sig, (int) siglen / 2, NULL);
	BIGNUM	   *sv = BN_bin2bn((const unsigned char *) sig + siglen / 2, (int) siglen / 2, NULL);
	unsigned char *der = NULL;

	*derlen = 0;
	if (es == NULL || r == NULL || sv == NULL || ECDSA_SIG_set0(es, r, sv) != 1)
	{
		BN_free(r);
		BN_free(sv);
		ECDSA_SIG_free(es);
		return NULL;
	}
	*derlen = i2d_ECDSA_SIG(es, &der);
	ECDSA_SIG_free(es);
	return *derlen > 0 ? der : NULL;
}

/*
 * A digest-verify context of "key" for "alg", initialised once per key and
 * copied for each SET: initialising costs about a tenth of an RSA verify
 * (OpenSSL 3 fetches the algorithms every time).  RFC 7518 3.3-3.5: the
 * digest by the alg's size; PSS with MGF1 of the same digest and a salt as
 * long as the digest.
 */
static EVP_MD_CTX *
verify_context(JoseKey *key, const char *alg)
{
	const EVP_MD *md;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_MD_CTX *tmpl;
	EVP_MD_CTX *ctx;
	bool		ok;

	if (key->verify_tmpl == NULL || strcmp(key->verify_alg, alg) != 0)
	{
		if (strlen(alg) != 5)
			return NULL;
		md = strcmp(alg + 2, "256") == 0 ? EVP_sha256() :
			strcmp(alg + 2, "384") == 0 ? EVP_sha384() :
			strcmp(alg + 2, "512") == 0 ? EVP_sha512() : NULL;
		tmpl = md ? EVP_MD_CTX_new() : NULL;
		ok = tmpl != NULL &&
			EVP_DigestVerifyInit(tmpl, &pctx, md, NULL, key->pkey) == 1;
		if (ok && alg[0] == 'P')
			ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
				EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) == 1 &&
				EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, EVP_MD_get_size(md)) == 1;
		if (!ok)
		{
			EVP_MD_CTX_free(tmpl);
			return NULL;
		}
		if (key->verify_tmpl)
			EVP_MD_CTX_free(key->verify_tmpl);
		key->verify_tmpl = tmpl;
		strlcpy(key->verify_alg, alg, sizeof(key->verify_alg));
	}
	ctx = EVP_MD_CTX_new();
	if (ctx != NULL && EVP_MD_CTX_copy_ex(ctx, key->verify_tmpl) != 1)
	{
		EVP_MD_CTX_free(ctx);
		ctx = NULL;
	}
	return ctx;
}

/*
 * RS, PS and ES algorithms with OpenSSL's EVP.  ECDSA signatures must be
 * exactly twice the curve width (R || S).
 */
static bool
verify_evp(JoseKey *key, const char *alg, const char *compact, size_t len,
		   const JwsParts *parts)
{
	const char *sig64 = compact + parts->signing_input_len + 1;
	EVP_MD_CTX *ctx;
	char	   *sig;
	size_t		siglen;
	unsigned char *der = NULL;
	int			derlen = 0;
	bool		ok;

	sig = jose_b64url_decode(sig64, len - (sig64 - compact), &siglen);
	if (sig == NULL || siglen == 0)
		return false;
	if (alg[0] == 'E')
	{
		int			width = (EVP_PKEY_get_bits(key->pkey) + 7) / 8;

		if (siglen != (size_t) (2 * width))
			return false;
		der = ecdsa_raw_to_der(sig, siglen, &derlen);
		if (der == NULL)
			return false;
	}
	ctx = verify_context(key, alg);
	ok = ctx != NULL &&
		EVP_DigestVerify(ctx,
						 der ? der : (unsigned char *) sig,
						 der ? (size_t) derlen : siglen,
						 (const unsigned char *) compact,
						 parts->signing_input_len) == 1;
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	ERR_clear_error();
	return ok;
}

/*
 * Check the signature of a JWS with a key.  The caller has already checked
 * that the header's alg fits the key (jose_alg_fits).
 */
bool
jose_verify(JoseKey *key, const char *alg, const char *compact, size_t len,
			const JwsParts *parts)
{
	cjose_err	err;
	cjose_jws_t *jws;
	char	   *sig;
	size_t		siglen;
	bool		ok;

	if (key->pkey && (alg[0] == 'R' || alg[0] == 'P' || alg[0] == 'E'))
		return verify_evp(key, alg, compact, len, parts);
	sig = jws_signature(compact, len, parts, &siglen);
	if (sig == NULL || siglen != signature_length(key, alg))
		return false;
	if (key->okp)
		return verify_ed25519(key->okp, compact, sig, siglen, parts);

	jws = cjose_jws_import(compact, len, &err);
	if (jws == NULL)
		return false;
	ok = cjose_jws_verify(jws, key->cjose, &err);
	cjose_jws_release(jws);
	return ok;
}

static char *
sign_ed25519(EVP_PKEY *pkey, const char *header, const char *payload,
			 size_t payload_len)
{
	StringInfoData buf;
	unsigned char sig[64];
	size_t		siglen = sizeof(sig);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool		ok;

	initStringInfo(&buf);
	appendStringInfoString(&buf, jose_b64url_encode((const unsigned char *) header, strlen(header)));
	appendStringInfoChar(&buf, '.');
	appendStringInfoString(&buf, jose_b64url_encode((const unsigned char *) payload, payload_len));
	ok = ctx != NULL &&
		EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
		EVP_DigestSign(ctx, sig, &siglen, (unsigned char *) buf.data, buf.len) == 1;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		elog(ERROR, "Ed25519 signing failed");
	appendStringInfoChar(&buf, '.');
	appendStringInfoString(&buf, jose_b64url_encode(sig, siglen));
	return buf.data;
}

/* Sign a payload as a SET: header {"alg","kid","typ":"secevent+jwt"} */
char *
jose_sign(JoseKey *key, const char *alg, const char *kid,
		  const char *payload, size_t payload_len)
{
	return jose_sign_typ(key, alg, kid, "secevent+jwt", payload, payload_len);
}

/*
 * Sign a payload with header {"alg","kid"?,"typ"} (kid NULL: none; an
 * OAuth client assertion has typ "JWT")
 */
char *
jose_sign_typ(JoseKey *key, const char *alg, const char *kid, const char *typ,
			  const char *payload, size_t payload_len)
{
	json_t	   *hdr = json_object();
	cjose_err	err;
	cjose_jws_t *jws;
	const char *compact = NULL;
	char	   *result;

	json_object_set_new(hdr, "alg", json_string(alg));
	if (kid != NULL)
		json_object_set_new(hdr, "kid", json_string(kid));
	json_object_set_new(hdr, "typ", json_string(typ));

	if (key->okp)
		return sign_ed25519(key->okp, json_dumps(hdr, JSON_COMPACT),
							payload, payload_len);

	jws = cjose_jws_sign(key->cjose, hdr, (const uint8_t *) payload,
						 payload_len, &err);
	if (jws == NULL || !cjose_jws_export(jws, &compact, &err))
		elog(ERROR, "JWS signing failed: %s", err.message);
	result = pstrdup(compact);
	cjose_jws_release(jws);
	return result;
}

