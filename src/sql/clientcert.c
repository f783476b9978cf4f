/*-------------------------------------------------------------------------
 *
 * clientcert.c
 *	  Client certificates bound to a stream (mTLS): bind_client_cert()
 *	  parses a PEM certificate and stores the SHA-256 fingerprint of its
 *	  DER encoding in setstream.client_certs; the listener compares the
 *	  fingerprint of the verified certificate of a connection with those of
 *	  the stream, in constant time (base/digest.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "base/pg_builtins.h"
#include "setstream.h"

#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "base/digest.h"
#include "sql/privileges.h"
#include "store/store.h"

PG_FUNCTION_INFO_V1(setstream_bind_client_cert);

static void
invalid_cert(const char *detail)
{
	ERR_clear_error();
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid client certificate"),
			 errdetail("%s", detail),
			 errhint("Pass one X.509 certificate in PEM (\"-----BEGIN CERTIFICATE-----\").")));
}

/* Exactly one PEM certificate, nothing else (never a private key) */
static X509 *
parse_one_pem_cert(const char *pem, size_t len)
{
	BIO		   *bio;
	X509	   *cert;
	X509	   *extra;

	if (strstr(pem, "PRIVATE KEY") != NULL)
		invalid_cert("The text holds a private key; bind the certificate only.");
	bio = BIO_new_mem_buf(pem, (int) Min(len, INT_MAX));
	if (bio == NULL)
		elog(ERROR, "out of memory in BIO_new_mem_buf");
	cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (cert == NULL)
	{
		BIO_free(bio);
		invalid_cert("The text is not a PEM X.509 certificate.");
	}
	extra = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (extra != NULL)
	{
		X509_free(extra);
		X509_free(cert);
		invalid_cert("The text holds more than one certificate; bind each one by itself.");
	}
	ERR_clear_error();
	return cert;
}

/* The subject in RFC 2253 form (palloc'd) */
static char *
cert_subject(X509 *cert)
{
	BIO		   *bio = BIO_new(BIO_s_mem());
	char	   *data;
	long		n;
	char	   *subject;

	if (bio == NULL)
		elog(ERROR, "out of memory in BIO_new");
	X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
	n = BIO_get_mem_data(bio, &data);
	subject = pnstrdup(data, n);
	BIO_free(bio);
	return subject;
}

/* notAfter as a timestamptz; false when it cannot be read */
static bool
cert_not_after(X509 *cert, TimestampTz *out)
{
	struct tm	tm;

	if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1)
		return false;
	*out = time_t_to_timestamptz(timegm(&tm));
	return true;
}

static char *
hex_fingerprint(const uint8 *sha256)
{
	char	   *hex = palloc(65);

	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", sha256[i]);
	return hex;
}

/*
 * bind_client_cert(stream, cert): a client presenting this certificate
 * (verified against setstream.tls_ca_file) may use the stream when its
 * client_auth asks for a certificate.  Returns the fingerprint in hex.
 */
Datum
setstream_bind_client_cert(PG_FUNCTION_ARGS)
{
	char	   *stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	text	   *pem = PG_GETARG_TEXT_PP(1);
	char	   *pem_str = text_to_cstring(pem);
	X509	   *cert;
	uint8		sha256[32];
	char	   *subject;
	TimestampTz not_after = 0;
	bool		ok;

	privileges_require(stream, "manage");
	store_get_stream(stream);
	cert = parse_one_pem_cert(pem_str, strlen(pem_str));
	ok = digest_cert(cert, sha256) && cert_not_after(cert, &not_after);
	subject = ok ? cert_subject(cert) : NULL;
	X509_free(cert);
	if (!ok)
		invalid_cert("The certificate could not be read.");
	if (not_after < GetCurrentTimestamp())
		invalid_cert("The certificate has expired.");
	if (!store_insert_client_cert(stream, sha256, subject, not_after))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("client certificate %s is already bound to stream \"%s\"",
						hex_fingerprint(sha256), stream)));
	PG_RETURN_TEXT_P(cstring_to_text(hex_fingerprint(sha256)));
}
