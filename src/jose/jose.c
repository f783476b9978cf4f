/*-------------------------------------------------------------------------
 *
 * jose.c
 *	  JOSE for setstream: splitting and decoding JWS compact serializations,
 *	  checking and importing JWKs, RFC 7638 thumbprints, verifying and
 *	  signing, and generating signing keys.
 *
 *	  cjose does RSA, EC and HMAC; it has no EdDSA, so Ed25519 goes through
 *	  OpenSSL's EVP directly.  Both cjose and jansson allocate with palloc
 *	  (jose_init_allocators), so that an error raised anywhere leaks
 *	  nothing: memory goes with the memory context.  OpenSSL itself keeps
 *	  malloc.  Parsed keys are cached
 *	  per backend, addressed by the SHA-256 of their JWK text, in a context
 *	  of their own.
 *
 *	  Nothing in this file raises an SQL error for bad peer input: checks
 *	  return false and describe the problem, and the caller decides.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "jose/jose.h"

#include <string.h>

#include <cjose/cjose.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "codec/jsonread.h"
#include "lib/stringinfo.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

struct JoseKey
{
	char		kty[4];			/* RSA, EC, OKP, oct */
	char		crv[8];			/* EC and OKP */
	int			bits;			/* oct: secret length; RSA: modulus size */
	cjose_jwk_t *cjose;			/* RSA, EC, oct */
	EVP_PKEY   *okp;			/* Ed25519 */
	EVP_PKEY   *pkey;			/* public RSA and EC keys: verified with EVP */
	EVP_MD_CTX *verify_tmpl;	/* pkey initialised for verify_alg, copied */
	char		verify_alg[8];
};

typedef struct KeyCacheEntry
{
	uint8		digest[SHA256_DIGEST_LENGTH];	/* hash key: SHA-256 of JWK */
	JoseKey    *key;			/* NULL when the JWK could not be imported */
} KeyCacheEntry;

#define KEY_CACHE_MAX 1024

static HTAB *key_cache = NULL;
static MemoryContext key_cache_cxt = NULL;
static uint64 key_cache_generation = 1;	/* bumped when keys are released */

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
static bool
is_b64url(const char *s, size_t len)
{
	if (len % 4 == 1)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			  (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
	}
	return true;
}

/*
 * Decode strict base64url (no padding); NUL-terminated, or NULL if invalid.
 * OpenSSL's table-driven base64 decoder, on a copy in the standard
 * alphabet with its padding (cjose's decoder costs several times more).
 */
static char *
b64url_decode(const char *s, size_t len, size_t *outlen)
{
	size_t		padded = (len + 3) / 4 * 4;
	char	   *std;
	char	   *result;
	int			n;

	if (!is_b64url(s, len) || len % 4 == 1 || len > INT_MAX / 2)
		return NULL;
	if (len == 0)
	{
		*outlen = 0;
		return palloc0(1);
	}
	std = palloc(padded + 1);
	for (size_t i = 0; i < len; i++)
		std[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
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
 * than json_loadb.
 */
json_t *
jose_parse_json_object(const char *text, size_t len, const char *what,
					   SetFailure *f)
{
	const char *error;
	json_t	   *j = jsonread_load(text, len, &error);

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

	parts->header_text = b64url_decode(compact, hlen, &hlen);
	if (parts->header_text == NULL)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"the SET's header is not base64url");
	parts->payload = b64url_decode(dot[0] + 1, plen, &parts->payload_len);
	if (parts->payload == NULL)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"the SET's payload is not base64url");
	parts->header = jose_parse_json_object(parts->header_text, hlen,
										   "the JOSE header", f);
	if (parts->header == NULL)
		return false;
	parts->signing_input_len = dot[1] - compact;
	return true;
}

/* ---------------------------------------------------------------------
 * Algorithms bound to key types
 * ---------------------------------------------------------------------
 */
