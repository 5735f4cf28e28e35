#!/usr/bin/env python3
"""Check that the documentation names what the code has, and nothing it no longer has.

A maintainer has only README.md, docs/ and docs/man to go by. Six groups of checks, each by
regular expressions over the sources (nothing is built or run):

1. Configuration keys. Every key of a parser table (GW_CONF_REQ / GW_CONF_OPT rows, and
   {.key = "..."} rows, in the `static const struct gw_conf_field x[]` tables of base/, mappings/,
   upstream/ and gateway/) is the first cell of a row of a key table in docs/configuration.md, under
   the heading SECTIONS gives its table; and every key such a row names is one of those tables'.
   Every key the summary in docs/man/cmpgw.json.5 names is one the parser takes.
   Defaults: the default cell of each such row is the value the table's row writes when the key is
   absent (.def or .sdef, macros of the headers worked out), but for COMPUTED_DEFAULTS; a key with
   a default has a default cell. Every default docs/man/cmpgw.json.5 says in its prose (after a key,
   or one each after keys named together) is the one that key's parser table writes.
2. Metrics. Every family gw_metric_new*() registers (and the dropped-updates counter) has a row in
   the metrics table of docs/operations.md, with the label names it is registered with; and every
   metric or label name a row gives is the code's.
3. The command line. usage() in gateway/main.c (what `cmpgw --help` prints; test_check_docs.py
   holds the two together) prints every option getopt_long takes and no other; every option and
   command it prints is in docs/man/cmpgw.8 and in README.md's "Running it" block; and every option
   those two name is one getopt_long takes.
4. Log reasons. Every code the gateway logs as the `reason` of a refusal (not_authorized,
   txn_sender_refused, profile_refused) is a row id of the table in docs/errors.md or named there
   as `reason `...``, and a test asserts it; every event or reason docs/errors.md says is logged is
   one the code logs. (tests/e2e/test_errors.py checks the table's rows against the answers and
   the tests; this checks what it cannot see: the log codes in the source.)
5. Log events. Every event gw_log() and gw_log_kv() write (a literal of the event argument, or
   what EVENT_VARIABLES says a variable holds) has a row in the events table of
   docs/operations.md, whose level cell gives the levels it is logged at; and every event and
   level a row gives is the code's.
6. Links and names. Every relative link of README.md and docs/ leads to a file, and to a heading
   of it where it names one; every repository path and gw_/cmp_/policy_ function() they name
   exists; every page of docs/ is in README.md's "## Documentation" list; every ```json block
   parses (alone or as an object's members), and every curl to /reload carries the bearer token.
   Every .c file of the layers has a row in docs/architecture.md's module table, and every file
   that table names exists. Every library CMakeLists.txt looks for is in README.md's requirements.

Usage: check_docs.py [REPO_ROOT]   (default: two directories above this file)
Prints one "path:line: what is missing where" per problem and exits 1 if there is any.
"""

import functools
import glob
import json
import os
import re
import sys

LAYERS = ("base", "mappings", "upstream", "gateway")

# --------------------------------------------------------------------------------------------
# 1. Configuration keys
# --------------------------------------------------------------------------------------------

# Parser table ("path:array") -> the headings of docs/configuration.md under which its keys have
# rows. A new table must be added here, and its keys documented under the heading named.
SECTIONS = {
    "gateway/config.c:top_fields": ("Top level",),
    "gateway/config.c:listener_fields": ("listeners",),
    "gateway/config.c:tls_fields": ("listeners",),
    "gateway/config.c:admin_fields": ("admin",),
    "gateway/config.c:limits_fields": ("limits",),
    "gateway/cmp/conf.c:signer_fields": ("signer",),
    "gateway/cmp/conf.c:trust_fields": ("trust",),
    "gateway/cmp/conf.c:pbm_fields": ("pbm",),
    "gateway/cmp/conf.c:cmp_fields": ("cmp",),
    "gateway/cmp/conf.c:state_fields": ("cmp",),
    "gateway/cmp/conf.c:audit_fields": ("audit",),
    "mappings/role.c:role_fields": ("roles", "3GPP base-station keys"),
    "mappings/role.c:authz_fields": ("authorization",),
    "mappings/role.c:root_update_fields": ("root_ca_update",),
    "mappings/migration.c:migration_fields": ("migration",),
    "mappings/migration.c:cohort_fields": ("migration",),
    "upstream/conf.c:common_fields": ("upstreams",),
    "upstream/conf.c:http_fields": ("upstreams",),
    "upstream/local.c:local_fields": ("upstreams",),
    "upstream/vault_conf.c:vault_fields": ("upstreams",),
    "upstream/vault_conf.c:upstream_auth_fields": ("upstreams",),
    "upstream/vault_conf.c:upstream_auth_cert_fields": ("upstreams",),
    "upstream/cfssl.c:cfssl_fields": ("upstreams",),
    "upstream/cmp_up.c:cmp_fields": ("upstreams",),
}
# Keys read outside the tables: an upstream's "type" picks its adapter (upstream/conf.c parse_type).
EXTRA_KEYS = {"upstreams": {"type"}}

TABLE = re.compile(r"static\s+const\s+struct\s+gw_conf_field\s+(\w+)\s*\[\]\s*=\s*\{(.*?)\n\};", re.S)
FIELD_KEY = re.compile(r'GW_CONF_(?:REQ|OPT)\(\s*"([^"]+)"|\{\s*\.key\s*=\s*"([^"]+)"')
HEADING = re.compile(r"^(#+)\s+(.*?)\s*$")
CODE_SPAN = re.compile(r"`([^`]+)`")


# What one run of check() has read and worked out: each file is read once a run, and what is
# parsed out of a text (functools.lru_cache on the text) once for all runs of a process, which the
# fixtures of test_check_docs.py make by the dozen on trees that differ in a file or two.
RUN = {}


def read(root, path):
    key = ("read", root, path)
    if key not in RUN:
        with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
            RUN[key] = f.read()
    return RUN[key]


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


def product_sources(root):
    """Every .c under the layer folders, as sorted repository-relative paths."""
    key = ("sources", root)
    if key not in RUN:
        found = []
        for top in LAYERS:
            found += glob.glob(os.path.join(root, top, "**", "*.c"), recursive=True)
        RUN[key] = sorted(os.path.relpath(p, root).replace(os.sep, "/") for p in found)
    return RUN[key]


def code_tables(root):
    """{"path:array": (line, [keys])} of every configuration parser table."""
    tables = {}
    for path in product_sources(root):
        text = read(root, path)
        for m in TABLE.finditer(text):
            keys = [a or b for a, b in FIELD_KEY.findall(m.group(2))]
            tables[f"{path}:{m.group(1)}"] = (line_of(text, m.start()), keys)
    return tables


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def key_table_rows(text):
    """(heading, line, header cells, cells) of the body rows of every table whose header's first cell is
    "key", under the heading they follow (headings inside fenced code do not count)."""
    heading, header, prev_table, fenced = "", None, False, False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        m = HEADING.match(line) if not fenced else None
        if m:
            heading = m.group(2)
        is_table = line.startswith("|")
        if is_table and not prev_table:
            header = cells(line)
        elif is_table and header[0] == "key" and not re.fullmatch(r"[|\s:-]+", line):
            yield heading, number, header, cells(line)
        prev_table = is_table


