/*-------------------------------------------------------------------------
 *
 * jwk.c
 *	  JWK (RFC 7517) for setstream: checking a peer's public key, binding
 *	  algorithms to key types, RFC 7638 thumbprints, importing keys (cjose
 *	  for RSA, EC and oct; public RSA and EC keys also into OpenSSL's EVP,
 *	  which verifies; Ed25519, which cjose lacks, into EVP alone), and
 *	  generating signing keys.
 *
 *	  Imported keys are cached per backend, addressed by the SHA-256 of
 *	  their JWK text, in a context of their own.
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
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "jose/jose.h"
#include "jose/jose_int.h"

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
	d = jose_b64url_decode(v, strlen(v), &n);
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
	json_t	   *jwk = jose_parse_json_object(jwk_text, strlen(jwk_text), "JWK",
											 NULL, &f);
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