bool
jose_alg_fits(const char *alg, const char *kty, const char *crv, int keybits)
{
	if (strcmp(kty, "RSA") == 0)
		return strcmp(alg, "RS256") == 0 || strcmp(alg, "RS384") == 0 ||
			strcmp(alg, "RS512") == 0 || strcmp(alg, "PS256") == 0 ||
			strcmp(alg, "PS384") == 0 || strcmp(alg, "PS512") == 0;
	if (strcmp(kty, "EC") == 0 && crv != NULL)
		return (strcmp(alg, "ES256") == 0 && strcmp(crv, "P-256") == 0) ||
			(strcmp(alg, "ES384") == 0 && strcmp(crv, "P-384") == 0) ||
			(strcmp(alg, "ES512") == 0 && strcmp(crv, "P-521") == 0);
	if (strcmp(kty, "OKP") == 0 && crv != NULL)
		return strcmp(crv, "Ed25519") == 0 &&
			(strcmp(alg, "EdDSA") == 0 || strcmp(alg, "Ed25519") == 0);
	if (strcmp(kty, "oct") == 0)
		return (strcmp(alg, "HS256") == 0 && keybits >= 256) ||
			(strcmp(alg, "HS384") == 0 && keybits >= 384) ||
			(strcmp(alg, "HS512") == 0 && keybits >= 512);
	return false;
}

/* ---------------------------------------------------------------------
 * JWK checks and thumbprints
 * ---------------------------------------------------------------------
 */
static const char *
jwk_str(json_t *jwk, const char *name)
{
	json_t	   *v = json_object_get(jwk, name);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* RFC 7638: SHA-256 over the required members in lexicographic order */
char *
jose_thumbprint(json_t *jwk)
{
	static const char *const members[][5] = {
		{"RSA", "e", "kty", "n", NULL},
		{"EC", "crv", "kty", "x", "y"},
		{"OKP", "crv", "kty", "x", NULL},
		{"oct", "k", "kty", NULL, NULL},
	};
	const char *kty = jwk_str(jwk, "kty");
	json_t	   *canon = json_object();
	char	   *text;
	unsigned char digest[SHA256_DIGEST_LENGTH];

	for (int i = 0; kty && i < lengthof(members); i++)
	{
		if (strcmp(members[i][0], kty) != 0)
			continue;
		for (int m = 1; m < 5 && members[i][m]; m++)
		{
			const char *v = jwk_str(jwk, members[i][m]);

			if (v == NULL)
				elog(ERROR, "JWK lacks member \"%s\"", members[i][m]);
			json_object_set_new(canon, members[i][m], json_string(v));
		}
	}
	if (json_object_size(canon) == 0)
		elog(ERROR, "no thumbprint for JWK key type \"%s\"", kty ? kty : "");
	text = json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS);
	SHA256((unsigned char *) text, strlen(text), digest);
	return jose_b64url_encode(digest, sizeof(digest));
}

/* Decoded length of a base64url member, or -1 when absent or invalid */
static ssize_t
b64_member_len(json_t *jwk, const char *name, char **decoded)
{
	const char *v = jwk_str(jwk, name);
	size_t		n;
	char	   *d;

	if (v == NULL)
		return -1;
	d = b64url_decode(v, strlen(v), &n);
	if (d == NULL)
		return -1;
	if (decoded)
		*decoded = d;
	return (ssize_t) n;
}

static bool
check_rsa(json_t *jwk, int *bits, char *err, size_t errlen)
{
	char	   *n,
			   *e;
	ssize_t		nlen = b64_member_len(jwk, "n", &n);
	ssize_t		elen = b64_member_len(jwk, "e", &e);
	BIGNUM	   *bn;

	if (nlen <= 0 || elen <= 0)
	{
		snprintf(err, errlen, "an RSA key needs base64url members \"n\" and \"e\"");
		return false;
	}
	bn = BN_bin2bn((unsigned char *) n, nlen, NULL);
	*bits = BN_num_bits(bn);
	BN_free(bn);
	if (*bits < 2048)
	{
		snprintf(err, errlen, "RSA key of %d bits is too weak; at least 2048 bits are required", *bits);
		return false;
	}
	if (*bits > 16384)
	{
		snprintf(err, errlen, "RSA key of %d bits is larger than 16384 bits", *bits);
		return false;
	}
	if (elen > 8 || (e[elen - 1] & 1) == 0 || (elen == 1 && (unsigned char) e[0] < 3))
	{
		snprintf(err, errlen, "RSA public exponent is not valid");
		return false;
	}
	return true;
}