def doc_key_rows(text):
    """[(heading, line, [keys])]: the first cells of the rows of every table whose header's first
    cell is "key", under the heading they follow."""
    return [(heading, number, CODE_SPAN.findall(c[0])) for heading, number, _, c in key_table_rows(text)]


def check_config(root):
    problems = []
    doc_path = "docs/configuration.md"
    tables = code_tables(root)
    doc_rows = doc_key_rows(read(root, doc_path))
    documented = {}  # heading -> keys with a row there
    for heading, _, keys in doc_rows:
        documented.setdefault(heading, set()).update(keys)

    for name, (line, keys) in sorted(tables.items()):
        path = name.split(":")[0]
        if name not in SECTIONS:
            problems.append(f"{path}:{line}: configuration table {name.split(':')[1]} is not in SECTIONS "
                            f"of tests/layers/check_docs.py: name the {doc_path} heading its keys are under")
            continue
        where = SECTIONS[name]
        have = set().union(*(documented.get(h, set()) for h in where))
        for key in keys:
            if key not in have:
                shown = " or ".join(f'"{h}"' for h in where)
                problems.append(f'{path}:{line}: key "{key}" ({name.split(":")[1]}) has no row in '
                                f'{doc_path} under {shown}')
    for name in sorted(set(SECTIONS) - set(tables)):
        problems.append(f"tests/layers/check_docs.py:1: SECTIONS names {name}, which is no "
                        f"configuration table of the sources")

    accepted = {}  # heading -> keys the code takes there
    for name, headings in SECTIONS.items():
        for h in headings:
            accepted.setdefault(h, set()).update(tables.get(name, (0, []))[1])
            accepted[h] |= EXTRA_KEYS.get(h, set())
    for heading, line, keys in doc_rows:
        if heading not in accepted:
            problems.append(f'{doc_path}:{line}: key table under "{heading}", which no configuration '
                            f"table of SECTIONS in tests/layers/check_docs.py maps to")
            continue
        for key in keys:
            if key not in accepted[heading]:
                problems.append(f'{doc_path}:{line}: key "{key}" under "{heading}" is not one the '
                                f"parser takes there")
    return problems + check_man_keys(root, tables)


def man_keys(text):
    """[(line, word)]: the bold words that begin each .TP entry of a roff page (.B key, or the
    bold ones of .BR key ", " key " (required)")."""
    found, lines = [], text.splitlines()
    for number, (tp, entry) in enumerate(zip(lines, lines[1:]), 2):
        if tp != ".TP":
            continue
        m = re.match(r"\.(B|BR) (.*)$", entry)
        if not m:
            continue
        args = re.findall(r'"[^"]*"|\S+', m.group(2))
        bold = args if m.group(1) == "B" else args[::2]
        found += [(number, w.strip('"')) for w in bold if re.fullmatch(r'"?[a-z_]+"?', w)]
    return found


def check_man_keys(root, tables):
    """Every key the summary in cmpgw.json(5) names is one the parser takes somewhere (an upstream
    type, the value of "type", is named there too)."""
    man_path = "docs/man/cmpgw.json.5"
    keys = set().union(*(k for _, k in tables.values())) | set().union(*EXTRA_KEYS.values())
    for path in product_sources(root):
        keys.update(re.findall(r'\.dialect\s*=\s*"([a-z]+)"', read(root, path)))
    return [f"{man_path}:{line}: key {word} is not one the parser takes (nor an upstream type)"
            for line, word in man_keys(read(root, man_path)) if word not in keys]


# Defaults. What a parser writes when its key is absent: .sdef (a string), or .def (numbers,
# durations in the parser's unit, bools, enum values, flag sets; 0 when not given); every other
# parser writes nothing, so the key has no default value ("none").
NUMBER_PARSERS = ("gw_conf_p_u32", "gw_conf_p_port")
DURATION_PARSERS = {"gw_conf_p_dur_ms": 1, "gw_conf_p_dur_s": 1000}  # ms per unit of .def
ENUM_PARSERS = ("gw_conf_p_enum", "gw_conf_p_enum_bool")
DURATION_UNITS = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000}  # as base/conf_value.c
# What a default cell says for "no value": the key absent is the key empty.
NO_VALUE = ("", "none", "`[]`", "`{}`", "all defaults")
# Keys whose default the code computes rather than states in its table, "table:key" -> what it is.
# The docs' default cell of these says what the code does, in words or in its value; a string
# value must be a literal of the table's file.
COMPUTED_DEFAULTS = {
    "gateway/config.c:admin_fields:address": "\"127.0.0.1\", set by check_admin",
    "gateway/config.c:top_fields:group": "the user's group, looked up at start",
    "gateway/cmp/conf.c:cmp_fields:state": "an object: the cell names its keys' defaults",
    "gateway/cmp/conf.c:state_fields:key_prefix": "\"cmpgw:\", set by check_state",
    "upstream/vault_conf.c:vault_fields:mount": "\"pki\", set by gw_vault_conf_check",
    "upstream/conf.c:http_fields:tls_ca": "the system CAs: libcurl's own",
    "upstream/cmp_up.c:cmp_fields:expected_sender": "the subject of issuer_ca, taken by check_cmp",
    "mappings/role.c:role_fields:upstream_role": "the role's name, taken by the vault and cfssl adapters",
    "mappings/role.c:role_fields:root_ca_update": "the top-level root_ca_update",
    "mappings/role.c:authz_fields:allowed_key_types": "builtin_rules of mappings/policy.c",
    "mappings/migration.c:migration_fields:name": "the role's name, set by the roles' check",
    "mappings/migration.c:cohort_fields:percent": "PERCENT_UNSET: no percent, told apart from 0",
}
FIELD_ROW = re.compile(r'GW_CONF_(?:REQ|OPT)\((?:[^()"]|"(?:[^"\\]|\\.)*"|\([^()]*\))*\)'
                       r'|\{\s*\.key\s*=(?:[^{}"]|"(?:[^"\\]|\\.)*")*\}')
DEFINE = re.compile(r"^#define[ \t]+(\w+)[ \t]+((?:[^\n\\]|\\\n)+)", re.M)
ENUM_TABLE = re.compile(r"static\s+const\s+struct\s+gw_conf_enum\s+(\w+)\s*\[\]\s*=\s*\{(.*?)\};", re.S)


@functools.lru_cache(maxsize=None)
def text_defines(text):
    """((NAME, value text)) of the object-like #defines of a text, comments dropped."""
    return tuple((m.group(1), " ".join(re.sub(r"/\*.*?(\*/|$)", " ", m.group(2).replace("\\\n", " ")).split()))
                 for m in DEFINE.finditer(text))


def defines(root):
    """{NAME: value text} of every object-like #define of the layers (the first one of a name)."""
    found = {}
    for top in LAYERS:
        for p in sorted(glob.glob(os.path.join(root, top, "**", "*.[ch]"), recursive=True)):
            for name, value in text_defines(read(root, os.path.relpath(p, root))):
                found.setdefault(name, value)
    return found


