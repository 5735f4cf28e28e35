#!/usr/bin/python3
"""Seeds of fuzz_vault_answer and fuzz_cfssl_answer: the answers Vault and cfssl give, as
tests/upstreams/vault_api_server.py and `cfssl serve` shape them, built on the certificates of pki/.

    tests/fuzz/answer_seeds.py        (writes corpus/fuzz_{vault,cfssl}_answer/seed-*)
"""
import base64
import json
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
PKI = HERE / "pki"


def pem(name):
    return (PKI / name).read_text()


def der_crl():
    return subprocess.run(["openssl", "crl", "-in", PKI / "ca.crl", "-outform", "DER"], check=True,
                          stdout=subprocess.PIPE).stdout


def envelope(data=None, warnings=None, auth=None):
    return {"request_id": "1d2c", "lease_id": "", "renewable": False, "lease_duration": 0, "data": data,
            "wrap_info": None, "warnings": warnings, "auth": auth}


VAULT = {
    "login": envelope(auth={"client_token": "hvs.CAESIfuzz", "lease_duration": 3600, "renewable": True}),
    "sign": envelope({"certificate": pem("client.pem"), "issuing_ca": pem("ca.pem"), "ca_chain": [pem("ca.pem")],
                      "serial_number": "1f:2e:3d", "expiration": 1893456000}, ["a warning"]),
    "sign-warnings-only": envelope(None, ["the certificate was not returned"]),
    "revoke": envelope({"revocation_time": 1764000000, "revocation_time_rfc3339": "2025-11-24T16:00:00Z",
                        "state": "revoked"}),
    "cert": envelope({"certificate": pem("client.pem"), "revocation_time": 0, "issuer_id": "ab12"}),
    "role": envelope({"allowed_domains": ["example.com"], "allow_subdomains": True, "allow_ip_sans": True,
                      "key_type": "ec", "key_bits": 256, "max_ttl": "86400", "key_usage": ["DigitalSignature"],
                      "ext_key_usage": ["ClientAuth"], "ext_key_usage_oids": [], "server_flag": False,
                      "client_flag": True}),
    "error": {"errors": ["permission denied", "1 error occurred:\n\t* role not found\n\n"]},
    # Vault's own refusals (gw_vault_own_refusal): one key, one message
    "error-sealed": {"errors": ["Vault is sealed"]},
    "error-denied": {"errors": ["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]},
    "error-quota": {"errors": ['request path "pki/sign/web": rate limit quota exceeded']},
    # the token fuzz_vault_answer masks ("root"): as a word, at either end of a string, before an escaped
    # line feed, in strings nested in arrays and objects; and inside a word or a run of base64 (not masked)
    "error-token": {"errors": ["root", "token root denied", "rootx", "/root+", "a.root", "root\n"],
                    "data": {"a": ["root", {"b": "x root"}], "n": 1}},
    "sign-token": envelope({"certificate": "root", "serial_number": "root", "expiration": 0},
                           ["root: a warning", "xrootx"]),
    "revoke-token": envelope({"revocation_time": 0, "state": "root"}, ["root"]),
    # every member the role parser reads, in each form it takes
    "role-all": envelope({"allowed_domains": "example.com,*.example.org", "allow_subdomains": False,
                          "allow_bare_domains": True, "allow_glob_domains": True, "allow_any_name": False,
                          "allow_localhost": False, "allow_ip_sans": False,
                          "allow_wildcard_certificates": False, "allowed_uri_sans": ["urn:x:*"],
                          "allowed_uri_sans_template": False, "allowed_serial_numbers": ["1*"],
                          "allowed_user_ids": [], "enforce_hostnames": True,
                          "cn_validations": ["email", "hostname"], "use_csr_common_name": False,
                          "require_cn": False, "key_type": "rsa", "key_bits": 2048, "max_ttl": 3600,
                          "key_usage": "DigitalSignature,KeyEncipherment", "ext_key_usage": ["ServerAuth", "Any"],
                          "ext_key_usage_oids": ["1.3.6.1.5.5.7.3.9"], "server_flag": True,
                          "client_flag": False, "code_signing_flag": True, "email_protection_flag": True,
                          "issuer_ref": "default", "serial_number_source": "json"}),
}

CFSSL = {
    "sign": {"success": True, "result": {"certificate": pem("client.pem")}, "errors": [], "messages": []},
    "info": {"success": True, "result": {"certificate": pem("ca.pem"), "usages": ["signing"],
                                         "expiry": "8760h"}, "errors": [], "messages": []},
    "crl": {"success": True, "result": base64.b64encode(der_crl()).decode(), "errors": [], "messages": []},
    "error": {"success": False, "result": None, "errors": [{"code": 5300, "message": "Policy violation"}],
              "messages": []},
    "revoke": {"success": True, "result": {}, "errors": [], "messages": []},
}

if __name__ == "__main__":  # cap_seeds.py builds on these answers
    for target, seeds in (("fuzz_vault_answer", VAULT), ("fuzz_cfssl_answer", CFSSL)):
        d = HERE / "corpus" / target
        d.mkdir(parents=True, exist_ok=True)
        for name, body in seeds.items():
            (d / ("seed-%s.json" % name)).write_text(json.dumps(body))