static bool
check_ec(json_t *jwk, char *err, size_t errlen)
{
	const char *crv = jwk_str(jwk, "crv");
	ssize_t		want;

	if (crv == NULL)
	{
		snprintf(err, errlen, "an EC key needs a member \"crv\"");
		return false;
	}
	if (strcmp(crv, "P-256") == 0)
		want = 32;
	else if (strcmp(crv, "P-384") == 0)
		want = 48;
	else if (strcmp(crv, "P-521") == 0)
		want = 66;
	else
	{
		snprintf(err, errlen, "EC curve \"%.32s\" is not supported (use P-256, P-384 or P-521)", crv);
		return false;
	}
	if (b64_member_len(jwk, "x", NULL) != want || b64_member_len(jwk, "y", NULL) != want)
	{
		snprintf(err, errlen, "EC key coordinates \"x\" and \"y\" must be %zd bytes of base64url for %s", want, crv);
		return false;
	}
	return true;
}

static bool
check_okp(json_t *jwk, char *err, size_t errlen)
{
	const char *crv = jwk_str(jwk, "crv");

	if (crv == NULL || strcmp(crv, "Ed25519") != 0)
	{
		snprintf(err, errlen, "OKP curve \"%.32s\" is not supported (use Ed25519)", crv ? crv : "");
		return false;
	}
	if (b64_member_len(jwk, "x", NULL) != 32)
	{
		snprintf(err, errlen, "an Ed25519 key needs a 32-byte base64url member \"x\"");
		return false;
	}
	return true;
}

static bool
check_oct(json_t *jwk, int *bits, char *err, size_t errlen)
{
	ssize_t		klen = b64_member_len(jwk, "k", NULL);

	if (klen < 0)
	{
		snprintf(err, errlen, "an oct key needs a base64url member \"k\"");
		return false;
	}
	if (klen < 32)
	{
		snprintf(err, errlen, "oct key of %zd bytes is too weak; HMAC keys need at least 32 bytes", klen);
		return false;
	}
	*bits = (int) klen * 8;
	return true;
}

/*
 * Check a JWK offered as a peer's verification key: a public key (or an
 * oct secret), of a supported type, strong enough, whose "alg" (if any)
 * fits its type.  On success *kty and *alg (NULL when absent) are set and
 * *secret tells whether the JWK is a shared secret.
 */