def evaluate(expr, defs, depth=0):
    """The integer a constant expression of literals, macros, + - * / | and parentheses is, or None."""
    if depth > 8:
        return None
    parts = []
    for token in re.findall(r"\w+|\S", expr):
        if re.fullmatch(r"\d+[uUlL]*", token):
            parts.append(token.rstrip("uUlL"))
        elif token in defs:
            value = evaluate(defs[token], defs, depth + 1)
            if value is None:
                return None
            parts.append(f"({value})")
        elif token in "+-*/|()":
            parts.append("//" if token == "/" else token)
        else:
            return None
    try:
        return int(eval("".join(parts), {"__builtins__": {}}))  # digits and operators only
    except (SyntaxError, ZeroDivisionError):
        return None


def field_attr(text, name):
    m = re.search(rf"\.{name}\s*=\s*((?:\"(?:[^\"\\]|\\.)*\"|\([^()]*\)|[^,(){{}}])+)", text)
    return m.group(1).strip() if m else None


def enum_tables(text):
    """{array: [(name, value text)]} of the gw_conf_enum arrays of a source file."""
    return {m.group(1): re.findall(r'\{\s*"([^"]+)",\s*([^,]+),', m.group(2)) for m in ENUM_TABLE.finditer(text)}


def code_default(text, row, defs):
    """(parser kind, default) of one parser table row: the value a key absent is given, as the docs
    write it (an int, a bool, milliseconds, a name, a set of names, a string), or None for none;
    ("?", text) when the row's default is no value this can work out."""
    parse = re.search(r'GW_CONF_(?:REQ|OPT)\(\s*"[^"]+",\s*(\w+)|\.parse\s*=\s*(\w+)', row)
    parse = parse.group(1) or parse.group(2)
    d, sdef, aux = field_attr(row, "def"), field_attr(row, "sdef"), field_attr(row, "aux")
    if row.startswith("GW_CONF_REQ") or field_attr(row, "required") == "true":
        return "required", None
    if sdef is not None:
        return "str", json.loads(sdef)
    if parse in NUMBER_PARSERS or parse in DURATION_PARSERS:
        n = evaluate(d or "0", defs)
        if n is None:
            return "?", d
        return ("ms", n * DURATION_PARSERS[parse]) if parse in DURATION_PARSERS else ("int", n)
    if parse == "gw_conf_p_bool":
        return "bool", d not in (None, "false", "0")
    if parse in ENUM_PARSERS or parse == "gw_conf_p_flags":
        names = enum_tables(text).get(aux or "", [])
        if parse == "gw_conf_p_flags":  # an OR of the names' values
            symbols = set(re.findall(r"\w+", defs.get(d, d) if d else ""))
            return "set", {name for name, v in names if v.strip() in symbols}
        want = evaluate(d or "0", defs)
        for name, v in names:
            if v.strip() == (d or "0") or (want is not None and evaluate(v, defs) == want):
                return "name", name
        return "none", None  # a value that is no name: "not set", for a check to tell apart
    return "none", None


def doc_default(cell):
    """(kind, value) of a default cell: the JSON value of its first code span, a number written in
    words (2, 1 000 000), or the cell's text."""
    m = re.match(r"`([^`]+)`", cell)
    if m:
        try:
            return "json", json.loads(m.group(1))
        except ValueError:
            return "text", cell
    m = re.fullmatch(r"(\d[\d ]*)(?:\s*\(.*\))?", cell)
    if m:
        return "json", int(m.group(1).replace(" ", ""))
    return "text", cell


def duration_ms(value):
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", value) if isinstance(value, str) else None
    return int(m.group(1)) * DURATION_UNITS[m.group(2)] if m else None


def same_default(kind, want, doc_cell):
    """Whether a default cell says the code's default (kind, want)."""
    how, value = doc_default(doc_cell)
    if kind == "none":  # "none", or "none (any)": what no value means may follow
        return re.sub(r"\s*\(.*\)$", "", doc_cell) in NO_VALUE
    if how != "json":
        return False
    if kind == "ms":  # a duration, or a number of seconds (base/conf_value.c takes both)
        return duration_ms(value) == want or (type(value) is int and value * 1000 == want)
    if kind == "set":
        return isinstance(value, list) and set(value) == want
    if kind == "int":
        return type(value) is int and value == want
    return type(value) is type(want) and value == want


def doc_default_rows(text):
    """[(heading, line, [keys], keys of its table, default cell)] of the key tables of
    docs/configuration.md that have a "default" column."""
    rows, header, table = [], None, []
    for heading, number, head, c in key_table_rows(text):
        if "default" not in head:
            continue
        if head is not header:
            header, table = head, []
        column = head.index("default")
        keys = CODE_SPAN.findall(c[0])
        table.extend(keys)  # the list grows as the table is read: every row sees all of it at the end
        rows.append((heading, number, keys, table, c[column] if column < len(c) else ""))
    return rows


def code_defaults(root):
    """{"path:array": {key: (line, kind, default)}} of the tables of SECTIONS."""
    if ("defaults", root) in RUN:
        return RUN[("defaults", root)]
    defs, found = defines(root), RUN.setdefault(("defaults", root), {})
    for path in product_sources(root):
        text = read(root, path)
        for m in TABLE.finditer(text):
            fields = {}
            for r in FIELD_ROW.finditer(m.group(2)):
                key = re.search(r'"([^"]+)"', r.group(0)).group(1)
                fields[key] = (line_of(text, m.start(2) + r.start()),) + code_default(text, r.group(0), defs)
            found[f"{path}:{m.group(1)}"] = fields
    return found


