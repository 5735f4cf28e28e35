#!/usr/bin/env python3
"""Check the product source against the layer rule.

Product source lives in five layers, lowest first:

    0  base/          may include base/
    1  mappings/      may include base/, mappings/
    2  upstream/      may include base/, mappings/, upstream/
    3  gateway/cmp/   may include base/, mappings/, upstream/, gateway/cmp/
    4  gateway/       (everything else under gateway/) may include all of the above

Over every *.c and *.h in those folders (recursively) this checks that:

1. an #include "..." names a file in the same layer or a lower one;
2. every quoted include is written relative to the repository root (it starts
   with base/, mappings/, upstream/ or gateway/, and has no "." or ".." parts)
   and names a file that exists; <...> includes are system headers and ignored;
3. modules do not include each other in a cycle: a module is a path without its
   extension (gateway/cmp/srv.c and gateway/cmp/srv.h are gateway/cmp/srv; an
   internal header srv_local.h or srv_int.h, or its test hooks srv_test.h, belongs
   to it too), and A depends on
   B when one of A's files includes one of B's headers;
4. no .c file is longer than its limit: 800 lines for gateway/config.c,
   1200 for any other, unless EXCEPTIONS below says otherwise.

Usage: check_layers.py [REPO_ROOT]   (default: two directories above this file)
Prints one "path:line: reason" per violation and exits 1 if there is any.
Other folders (tests/, build*/, ...) are not looked at.
"""

import os
import posixpath
import re
import sys

# Files allowed past their size limit: "path": max_lines. Each entry needs a
# comment saying why the file cannot be split (yet); keep this list short.
EXCEPTIONS = {}

DEFAULT_MAX_LINES = 1200
# The rule's own tighter limits, for files that must stay smaller than the rest.
MAX_LINES = {"gateway/config.c": 800}

# Layer folder -> rank, lowest first. gateway/cmp/ comes before gateway/ so that
# layer_of() tries the more specific prefix first.
RANK = {"base/": 0, "mappings/": 1, "upstream/": 2, "gateway/cmp/": 3, "gateway/": 4}
ROOT_PREFIXES = ("base/", "mappings/", "upstream/", "gateway/")

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]*)"')


def layer_of(path):
    """The layer prefix a repository-relative path belongs to, or None."""
    for prefix in RANK:
        if path.startswith(prefix):
            return prefix
    return None


def line_limit(path):
    return EXCEPTIONS.get(path, MAX_LINES.get(path, DEFAULT_MAX_LINES))


def module_of(path):
    stem = posixpath.splitext(path)[0]
    # A module's internal header (listener_local.h, as OpenSSL's *_local.h) is part of it.
    for suffix in ("_local", "_int", "_test"):
        if path.endswith(".h") and stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def source_files(root):
    """Every .c and .h in the layer folders, as sorted repository-relative paths."""
    found = []
    for top in ROOT_PREFIXES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            dirnames.sort()
            for name in filenames:
                if name.endswith((".c", ".h")):
                    rel = os.path.relpath(os.path.join(dirpath, name), root)
                    found.append(rel.replace(os.sep, "/"))
    return sorted(found)


def includes(root, path):
    """(line number, quoted name) for each #include "..." in a file."""
    with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            m = INCLUDE.match(line)
            if m:
                yield number, m.group(1)


def is_file(root, path):
    return os.path.isfile(os.path.join(root, path))


def find_cycles(graph):
    """One shortest cycle per strongly connected component of graph
    (module -> set of modules), each as a list starting and ending at the
    component's smallest module."""
    # Tarjan's algorithm, iterative so that a long include chain cannot hit
    # Python's recursion limit.
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)

    cycles = []
    for component in components:
        # Breadth-first from the smallest member back to itself, inside the
        # component: the shortest cycle is the easiest one to read and break.
        first = min(component)
        previous, queue = {}, [first]
        while queue and first not in previous:
            node = queue.pop(0)
            for child in sorted(graph[node] & component):
                if child not in previous:
                    previous[child] = node
                    queue.append(child)
        cycle, node = [first], previous[first]
        while node != first:
            cycle.append(node)
            node = previous[node]
        cycle.append(first)
        cycles.append(cycle[::-1])
    return sorted(cycles)


def check(root):
    """All violations in the tree at root as "path:line: reason" strings:
    include problems file by file, then cycles, then sizes."""
    problems = []
    files = source_files(root)
    graph = {}  # module -> modules it includes
    where = {}  # (module, included module) -> (path, line) of the first such include

    for path in files:
        layer = layer_of(path)
        for line, name in includes(root, path):
            rooted = name.startswith(ROOT_PREFIXES) and posixpath.normpath(name) == name
            if rooted:
                target = name if is_file(root, name) else None
                if target is None:
                    problems.append(f'{path}:{line}: included file "{name}" does not exist')
            else:
                # Still find the file the compiler would open (the including
                # file's folder first, then the root, which is on the include
                # path), so the layer and cycle checks see this edge too.
                here = posixpath.join(posixpath.dirname(path), name)
                guesses = [posixpath.normpath(p) for p in (here, name)]
                target = next((g for g in guesses if layer_of(g) and is_file(root, g)), None)
                hint = f' (write "{target}")' if target else ""
                problems.append(f'{path}:{line}: include "{name}" is not relative to the '
                                f'repository root{hint}')
            if target is None:
                continue
            target_layer = layer_of(target)
            if RANK[target_layer] > RANK[layer]:
                problems.append(f"{path}:{line}: {layer} (layer {RANK[layer]}) may not include "
                                f"{target} (layer {RANK[target_layer]}, {target_layer})")
            a, b = module_of(path), module_of(target)
            if a != b:
                graph.setdefault(a, set()).add(b)
                graph.setdefault(b, set())
                where.setdefault((a, b), (path, line))

    for cycle in find_cycles(graph):
        path, line = where[(cycle[0], cycle[1])]
        problems.append(f'{path}:{line}: include cycle: {" -> ".join(cycle)}')

    for path in files:
        if path.endswith(".c"):
            with open(os.path.join(root, path), "rb") as f:
                count = sum(1 for _ in f)
            limit = line_limit(path)
            if count > limit:
                problems.append(f"{path}:1: {count} lines, more than {limit}")

    return problems


def main(argv):
    if len(argv) > 2:
        sys.exit(f"usage: {argv[0]} [REPO_ROOT]")
    here = os.path.dirname(os.path.abspath(__file__))
    root = argv[1] if len(argv) == 2 else os.path.join(here, "..", "..")
    problems = check(os.path.abspath(root))
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} layer rule violation(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