bool
jose_check_public_jwk(json_t *jwk, char **kty_out, char **alg_out,
					  bool *secret, char *err, size_t errlen)
{
	static const char *const private_members[] = {"d", "p", "q", "dp", "dq", "qi", "oth"};
	const char *kty = jwk_str(jwk, "kty");
	const char *alg = jwk_str(jwk, "alg");
	json_t	   *use = json_object_get(jwk, "use");
	json_t	   *kid = json_object_get(jwk, "kid");
	int			bits = 0;
	bool		ok;

	if (!json_is_object(jwk) || kty == NULL)
	{
		snprintf(err, errlen, "a JWK must be a JSON object with a string member \"kty\"");
		return false;
	}
	if (json_object_get(jwk, "alg") && alg == NULL)
	{
		snprintf(err, errlen, "JWK member \"alg\" must be a string");
		return false;
	}
	if (use && (!json_is_string(use) || strcmp(json_string_value(use), "sig") != 0))
	{
		snprintf(err, errlen, "JWK member \"use\" must be \"sig\" for a SET verification key");
		return false;
	}
	if (kid && (!json_is_string(kid) || json_string_length(kid) == 0 ||
				json_string_length(kid) > 255))
	{
		snprintf(err, errlen, "JWK member \"kid\" must be a string of 1 to 255 characters");
		return false;
	}
	*secret = strcmp(kty, "oct") == 0;
	for (int i = 0; !*secret && i < lengthof(private_members); i++)
	{
		if (json_object_get(jwk, private_members[i]))
		{
			snprintf(err, errlen, "the JWK holds private key material (member \"%s\"); register the public key only", private_members[i]);
			return false;
		}
	}

	if (strcmp(kty, "RSA") == 0)
		ok = check_rsa(jwk, &bits, err, errlen);
	else if (strcmp(kty, "EC") == 0)
		ok = check_ec(jwk, err, errlen);
	else if (strcmp(kty, "OKP") == 0)
		ok = check_okp(jwk, err, errlen);
	else if (strcmp(kty, "oct") == 0)
		ok = check_oct(jwk, &bits, err, errlen);
	else
	{
		snprintf(err, errlen, "JWK key type \"%.32s\" is not supported (use RSA, EC, OKP or oct)", kty);
		return false;
	}
	if (!ok)
		return false;
	if (alg && !jose_alg_fits(alg, kty, jwk_str(jwk, "crv"), bits))
	{
		snprintf(err, errlen, "algorithm \"%.32s\" does not fit this %s key", alg, kty);
		return false;
	}
	*kty_out = pstrdup(kty);
	*alg_out = alg ? pstrdup(alg) : NULL;
	return true;
}

/* ---------------------------------------------------------------------
 * Key import and the per-backend cache
 * ---------------------------------------------------------------------
 */
static EVP_PKEY *
import_ed25519(json_t *jwk)
{
	char	   *x = NULL,
			   *d = NULL;
	ssize_t		dlen = b64_member_len(jwk, "d", &d);

	if (dlen == 32)
		return EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL,
											(unsigned char *) d, 32);
	if (b64_member_len(jwk, "x", &x) == 32)
		return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL,
										   (unsigned char *) x, 32);
	return NULL;
}

/* A big-number JWK member (base64url) into a parameter builder */
static bool
push_bn(OSSL_PARAM_BLD *bld, json_t *jwk, const char *member, const char *param,
		BIGNUM **bn)
{
	char	   *raw = NULL;
	ssize_t		len = b64_member_len(jwk, member, &raw);

	if (len <= 0)
		return false;
	*bn = BN_bin2bn((unsigned char *) raw, (int) len, NULL);
	return *bn != NULL && OSSL_PARAM_BLD_push_BN(bld, param, *bn) == 1;
}

/* EC point 0x04 || x || y, each left-padded to the curve's width */
static bool
push_ec_point(OSSL_PARAM_BLD *bld, json_t *jwk, int width, unsigned char **point)
{
	char	   *x = NULL,
			   *y = NULL;

	if (b64_member_len(jwk, "x", &x) != width || b64_member_len(jwk, "y", &y) != width)
		return false;
	*point = palloc(2 * width + 1);
	(*point)[0] = 0x04;
	memcpy(*point + 1, x, width);
	memcpy(*point + 1 + width, y, width);
	return OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
											*point, 2 * width + 1) == 1;
}

/*
 * An EVP_PKEY for a public RSA or EC JWK, to verify with EVP directly;
 * NULL for anything else (cjose then verifies).  The JWK was checked
 * (jose_check_public_jwk) when it was added.
 */