def check_defaults(root):
    """The default each row of docs/configuration.md gives a key is the one its parser table
    writes, but for COMPUTED_DEFAULTS; a row's table is the one of SECTIONS under its heading
    that has that key and the most keys of the row's docs table."""
    problems, doc_path = [], "docs/configuration.md"
    tables, stated = code_defaults(root), set()
    for heading, line, keys, doc_table, cell in doc_default_rows(read(root, doc_path)):
        stated.update((heading, key) for key in keys)
        for key in keys:
            names = [n for n, hs in SECTIONS.items() if heading in hs and key in tables.get(n, {})]
            if not names:
                continue  # check_config says so
            best = max(len(set(doc_table) & set(tables[n])) for n in names)
            names = [n for n in names if len(set(doc_table) & set(tables[n])) == best]
            computed = [n for n in names if f"{n}:{key}" in COMPUTED_DEFAULTS]
            how, value = doc_default(cell)
            if computed and how == "json" and isinstance(value, str):
                # a string the code sets elsewhere: at least the file of the table has it
                path = computed[0].split(":")[0]
                if json.dumps(value) not in read(root, path):
                    problems.append(f'{doc_path}:{line}: key "{key}" under "{heading}": the default cell says '
                                    f'"{cell}", which {path} (COMPUTED_DEFAULTS) does not set')
            if computed:
                continue
            said = [(n,) + tables[n][key] for n in names]
            if any(kind == "required" for _, _, kind, _ in said):
                continue
            if any(kind == "?" for _, _, kind, _ in said):
                problems += [f"{n.split(':')[0]}:{at}: the default of key \"{key}\" ({d}) is no value "
                             f"tests/layers/check_docs.py can work out: add it to COMPUTED_DEFAULTS"
                             for n, at, kind, d in said if kind == "?"]
                continue
            if not any(same_default(kind, want, cell) for _, _, kind, want in said):
                n, at, kind, want = said[0]
                problems.append(f'{doc_path}:{line}: key "{key}" under "{heading}": the default cell says '
                                f'"{cell}", the code ({n.split(":")[0]}:{at}) {shown_default(kind, want)}')
    for name, fields in sorted(tables.items()):
        for key, (at, kind, want) in fields.items():
            if (kind not in ("none", "required") and f"{name}:{key}" not in COMPUTED_DEFAULTS and
                    not any((h, key) in stated for h in SECTIONS.get(name, ()))):
                problems.append(f'{name.split(":")[0]}:{at}: key "{key}" has a default '
                                f"({shown_default(kind, want)}) that no default cell of {doc_path} gives")
    for name in sorted(COMPUTED_DEFAULTS):
        table, key = name.rsplit(":", 1)
        if key not in tables.get(table, {}):
            problems.append(f"tests/layers/check_docs.py:1: COMPUTED_DEFAULTS names {name}, which is no key "
                            f"of a configuration table")
    return problems


# What cmpgw.json(5) says a key's default is, in its prose. The page is read as text in which each
# bold word that can be a key is marked «key» (roff's requests and escapes undone), cut into its
# entries (.SH, .TP, .PP and .IP each begin one). V being a value (a "string", a [list], a number
# or duration, a bool; words, "default none" or "default the user's", are left to the reader), a
# default is said
#   at a key:     «key» (default V     «key» (V     «key» V (default)     (no page: «cmpgw»(8))
#   after a key:  default V     V (default)     V, the default     V by default
# or, after keys named together ("«ttl», «max_ttl»"), by a (V of the text that follows them. One
# said after a key is that key's; the n-th said after keys named together is the n-th one's.
MAN_SECTIONS = {  # section of cmpgw.json(5) -> the headings of SECTIONS its keys are under
    "TOP LEVEL": ("Top level",), "LISTENERS": ("listeners",), "ADMIN": ("admin",), "SIGNER": ("signer",),
    "TRUST": ("trust",), "PBM": ("pbm",), "UPSTREAMS": ("upstreams",), "CMP": ("cmp",), "LIMITS": ("limits",),
    "AUDIT": ("audit",), "ROLES": ("roles", "3GPP base-station keys", "authorization", "migration"),
}
MAN_VALUE = r'("[^"\n]*"|\[[^\]\n]*\]|\d+(?:\.\d+)?[a-z]*(?![\w.])|true\b|false\b)'
MAN_DEFAULT = re.compile(
    rf"«(?P<key>\w+)»(?:\s+\((?:default\s+)?{MAN_VALUE}(?=[),;:])(?!, \")|{MAN_VALUE}\s*\(default\))"
    rf"|\b[Dd]efault\s+{MAN_VALUE}"
    rf"|{MAN_VALUE}(?:\s*\(default\)|, the default\b|\s+by default\b)"
    rf"|(?P<paren>\(){MAN_VALUE}(?=[),;:])(?!, \")")
KEYS_TOGETHER = re.compile(r"\s*(?:,|,?\s*(?:and|or))?\s*")  # what stands between keys named together
ROFF_ESCAPES = {"\\(dq": '"', "\\(oq": "'", "\\(cq": "'", "\\(->": "->", "\\(sc": "§", "\\(bu": "*",
                "\\-": "-", "\\~": " ", "\\ ": " ", "\\fB": "", "\\fI": "", "\\fR": "", "\\fP": ""}


def roff_text(line):
    """A line of a roff page as text, with its bold words that can be keys marked «word»."""
    def bold(word):
        return f"«{word}»" if re.fullmatch(r"[a-z][a-z0-9_]*", word) else word

    m = re.match(r"\.(B|I|BR|RB|BI|IB|IR|RI)\s+(.*)$", line)
    if m:  # .B: all bold, spaced; .BR, .RB...: the arguments take the two fonts in turn, unspaced
        fonts = m.group(1)
        args = [a[1:-1] if a.startswith('"') else a for a in re.findall(r'"(?:[^"\\]|\\.)*"|\S+', m.group(2))]
        words = [bold(a) if fonts[i % len(fonts)] == "B" else a for i, a in enumerate(args)]
        line = (" " if len(fonts) == 1 else "").join(words)
    elif line.startswith("."):
        return ""
    line = re.sub(r"\\fB([^\\]*)\\f[PR]", lambda b: bold(b.group(1)), line)
    for escape, plain in ROFF_ESCAPES.items():
        line = line.replace(escape, plain)
    return line


@functools.lru_cache(maxsize=None)
def man_entries(text):
    """((section, text, ((offset, line), ...))) of the entries of a roff page: each as text (roff_text
    of its lines), with where in it each of its lines begins."""
    entries, section, body, starts = [], "", "", []
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(r"\.(SH|TP|PP|IP)\b", line):
            entries.append((section, body, tuple(starts)))
            section = line[4:].strip().strip('"') if line.startswith(".SH") else section
            body, starts = "", []
        else:
            starts.append((len(body), number))
            body += roff_text(line) + " "
    return tuple(entries + [(section, body, tuple(starts))])


def keys_before(body, keys, pos):
    """The keys named together last before |pos| of an entry's text: [] or the last key, with those
    before it that only commas, "and" and "or" part from it, as (start, end, key)."""
    group = [k for k in keys if k[1] <= pos][-1:]
    while group and group[0] != keys[0]:
        k = keys[keys.index(group[0]) - 1]
        if not KEYS_TOGETHER.fullmatch(body[k[1]:group[0][0]]):
            break
        group.insert(0, k)
    return group


def man_defaults(text):
    """[(section, line, key, value)] of the defaults cmpgw.json(5) says, each with the key it is said
    of (None when that cannot be told: no key before it, or more said than keys named together)."""
    found = []
    for section, body, starts in man_entries(text):
        keys = [(k.start(), k.end(), k.group(1)) for k in re.finditer(r"«(\w+)»", body)]
        counted = {}  # the last of keys named together -> how many defaults were said after them
        for m in MAN_DEFAULT.finditer(body):
            line = max(n for offset, n in starts if offset <= m.start())
            value = next(v for v in m.groups()[1:] if v not in (None, "("))
            if m.group("key"):
                found.append((section, line, m.group("key"), value))
                continue
            group = keys_before(body, keys, m.start())
            if m.group("paren") and len(group) < 2:
                continue  # after one key, "(64" is some other number: a default there is read at the key
            last = group[-1] if group else None
            n = counted[last] = counted.get(last, 0) + 1
            key = group[n - 1][2] if n <= len(group) else group[0][2] if len(group) == 1 else None
            found.append((section, line, key, value))
    return found


