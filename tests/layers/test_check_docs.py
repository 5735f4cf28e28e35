#!/usr/bin/env python3
"""Test check_docs.py: on a copy of the repository it passes, and each way the documentation can
fall behind the code, made in that copy, fails with the message that names what is missing where.

The tree is copied once; each test edits a few of its files, runs the checker in this process
(check_docs.check, which main prints), and puts the files back. Two tests run the command itself.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKER = os.path.join(HERE, "check_docs.py")
sys.path.insert(0, HERE)
import check_docs  # noqa: E402  (beside this file)
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
# What the copy leaves out: build trees, the repository's history, caches.
SKIP = shutil.ignore_patterns(".git", "build", "build-*", "*.o", "__pycache__")


def run(root):
    """(exit code, stdout lines) of the checker command on the tree at root."""
    done = subprocess.run([sys.executable, CHECKER, root], capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout.splitlines()


def check(root):
    """(exit code, lines) as run() gives them, from the checker run in this process."""
    lines = check_docs.check(root)
    return (1 if lines else 0), lines


class CheckDocs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.clean = os.path.join(cls.tmp.name, "clean")
        # the documentation names files anywhere in the tree (deploy/, tests/fuzz/...): copy it all
        shutil.copytree(REPO, cls.clean, ignore=SKIP, symlinks=True)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def setUp(self):
        self.root = self.clean

    def edit(self, path, old, new, count=1):
        """Replaces |old| (a regular expression) with |new| in the copy's |path|, |count| times, until
        the test ends."""
        full = os.path.join(self.root, path)
        with open(full, encoding="utf-8") as f:
            before = f.read()
        text, n = re.subn(old, new, before, count=count, flags=re.M)
        self.assertEqual(n, count, f"{old!r} not found in {path}")
        self.addCleanup(self.write, full, before)
        self.write(full, text)

    @staticmethod
    def write(full, text):
        with open(full, "w", encoding="utf-8") as f:
            f.write(text)

    def expect(self, *patterns, command=False):
        """The checker (the command, or check_docs.check) fails on the copy, and each of |patterns|
        matches one of its lines."""
        code, lines = (run if command else check)(self.root)
        self.assertEqual(code, 1, "\n".join(lines) or "(no output)")
        for p in patterns:
            self.assertTrue(any(re.search(p, line) for line in lines),
                            f"no line matches {p!r} in:\n" + "\n".join(lines))

    def test_the_repository_passes(self):
        self.assertEqual(run(self.clean), (0, []))
        self.assertEqual(check(self.clean), (0, []))

    def test_comment_in_a_code_block_is_no_heading(self):
        self.edit("docs/configuration.md", r"^`tls`:$", "```sh\n# a shell comment\n```\n\n`tls`:")
        self.assertEqual(check(self.root), (0, []))

    def test_key_without_a_row(self):
        self.edit("docs/configuration.md", r"^\| `queue_depth` .*\n", "")
        self.expect(r'^gateway/config\.c:\d+: key "queue_depth" \(top_fields\) has no row in '
                    r'docs/configuration\.md under "Top level"$', command=True)

    def test_key_documented_in_the_wrong_section(self):
        self.edit("docs/configuration.md", r"^\| `timeout` \| duration \| `\"1s\"`",
                  "| `deadline` | duration | `\"1s\"`")
        self.expect(r'^gateway/cmp/conf\.c:\d+: key "timeout" \(state_fields\) has no row .* under "cmp"$',
                    r'^docs/configuration\.md:\d+: key "deadline" under "cmp" is not one the parser takes '
                    r"there$")

    def test_row_of_a_removed_key(self):
        self.edit("mappings/role.c", r'^\s*GW_CONF_OPT\("kur_any_signer".*\n', "")
        self.expect(r'^docs/configuration\.md:\d+: key "kur_any_signer" under "roles" is not one the parser '
                    r"takes there$")

    def test_table_not_mapped(self):
        self.edit("upstream/cfssl.c", r"cfssl_fields", "cfssl_keys", count=2)
        self.expect(r"^upstream/cfssl\.c:\d+: configuration table cfssl_keys is not in SECTIONS",
                    r"^tests/layers/check_docs\.py:1: SECTIONS names upstream/cfssl\.c:cfssl_fields")

    def test_man_page_key_the_parser_does_not_take(self):
        self.edit("docs/man/cmpgw.json.5", r"^\.B kur_any_signer$", ".B kur_any_signers")
        self.expect(r"^docs/man/cmpgw\.json\.5:\d+: key kur_any_signers is not one the parser takes")

    def test_default_the_code_does_not_have(self):
        self.edit("docs/configuration.md", r"^(\| `queue_depth` \| integer \| no \| )256 ", r"\g<1>128 ")
        self.expect(r'^docs/configuration\.md:\d+: key "queue_depth" under "Top level": the default cell says '
                    r'"128", the code \(gateway/config\.c:\d+\) 256$')

    def test_default_changed_in_a_header(self):
        # the default is a macro of base/limits.h, with a comment after its value
        self.edit("base/limits.h", r"^(#define GW_DEFAULT_TXN_TTL) 300 ", r"\1 600 ")
        self.expect(r'^docs/configuration\.md:\d+: key "transaction_ttl" under "cmp": the default cell says '
                    r'"`300`", the code \(gateway/cmp/conf\.c:\d+\) "600s"$')

    def test_default_duration(self):
        self.edit("docs/configuration.md", r'^(\| `timeout` \| duration \| no \| )`"10s"`', r'\1`"10m"`')
        self.expect(r'^docs/configuration\.md:\d+: key "timeout" under "upstreams": the default cell says '
                    r'"`"10m"` \(10000 ms\)", the code \(upstream/conf\.c:\d+\) "10s"$')

    def test_default_enum_and_string(self):
        self.edit("gateway/config.c", r"\.def = GW_CLIENT_AUTH_REQUIRE,", ".def = GW_CLIENT_AUTH_OPTIONAL,")
        self.edit("gateway/config.c", r'\.sdef = "/pki"', '.sdef = "/cmp"')
        self.expect(r'^docs/configuration\.md:\d+: key "client_auth" under "listeners": .* the code '
                    r'\(gateway/config\.c:\d+\) "optional"$',
                    r'^docs/configuration\.md:\d+: key "path_prefix" under "Top level": .* "/cmp"$')

    def test_default_flags(self):
        self.edit("gateway/cmp/conf.c", r" \| GW_AUDIT_URI_SANS\)", ")")
        self.expect(r'^docs/configuration\.md:\d+: key "audit_fields" under "audit": .* the code '
                    r'\(gateway/cmp/conf\.c:\d+\) \["alt_names", "common_name", "ip_sans"\]$')

    def test_default_of_a_key_that_has_none(self):
        self.edit("docs/configuration.md", r"^(\| `ticket_keys_file` \| file \| no \| )none ", r'\1`"tickets.key"` ')
        self.expect(r'^docs/configuration\.md:\d+: key "ticket_keys_file" under "listeners": the default cell '
                    r'says "`"tickets\.key"`", the code \(gateway/config\.c:\d+\) has none$')

    def test_default_no_docs_cell_gives(self):
        # the trust table has no default column: a key of it given a default is not documented
        self.edit("gateway/cmp/conf.c", r"\.def = GW_REVOCATION_UNSET,", ".def = GW_REVOCATION_NONE,")
        self.expect(r'^gateway/cmp/conf\.c:\d+: key "revocation" has a default \("none"\) that no default cell '
                    r"of docs/configuration\.md gives$")

    def test_default_the_check_cannot_work_out(self):
        self.edit("gateway/config.c", r"\.def = GW_DEFAULT_QUEUE_DEPTH\)", ".def = queue_default())")
        self.expect(r'^gateway/config\.c:\d+: the default of key "queue_depth" \(queue_default\(\)\) is no value '
                    r"tests/layers/check_docs\.py can work out: add it to COMPUTED_DEFAULTS$")

    def test_computed_default_of_a_removed_key(self):
        self.edit("upstream/cmp_up.c", r'GW_CONF_OPT\("expected_sender"', 'GW_CONF_OPT("sender"')
        self.expect(r"^tests/layers/check_docs\.py:1: COMPUTED_DEFAULTS names upstream/cmp_up\.c:cmp_fields:"
                    r"expected_sender, which is no key of a configuration table$")

    def test_computed_default_the_code_does_not_set(self):
        self.edit("docs/configuration.md", r'^(\| `key_prefix` \| string \| )`"cmpgw:"`', r'\1`"cmpgw-"`')
        self.expect(r'^docs/configuration\.md:\d+: key "key_prefix" under "cmp": the default cell says '
                    r'"`"cmpgw-"`", which gateway/cmp/conf\.c \(COMPUTED_DEFAULTS\) does not set$')

    def test_man_page_default(self):
        self.edit("docs/man/cmpgw.json.5", r"^\(default 10s\),$", "(default 30s),")
        self.edit("docs/man/cmpgw.json.5", r'^(\.BR transaction_ttl " \()\\\(dq300s', r"\g<1>\\(dq600s")
        self.expect(r'^docs/man/cmpgw\.json\.5:\d+: default 30s of key timeout: the code \(upstream/conf\.c:\d+\) '
                    r'"10s"$',
                    r'^docs/man/cmpgw\.json\.5:\d+: default "600s" of key transaction_ttl: the code '
                    r'\(gateway/cmp/conf\.c:\d+\) "300s"$')

    def test_man_page_default_in_prose(self):
        # said after the key, capitalized, or one each after keys named together ("loop_threads,
        # workers, queue_depth ... (default 2, ...), worker threads (16, ...)"), or "64 by default"
        self.edit("docs/man/cmpgw.json.5", r"^Default \\\(dq/pki\\\(dq:", r"Default \\(dq/cmp\\(dq:")
        self.edit("docs/man/cmpgw.json.5", r"worker threads \(16, ", "worker threads (32, ")
        self.edit("docs/man/cmpgw.json.5", r"\(\\\(dq2160h\\\(dq\);", r"(\\(dq4320h\\(dq);")
        self.edit("docs/man/cmpgw.json.5", r"^bits, 64 by default,", "bits, 56 by default,")
        self.expect(r'^docs/man/cmpgw\.json\.5:\d+: default "/cmp" of key path_prefix: the code '
                    r'\(gateway/config\.c:\d+\) "/pki"$',
                    r"^docs/man/cmpgw\.json\.5:\d+: default 32 of key workers: the code \(gateway/config\.c:\d+\) 16$",
                    r'^docs/man/cmpgw\.json\.5:\d+: default "4320h" of key max_ttl: the code '
                    r'\(mappings/role\.c:\d+\) "7776000s"$',
                    r"^docs/man/cmpgw\.json\.5:\d+: default 56 of key ipv6_prefix: the code "
                    r"\(gateway/config\.c:\d+\) 64$")

    def test_man_page_default_of_the_key_in_its_section(self):
        # the state's timeout is 1s; 10s, an upstream's, is no default of it
        self.edit("docs/man/cmpgw.json.5", r"\\fBtimeout\\fP \(\\\(dq1s\\\(dq\)", r"\\fBtimeout\\fP (\\(dq10s\\(dq)")
        self.expect(r'^docs/man/cmpgw\.json\.5:\d+: default "10s" of key timeout: the code '
                    r'\(gateway/cmp/conf\.c:\d+\) "1s"$')

    def test_man_page_default_of_no_key(self):
        self.edit("docs/man/cmpgw.json.5", r"its cap \(\\\(dq2160h\\\(dq\);",
                  r"its cap (\\(dq2160h\\(dq), renewal (2d);")
        self.edit("docs/man/cmpgw.json.5", r"^at most 1\\~MiB\.$", r"at most 1\\~MiB (default 1048576 bytes).")
        self.expect(r"^docs/man/cmpgw\.json\.5:\d+: default 2d: of which key\? Say it after one key, or one "
                    r"after each of keys named together$",
                    r"^docs/man/cmpgw\.json\.5:\d+: default 1048576: of which key\?")

    def test_metric_without_a_row(self):
        self.edit("docs/operations.md", r"^\| `cmpgw_upstream_up` .*\n", "")
        self.expect(r"^upstream/upstream\.c:\d+: metric cmpgw_upstream_up has no row in the metrics table of "
                    r"docs/operations\.md$")

    def test_metric_label_not_documented(self):
        self.edit("gateway/sweep.c", r'\{"protocol", "timeout", NULL\}',
                  '{"protocol", "timeout", "peer", NULL}')
        self.expect(r"^docs/operations\.md:\d+: metric cmpgw_slow_connections_ended_total: label `peer` "
                    r"\(gateway/sweep\.c:\d+\) is not in the row's labels$")

    def test_row_of_a_removed_metric(self):
        self.edit("gateway/main.c", r"cmpgw_config_generations_retired", "cmpgw_generations_retired")
        self.expect(r"^docs/operations\.md:\d+: metric cmpgw_config_generations_retired is not one the "
                    r"gateway exports$",
                    r"^gateway/main\.c:\d+: metric cmpgw_generations_retired has no row")

    def test_option_missing_from_the_man_page(self):
        self.edit("docs/man/cmpgw.8", r'^\.RB \[ \\-\\-audit\n\.IR LOG \]\n', "")
        self.edit("docs/man/cmpgw.8", r'^\.TP\n\.BI "\\-\\-audit " LOG\n', "")
        self.expect(r"^docs/man/cmpgw\.8:1: option --audit \(gateway/main\.c usage\(\)\) is not in the man "
                    r"page")

    def test_option_cmpgw_does_not_take(self):
        self.edit("README.md", r"^cmpgw --help \| --version$", "cmpgw --help | --version | --verbose")
        self.expect(r'^README\.md:\d+: option --verbose in the "Running it" block is not one cmpgw takes')

    def test_option_missing_from_the_readme(self):
        self.edit("README.md", r" \[--audit LOG\]$", "")
        self.expect(r'^README\.md:\d+: option --audit \(gateway/main\.c usage\(\)\) is not in the '
                    r'"Running it" block$')

    def test_option_missing_from_usage(self):
        self.edit("gateway/main.c", r'"\+c:hVu:"', '"+c:hVu:v"')
        self.expect(r"^gateway/main\.c:1: option -v \(getopt_long\) is not in usage\(\)'s text$")

    def test_documented_option_cmpgw_does_not_take(self):
        # usage() and the man page name -u, but getopt_long no longer takes it (--upstream only)
        self.edit("gateway/main.c", r'"\+c:hVu:"', '"+c:hV"')
        self.expect(r"^gateway/main\.c:1: usage\(\) prints option -u, which getopt_long does not take$",
                    r"^docs/man/cmpgw\.8:1: option -u is not one cmpgw takes")

    def test_help_is_the_usage_the_check_reads(self):
        # the options and commands check_cli reads in usage()'s source are those `cmpgw --help` prints
        binary = os.environ.get("CMPGW_BINARY")
        if not binary:
            self.skipTest("CMPGW_BINARY (set by ctest) names no cmpgw to run")
        done = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        printed, _, _, commands = check_docs.code_cli(REPO)
        self.assertEqual(set(check_docs.OPTION.findall(done.stdout)), printed)
        self.assertEqual(set(re.findall(r"^(?:usage:)? +cmpgw ([a-z]+)\b", done.stdout, re.M)), commands)

    def test_command_missing(self):
        self.edit("README.md", r"^cmpgw inventory ", "cmpgw list ")
        self.expect(r'^README\.md:\d+: command cmpgw inventory is not in the "Running it" block$',
                    r'^README\.md:\d+: command cmpgw list in the "Running it" block is not one cmpgw has$')

    def test_reason_without_a_row(self):
        self.edit("docs/errors.md", r"logged `not_authorized` with reason `device_allowlist`",
                  "logged `not_authorized`")
        self.expect(r"^gateway/cmp/policy\.c:\d+: log reason device_allowlist is neither a row of "
                    r"docs/errors\.md nor named there as reason `device_allowlist`$")

    def test_reason_without_a_test(self):
        self.edit("mappings/policy.c", r'"tls_san"', '"tls_san_refused"')
        self.expect(r"^mappings/policy\.c:\d+: log reason tls_san_refused is neither a row",
                    r"^mappings/policy\.c:\d+: log reason tls_san_refused is asserted by no test")

    def test_logged_event_the_code_no_longer_logs(self):
        self.edit("gateway/cmp/record.c", r'"cert_not_withdrawn"', '"cert_kept"')
        self.expect(r"^docs/errors\.md:\d+: `cert_not_withdrawn` is said to be logged, but no source file "
                    r"logs it$")

    def test_event_without_a_row(self):
        self.edit("docs/operations.md", r"^\| `vault_login` .*\n", "")
        self.expect(r"^upstream/vault_token\.c:\d+: log event vault_login has no row in the events table of "
                    r"docs/operations\.md$")

    def test_row_of_an_event_no_longer_logged(self):
        self.edit("upstream/vault_token.c", r'"vault_login"', '"vault_cert_login"')
        self.expect(r"^docs/operations\.md:\d+: log event vault_login is not one the gateway logs$",
                    r"^upstream/vault_token\.c:\d+: log event vault_cert_login has no row")

    def test_event_logged_at_another_level(self):
        self.edit("upstream/vault_token.c", r'GW_LOG_INFO, "vault_login"', 'GW_LOG_WARN, "vault_login"')
        self.expect(r"^docs/operations\.md:\d+: log event vault_login: the row's levels are not `warn` "
                    r"\(upstream/vault_token\.c:\d+")

    def test_level_and_event_picked_together(self):
        # policy.c picks (error, shared_state_unavailable) or (warn, status_unknown) by one condition
        self.edit("gateway/cmp/policy.c", r"GW_LOG_ERROR : GW_LOG_WARN,", "GW_LOG_WARN : GW_LOG_ERROR,")
        self.expect(r"^docs/operations\.md:\d+: log event status_unknown: the row's levels are not `error`")

    def test_event_held_in_a_variable(self):
        # the closings' events are found where they are written, and renaming one is seen
        self.edit("gateway/cmp/engine.c", r'"txn_abandoned_pending"', '"txn_dropped_pending"', count=2)
        self.expect(r"^gateway/cmp/poll\.c:\d+: log event txn_dropped_pending has no row",
                    r"^docs/operations\.md:\d+: log event txn_abandoned_pending is not one the gateway logs$")

    def test_event_in_a_variable_the_check_does_not_know(self):
        self.edit("gateway/cmp/engine.c", r"gw_log_kv\(GW_LOG_WARN, how->event,", "gw_log_kv(GW_LOG_WARN, how->name,")
        self.expect(r"^gateway/cmp/engine\.c:\d+: event how->name is a variable that EVENT_VARIABLES",
                    r"^tests/layers/check_docs\.py:1: EVENT_VARIABLES names gateway/cmp/engine\.c:how->event")

    def test_link_to_a_missing_heading(self):
        self.edit("README.md", r"docs/operations\.md#several-instances",
                  "docs/operations.md#several-instance")
        self.expect(r"^README\.md:\d+: link docs/operations\.md#several-instance: docs/operations\.md has no "
                    r"heading #several-instance$")

    def test_link_and_path_to_a_missing_file(self):
        self.edit("docs/3gpp.md", r"deploy/examples/3gpp\.json", "deploy/examples/5g.json", count=2)
        self.expect(r"^docs/3gpp\.md:\d+: link \.\./deploy/examples/5g\.json: there is no "
                    r"deploy/examples/5g\.json$",
                    r"^docs/3gpp\.md:\d+: deploy/examples/5g\.json does not exist$")

    def test_function_the_sources_no_longer_have(self):
        self.edit("docs/architecture.md", r"\bgw_cmp_process\(\)", "gw_cmp_run()")
        self.expect(r"^docs/architecture\.md:\d+: gw_cmp_run\(\) is no function of the sources$")

    def test_page_not_in_the_index(self):
        self.edit("README.md", r"^- \[docs/polling\.md\].*\n", "")
        self.expect(r'^README\.md:1: docs/polling\.md is not in the list under "## Documentation"$')

    def test_json_example_that_does_not_parse(self):
        self.edit("docs/configuration.md", r'"device": "role:default" \}', '"device": "role:default", ... }')
        self.expect(r"^docs/configuration\.md:\d+: this json block is not JSON")

    def test_reload_without_the_token(self):
        self.edit("docs/operations.md",
                  r'curl -X POST -H "Authorization: Bearer \$\(cat /etc/cmpgw/admin\.token\)" ',
                  "curl -X POST ")
        self.expect(r"^docs/operations\.md:\d+: POST /reload without the bearer token")

    def test_source_file_not_in_the_module_table(self):
        self.edit("docs/architecture.md", r"`engine_info\.c`", "`engine_query.c`")
        self.expect(r'^docs/architecture\.md:1: gateway/cmp/engine_info\.c is in no row of the "## Modules" '
                    r"table$",
                    r"^docs/architecture\.md:\d+: gateway/cmp/engine_query\.c does not exist$")

    def test_library_not_in_the_requirements(self):
        self.edit("README.md", r"hiredis for a shared state", "a shared state")
        self.expect(r'^README\.md:1: hiredis \(CMakeLists\.txt\) is not named under "## Requirements"$')


if __name__ == "__main__":
    unittest.main()
