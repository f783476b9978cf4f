"""GET /.well-known/ssf-configuration: the transmitter's metadata."""

import pytest

from listener_support import URL, assert_error

ENDPOINTS = ("jwks_uri", "configuration_endpoint", "status_endpoint",
             "add_subject_endpoint", "remove_subject_endpoint", "verification_endpoint")


def no_empty_arrays(value):
    if isinstance(value, list):
        return len(value) > 0 and all(no_empty_arrays(v) for v in value)
    if isinstance(value, dict):
        return all(no_empty_arrays(v) for v in value.values())
    return True


def test_metadata(client, transmitter):
    r = client.get("/.well-known/ssf-configuration")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    doc = r.json()
    assert doc["spec_version"] == "1_0"
    assert doc["issuer"] == URL
    assert doc["jwks_uri"] == URL + "/jwks.json"
    assert doc["configuration_endpoint"] == URL + "/ssf/streams"
    assert doc["status_endpoint"] == URL + "/ssf/status"
    assert doc["add_subject_endpoint"] == URL + "/ssf/subjects:add"
    assert doc["remove_subject_endpoint"] == URL + "/ssf/subjects:remove"
    assert doc["verification_endpoint"] == URL + "/ssf/verify"
    assert doc["delivery_methods_supported"] == [
        "urn:ietf:rfc:8935", "urn:ietf:rfc:8936", "urn:setstream:delivery:pushpull"]
    assert doc["authorization_schemes"] == [{"spec_urn": "urn:ietf:rfc:6749"}]
    assert doc["default_subjects"] in ("ALL", "NONE")
    assert no_empty_arrays(doc)
    # no authentication needed; the jwks_uri it names answers
    assert client.get("/jwks.json").status_code == 200


def test_issuer_with_a_path_is_served_at_the_path_inserted_form(client, gucs):
    gucs.set(public_url=URL, issuer=URL + "/tenant/a")
    r = client.get("/.well-known/ssf-configuration/tenant/a")
    assert r.status_code == 200, r.text
    assert r.json()["issuer"] == URL + "/tenant/a"
    assert r.json()["status_endpoint"] == URL + "/ssf/status"
    # another suffix is no document
    assert_error(client.get("/.well-known/ssf-configuration/tenant/b"), 404)
    assert_error(client.get("/.well-known/ssf-configuration/tenant"), 404)


def test_issuer_defaults_to_the_public_url(client, gucs):
    gucs.set(public_url=URL + "/", issuer="")
    assert client.get("/.well-known/ssf-configuration").json()["issuer"] == URL


def test_not_a_transmitter_without_public_url(client, gucs):
    gucs.set(public_url="", issuer="")
    body = assert_error(client.get("/.well-known/ssf-configuration"), 404)
    assert "setstream.public_url" in body["description"]


def test_only_get(client, transmitter):
    r = client.post("/.well-known/ssf-configuration", "{}", content_type="application/json")
    assert_error(r, 405)
    assert r.headers["Allow"] == "GET"


@pytest.mark.parametrize("name, value", [
    ("public_url", "http://db.example.com/"),
    ("public_url", "ftp://127.0.0.1/"),
    ("public_url", "https://"),
    ("public_url", "https://a.example/?x=1"),
    ("public_url", "http://127.0.0.1.evil.example/"),
    ("public_url", "http://localhostx/"),
    ("issuer", "http://10.0.0.1"),
    ("issuer", "https://a.example#f"),
])
def test_urls_are_https_or_loopback(db, name, value):
    """ALTER SYSTEM checks the value as a reload would (the check hook)"""
    import psycopg2
    with pytest.raises(psycopg2.Error) as e:
        db.execute("ALTER SYSTEM SET setstream.%s = %%s" % name, (value,))
    assert e.value.pgcode == "22023", e.value
    assert db.rows("SELECT 1 FROM pg_file_settings WHERE name = %s AND setting = %s",
                   ("setstream." + name, value)) == []


@pytest.mark.parametrize("value", ["https://db.example.com/", "http://127.0.0.1:8417",
                                   "http://localhost/", "http://[::1]:99/x"])
def test_good_urls(gucs, client, value):
    gucs.set(public_url=value, issuer="")
    doc = client.get("/.well-known/ssf-configuration").json()
    assert doc["status_endpoint"] == value.rstrip("/") + "/ssf/status"