def check_man_defaults(root):
    """Every default cmpgw.json(5) says of a key is the one the key's parser table writes (but for
    COMPUTED_DEFAULTS, of which a string must be a literal of the table's file), the table being one
    of SECTIONS under the headings MAN_SECTIONS gives the page's section."""
    man_path, problems = "docs/man/cmpgw.json.5", []
    tables = code_defaults(root)
    for section, line, key, value in man_defaults(read(root, man_path)):
        said = f"{man_path}:{line}: default {value}"
        if key is None:
            problems.append(f"{said}: of which key? Say it after one key, or one after each of keys named "
                            f"together")
            continue
        names = [n for n, hs in SECTIONS.items()
                 if set(hs) & set(MAN_SECTIONS.get(section, ())) and key in tables.get(n, {})]
        if not names:
            problems.append(f'{said} of key {key}: no parser table of SECTIONS takes {key} under section '
                            f'"{section}" (MAN_SECTIONS of tests/layers/check_docs.py)')
            continue
        computed = [n for n in names if f"{n}:{key}" in COMPUTED_DEFAULTS]
        if computed:
            path = computed[0].split(":")[0]
            if value.startswith('"') and value not in read(root, path):
                problems.append(f"{said} of key {key}: {path} (COMPUTED_DEFAULTS) does not set it")
            continue
        code = [(n,) + tables[n][key] for n in names]
        if any(kind == "?" for _, _, kind, _ in code):
            continue  # check_defaults tells of a default it cannot work out
        cell = f'`"{value}"`' if re.fullmatch(r"\d+[a-z]+", value) else f"`{value}`"  # 10s: "10s"
        if any(same_default(kind, want, cell) for _, _, kind, want in code):
            continue
        n, at, kind, want = code[0]
        problems.append(f"{said} of key {key}: the code ({n.split(':')[0]}:{at}) {shown_default(kind, want)}")
    return problems


def shown_default(kind, want):
    if kind == "required":
        return "requires it"
    if kind == "none":
        return "has none"
    if kind == "ms":
        return f"{want} ms" if want % 1000 else f'"{want // 1000}s"'
    if kind == "set":
        return json.dumps(sorted(want))
    return json.dumps(want)


# --------------------------------------------------------------------------------------------
# 2. Metrics
# --------------------------------------------------------------------------------------------

METRIC_NEW = re.compile(r'gw_metric_new(_gauge_fn|_counter_fn)?\(\s*"([a-z_:][a-z0-9_:]*)"')
METRIC_TYPE_LABELS = re.compile(r"GW_METRIC_(?:COUNTER|GAUGE|HISTOGRAM)\s*,\s*(\w+)")
LABEL_ARRAY = re.compile(r"static\s+const\s+char\s*\*\s*const\s+(\w+)\s*\[\]\s*=\s*\{([^}]*)\}")
DROPPED = re.compile(r'#define\s+GW_METRICS_DROPPED_NAME\s+"([a-z_]+)"')


def call_args(text, start):
    """The text of a call's arguments, from the "(" at or after |start| to its ")"; string
    literals (which may hold parentheses) are skipped whole."""
    i, depth = text.index("(", start), 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return text[start:]


def code_metrics(root):
    """{metric name: (path, line, [label names])} of every family the gateway registers."""
    metrics = {}
    for path in product_sources(root):
        text = read(root, path)
        for m in METRIC_NEW.finditer(text):
            labels = []
            t = METRIC_TYPE_LABELS.search(call_args(text, m.start()))
            if m.group(1) is None and t and t.group(1) != "NULL":
                # the last array of that name before the call: the names repeat between functions
                arrays = [a for a in LABEL_ARRAY.finditer(text, 0, m.start()) if a.group(1) == t.group(1)]
                if arrays:
                    labels = re.findall(r'"([^"]+)"', arrays[-1].group(2))
                else:
                    labels = [f"?{t.group(1)}"]
            metrics[m.group(2)] = (path, line_of(text, m.start()), labels)
    header = read(root, "base/metrics.h")
    d = DROPPED.search(header)
    if d:
        metrics[d.group(1)] = ("base/metrics.h", line_of(header, d.start()), [])
    return metrics


def strip_parens(s):
    """|s| without its parenthesized parts (nested ones too): what is left of a labels cell is
    the label names, the values they take being in parentheses after them."""
    while True:
        t = re.sub(r"\([^()]*\)", "", s)
        if t == s:
            return t
        s = t


def table_rows(text, first):
    """[(line, cells)] of the body rows of the tables whose header's first cell is |first|."""
    rows, inside = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("|"):
            inside = False
            continue
        c = cells(line)
        if c[0] == first:
            inside = True
            continue
        if inside and not re.fullmatch(r"[|\s:-]+", line):
            rows.append((number, c))
    return rows


def doc_metric_rows(text):
    """[(line, [metric names], [label names])] of the table whose header starts "| metric |"."""
    return [(number, CODE_SPAN.findall(c[0]), CODE_SPAN.findall(strip_parens(c[1])))
            for number, c in table_rows(text, "metric")]


def check_metrics(root):
    problems = []
    doc_path = "docs/operations.md"
    metrics = code_metrics(root)
    rows = doc_metric_rows(read(root, doc_path))
    if not rows:
        return [f'{doc_path}:1: no metrics table (a table whose header starts "| metric |")']
    by_name = {}
    for line, names, labels in rows:
        for name in names:
            by_name[name] = (line, labels)
    for name, (path, line, labels) in sorted(metrics.items()):
        if name not in by_name:
            problems.append(f"{path}:{line}: metric {name} has no row in the metrics table of {doc_path}")
            continue
        doc_line, doc_labels = by_name[name]
        for label in labels:
            if label not in doc_labels:
                problems.append(f"{doc_path}:{doc_line}: metric {name}: label `{label}` ({path}:{line}) "
                                f"is not in the row's labels")
        for label in doc_labels:
            if label not in labels:
                problems.append(f"{doc_path}:{doc_line}: metric {name}: label `{label}` is not one "
                                f"{path}:{line} registers")
    for name in sorted(set(by_name) - set(metrics)):
        problems.append(f"{doc_path}:{by_name[name][0]}: metric {name} is not one the gateway exports")
    return problems


# --------------------------------------------------------------------------------------------
# 3. The command line
# --------------------------------------------------------------------------------------------

USAGE = re.compile(r"static void usage\(FILE \*out\)\s*\{(.*?)\n\}", re.S)
LONG_OPT = re.compile(r'\{"([a-z][a-z-]*)",\s*(?:no|required|optional)_argument')
SHORT_OPTS = re.compile(r'getopt_long\([^,]+,[^,]+,\s*"([^"]*)"')
COMMAND = re.compile(r'strcmp\(argv\[1\],\s*"([a-z]+)"\)')
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])(?![\w-])")
ALIAS = re.compile(r"(?<![\w-])(-[a-zA-Z]), (--[a-z][a-z-]*)")