static EVP_PKEY *
import_public_evp(json_t *jwk, const char *kty, const char *crv)
{
	OSSL_PARAM_BLD *bld;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY   *pkey = NULL;
	BIGNUM	   *n = NULL,
			   *e = NULL;
	unsigned char *point = NULL;
	const char *type;
	bool		ok;

	if (json_object_get(jwk, "d") != NULL)
		return NULL;
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL)
		return NULL;
	if (strcmp(kty, "RSA") == 0)
	{
		type = "RSA";
		ok = push_bn(bld, jwk, "n", OSSL_PKEY_PARAM_RSA_N, &n) &&
			push_bn(bld, jwk, "e", OSSL_PKEY_PARAM_RSA_E, &e);
	}
	else if (strcmp(kty, "EC") == 0 && crv != NULL)
	{
		const char *group = strcmp(crv, "P-256") == 0 ? "prime256v1" :
			strcmp(crv, "P-384") == 0 ? "secp384r1" :
			strcmp(crv, "P-521") == 0 ? "secp521r1" : NULL;
		int			width = strcmp(crv, "P-256") == 0 ? 32 :
			strcmp(crv, "P-384") == 0 ? 48 : 66;

		type = "EC";
		ok = group != NULL &&
			OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
											group, 0) == 1 &&
			push_ec_point(bld, jwk, width, &point);
	}
	else
		ok = false;
	if (ok)
		params = OSSL_PARAM_BLD_to_param(bld);
	if (params != NULL)
		ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
		EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	return pkey;
}

static JoseKey *
import_key(const char *jwk_text)
{
	SetFailure	f;
	json_t	   *jwk = jose_parse_json_object(jwk_text, strlen(jwk_text), "JWK", &f);
	const char *kty = jwk ? jwk_str(jwk, "kty") : NULL;
	const char *crv;
	JoseKey    *key;
	cjose_err	err;

	if (kty == NULL)
		return NULL;
	key = palloc0(sizeof(JoseKey));
	strlcpy(key->kty, kty, sizeof(key->kty));
	crv = jwk_str(jwk, "crv");
	if (crv)
		strlcpy(key->crv, crv, sizeof(key->crv));

	if (strcmp(kty, "OKP") == 0)
	{
		key->okp = import_ed25519(jwk);
		return key->okp ? key : NULL;
	}
	/* cjose refuses EC points off their curve (OpenSSL checks the key) */
	key->cjose = cjose_jwk_import(jwk_text, strlen(jwk_text), &err);
	if (key->cjose == NULL)
		return NULL;
	if (strcmp(kty, "oct") == 0)
		key->bits = (int) b64_member_len(jwk, "k", NULL) * 8;
	else
	{
		key->bits = (int) cjose_jwk_get_keysize(key->cjose, &err);
		key->pkey = import_public_evp(jwk, kty, crv);
	}
	return key;
}

static void
release_key(JoseKey *key)
{
	if (key == NULL)
		return;
	if (key->cjose)
		cjose_jwk_release(key->cjose);
	if (key->okp)
		EVP_PKEY_free(key->okp);
	if (key->verify_tmpl)
		EVP_MD_CTX_free(key->verify_tmpl);
	if (key->pkey)
		EVP_PKEY_free(key->pkey);
}