def code_cli(root):
    """(options usage() prints, {short: long} of those it prints as "-c, --config", options
    getopt_long takes (its short ones, --its long ones), commands)."""
    text = read(root, "gateway/main.c")
    u = USAGE.search(text)
    printed = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', u.group(1))) if u else ""
    shorts = "".join(SHORT_OPTS.findall(text))
    takes = {f"-{c}" for c in shorts if c.isalnum()} | {f"--{o}" for o in LONG_OPT.findall(text)}
    return set(OPTION.findall(printed)), dict(ALIAS.findall(printed)), takes, set(COMMAND.findall(text))


def man_text(text):
    """The roff source as text: escapes undone, comments dropped."""
    plain = text.replace("\\-", "-")
    for font in ("\\fR", "\\fP", "\\fB", "\\fI"):
        plain = plain.replace(font, " ")
    return "\n".join(l for l in plain.splitlines() if not l.startswith('.\\"'))


def man_options(text):
    """Options the man page gives cmpgw: those of its SYNOPSIS and OPTIONS sections, and of the
    lines that run cmpgw elsewhere (the EXAMPLES also run systemctl, whose options are its own)."""
    found, section = set(), ""
    for line in text.splitlines():
        if line.startswith(".SH "):
            section = line[4:].strip()
        elif section in ("SYNOPSIS", "OPTIONS") or line.startswith("cmpgw "):
            found.update(OPTION.findall(line))
    return found


def readme_running(text):
    """(line, the lines that run cmpgw) of the first code block after the heading "## Running it"
    (the block also shows kill and curl, whose options are their own)."""
    m = re.search(r"^## Running it\n.*?^```[a-z]*\n(.*?)^```", text, re.S | re.M)
    if not m:
        return 0, ""
    return line_of(text, m.start(1)), "\n".join(l for l in m.group(1).splitlines() if l.startswith("cmpgw "))


def check_cli(root):
    problems = []
    printed, alias, takes, commands = code_cli(root)
    for opt in sorted(takes - printed):
        problems.append(f"gateway/main.c:1: option {opt} (getopt_long) is not in usage()'s text")
    for opt in sorted(printed - takes):
        problems.append(f"gateway/main.c:1: usage() prints option {opt}, which getopt_long does not take")
    man_path = "docs/man/cmpgw.8"
    man = man_text(read(root, man_path))
    in_man = man_options(man)
    readme_path = "README.md"
    line, block = readme_running(read(root, readme_path))
    if not block:
        problems.append(f'{readme_path}:1: no code block after "## Running it" listing the command line')
    shown = set(OPTION.findall(block))
    also = {long: short for short, long in alias.items()}
    for opt in sorted(printed):
        if opt not in in_man:
            problems.append(f"{man_path}:1: option {opt} (gateway/main.c usage()) is not in the man page's "
                            f"SYNOPSIS or OPTIONS")
        # the block is a summary: an option shown by its short or its long name is there
        if opt.startswith("--") and opt not in shown and also.get(opt) not in shown:
            problems.append(f'{readme_path}:{line}: option {opt} (gateway/main.c usage()) is not in the '
                            f'"Running it" block')
    for opt in sorted(in_man - takes):
        problems.append(f"{man_path}:1: option {opt} is not one cmpgw takes (gateway/main.c)")
    for opt in sorted(shown - takes):
        problems.append(f'{readme_path}:{line}: option {opt} in the "Running it" block is not one cmpgw '
                        f"takes (gateway/main.c)")
    for cmd in sorted(commands):
        if not re.search(rf"^\.BI? \"?cmpgw {cmd}\b", man, re.M):
            problems.append(f"{man_path}:1: command cmpgw {cmd} has no entry in the man page")
        if not re.search(rf"^cmpgw {cmd}\b", block, re.M):
            problems.append(f'{readme_path}:{line}: command cmpgw {cmd} is not in the "Running it" block')
    for cmd in sorted(set(re.findall(r"^cmpgw ([a-z]+)\b", block, re.M)) - commands):
        problems.append(f'{readme_path}:{line}: command cmpgw {cmd} in the "Running it" block is not '
                        f"one cmpgw has")
    return problems


# --------------------------------------------------------------------------------------------
# 4. Log reasons
# --------------------------------------------------------------------------------------------

# The codes a refusal is logged with: policy's refused(why, "code", ...), the engine's
# cmp_deny(c, t, "code", ...), a literal assigned to a code, and a literal "reason" (or either of a
# ?: pair) in the log line of a refusal event.
REFUSAL_EVENTS = ("not_authorized", "txn_sender_refused", "profile_refused")
REASON_CODES = (
    re.compile(r'\brefused\(\s*\w+,\s*"([a-z0-9_]+)"'),
    re.compile(r'\bcmp_deny\(\s*\w+,\s*\w+,\s*"([a-z0-9_]+)"'),
    re.compile(r'\bcode\s*=\s*"([a-z0-9_]+)"'),
)
LOG_KV = re.compile(r'gw_log_kv\(\s*\w+,\s*"([a-z0-9_]+)"')
LOGGED_REASON = re.compile(r'"reason",\s*(?:[^,;]*\?\s*)?"([a-z0-9_]+)"(?:\s*:\s*"([a-z0-9_]+)")?')
CODE_FN = re.compile(r"const char \*\w+_code\([^)]*\)\s*\{(.*?)\n\}", re.S)
# Codes no client can cause, so no row of errors.md: a caller's or the gateway's own bug.
NO_ROW = {
    "no_identity": "gw_policy_authorize called without a role or identity",
    "internal_error": "a signer chain that ends at no trust entry of the role (operations.md says so)",
}
# What docs/errors.md says is logged: "logged `x`", "the log says `x`", "log line `x`", "reason `x`".
DOC_LOGGED = re.compile(r"(?:logged(?: as)?|the log says|log line|logs?|reason)\s+`([a-z0-9_]+)`")


@functools.lru_cache(maxsize=None)
def text_reasons(text):
    """((code, line)) of the refusal codes a source text logs as a reason, in the order
    code_reasons takes them."""
    found = []
    for pattern in REASON_CODES:
        found += [(m.group(1), line_of(text, m.start())) for m in pattern.finditer(text)]
    for m in LOG_KV.finditer(text):
        if m.group(1) not in REFUSAL_EVENTS:
            continue
        for r in LOGGED_REASON.finditer(call_args(text, m.start())):
            found += [(code, line_of(text, m.start())) for code in filter(None, r.groups())]
    for m in CODE_FN.finditer(text):
        for r in re.finditer(r'return\s+"([a-z0-9_]+)"', m.group(1)):
            found.append((r.group(1), line_of(text, m.start(1) + r.start())))
    return tuple(found)


def code_reasons(root):
    """{code: (path, line)} of every refusal code the gateway logs as a reason."""
    found = {}
    for path in product_sources(root):
        for code, line in text_reasons(read(root, path)):
            found.setdefault(code, (path, line))
    return found


def errors_rows(text):
    """{row id: row line} of the errors-table of docs/errors.md."""
    rows, inside = {}, False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("<!-- errors-table"):
            inside = True
        elif line.startswith("<!-- end errors-table"):
            break
        elif inside and line.startswith("| `"):
            rows[cells(line)[0].strip("`")] = (number, line)
    return rows


def tests_text(root):
    out = []
    for pattern in ("tests/e2e/*.py", "tests/unit/*.c"):
        for p in sorted(glob.glob(os.path.join(root, pattern))):
            with open(p, encoding="utf-8", errors="replace") as f:
                out.append(f.read())
    return "\n".join(out)


def check_reasons(root):
    problems = []
    doc_path = "docs/errors.md"
    doc = read(root, doc_path)
    rows = errors_rows(doc)
    named = set(DOC_LOGGED.findall(doc))
    tests = tests_text(root)
    codes = code_reasons(root)
    for code, (path, line) in sorted(codes.items()):
        if code in NO_ROW:
            continue
        if code not in rows and code not in named:
            problems.append(f"{path}:{line}: log reason {code} is neither a row of {doc_path} nor named "
                            f"there as reason `{code}`")
        if f'"{code}"' not in tests and f"test_{code}" not in tests:
            problems.append(f"{path}:{line}: log reason {code} is asserted by no test in tests/e2e or "
                            f"tests/unit")
    for code in sorted(set(NO_ROW) - set(codes)):
        problems.append(f"tests/layers/check_docs.py:1: NO_ROW names {code}, which the sources no longer log")
    literals = set()
    for path in product_sources(root):
        literals.update(re.findall(r'"([a-z0-9_]+)"', read(root, path)))
    for m in DOC_LOGGED.finditer(doc):
        if m.group(1) not in literals:
            problems.append(f"{doc_path}:{line_of(doc, m.start())}: `{m.group(1)}` is said to be logged, "
                            f"but no source file logs it")
    return problems


# --------------------------------------------------------------------------------------------
# 5. Log events
# --------------------------------------------------------------------------------------------

LOG_CALL = re.compile(r"\bgw_log(?:_kv)?\(")
LEVEL = re.compile(r"\bGW_LOG_(DEBUG|INFO|WARN|ERROR)\b")
# An event passed in a variable, not as a literal of the call: "path:expression" -> where its
# values are written (patterns over every source file, group 1 an event name). A call with a
# variable event not named here fails the check, so that no event escapes it.
EVENT_VARIABLES = {
    # how a parked transaction closed: struct closing {event, audit status, pending_event, ...}
    "gateway/cmp/engine.c:how->event": (r'struct closing \w+ = \{\s*"([a-z0-9_]+)"',),
    # a deferred request closed without its pollReq: its callers' literal, or a closing's pending_event
    "gateway/cmp/poll.c:event": (
        r'cmp_poll_(?:withdraw_uncollected|closed)\(\s*[^,]+,[^,]+,[^,]+,\s*"([a-z0-9_]+)"',
        r'struct closing \w+ = \{\s*"[a-z0-9_]+",\s*"(?:[^"\\]|\\.)*",\s*"([a-z0-9_]+)"',
    ),
    # a shared-state step's failure, paced by the outage: its callers' literal
    "gateway/cmp/cluster.c:event": (r'warn_failed\(\s*cl,\s*"([a-z0-9_]+)"',),
}


def top_args(args):
    """The top-level arguments of a call's argument text (from its "("), as stripped strings."""
    out, depth, cur, i = [], 0, "", args.index("(") + 1
    while i < len(args):
        ch = args[i]
        if ch == '"':
            j = i + 1
            while args[j] != '"':
                j += 2 if args[j] == "\\" else 1
            cur += args[i:j + 1]
            i = j + 1
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
        i += 1
    return out + [cur.strip()]


def paired(level, event):
    """{event: {level}} when the level and the event are picked by one condition ("c ? GW_LOG_ERROR :
    GW_LOG_WARN, c ? "a" : "b""), else {}."""
    fork = re.compile(r'(.+?)\s*\?\s*(\S+)\s*:\s*(\S+)$')
    lv, ev = fork.fullmatch(level), fork.fullmatch(event)
    if not lv or not ev or lv.group(1) != ev.group(1):
        return {}
    return {ev.group(i).strip('"'): {v.lower() for v in LEVEL.findall(lv.group(i))} for i in (2, 3)}


@functools.lru_cache(maxsize=None)
def log_calls(text):
    """((line, (level argument, event argument))) of the gw_log() and gw_log_kv() calls of a text."""
    found = []
    for m in LOG_CALL.finditer(text):
        args = top_args(call_args(text, m.start()))
        if len(args) >= 2 and text[max(0, m.start() - 5):m.start()] != "void ":  # not base/log.[ch]'s own
            found.append((line_of(text, m.start()), tuple(args[:2])))
    return tuple(found)


def code_events(root):
    """({event: (path, line, {levels})}, [problems]) of every event gw_log() and gw_log_kv() write:
    the literals of the event argument (either of a ?: pair), or what EVENT_VARIABLES says a
    variable holds, at the levels of the level argument (every one a ?: may pick)."""
    events, problems, used = {}, [], set()
    texts = {path: read(root, path) for path in product_sources(root)}

    def add(name, path, line, levels):
        events.setdefault(name, (path, line, set()))[2].update(levels)

    for path, text in texts.items():
        for line, args in log_calls(text):
            levels = {v.lower() for v in LEVEL.findall(args[0])} or {"?"}
            names = re.findall(r'"([a-z0-9_]+)"', args[1])
            pairs = paired(args[0], args[1])
            for name in names:
                add(name, path, line, pairs.get(name, levels))
            if names:
                continue
            key = f"{path}:{args[1]}"
            if key not in EVENT_VARIABLES:
                problems.append(f"{path}:{line}: event {args[1]} is a variable that EVENT_VARIABLES of "
                                f"tests/layers/check_docs.py does not name: say where its values are written")
                continue
            used.add(key)
            for pattern in EVENT_VARIABLES[key]:
                for t in texts.values():
                    for v in re.finditer(pattern, t):
                        add(v.group(1), path, line, levels)
    for key in sorted(set(EVENT_VARIABLES) - used):
        problems.append(f"tests/layers/check_docs.py:1: EVENT_VARIABLES names {key}, which no log call of "
                        f"the sources passes as its event")
    return events, problems


def doc_event_rows(text):
    """{event: (line, [levels])} of the table whose header starts "| event |"."""
    rows = {}
    for number, c in table_rows(text, "event"):
        for name in CODE_SPAN.findall(c[0]):
            rows[name] = (number, CODE_SPAN.findall(c[1]) if len(c) > 1 else [])
    return rows


def check_events(root):
    """Every event the gateway logs has a row in the events table of docs/operations.md, with the
    levels it is logged at; every event and level a row gives is the code's."""
    doc_path = "docs/operations.md"
    events, problems = code_events(root)
    rows = doc_event_rows(read(root, doc_path))
    if not rows:
        return problems + [f'{doc_path}:1: no log events table (a table whose header starts "| event |")']
    for name, (path, line, levels) in sorted(events.items()):
        if name not in rows:
            problems.append(f"{path}:{line}: log event {name} has no row in the events table of {doc_path}")
            continue
        doc_line, doc_levels = rows[name]
        if set(doc_levels) != levels:
            shown = ", ".join(f"`{v}`" for v in sorted(levels))
            problems.append(f"{doc_path}:{doc_line}: log event {name}: the row's levels are not {shown} "
                            f"({path}:{line} and the event's other log calls)")
    for name in sorted(set(rows) - set(events)):
        problems.append(f"{doc_path}:{rows[name][0]}: log event {name} is not one the gateway logs")
    return problems