static void
key_cache_reset(void)
{
	HASH_SEQ_STATUS status;
	KeyCacheEntry *entry;

	if (key_cache != NULL)
	{
		hash_seq_init(&status, key_cache);
		while ((entry = hash_seq_search(&status)) != NULL)
			release_key(entry->key);
	}
	key_cache_generation++;
	if (key_cache_cxt != NULL)
		MemoryContextReset(key_cache_cxt);
	else
		key_cache_cxt = AllocSetContextCreate(TopMemoryContext,
											  "setstream key cache",
											  ALLOCSET_DEFAULT_SIZES);
	{
		HASHCTL		ctl;

		ctl.keysize = SHA256_DIGEST_LENGTH;
		ctl.entrysize = sizeof(KeyCacheEntry);
		ctl.hcxt = key_cache_cxt;
		key_cache = hash_create("setstream keys", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
}

/*
 * The parsed key for a JWK text (public, private or secret), or NULL when
 * it cannot be imported.  Keys are cached for the life of the backend.
 */
JoseKey *
jose_key_get(const char *jwk_text)
{
	uint8		digest[SHA256_DIGEST_LENGTH];
	KeyCacheEntry *entry;
	bool		found;

	if (key_cache == NULL || hash_get_num_entries(key_cache) >= KEY_CACHE_MAX)
		key_cache_reset();
	SHA256((const unsigned char *) jwk_text, strlen(jwk_text), digest);
	entry = hash_search(key_cache, digest, HASH_ENTER, &found);
	if (!found)
	{
		MemoryContext old = MemoryContextSwitchTo(key_cache_cxt);

		entry->key = NULL;
		PG_TRY();
		{
			entry->key = import_key(jwk_text);
		}
		PG_CATCH();
		{
			hash_search(key_cache, digest, HASH_REMOVE, NULL);
			PG_RE_THROW();
		}
		PG_END_TRY();
		MemoryContextSwitchTo(old);
	}
	return entry->key;
}

/*
 * jose_key_get() through a pointer kept by the caller (*cached, with the
 * cache generation it was taken in): no hashing of the JWK text while the
 * cache keeps its keys.
 */
JoseKey *
jose_key_get_cached(const char *jwk_text, JoseKey **cached, uint64 *generation)
{
	if (*cached == NULL || *generation != key_cache_generation)
	{
		*cached = jose_key_get(jwk_text);
		*generation = key_cache_generation;
	}
	return *cached;
}

int
jose_key_bits(const JoseKey *key)
{
	return key->bits;
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

	return b64url_decode(sig64, len - (sig64 - compact), siglen);
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

	sig = b64url_decode(sig64, len - (sig64 - compact), &siglen);
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
	json_t	   *hdr = json_object();
	cjose_err	err;
	cjose_jws_t *jws;
	const char *compact = NULL;
	char	   *result;

	json_object_set_new(hdr, "alg", json_string(alg));
	json_object_set_new(hdr, "kid", json_string(kid));
	json_object_set_new(hdr, "typ", json_string("secevent+jwt"));

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

/* ---------------------------------------------------------------------
 * Key generation
 * ---------------------------------------------------------------------
 */
static json_t *
generate_ed25519(void)
{
	EVP_PKEY   *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	unsigned char pub[32],
				priv[32];
	size_t		publen = 32,
				privlen = 32;
	json_t	   *jwk;

	if (pkey == NULL ||
		EVP_PKEY_get_raw_public_key(pkey, pub, &publen) != 1 ||
		EVP_PKEY_get_raw_private_key(pkey, priv, &privlen) != 1)
	{
		EVP_PKEY_free(pkey);
		return NULL;
	}
	EVP_PKEY_free(pkey);
	jwk = json_object();
	json_object_set_new(jwk, "kty", json_string("OKP"));
	json_object_set_new(jwk, "crv", json_string("Ed25519"));
	json_object_set_new(jwk, "x", json_string(jose_b64url_encode(pub, publen)));
	json_object_set_new(jwk, "d", json_string(jose_b64url_encode(priv, privlen)));
	OPENSSL_cleanse(priv, sizeof(priv));
	return jwk;
}

/* A big-number parameter of a key as base64url, left-padded to "width" */
static bool
set_bn_member(json_t *jwk, EVP_PKEY *pkey, const char *param,
			  const char *member, int width)
{
	BIGNUM	   *bn = NULL;
	int			len;
	unsigned char *buf;

	if (EVP_PKEY_get_bn_param(pkey, param, &bn) != 1)
		return false;
	len = width > 0 ? width : BN_num_bytes(bn);
	buf = palloc(len > 0 ? len : 1);
	if (BN_bn2binpad(bn, buf, len) != len)
	{
		BN_clear_free(bn);
		return false;
	}
	BN_clear_free(bn);
	json_object_set_new(jwk, member, json_string(jose_b64url_encode(buf, len)));
	explicit_bzero(buf, len);
	return true;
}

static json_t *
generate_ec(const char *curve, const char *crv, int width)
{
	EVP_PKEY   *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
	json_t	   *jwk = json_object();
	bool		ok;

	json_object_set_new(jwk, "kty", json_string("EC"));
	json_object_set_new(jwk, "crv", json_string(crv));
	ok = pkey != NULL &&
		set_bn_member(jwk, pkey, OSSL_PKEY_PARAM_EC_PUB_X, "x", width) &&
		set_bn_member(jwk, pkey, OSSL_PKEY_PARAM_EC_PUB_Y, "y", width) &&
		set_bn_member(jwk, pkey, OSSL_PKEY_PARAM_PRIV_KEY, "d", width);
	EVP_PKEY_free(pkey);
	return ok ? jwk : NULL;
}

static json_t *
generate_rsa(unsigned int bits)
{
	EVP_PKEY   *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) bits);
	json_t	   *jwk = json_object();
	bool		ok;

	json_object_set_new(jwk, "kty", json_string("RSA"));
	ok = pkey != NULL &&
		set_bn_member(jwk, pkey, OSSL_PKEY_PARAM_RSA_N, "n", 0) &&
		set_bn_member(jwk, pkey, OSSL_PKEY_PARAM_RSA_E, "e", 0) &&
		set_bn_member(jwk, pkey, OSSL_PKEY_PARAM_RSA_D, "d", 0) &&
		set_bn_member(jwk, pkey, OSSL_PKEY_PARAM_RSA_FACTOR1, "p", 0) &&
		set_bn_member(jwk, pkey, OSSL_PKEY_PARAM_RSA_FACTOR2, "q", 0) &&
		set_bn_member(jwk, pkey, OSSL_PKEY_PARAM_RSA_EXPONENT1, "dp", 0) &&
		set_bn_member(jwk, pkey, OSSL_PKEY_PARAM_RSA_EXPONENT2, "dq", 0) &&
		set_bn_member(jwk, pkey, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, "qi", 0);
	EVP_PKEY_free(pkey);
	return ok ? jwk : NULL;
}

/*
 * Generate a signing key for alg.  Returns the public JWK (with kid, alg,
 * use) and the private JWK (with kid, alg) as JSON text.
 */
bool
jose_generate(const char *alg, char **public_json, char **private_json,
			  char *err, size_t errlen)
{
	static const char *const private_members[] = {"d", "p", "q", "dp", "dq", "qi"};
	json_t	   *priv;
	json_t	   *pub;
	char	   *kid;

	if (strcmp(alg, "ES256") == 0)
		priv = generate_ec("P-256", "P-256", 32);
	else if (strcmp(alg, "ES384") == 0)
		priv = generate_ec("P-384", "P-384", 48);
	else if (strcmp(alg, "ES512") == 0)
		priv = generate_ec("P-521", "P-521", 66);
	else if (strcmp(alg, "RS256") == 0 || strcmp(alg, "PS256") == 0)
		priv = generate_rsa(2048);
	else if (strcmp(alg, "RS384") == 0 || strcmp(alg, "PS384") == 0)
		priv = generate_rsa(3072);
	else if (strcmp(alg, "RS512") == 0 || strcmp(alg, "PS512") == 0)
		priv = generate_rsa(4096);
	else if (strcmp(alg, "EdDSA") == 0)
		priv = generate_ed25519();
	else
	{
		snprintf(err, errlen, "cannot generate a key for algorithm \"%.32s\"", alg);
		return false;
	}
	if (priv == NULL)
	{
		snprintf(err, errlen, "key generation for %s failed", alg);
		return false;
	}

	pub = json_deep_copy(priv);
	for (int i = 0; i < lengthof(private_members); i++)
		json_object_del(pub, private_members[i]);
	json_object_del(pub, "kid");
	kid = jose_thumbprint(pub);
	json_object_set_new(pub, "kid", json_string(kid));
	json_object_set_new(pub, "alg", json_string(alg));
	json_object_set_new(pub, "use", json_string("sig"));
	json_object_set_new(priv, "kid", json_string(kid));
	json_object_set_new(priv, "alg", json_string(alg));

	*public_json = json_dumps(pub, JSON_COMPACT);
	*private_json = json_dumps(priv, JSON_COMPACT);
	return true;
}