# --------------------------------------------------------------------------------------------
# 6. Links and names
# --------------------------------------------------------------------------------------------

FENCE = re.compile(r"^ *```.*?^ *```", re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")
REPO_PATH = re.compile(r"(?<![\w/.-])((?:base|mappings|upstream|gateway|deploy|tests|docs)/[\w./-]*\w)")
FUNCTION = re.compile(r"(?<![\w.])((?:gw|cmp|policy)_\w+)\(\)")
JSON_BLOCK = re.compile(r"^ *```json\n(.*?)^ *```", re.S | re.M)
# a curl command up to the URL of the admin listener's reload (it may span lines)
RELOAD_CURL = re.compile(r"curl (?:[^`\n]|\n(?!\n))*?/reload\b")


def parses_as_json(body):
    """Whether |body| is JSON, or the members of an object ("admin": {...}, as the examples show a
    part of a configuration)."""
    for text in (body, "{" + body + "}"):
        try:
            json.loads(text)
            return True
        except ValueError:
            pass
    return False


def doc_files(root):
    """README.md and every page of docs/ and docs/man, as repository-relative paths."""
    found = [os.path.join(root, "README.md")] + glob.glob(os.path.join(root, "docs", "*.md"))
    found += glob.glob(os.path.join(root, "docs", "man", "*.[0-9]"))
    return sorted(os.path.relpath(p, root).replace(os.sep, "/") for p in found)


@functools.lru_cache(maxsize=None)
def anchors(text):
    """The anchors GitHub gives the headings of a Markdown text: lower case, punctuation but "-"
    and "_" dropped, spaces as "-", "-1", "-2"... after a repeated one."""
    out = set()
    for m in re.finditer(HEADING.pattern, FENCE.sub("", text), re.M):
        base = re.sub(r"[^\w\- ]", "", m.group(2).lower()).replace(" ", "-")
        name, n = base, 0
        while name in out:
            n += 1
            name = f"{base}-{n}"
        out.add(name)
    return frozenset(out)


def check_links(root):
    problems = []
    functions = set()  # every name a source file calls or defines
    for p in product_sources(root):
        functions.update(re.findall(r"\b(\w+)\(", read(root, p)))
    for path in doc_files(root):
        text = read(root, path)
        for m in LINK.finditer(FENCE.sub(lambda f: "\n" * f.group(0).count("\n"), text)):
            link = m.group(1)
            if re.match(r"[a-z]+:", link):
                continue
            target, _, frag = link.partition("#")
            target = os.path.normpath(os.path.join(os.path.dirname(path), target)) if target else path
            line = line_of(text, m.start())
            if not os.path.exists(os.path.join(root, target)):
                problems.append(f"{path}:{line}: link {link}: there is no {target}")
            elif frag and target.endswith(".md") and frag not in anchors(read(root, target)):
                problems.append(f"{path}:{line}: link {link}: {target} has no heading #{frag}")
        for m in REPO_PATH.finditer(text):
            if not os.path.exists(os.path.join(root, m.group(1))):
                problems.append(f"{path}:{line_of(text, m.start())}: {m.group(1)} does not exist")
        for m in JSON_BLOCK.finditer(text):
            if not parses_as_json(m.group(1)):
                problems.append(f"{path}:{line_of(text, m.start())}: this json block is not JSON, nor the "
                                f"members of one object: a reader who pastes it gets a parse error")
        for m in RELOAD_CURL.finditer(text):
            if "Authorization: Bearer" not in m.group(0):
                problems.append(f"{path}:{line_of(text, m.start())}: POST /reload without the bearer token "
                                f"of admin.token_file is refused (HTTP 401 or 403)")
        for m in FUNCTION.finditer(text):
            if m.group(1) not in functions:
                problems.append(f"{path}:{line_of(text, m.start())}: {m.group(1)}() is no function of the "
                                f"sources")
    readme = read(root, "README.md")
    index = re.search(r"^## Documentation\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    listed = set(LINK.findall(index.group(1))) if index else set()
    for page in doc_files(root):
        if page.startswith("docs/") and page.endswith(".md") and page not in listed:
            problems.append(f'README.md:1: {page} is not in the list under "## Documentation"')
    return problems


def check_modules(root):
    """Every .c file of the layers has a row in docs/architecture.md's "## Modules" table (folder in
    the first cell, or empty for the row above's; files as code spans), and every file named exists."""
    problems, doc_path = [], "docs/architecture.md"
    text = read(root, doc_path)
    named, folder = set(), None
    for number, line in enumerate(text.splitlines(), 1):
        c = cells(line) if line.startswith("| ") else []
        if len(c) < 3:
            continue
        m = re.fullmatch(r"`((?:base|mappings|upstream|gateway)/(?:\w+/)?)`", c[0])
        if m:
            folder = m.group(1)
        elif c[0] or folder is None:
            continue
        for name in re.findall(r"`(\w+\.[ch])`", c[1] + " " + c[2]):
            if not os.path.exists(os.path.join(root, folder + name)):
                problems.append(f"{doc_path}:{number}: {folder}{name} does not exist")
            named.add(folder + name)
    for path in product_sources(root):
        if path not in named:
            problems.append(f'{doc_path}:1: {path} is in no row of the "## Modules" table')
    return problems


def check_requirements(root):
    """Every library CMakeLists.txt looks for (pkg-config modules, find_package but for CMake's own
    helpers) is named in README.md's "## Requirements", so a new user knows what to install."""
    cmake = read(root, "CMakeLists.txt")
    readme = read(root, "README.md")
    m = re.search(r"^## Requirements\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    section = m.group(1).lower() if m else ""
    wanted = re.findall(r"pkg_check_modules\(\w+ (?:REQUIRED )?IMPORTED_TARGET ([\w.-]+)\)", cmake)
    wanted += [n for n in re.findall(r"find_package\((\w+)", cmake) if n not in ("PkgConfig", "Threads")]
    return [f'README.md:1: {name} (CMakeLists.txt) is not named under "## Requirements"'
            for name in wanted if name.lower() not in section]


def check(root):
    RUN.clear()
    return (check_config(root) + check_defaults(root) + check_man_defaults(root) + check_metrics(root) +
            check_cli(root) + check_reasons(root) + check_events(root) + check_links(root) + check_modules(root) +
            check_requirements(root))


def main(argv):
    if len(argv) > 2:
        sys.exit(f"usage: {argv[0]} [REPO_ROOT]")
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.abspath(argv[1] if len(argv) == 2 else os.path.join(here, "..", ".."))
    problems = check(root)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} place(s) where the documentation and the code disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
